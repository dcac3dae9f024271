from typing import Any

from migration_jobs.management.run_command import SteppedRunCommand
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.services.kinds.cutover import cutover_run_request


class Command(SteppedRunCommand):
    help = (
        "Queue (or with --sync, run) the cutover of one agency: fence its RevOS writes, apply the last "
        "changes, verify them and turn unified_db on. Any failure lifts the fence and leaves unified_db off."
    )

    window_label = "write downtime (fence to switch)"

    def request_run(self, link: AgencyLink, options: dict[str, Any]) -> MigrationRun:
        return cutover_run_request(link=link, reason=options["reason"], actor=None, enqueue=not options["sync"])
