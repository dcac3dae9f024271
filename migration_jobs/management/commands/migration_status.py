from django.core.management.base import BaseCommand

from migration_jobs.models import AgencyLink


class Command(BaseCommand):
    help = "Print each RevOS agency with its link and latest run."

    def handle(self, *args, **options):
        links = AgencyLink.objects.prefetch_related("runs").order_by("name")
        for link in links:
            run = next(iter(link.runs.all()), None)
            linked = f"{link.kind} -> {link.unified_agency_id}" if link.is_confirmed else "not linked"
            latest = (
                f"run {run.pk} {run.kind} {run.status} {run.progress_percent}% {run.error[:80]}".rstrip()
                if run
                else "—"
            )
            self.stdout.write(f"{link.revos_agency_id}  {link.name[:30]:30}  {linked:50}  {latest}")
        if not links:
            self.stdout.write("No RevOS agencies known yet: run sync_agencies.")
