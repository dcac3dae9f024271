"""Reads for the ops cockpit: where each agency stands and which actions make sense now."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.db import connections
from django.utils import timezone

from migration_jobs.etl import id_map
from migration_jobs.models import AgencyLink, MigrationRun, VerificationRun
from migration_jobs.run_kinds import run_kind_get, run_kind_values
from migration_jobs.selectors.capture import AgencyBacklog
from migration_jobs.selectors.reconcile import OrphanedFence, orphaned_fences_note, reconcile_next_pass
from migration_jobs.selectors.timeline import NextAction, Timeline, agency_next_action, agency_timeline

Status = MigrationRun.Status
# The newest runs the agency page lists; the rest are one click away (the run list, filtered).
TIMELINE_SHOWN = 25


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    enabled: bool
    reason: str = ""  # why it is disabled, in one line
    danger: bool = False


@dataclass(frozen=True)
class Cockpit:
    link: AgencyLink
    state: str
    active_run: MigrationRun | None
    last_run: MigrationRun | None
    last_migration: MigrationRun | None
    verification: VerificationRun | None
    migrated_rows: int
    actions: list[Action]
    next_action: NextAction
    timeline: Timeline
    # The RevOS capture's backlog (None: not captured, or fenced) and why it is unknown, or "".
    capture_backlog: AgencyBacklog | None = None
    capture_backlog_problem: str = ""
    # A fence no run owns, waiting for the reconciler's next pass (selectors/reconcile.py), or "".
    fence_note: str = ""
    # Why the agency cannot be re-linked now, as the link service refuses it ("" when it can).
    relink_refusal: str = ""

    @property
    def verification_age(self) -> timedelta | None:
        if self.verification and self.verification.finished_at:
            return timezone.now() - self.verification.finished_at
        return None


def agency_migrated_rows(*, link: AgencyLink) -> int:
    """How many unified rows this agency's runs inserted (what a rollback would delete)."""
    with connections["unified"].cursor() as cursor:
        return id_map.agency_inserted_count(cursor, agency_id=link.revos_agency_id)


def agency_state(
    *,
    link: AgencyLink,
    last_migration: MigrationRun | None,
    verification: VerificationRun | None,
    cut_over: bool,
    complete: bool = False,
) -> str:
    """One word for the overview: not linked, linked, migrating, migrated, verified, cut over, complete, failed."""
    if not link.is_confirmed:
        return "not linked"
    if last_migration is None:
        return "linked"
    if last_migration.status in (Status.QUEUED, Status.RUNNING):
        return "migrating"
    if last_migration.status in (Status.FAILED, Status.PAUSED, Status.CANCELLED):
        return "failed" if last_migration.status == Status.FAILED else "paused"
    if run_kind_get(last_migration.kind).unloads:
        return "linked"
    if cut_over:
        return "complete" if complete else "cut over"
    verified = (
        verification is not None
        and verification.verdict == VerificationRun.Verdict.PASS
        and verification.finished_at
        and last_migration.finished_at
        and verification.finished_at > last_migration.finished_at
    )
    return "verified" if verified else "migrated"


def agency_cockpit(
    *,
    link: AgencyLink,
    cut_over: bool = False,
    cutover_refusal: str | None = None,
    switch_back_refusal: str | None = "this agency is not cut over",
    complete_refusal: str | None = None,
    orphaned_fences: Sequence[OrphanedFence] = (),
    link_problem: str = "",
    relink_refusal: str = "",
) -> Cockpit:
    """Everything the agency page shows, with each button's enabled state and reason.

    `switch_back_refusal` is why the agency cannot be switched back (None: it can), and
    `complete_refusal` why its move cannot be completed (None: the switch back's reason, as both
    follow a cutover). `orphaned_fences` are the agency's fences no live run owns (services/fence.py
    `fences_orphaned`). `link_problem` is why the agency's link no longer holds and `relink_refusal`
    why it cannot be changed now (selectors/agency_links.py). The timeline holds the newest
    TIMELINE_SHOWN runs.
    """
    runs = link.runs.all()
    active = runs.filter(status__in=MigrationRun.ACTIVE_STATUSES).first()
    last_run = runs.first()
    last_migration = runs.filter(kind__in=run_kind_values(moves_rows=True)).first()
    verification = link.verifications.order_by("-created_at").first()
    migrated_rows = agency_migrated_rows(link=link)
    busy = f"run {active.pk} is {active.get_status_display().lower()}" if active else ""
    unlinked = "" if link.is_confirmed else "confirm the link first"

    def action(name: str, label: str, blocker: str, danger: bool = False) -> Action:
        return Action(name, label, enabled=not blocker, reason=blocker, danger=danger)

    resumable = (
        last_migration
        and run_kind_get(last_migration.kind).pausable
        and (last_migration.status in MigrationRun.RESUMABLE_STATUSES)
    )
    migrate_label = "Resume" if resumable else ("Catch up" if migrated_rows else "Migrate")
    running_migration = active if active and run_kind_get(active.kind).pausable else None
    cancellable = active if active and run_kind_get(active.kind).cancellable else None
    # Once cut over, the unified database is the source of truth: the services refuse these too.
    moved = "the agency is cut over: the unified database is its source of truth" if cut_over else ""
    paused = last_migration is not None and last_migration.status == Status.PAUSED
    actions = [
        action("plan", "Plan (dry run)", unlinked or busy),
        action("migrate", migrate_label, unlinked or busy or moved),
        action("pause", "Pause", "" if running_migration else "no migration is running"),
        action(
            "cancel",
            "Cancel",
            "" if cancellable or paused else "no migration or cutover is running or paused",
            danger=True,
        ),
        action(
            "rollback",
            "Roll back",
            busy or moved or ("" if migrated_rows else "nothing of this agency has been migrated"),
            danger=True,
        ),
        action(
            "fullreread",
            "Full re-read",
            unlinked or busy or moved or ("" if migrated_rows else "nothing of this agency has been migrated yet"),
        ),
        action("verify", "Verify", busy or ("" if migrated_rows else "migrate the agency first")),
        action(
            "cutover",
            "Cut over (unified_db on)",
            "unified_db is already on for this agency" if cut_over else (cutover_refusal or ""),
        ),
        action("switchback", "Switch back to RevOS", busy or (switch_back_refusal or ""), danger=True),
        action("complete", "Complete the move", busy or (complete_refusal or switch_back_refusal or ""), danger=True),
    ]
    state = agency_state(
        link=link,
        last_migration=last_migration,
        verification=verification,
        cut_over=cut_over,
        complete=runs.filter(kind__in=run_kind_values(completes=True), status=Status.SUCCEEDED).exists(),
    )
    return Cockpit(
        link=link,
        state=state,
        active_run=active,
        last_run=last_run,
        last_migration=last_migration,
        verification=verification,
        migrated_rows=migrated_rows,
        actions=actions,
        fence_note=orphaned_fences_note(orphaned=orphaned_fences, next_pass=reconcile_next_pass())
        if orphaned_fences
        else "",
        next_action=agency_next_action(
            state=state, last_run=last_run, verification=verification, link_problem=link_problem
        ),
        relink_refusal=relink_refusal,
        timeline=agency_timeline(link=link, limit=TIMELINE_SHOWN),
    )
