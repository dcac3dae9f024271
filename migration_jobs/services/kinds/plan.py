"""The plan kind (a dry run): what a migration of the agency would move, and every row the unified
schema would refuse. It writes nothing, so a cutover or switch back takes a queued plan's place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings

from migration_jobs.etl.engine import agency_plan
from migration_jobs.etl.preflight import agency_preflight
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.run_kinds import Button, RunKind, run_kind_register
from migration_jobs.selectors.sessions import sessions_notice
from migration_jobs.services.kinds.migrate import client_links_of, linked_agency_check
from migration_jobs.services.runs import migration_run_tally_record


def _plan(run: MigrationRun, mark_running: Callable[[], None]) -> dict[str, Any]:
    mark_running()
    link = run.agency_link
    agency: dict[str, Any] = {
        "source_agency_id": link.revos_agency_id,
        "target_agency_id": link.unified_agency_id,
        "link_existing": link.kind == AgencyLink.Kind.EXISTING,
    }
    # What would move, then every row the unified schema would refuse (etl/preflight.py).
    plan = agency_plan(
        **agency,
        client_links=client_links_of(link),
        set_based_checks=settings.MIGRATION_SET_BASED_FK_CHECKS,
        on_tally=lambda tally: migration_run_tally_record(run_id=run.pk, tally=tally),
    )
    people = plan["tables"].get("auth.users", {}).get("source_rows")
    return {**plan, **agency_preflight(**agency), "sessions": sessions_notice(people=people)}


PLAN = run_kind_register(
    RunKind(
        value=MigrationRun.Kind.PLAN,
        label=MigrationRun.Kind.PLAN.label,
        work=_plan,
        permission="migration_jobs.plan_migrationrun",
        button=Button(done="{label} of {name} queued (run {pk})."),
        dry_run=True,
        working="counting each table's rows and checking them against the unified schema",
        tallies="counted",
        when_cut_over=None,
        request_check=linked_agency_check,
    )
)
