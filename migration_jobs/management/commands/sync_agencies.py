from typing import Any

from migration_jobs.management.database_command import DatabaseCommand
from migration_jobs.services.agency_links import agency_links_sync


class Command(DatabaseCommand):
    help = "Read the RevOS agencies and suggest, for each new one, the unified agency it is."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"{agency_links_sync()} new RevOS agencies found.")
