from migration_jobs.management.run_command import RunCommand
from migration_jobs.models import MigrationRun
from migration_jobs.services.kinds.migrate import MIGRATE
from migration_jobs.services.kinds.plan import PLAN
from migration_jobs.services.runs import migration_run_request


class Command(RunCommand):
    help = "Queue (or with --sync, run) the migration of one agency; --dry-run plans it and writes nothing."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--dry-run", action="store_true", help="Plan only: count, match, write nothing.")
        parser.add_argument(
            "--full",
            action="store_true",
            help="Re-read every row of the agency instead of only those RevOS's change capture recorded.",
        )

    def request_run(self, link, options) -> MigrationRun:
        return migration_run_request(
            link=link,
            kind=self.kind(options),
            actor=None,
            enqueue=not options["sync"],
            full_reread=options["full"] and not options["dry_run"],
        )

    def kind(self, options) -> str:
        return PLAN.value if options["dry_run"] else MIGRATE.value
