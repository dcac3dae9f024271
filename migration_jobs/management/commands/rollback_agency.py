from typing import Any

from migration_jobs.management.run_command import RunCommand
from migration_jobs.services.kinds.rollback import ROLLBACK


class Command(RunCommand):
    help = "Queue (or with --sync, run) the rollback of one agency: deletes exactly the rows its runs inserted."

    def kind(self, options: dict[str, Any]) -> str:
        return ROLLBACK.value
