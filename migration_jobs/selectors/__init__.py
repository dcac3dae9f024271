"""Reads, one module per concern: the unified data (unified), one agency's cockpit (cockpit), all
agencies at a glance (overview), feature flags (flags), agencies by id (agency_links). Writes live
in migration_jobs.services."""

from migration_jobs.selectors.cockpit import Action, Cockpit, agency_cockpit, agency_migrated_rows, agency_state
from migration_jobs.selectors.overview import AGENCY_STATES, agencies_overview
from migration_jobs.selectors.unified import AGENCY_COUNTED_MODELS, agency_app_context_counts

__all__ = [
    "AGENCY_COUNTED_MODELS",
    "AGENCY_STATES",
    "Action",
    "Cockpit",
    "agencies_overview",
    "agency_app_context_counts",
    "agency_cockpit",
    "agency_migrated_rows",
    "agency_state",
]
