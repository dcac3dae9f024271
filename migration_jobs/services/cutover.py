"""The cutover of one agency, as a tracked run: stop RevOS's writes, apply the last changes, check, switch.

As Vitess's SwitchTraffic and ghostferry's cutover do it, the write downtime is the time from the
fence to the switch, and it depends on the changes since the last catch-up, not on the agency's
size:

1. preflight: the cutover interlock (migrated, verified after the latest change), the capture
   in place, and an estimate of the pending changes;
2. fence: RevOS refuses every write to the agency's rows (etl/capture.py), and the flags API tells
   the apps the agency is read-only;
3. drain: wait until RevOS transactions older than the fence have ended (they could still write),
   at most CUTOVER_DRAIN_TIMEOUT_SECONDS;
4. final catch-up: the captured changes, through the migration's own batch writer;
5. delta verification: counts of every table, content of every row changed since the last full
   verification, and the isolation cases;
6. switch: unified_db on for the agency, with its audit record;
7. RevOS stays fenced for the agency.

Any failure or a Cancel before step 6 lifts the fence and leaves unified_db off; the run names
the step and the reason. A worker that dies mid-cutover holds the agency's advisory lock no more;
the next request finds the run dead and finishes it (the switch was made) or undoes it (it was
not), see services/fence.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import psycopg
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from migration_jobs.etl import capture
from migration_jobs.etl.catch_up import CapturedMigration
from migration_jobs.etl.connections import connect
from migration_jobs.etl.engine import Control, MigrationStopped, agency_lock
from migration_jobs.etl.reverse_capture import reverse_capture_start, reverse_capture_stop
from migration_jobs.models import AgencyLink, MigrationRun, VerificationRun
from migration_jobs.models.flags import FeatureFlag
from migration_jobs.refusals import RunRefused
from migration_jobs.selectors.flags import agency_cutover_refusal
from migration_jobs.services.fence import agency_cut_over_refusal, fence_message, fence_owner
from migration_jobs.services.flags import flags_cache_invalidate, unified_db_switch
from migration_jobs.services.migration import (
    BulkOutcome,
    RunStepFailed,
    client_links_of,
    migration_run_execute,
    migration_run_request,
    runs_request_bulk,
)
from migration_jobs.verify import PASS, AgencyScope, CheckOutcome
from migration_jobs.verify.runner import agency_verify_changes

logger = logging.getLogger(__name__)
Kind = MigrationRun.Kind

STEPS = {
    "preflight": "Preflight",
    "fence": "Fence RevOS writes",
    "drain": "Drain older transactions",
    "catch_up": "Final catch-up",
    "verify": "Delta verification",
    "switch": "Switch unified_db on",
}
# A full verification's snapshot may be older than its recorded start by a little clock skew
# between hosts; rows changed this long before it are checked again.
CLOCK_MARGIN = timedelta(minutes=5)


class CutoverCancelled(MigrationStopped):
    """Staff cancelled the cutover; the fence is lifted (see `outcome`)."""

    def __init__(self, step: str):
        super().__init__(Control.CANCEL)
        self.step, self.outcome = step, ""

    def __str__(self) -> str:
        outcome = self.outcome or "RevOS was not fenced yet"
        return f"Cancelled during step {STEPS[self.step]}: {outcome}; unified_db stays off."


# --- requesting -------------------------------------------------------------------------------


def cutover_run_request(
    *,
    link: AgencyLink,
    reason: str,
    actor: AbstractBaseUser | None,
    enqueue: bool = True,
    bulk_request: UUID | None = None,
) -> MigrationRun:
    """Queue a cutover of one agency, or raise RunRefused saying why not."""
    reason = (reason or "").strip()
    if not reason:
        raise RunRefused("A cutover needs a reason; it is kept with the unified_db change.")
    if refusal := agency_cut_over_refusal(link=link, kind=Kind.CUTOVER):
        raise RunRefused(refusal)
    if refusal := agency_cutover_refusal(agency_link=link):
        raise RunRefused(f"{link.name} cannot be cut over: {refusal}.")
    return migration_run_request(
        link=link, kind=Kind.CUTOVER, actor=actor, enqueue=enqueue, bulk_request=bulk_request, reason=reason
    )


def cutover_runs_request_bulk(
    *, links: Iterable[AgencyLink], reason: str, actor: AbstractBaseUser | None
) -> BulkOutcome:
    """Queue a cutover of each agency (they run within MIGRATION_MAX_CONCURRENT_AGENCIES); skip those refused."""
    return runs_request_bulk(
        links=links,
        request=lambda link, bulk: cutover_run_request(link=link, reason=reason, actor=actor, bulk_request=bulk),
    )


# --- executing --------------------------------------------------------------------------------


def cutover_run_execute(*, run_id: int) -> MigrationRun:
    """Carry out a cutover run (in the worker, or here for `cutover_agency --sync`)."""
    return migration_run_execute(run_id=run_id, perform=_cutover_perform)


class RunSteps:
    """The run's steps as staff see them, saved on the run as each one starts and ends."""

    def __init__(self, run: MigrationRun, labels: dict[str, str] = STEPS):
        self.run, self.labels = run, labels
        self.items = {name: {"name": name, "label": label, "status": "pending", "seconds": None, "detail": ""}
                      for name, label in labels.items()}  # fmt: skip
        self.current = ""
        self._save()

    def _save(self) -> None:
        MigrationRun.objects.filter(pk=self.run.pk).update(
            steps=list(self.items.values()), current_table=self.labels.get(self.current, "")
        )

    @contextmanager
    def step(self, name: str) -> Iterator[dict]:
        item, self.current = self.items[name], name
        item["status"], started = "running", time.monotonic()
        self._save()
        try:
            yield item
        except BaseException:
            item["status"], item["seconds"] = "failed", round(time.monotonic() - started, 3)
            self._save()
            raise
        item["status"], item["seconds"] = "done", round(time.monotonic() - started, 3)
        self._save()

    def check_cancel(self) -> None:
        control = MigrationRun.objects.filter(pk=self.run.pk).values_list("control", flat=True).get()
        if control == MigrationRun.Control.CANCEL:
            raise CutoverCancelled(self.current)


@dataclass
class _Fence:
    """The fence this run set, so that a failure lifts exactly it."""

    run: MigrationRun
    connection: psycopg.Connection
    xid: int | None = None
    set_at: float | None = None

    def set(self) -> None:
        self.xid = capture.fence_set(
            self.connection,
            agency_id=self.run.revos_agency_id,
            owner=fence_owner(self.run),
            message=fence_message(self.run.agency_link),
        )
        self.set_at = time.monotonic()
        MigrationRun.objects.filter(pk=self.run.pk).update(fence_held=True)
        flags_cache_invalidate()

    def lift(self) -> str:
        """Lift it if set; say what became of it."""
        if self.xid is None:
            return "RevOS was not fenced"
        try:
            if self.connection.closed or self.connection.broken:
                self.connection = connect("revos", purpose="cutover-fence")
            else:
                self.connection.rollback()
            capture.fence_lift(self.connection, agency_id=self.run.revos_agency_id, owner=fence_owner(self.run))
        except Exception as error:  # RevOS down: the next request's reconcile lifts it
            logger.warning("could not lift the fence of run %s: %s", self.run.pk, error)
            return f"the fence could not be lifted yet ({error}); the next request on the agency lifts it"
        MigrationRun.objects.filter(pk=self.run.pk).update(fence_held=False)
        flags_cache_invalidate()
        return "the fence is lifted, RevOS accepts the agency's writes again"


def _cutover_perform(run: MigrationRun, mark_running) -> dict:
    link = run.agency_link
    steps = RunSteps(run)
    with (
        connect("revos", purpose="cutover-read") as source,
        connect("unified", purpose="cutover") as target,
        connect("revos", purpose="cutover-fence") as control,
        agency_lock(target, link.revos_agency_id),
    ):
        source.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        source.read_only = True
        mark_running()
        fence = _Fence(run, control)
        try:
            return _cutover_steps(run, steps, fence, source=source, target=target)
        except CutoverCancelled as cancelled:
            cancelled.outcome = fence.lift()
            raise
        except MigrationStopped:
            stopped = CutoverCancelled(steps.current)
            stopped.outcome = fence.lift()
            raise stopped from None
        except BaseException as error:
            outcome = fence.lift()
            reason = str(error).strip() or type(error).__name__
            outcome = f"{outcome[0].upper()}{outcome[1:]}; unified_db stays off."
            raise RunStepFailed(steps.current, f"Step {STEPS[steps.current]} failed: {reason}. {outcome}") from error


def _cutover_steps(
    run: MigrationRun, steps: RunSteps, fence: _Fence, *, source: psycopg.Connection, target: psycopg.Connection
) -> dict:
    link = run.agency_link
    with steps.step("preflight") as step:
        step["detail"] = _preflight(link, fence.connection)
    steps.check_cancel()
    with steps.step("fence") as step:
        fence.set()
        step["detail"] = "RevOS refuses the agency's writes; the flags API reports it read-only"
    with steps.step("drain") as step:
        waited = capture.transactions_older_wait(
            fence.connection,
            xid=fence.xid,
            timeout=settings.CUTOVER_DRAIN_TIMEOUT_SECONDS,
            should_stop=lambda: _cancel_requested(run.pk),
        )
        steps.check_cancel()
        step["detail"] = f"no older transaction left after {waited:.2f} s"
    with steps.step("catch_up") as step:
        started = time.monotonic()
        migration = CapturedMigration(
            source_agency_id=link.revos_agency_id,
            target_agency_id=link.unified_agency_id,
            link_existing=link.kind == AgencyLink.Kind.EXISTING,
            batch_size=settings.MIGRATION_BATCH_SIZE,
            set_based_checks=settings.MIGRATION_SET_BASED_FK_CHECKS,
            on_progress=lambda progress: Control.CANCEL if _cancel_requested(run.pk) else Control.CONTINUE,
            client_links=client_links_of(link),
        )
        report = migration._run_locked(source, target)  # this run holds the agency's lock already
        catch_up_seconds = time.monotonic() - started
        step["detail"] = f"{migration.changed_rows} changed rows applied"
    steps.check_cancel()
    with steps.step("verify") as step:
        step["detail"] = _verify_changes(link, fence.connection)
    steps.check_cancel()
    with steps.step("switch") as step:
        # From here on the apps write the unified database: record it, so the agency can switch back
        # with those writes (services/switch_back.py). A fresh record: nothing before this counts.
        reverse_capture_stop(source_agency_id=link.revos_agency_id, unified_agency_id=link.unified_agency_id)
        reverse_capture_start(
            source_agency_id=link.revos_agency_id,
            unified_agency_id=link.unified_agency_id,
            agency_name=link.name,
            wait_seconds=settings.CUTOVER_DRAIN_TIMEOUT_SECONDS,
        )
        try:
            unified_db_switch(run=run)
        except BaseException:
            reverse_capture_stop(source_agency_id=link.revos_agency_id, unified_agency_id=link.unified_agency_id)
            raise
        step["detail"] = "unified_db is on; RevOS stays fenced for the agency; unified changes are recorded"
    window = time.monotonic() - fence.set_at
    logger.info("cutover of %s: write downtime %.2f s", link, window, extra={"agency_id": str(link.revos_agency_id)})
    return {
        "window_seconds": round(window, 3),
        "catch_up_seconds": round(catch_up_seconds, 3),
        "changed_rows": migration.changed_rows,
        "tables": report.as_dict(),
    }


def _cancel_requested(run_id: int) -> bool:
    control = MigrationRun.objects.filter(pk=run_id).values_list("control", flat=True).get()
    return control == MigrationRun.Control.CANCEL


def _preflight(link: AgencyLink, connection: psycopg.Connection) -> str:
    if refusal := agency_cutover_refusal(agency_link=link):
        raise RunRefused(refusal)
    if not FeatureFlag.objects.filter(name="unified_db").exists():
        raise RunRefused("there is no unified_db flag to turn on; add it under Feature flags")
    state = capture.capture_state(connection, agency_id=link.revos_agency_id)
    if state is None or state.applied_snapshot is None:
        raise RunRefused(
            "RevOS does not capture this agency's changes yet (it was migrated before capture existed, or its "
            "first load has not finished); run Catch up once, verify, and cut over again"
        )
    records, rows = capture.changes_pending_count(connection, agency_id=link.revos_agency_id)
    return f"interlock passed; about {rows} changed rows to apply ({records} captured writes)"


def _verify_changes(link: AgencyLink, connection: psycopg.Connection) -> str:
    last_full = (
        VerificationRun.objects.filter(agency_link=link, verdict=VerificationRun.Verdict.PASS)
        .exclude(started_at=None)
        .order_by("-started_at")
        .first()
    )
    since = last_full.started_at - CLOCK_MARGIN if last_full else None
    changed = capture.changes_since(connection, agency_id=link.revos_agency_id, since=since)
    outcomes: list[CheckOutcome] = []
    agency_verify_changes(
        scope=AgencyScope(link.revos_agency_id, link.unified_agency_id), changed_ids=changed, record=outcomes.append
    )
    failed = [o for o in outcomes if o.status != PASS]
    if failed:
        named = "; ".join(f"{o.check_name} {o.table_name}: {o.actual}".replace("  ", " ") for o in failed[:5])
        raise RunRefused(f"{len(failed)} of {len(outcomes)} checks did not pass ({named})")
    rows = sum(len(ids) for ids in changed.values())
    return f"{len(outcomes)} checks passed; content of {rows} rows changed since the last full verification compared"
