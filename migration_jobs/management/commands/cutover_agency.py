from django.core.management.base import CommandError

from migration_jobs.management.run_command import RunCommand
from migration_jobs.models import MigrationRun
from migration_jobs.services.cutover import cutover_run_execute, cutover_run_request


class Command(RunCommand):
    help = (
        "Queue (or with --sync, run) the cutover of one agency: fence its RevOS writes, apply the last "
        "changes, verify them and turn unified_db on. Any failure lifts the fence and leaves unified_db off."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--reason", required=True, help="Why, kept with the unified_db change.")

    def request_run(self, link, options) -> MigrationRun:
        return cutover_run_request(link=link, reason=options["reason"], actor=None, enqueue=not options["sync"])

    def execute_run(self, run: MigrationRun) -> MigrationRun:
        return cutover_run_execute(run_id=run.pk)

    def report(self, run: MigrationRun) -> None:
        self.stdout.write(f"run {run.pk}: {run.get_kind_display()} of {run.agency_link} — {run.get_status_display()}")
        for step in run.steps:
            seconds = f"{step['seconds']:.2f} s" if step["seconds"] is not None else ""
            self.stdout.write(f"  {step['label']:28} {step['status']:8} {seconds:>9}  {step['detail']}")
        if run.status == MigrationRun.Status.SUCCEEDED:
            self.stdout.write(f"write downtime (fence to switch): {run.report.get('window_seconds')} s")
        elif run.status == MigrationRun.Status.CANCELLED:
            raise CommandError(f"Run {run.pk} was cancelled: {run.status_note}")
