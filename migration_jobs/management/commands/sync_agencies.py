from django.core.management.base import BaseCommand

from migration_jobs.services.agency_links import agency_links_sync


class Command(BaseCommand):
    help = "Read the RevOS agencies and suggest, for each new one, the unified agency it is."

    def handle(self, *args, **options):
        self.stdout.write(f"{agency_links_sync()} new RevOS agencies found.")
