from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from migration_jobs.management.run_command import RunCommand
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.selectors.plan import plan_lines, plan_refused_csv, plan_summary
from migration_jobs.services.full_reread import migration_full_reread_request
from migration_jobs.services.kinds.migrate import MIGRATE
from migration_jobs.services.kinds.plan import PLAN
from migration_jobs.services.runs import migration_run_request


class Command(RunCommand):
    help = "Queue (or with --sync, run) the migration of one agency; --dry-run plans it and writes nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--dry-run", action="store_true", help="Plan only: count, match, write nothing.")
        parser.add_argument(
            "--full",
            action="store_true",
            help="Re-read every row of the agency instead of only those RevOS's change capture recorded"
            " (the agency page's Full re-read: it repairs rows edited in the unified database).",
        )
        parser.add_argument("--reason", default="", help="Why a --full re-read, kept with the run.")
        parser.add_argument(
            "--csv", type=Path, help="With --dry-run --sync: write the refused rows here (the page's CSV)."
        )

    def handle(self, *args: Any, agency_id: str, sync: bool, **options: Any) -> None:
        if options["csv"] and not (options["dry_run"] and sync):
            raise CommandError("--csv needs --dry-run --sync: it writes the refused rows of the plan run here.")
        self.csv_path = options["csv"]
        super().handle(*args, agency_id=agency_id, sync=sync, **options)

    def report(self, run: MigrationRun) -> None:
        if run.kind != PLAN.value or run.status != MigrationRun.Status.SUCCEEDED:
            return super().report(run)
        plan = plan_summary(run=run)
        self.stdout.write(f"run {run.pk}: {run.get_kind_display()} of {run.agency_link} — nothing was written")
        for line in plan_lines(plan=plan):
            self.stdout.write(line)
        if self.csv_path:
            self.csv_path.write_text(plan_refused_csv(plan=plan), newline="")  # the CSV keeps its \r\n
            self.stdout.write(f"Refused rows written to {self.csv_path}.")

    def request_run(self, link: AgencyLink, options: dict[str, Any]) -> MigrationRun:
        if options["full"] and not options["dry_run"]:
            return migration_full_reread_request(
                link=link, reason=options["reason"], actor=None, enqueue=not options["sync"]
            )
        return migration_run_request(link=link, kind=self.kind(options), actor=None, enqueue=not options["sync"])

    def kind(self, options: dict[str, Any]) -> str:
        return PLAN.value if options["dry_run"] else MIGRATE.value
