from typing import Any

from migration_jobs.management.database_command import DatabaseCommand
from migration_jobs.models import AgencyLink
from migration_jobs.services.runs import migration_runs_reconcile_running


class Command(DatabaseCommand):
    help = "Print each RevOS agency with its link and latest run (a run whose worker died shows as failed)."
    databases = ("default",)

    def handle(self, *args: Any, **options: Any) -> None:
        migration_runs_reconcile_running()
        links = AgencyLink.objects.prefetch_related("runs").order_by("name")
        for link in links:
            run = next(iter(link.runs.all()), None)
            linked = f"{link.kind} -> {link.unified_agency_id}" if link.is_confirmed else "not linked"
            latest = (
                f"run {run.pk} {run.kind} {run.status} {run.progress_percent}% {run.eta_display} {run.error[:80]}"
                if run
                else "—"
            )
            self.stdout.write(f"{link.revos_agency_id}  {link.name[:30]:30}  {linked:50}  {' '.join(latest.split())}")
        if not links:
            self.stdout.write("No RevOS agencies known yet: run sync_agencies.")
