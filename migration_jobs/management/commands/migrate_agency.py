from migration_jobs.management.run_command import RunCommand
from migration_jobs.models import MigrationRun


class Command(RunCommand):
    help = "Queue (or with --sync, run) the migration of one agency; --dry-run plans it and writes nothing."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--dry-run", action="store_true", help="Plan only: count, match, write nothing.")

    def kind(self, options) -> str:
        return MigrationRun.Kind.PLAN if options["dry_run"] else MigrationRun.Kind.MIGRATE
