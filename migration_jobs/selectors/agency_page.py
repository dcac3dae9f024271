"""One agency's cockpit read whole, with the refusals the services would give: the agency page and
the `agency_timeline` command show the same state, next action and timeline from here."""

from __future__ import annotations

from dataclasses import replace

from migration_jobs.etl.connections import DatabaseUnreachable
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.run_kinds import run_kind_values
from migration_jobs.selectors.agency_links import agency_link_problem, agency_relink_refusal
from migration_jobs.selectors.agency_state import (
    agency_complete_refusal,
    agency_cutover_refusal,
    agency_switch_back_refusal,
)
from migration_jobs.selectors.capture import agency_capture_backlog
from migration_jobs.selectors.cockpit import Cockpit, agency_cockpit
from migration_jobs.selectors.flags import agency_flag_enabled
from migration_jobs.selectors.reconcile import OrphanedFence
from migration_jobs.services.fence import fences_orphaned

Kind = MigrationRun.Kind


def agency_cockpit_read(*, link: AgencyLink) -> Cockpit:
    """The agency's cockpit with every button's reason as the services would refuse it."""
    cockpit = agency_cockpit(
        link=link,
        cut_over=agency_flag_enabled(flag_name="unified_db", agency_link=link),
        cutover_refusal=agency_cutover_refusal(agency_link=link),
        switch_back_refusal=agency_switch_back_refusal(link=link),
        complete_refusal=agency_complete_refusal(link=link),
        orphaned_fences=_orphaned_fences(link),
        link_problem=agency_link_problem(link=link),
        relink_refusal=agency_relink_refusal(link=link),
    )
    backlog, problem = agency_capture_backlog(link=link)
    return replace(cockpit, capture_backlog=backlog, capture_backlog_problem=problem)


def _orphaned_fences(link: AgencyLink) -> list[OrphanedFence]:
    """The agency's fences no run owns; none for an agency no cutover ever fenced (no database is
    asked), nor when a database does not answer (the reconciler says so in its log)."""
    if not link.runs.filter(kind__in=run_kind_values(switches=True)).exists():
        return []
    try:
        return fences_orphaned(link=link)
    except DatabaseUnreachable:
        return []
