"""The admin, one module per area; importing each registers its ModelAdmins on the default site."""

from migration_jobs.admin import audit, flags, overview, runs, staff, unified, verification, windows  # noqa: F401
