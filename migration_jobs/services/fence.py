"""Where an agency stands with the RevOS fence and the cutover, and putting right what a dead worker left.

RevOS's controlplane.capture_agency says whether an agency is fenced and which run holds the
fence ("migrationrun:<pk>"). A fence is only ever held by a running cutover or by one that
succeeded (RevOS stays read-only for a cut-over agency); `fences_reconcile` lifts any other,
so no agency stays fenced without a run that owns it.
"""

from __future__ import annotations

import logging

from django.db.models import Q

from migration_jobs.etl import capture
from migration_jobs.etl.connections import DatabaseUnreachable, connect
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.selectors.flags import agency_flag_enabled
from migration_jobs.services.flags import flags_cache_invalidate

logger = logging.getLogger(__name__)
OWNER_PREFIX = "migrationrun:"
Kind, Status = MigrationRun.Kind, MigrationRun.Status


def fence_owner(run: MigrationRun) -> str:
    return f"{OWNER_PREFIX}{run.pk}"


def fence_message(link: AgencyLink) -> str:
    """What a refused RevOS write says: which agency, and where its data lives now."""
    return (
        f'Agency "{link.name}" ({link.revos_agency_id}) has moved to the unified database: '
        "RevOS no longer accepts writes to its rows."
    )


def agency_cut_over(*, link: AgencyLink) -> MigrationRun | None:
    """The cutover that made the unified database this agency's source of truth, or None."""
    return link.runs.filter(kind=Kind.CUTOVER, status=Status.SUCCEEDED).order_by("-finished_at", "-id").first()


def agency_cut_over_refusal(*, link: AgencyLink, kind: str) -> str | None:
    """Why a run of this kind would harm a cut-over agency, or None (not cut over, or harmless)."""
    cutover = agency_cut_over(link=link)
    if cutover is None or kind == Kind.PLAN:
        return None
    who = cutover.requested_by or "a command"
    when = cutover.finished_at.strftime("%Y-%m-%d %H:%M UTC")
    consequence = {
        Kind.MIGRATE: "a migration or catch-up would overwrite the apps' writes there with RevOS's stale rows",
        Kind.ROLLBACK: "a rollback would delete its rows from the database the apps now use",
        Kind.CUTOVER: "it is cut over already",
    }.get(kind, "the unified database is its source of truth")
    return f"{link.name} was cut over to the unified database on {when} by {who} (run {cutover.pk}): {consequence}."


def agency_revos_read_only(*, link: AgencyLink) -> bool:
    """Does RevOS refuse this agency's writes (a cutover under way or done)? What the flags API tells the apps."""
    return link.runs.filter(fence_held=True).exists()


def fence_lift_for_run(*, run: MigrationRun) -> bool:
    """Lift the fence this run holds (raises DatabaseUnreachable if RevOS does not answer)."""
    with connect("revos", purpose="fence") as connection:
        lifted = capture.fence_lift(connection, agency_id=run.revos_agency_id, owner=fence_owner(run))
    MigrationRun.objects.filter(pk=run.pk).update(fence_held=False)
    flags_cache_invalidate()
    return lifted


def cutover_recovery(*, run: MigrationRun) -> tuple[str, str]:
    """(status, message) for a cutover whose worker died: finished if the switch was made, else undone."""
    if agency_flag_enabled(flag_name="unified_db", agency_link=run.agency_link):
        return Status.SUCCEEDED, ""
    step = next((s["label"] for s in run.steps if s.get("status") == "running"), "an unknown step")
    return Status.FAILED, (
        f"The worker stopped during step {step}, before the switch: the fence is lifted and unified_db stays off. "
        "Nothing was lost; cut over again."
    )


def fences_reconcile(*, link: AgencyLink) -> None:
    """Lift a fence that no running or succeeded cutover owns (its run failed, or its worker died)."""
    owners_ok = {
        fence_owner(run)
        for run in link.runs.filter(kind=Kind.CUTOVER).filter(Q(status=Status.RUNNING) | Q(status=Status.SUCCEEDED))
    }
    try:
        with connect("revos", purpose="fence") as connection:
            state = capture.capture_state(connection, agency_id=link.revos_agency_id)
            if state is not None and state.fenced_at is not None and state.fence_owner not in owners_ok:
                capture.fence_lift(connection, agency_id=link.revos_agency_id, owner=state.fence_owner)
                logger.warning("lifted the RevOS fence of %s held by %s, which no longer runs", link, state.fence_owner)
    except DatabaseUnreachable:
        logger.warning("RevOS unreachable: the fence of %s is checked at the next request", link)
        return
    stale = link.runs.filter(fence_held=True).exclude(status__in=(Status.RUNNING, Status.SUCCEEDED))
    if stale.update(fence_held=False):
        flags_cache_invalidate()


def agency_capture_remove(*, link: AgencyLink) -> None:
    """Stop capturing the agency's RevOS changes and forget them: its move is complete.

    The fence of a cut-over agency goes with it, so call this only once RevOS no longer serves it.
    """
    with connect("revos", purpose="capture") as connection:
        capture.capture_remove(connection, agency_id=link.revos_agency_id)
    if link.runs.filter(fence_held=True).update(fence_held=False):
        flags_cache_invalidate()
