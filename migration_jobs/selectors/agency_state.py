"""Where an agency stands with its move, read in one place: cut over or not, complete or not, which
database refuses its writes, and why a run of some kind may not start for it.

Two refusals that are easy to mix up, named apart:
- `agency_cutover_refusal`: the cutover interlock (migrated, and verified after its latest data
  change?), which gates unified_db and every verification-gated flag;
- `agency_kind_refusal`: why a run of a kind would harm an agency that is cut over already.
"""

from __future__ import annotations

from migration_jobs.etl.connections import DatabaseUnreachable
from migration_jobs.etl.unified_guard import unified_guarded
from migration_jobs.models import AgencyLink, MigrationRun, VerificationRun
from migration_jobs.run_kinds import run_kind_get, run_kind_values

Status = MigrationRun.Status
UNFINISHED_STATUSES = (Status.QUEUED, Status.RUNNING, Status.PAUSED)


def agency_cut_over(*, link: AgencyLink) -> MigrationRun | None:
    """The cutover that made the unified database this agency's source of truth, or None
    (never cut over, or switched back to RevOS since)."""
    latest = (
        link.runs.filter(kind__in=run_kind_values(switches=True), status=Status.SUCCEEDED)
        .order_by("-finished_at", "-id")
        .first()
    )
    return latest if latest is not None and run_kind_get(latest.kind).unified_db else None


def agency_completed(*, link: AgencyLink) -> MigrationRun | None:
    """The run that completed this agency's move (no switching back after it), or None."""
    completing = run_kind_values(completes=True)
    return link.runs.filter(kind__in=completing, status=Status.SUCCEEDED).order_by("-finished_at", "-id").first()


def agency_kind_refusal(*, link: AgencyLink, kind: str) -> str | None:
    """Why a run of this kind would harm a cut-over agency, or None (not cut over, or harmless)."""
    cutover = agency_cut_over(link=link)
    # A switch back and Complete are what a cut-over agency is for; their own refusals say the rest.
    consequence = run_kind_get(kind).when_cut_over
    if cutover is None or consequence is None:
        return None
    who = cutover.requested_by or "a command"
    finished = cutover.finished_at or cutover.created_at  # a succeeded run has finished_at
    when = finished.strftime("%Y-%m-%d %H:%M UTC")
    return f"{link.name} was cut over to the unified database on {when} by {who} (run {cutover.pk}): {consequence}."


def agency_switch_back_refusal(*, link: AgencyLink) -> str | None:
    """Why this agency cannot be switched back to RevOS, or None if it can."""
    if completed := agency_completed(link=link):
        return (
            f"{link.name}'s move was completed on {completed.finished_at:%Y-%m-%d %H:%M UTC} (run {completed.pk}):"
            " RevOS stays read-only for it and there is no switching back"
        )
    if agency_cut_over(link=link) is None:
        return f"{link.name} is not cut over: switching back applies after a cutover (before it, RevOS is its source)"
    return None


def agency_complete_refusal(*, link: AgencyLink) -> str | None:
    """Why this agency's move cannot be completed, or None if it can."""
    if completed := agency_completed(link=link):
        return f"{link.name}'s move is complete already (run {completed.pk})"
    if agency_cut_over(link=link) is None:
        return f"{link.name} is not cut over: a move is completed only after its cutover"
    return None


def agency_revos_read_only(*, link: AgencyLink) -> bool:
    """Does RevOS refuse this agency's writes (a cutover under way or done)? What the flags API tells the apps."""
    return link.runs.filter(fence_held=True).exists()


def agency_unified_read_only(*, link: AgencyLink) -> bool:
    """Does the unified database refuse this agency's writes (a switch back under way)? Also for the apps."""
    return link.runs.filter(kind__in=run_kind_values(unified_db=False), fence_held=True).exists()


def agency_unified_copy_read_only(*, link: AgencyLink) -> bool:
    """Are the unified copies of the agency's RevOS rows read-only for the apps (RevOS holds its
    truth: etl/unified_guard.py)? Without an answer from the unified database: yes, the safe side."""
    if link.unified_agency_id is None:
        return False
    try:
        return unified_guarded(unified_agency_id=link.unified_agency_id)
    except DatabaseUnreachable:
        return True


def agency_cutover_refusal(*, agency_link: AgencyLink) -> str | None:
    """The cutover interlock: why this agency may not be switched to the unified database yet, or None if it may."""
    last_change = (
        MigrationRun.objects.filter(agency_link=agency_link, kind__in=run_kind_values(changes_data=True))
        .order_by("-created_at", "-id")
        .first()
    )
    if last_change is None:
        return "this agency has not been migrated yet"
    if last_change.status in UNFINISHED_STATUSES:
        return "a migration or rollback of this agency is queued, running or paused; finish or cancel it, then verify"
    if last_change.status != MigrationRun.Status.SUCCEEDED:
        return (
            f"its latest {last_change.get_kind_display().lower()} (#{last_change.pk}) "
            f"{last_change.get_status_display().lower()}; resume or roll it back, then verify"
        )
    if run_kind_get(last_change.kind).unloads:
        return "this agency's migration was rolled back; migrate and verify it again"
    verification = VerificationRun.objects.filter(agency_link=agency_link).order_by("-created_at", "-id").first()
    if verification is None:
        return "this agency has never been verified; run a verification first"
    passed = verification.verdict == VerificationRun.Verdict.PASS
    if verification.status != VerificationRun.Status.FINISHED or not passed:
        return (
            f"its latest verification (#{verification.pk}) is {verification.get_status_display().lower()} "
            f"with verdict {verification.get_verdict_display().lower()}; it must have passed"
        )
    # It must have started after the change ended: one that began earlier may have read older data.
    if (
        verification.started_at is None
        or last_change.finished_at is None
        or verification.started_at <= last_change.finished_at
    ):
        return (
            f"its latest verification (#{verification.pk}) is older than its latest "
            f"{last_change.get_kind_display().lower()} (#{last_change.pk}); verify again"
        )
    return None
