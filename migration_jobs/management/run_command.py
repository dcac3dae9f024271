"""The shared body of migrate_agency and rollback_agency: resolve, queue (or run here), report."""

from typing import Any

from django.core.management.base import CommandError, CommandParser

from migration_jobs.management.database_command import DatabaseCommand
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.refusals import RunRefused
from migration_jobs.selectors.agency_links import agency_link_resolve
from migration_jobs.services.follow_ups import migration_run_follow_ups
from migration_jobs.services.runs import migration_run_execute, migration_run_request


class RunCommand(DatabaseCommand):
    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agency_id", help="The agency's RevOS id (or its unified id).")
        parser.add_argument("--sync", action="store_true", help="Run in this process instead of queueing for a worker.")

    def kind(self, options: dict[str, Any]) -> str:
        raise NotImplementedError

    def request_run(self, link: AgencyLink, options: dict[str, Any]) -> MigrationRun:
        return migration_run_request(link=link, kind=self.kind(options), actor=None, enqueue=not options["sync"])

    def execute_run(self, run: MigrationRun) -> MigrationRun:
        return migration_run_execute(run_id=run.pk)

    def handle(self, *args: Any, agency_id: str, sync: bool, **options: Any) -> None:
        try:
            link = agency_link_resolve(agency_id)
            run = self.request_run(link, {**options, "sync": sync})
            if sync:
                try:
                    with migration_run_follow_ups(run_id=run.pk):  # as the job does
                        run = self.execute_run(run)
                except Exception:  # recorded on the run with its traceback; report it as the worker would
                    run.refresh_from_db()
        except RunRefused as refusal:
            raise CommandError(str(refusal)) from refusal
        self.report(run)
        if run.status == MigrationRun.Status.FAILED:
            raise CommandError(f"Run {run.pk} failed: {run.error}")

    def report(self, run: MigrationRun) -> None:
        self.stdout.write(f"run {run.pk}: {run.get_kind_display()} of {run.agency_link} — {run.get_status_display()}")
        for table, outcome in (run.report.get("tables") or run.report).items():
            if isinstance(outcome, dict) and any(v for k, v in outcome.items() if k not in ("source", "target")):
                cells = ", ".join(f"{k}={v}" for k, v in outcome.items() if k not in ("source", "target") and v)
                self.stdout.write(f"  {table:28} {cells}")
        for trigger in run.report.get("app_triggers", []):  # a plan's: the apps' triggers on the targets
            self.stdout.write(f"  trigger {trigger['trigger']} on {trigger['table']}: {trigger['handling']}")


class SteppedRunCommand(RunCommand):
    """A run of steps (cutover, switch back): each step's status, duration and detail, then the window."""

    window_label = ""  # what the run's window_seconds measures, e.g. "write downtime (fence to switch)"
    reason_required = True  # False where an option (a dry run) needs none; the command checks it then

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--reason", required=self.reason_required, help="Why, kept with the run and the unified_db change."
        )

    def report(self, run: MigrationRun) -> None:
        self.stdout.write(f"run {run.pk}: {run.get_kind_display()} of {run.agency_link} — {run.get_status_display()}")
        for step in run.steps:
            seconds = f"{step['seconds']:.2f} s" if step["seconds"] is not None else ""
            self.stdout.write(f"  {step['label']:28} {step['status']:8} {seconds:>9}  {step['detail']}")
        if run.status == MigrationRun.Status.SUCCEEDED:
            self.stdout.write(f"{self.window_label}: {run.report.get('window_seconds')} s")
        elif run.status == MigrationRun.Status.CANCELLED:
            raise CommandError(f"Run {run.pk} was cancelled: {run.status_note}")
