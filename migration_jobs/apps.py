import importlib

from django.apps import AppConfig


class MigrationJobsConfig(AppConfig):
    name = "migration_jobs"
    verbose_name = "Unified database migration"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every run kind registers itself when its module is imported (migration_jobs/run_kinds.py);
        # the pages, the worker and the commands all ask the registry, so all kinds load here.
        importlib.import_module("migration_jobs.services.kinds")
