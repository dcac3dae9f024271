from django.apps import AppConfig


class MigrationJobsConfig(AppConfig):
    name = "migration_jobs"
    verbose_name = "Unified database migration"
    default_auto_field = "django.db.models.BigAutoField"
