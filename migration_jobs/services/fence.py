"""The fences of an agency's runs, and putting right what a dead worker left (where the agency
stands is selectors/agency_state.py).

RevOS's controlplane.capture_agency says whether an agency is fenced and which run holds the
fence ("migrationrun:<pk>"). A fence is only ever held by a running cutover or by one that
succeeded (RevOS stays read-only for a cut-over agency); `fences_reconcile` lifts any other,
so no agency stays fenced without a run that owns it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from migration_jobs.etl import capture
from migration_jobs.etl.connections import DatabaseUnreachable, connect
from migration_jobs.etl.reverse_capture import reverse_capture_stop
from migration_jobs.etl.unified_guard import unified_guard_set
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.run_kinds import run_kind_get, run_kind_values
from migration_jobs.selectors.agency_links import agency_linked
from migration_jobs.selectors.agency_state import agency_cut_over
from migration_jobs.selectors.reconcile import OrphanedFence
from migration_jobs.services.flags import flags_cache_invalidate

logger = logging.getLogger(__name__)
OWNER_PREFIX = "migrationrun:"
Status = MigrationRun.Status


def fence_owner(run: MigrationRun) -> str:
    return f"{OWNER_PREFIX}{run.pk}"


def fence_message(link: AgencyLink) -> str:
    """What a refused RevOS write says: which agency, and where its data lives now."""
    return (
        f'Agency "{link.name}" ({link.revos_agency_id}) has moved to the unified database: '
        "RevOS no longer accepts writes to its rows."
    )


def fence_lift_for_run(*, run: MigrationRun) -> bool:
    """Lift the fence this run holds (raises DatabaseUnreachable if RevOS does not answer)."""
    with connect("revos", purpose="fence") as connection:
        lifted = capture.fence_lift(connection, agency_id=run.revos_agency_id, owner=fence_owner(run))
    MigrationRun.objects.filter(pk=run.pk).update(fence_held=False)
    flags_cache_invalidate()
    return lifted


def agency_reopen_revos(*, link: AgencyLink, cutover: MigrationRun | None) -> str:
    """Once unified_db is off after a switch back: RevOS accepts the agency's writes again and the
    unified database stops recording them (which lifts its fence too)."""
    # RevOS holds the truth again: the unified copies are read-only for the apps before the
    # unified fence goes (etl/unified_guard.py).
    agency = agency_linked(link=link)  # cut over, so linked
    unified_guard_set(unified_agency_id=agency.unified_agency_id, agency_name=agency.name)
    if cutover is not None:
        fence_lift_for_run(run=cutover)
    reverse_capture_stop(source_agency_id=agency.revos_agency_id, unified_agency_id=agency.unified_agency_id)
    if link.runs.filter(kind__in=run_kind_values(unified_db=False), fence_held=True).update(fence_held=False):
        flags_cache_invalidate()
    return "RevOS accepts the agency's writes again; the unified database no longer records them"


@dataclass(frozen=True)
class FenceOwners:
    """The fence owners a live run stands for: RevOS's is the cutover in force or a running cutover,
    the unified one a running cutover or switch back. The reverse capture (on the unified database)
    stays only while the agency is cut over or such a run runs."""

    revos: frozenset[str]
    unified: frozenset[str]
    keep_capture: bool


def fence_owners_live(*, link: AgencyLink) -> FenceOwners:
    current = agency_cut_over(link=link)
    running = list(link.runs.filter(kind__in=run_kind_values(switches=True), status=Status.RUNNING))
    revos = {fence_owner(run) for run in running if run_kind_get(run.kind).unified_db}
    if current is not None:
        revos.add(fence_owner(current))
    return FenceOwners(
        revos=frozenset(revos),
        unified=frozenset(fence_owner(run) for run in running),
        keep_capture=current is not None or bool(running),
    )


def fences_orphaned(*, link: AgencyLink) -> list[OrphanedFence]:
    """The agency's fences that no live run owns: what `fences_reconcile` lifts at its next call.

    Raises DatabaseUnreachable when RevOS or the unified database does not answer.
    """
    sides = [("RevOS", "revos", link.revos_agency_id)]
    if link.unified_agency_id is not None:
        sides.append(("unified", "unified", link.unified_agency_id))
    orphaned = []
    for label, alias, agency_id in sides:
        with connect(alias, purpose="fence") as connection:
            state = capture.capture_state(connection, agency_id=agency_id)
        if state is not None and state.fenced_at is not None and _orphaned(link, alias, state.fence_owner):
            orphaned.append(OrphanedFence(database=label, owner=state.fence_owner, fenced_at=state.fenced_at))
    return orphaned


def _orphaned(link: AgencyLink, alias: str, owner: str) -> bool:
    # Asked only after the fence was read: a run sets its fence once it is running, so a fence read
    # first is never taken for an orphan because its run started between the two reads.
    owners = fence_owners_live(link=link)
    return owner not in (owners.revos if alias == "revos" else owners.unified)


def fences_reconcile(*, link: AgencyLink) -> list[str]:
    """Lift a fence no live run stands for (its run failed, or its worker died); return what it did,
    one line each, for the agency's history.

    Called at each request on the agency and by the reconciler's every pass (services/reconcile.py),
    which is what lifts a fence whose database did not answer when its run ended.
    """
    done: list[str] = []
    try:
        with connect("revos", purpose="fence") as connection:
            state = capture.capture_state(connection, agency_id=link.revos_agency_id)
            if state is not None and state.fenced_at is not None and _orphaned(link, "revos", state.fence_owner):
                capture.fence_lift(connection, agency_id=link.revos_agency_id, owner=state.fence_owner)
                done.append(f"lifted the RevOS fence held by {state.fence_owner}, which no longer runs")
                logger.warning("%s: %s", link, done[-1])
    except DatabaseUnreachable:
        logger.warning("RevOS unreachable: the fence of %s is checked again at the reconciler's next pass", link)
        return done
    try:
        done += _unified_fence_reconcile(link)
    except DatabaseUnreachable:
        logger.warning(
            "unified database unreachable: the fence of %s is checked again at the reconciler's next pass", link
        )
        return done
    stale = link.runs.filter(fence_held=True).exclude(status__in=(Status.RUNNING, Status.SUCCEEDED))
    if cleared := stale.update(fence_held=False):
        flags_cache_invalidate()
        done.append(f"the flags API no longer calls it read-only for {cleared} ended run(s)")
    return done


def _unified_fence_reconcile(link: AgencyLink) -> list[str]:
    if link.unified_agency_id is None:
        return []
    with connect("unified", purpose="fence") as connection:
        state = capture.capture_state(connection, agency_id=link.unified_agency_id)
        if state is None:
            return []
        owners = fence_owners_live(link=link)  # after the read, as in `_orphaned`
        if not owners.keep_capture:
            capture.capture_remove(connection, agency_id=link.unified_agency_id)
            done = "stopped the reverse capture (and any unified fence), as the agency is not cut over"
        elif state.fenced_at is not None and state.fence_owner not in owners.unified:
            capture.fence_lift(connection, agency_id=link.unified_agency_id, owner=state.fence_owner)
            done = f"lifted the unified fence held by {state.fence_owner}, which no longer runs"
        else:
            return []
    logger.warning("%s: %s", link, done)
    return [done]


def agency_capture_remove(*, link: AgencyLink) -> None:
    """Stop capturing the agency's RevOS changes and forget them: its move is complete.

    The fence of a cut-over agency goes with it, so call this only once RevOS no longer serves it.
    """
    with connect("revos", purpose="capture") as connection:
        capture.capture_remove(connection, agency_id=link.revos_agency_id)
    if link.runs.filter(fence_held=True).update(fence_held=False):
        flags_cache_invalidate()
