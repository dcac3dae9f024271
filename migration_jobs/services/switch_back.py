"""Switch a cut-over agency back to RevOS with what the apps wrote since, and Complete its move.

As Vitess's ReverseTraffic after SwitchTraffic: from the cutover on, the reverse capture records
every change to the agency's unified rows (etl/reverse_capture.py). A switch back is a tracked run:

1. preflight: the agency is cut over and not complete, the reverse capture is in place, and the
   switch-back plan finds nothing RevOS cannot hold;
2. fence: the unified database refuses the apps' writes to the agency's rows, naming it;
3. drain: unified transactions older than the fence end (CUTOVER_DRAIN_TIMEOUT_SECONDS at most);
4. apply: the captured changes go to RevOS in one transaction, past RevOS's fence (etl/reverse.py);
5. verify: RevOS against the unified rows: every changed row equal, every table's count;
6. switch: unified_db off for the agency, with its audit record;
7. reopen: RevOS's fence is lifted and the reverse capture stopped (which lifts the unified fence).

Any failure before step 6 lifts the unified fence: the agency stays cut over, and the run says
which step failed and why. A worker killed mid-way leaves a run the next request recognises
(services/fence.py): finished if unified_db was off already, undone otherwise.

After a switch back the agency is a migrated agency again: its RevOS capture never stopped, the
id map knows the rows the apps created, so catch-up, verification and a later cutover work.

Complete ends the move for good: no switch back after it. The reverse capture stops, RevOS keeps
the agency fenced (read-only) and forgets its captured changes; a fenced agency's writes are
refused before anything is recorded, so nothing is captured for it any more.
"""

from __future__ import annotations

import logging
import time
from uuid import UUID

import psycopg
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from migration_jobs.etl import capture
from migration_jobs.etl.catalog import catalog_read
from migration_jobs.etl.connections import connect
from migration_jobs.etl.engine import agency_lock
from migration_jobs.etl.plan import migration_plan_build
from migration_jobs.etl.reverse import Scope, reverse_apply, reverse_plan, reverse_verify
from migration_jobs.etl.reverse_capture import reverse_capture_state, reverse_capture_stop, reverse_changes
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.refusals import RunRefused
from migration_jobs.services.cutover import RunSteps, cutover_run_execute
from migration_jobs.services.fence import agency_completed, agency_cut_over, agency_reopen_revos, fence_owner
from migration_jobs.services.flags import flags_cache_invalidate, unified_db_switch
from migration_jobs.services.migration import (
    BulkOutcome,
    RunStepFailed,
    migration_run_execute,
    migration_run_request,
    runs_request_bulk,
)
from migration_jobs.verify import PASS, AgencyScope
from migration_jobs.verify.counts import counts_check

logger = logging.getLogger(__name__)
Kind = MigrationRun.Kind

STEPS = {
    "preflight": "Preflight",
    "fence": "Fence unified writes",
    "drain": "Drain older transactions",
    "apply": "Apply changes to RevOS",
    "verify": "Verify RevOS",
    "switch": "Switch unified_db off",
    "reopen": "Lift the RevOS fence",
}


# --- what may be done -------------------------------------------------------------------------


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


def fence_message(link: AgencyLink) -> str:
    """What a refused unified write says: which agency, and why."""
    return (
        f'Agency "{link.name}" ({link.unified_agency_id}) is switching back to RevOS: the unified database'
        " accepts no writes to its rows meanwhile."
    )


# --- requesting -------------------------------------------------------------------------------


def _reason(reason: str, what: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise RunRefused(f"{what} needs a reason; it is kept with the run and the unified_db change.")
    return reason


def switch_back_run_request(
    *,
    link: AgencyLink,
    reason: str,
    actor: AbstractBaseUser | None,
    enqueue: bool = True,
    bulk_request: UUID | None = None,
) -> MigrationRun:
    """Queue a switch back of one agency, or raise RunRefused saying why not."""
    reason = _reason(reason, "A switch back")
    if refusal := agency_switch_back_refusal(link=link):
        raise RunRefused(refusal + ".")
    return migration_run_request(
        link=link, kind=Kind.SWITCH_BACK, actor=actor, enqueue=enqueue, bulk_request=bulk_request, reason=reason
    )


def switch_back_runs_request_bulk(*, links, reason: str, actor: AbstractBaseUser | None) -> BulkOutcome:
    """Queue a switch back of each agency; skip (with the reason) those refused."""
    return runs_request_bulk(
        links=links,
        request=lambda link, bulk: switch_back_run_request(link=link, reason=reason, actor=actor, bulk_request=bulk),
    )


def switch_back_plan(*, link: AgencyLink) -> dict:
    """A dry run: rows per RevOS table a switch back would insert, update and delete, and what RevOS
    cannot hold. Writes nothing; refused (RunRefused) when there is nothing to switch back."""
    if refusal := agency_switch_back_refusal(link=link):
        raise RunRefused(refusal + ".")
    return reverse_plan(scope=_scope(link)).as_dict()


def _scope(link: AgencyLink) -> Scope:
    """The agency's rows changed in the unified database since its cutover, as the reverse capture says."""
    return Scope(
        source_agency_id=link.revos_agency_id,
        target_agency_id=link.unified_agency_id,
        changed=reverse_changes(unified_agency_id=link.unified_agency_id),
    )


# --- executing --------------------------------------------------------------------------------


def tracked_run_execute(*, run_id: int) -> MigrationRun:
    """Execute a queued run of any kind (what the RQ job calls)."""
    kind = MigrationRun.objects.filter(pk=run_id).values_list("kind", flat=True).first()
    if kind == Kind.CUTOVER:
        return cutover_run_execute(run_id=run_id)
    if kind == Kind.SWITCH_BACK:
        return switch_back_run_execute(run_id=run_id)
    return migration_run_execute(run_id=run_id)


def switch_back_run_execute(*, run_id: int) -> MigrationRun:
    """Carry out a switch-back run (in the worker, or here for `switch_back_agency --sync`)."""
    return migration_run_execute(run_id=run_id, perform=_switch_back_perform)


class _UnifiedFence:
    """The unified-side fence this run set, so that a failure lifts exactly it."""

    def __init__(self, run: MigrationRun):
        self.run, self.xid = run, None

    def set(self, connection: psycopg.Connection) -> None:
        self.xid = capture.fence_set(
            connection,
            agency_id=self.run.unified_agency_id,
            owner=fence_owner(self.run),
            message=fence_message(self.run.agency_link),
        )
        # The flags API tells the apps the agency is read-only while a run holds a fence.
        MigrationRun.objects.filter(pk=self.run.pk).update(fence_held=True)
        flags_cache_invalidate()

    def lift(self) -> str:
        if self.xid is None:
            return "the unified database was not fenced"
        try:
            with connect("unified", purpose="switch-back-fence") as connection:
                capture.fence_lift(connection, agency_id=self.run.unified_agency_id, owner=fence_owner(self.run))
        except Exception as error:  # the unified database down: the next request's reconcile lifts it
            logger.warning("could not lift the unified fence of run %s: %s", self.run.pk, error)
            return f"the unified fence could not be lifted yet ({error}); the next request on the agency lifts it"
        MigrationRun.objects.filter(pk=self.run.pk).update(fence_held=False)
        flags_cache_invalidate()
        return "the unified fence is lifted, the apps write to the unified database again"


def _switch_back_perform(run: MigrationRun, mark_running) -> dict:
    link = run.agency_link
    steps = RunSteps(run, STEPS)
    with connect("unified", purpose="switch-back") as unified, agency_lock(unified, link.revos_agency_id):
        mark_running()
        fence = _UnifiedFence(run)
        try:
            return _switch_back_steps(run, steps, fence, unified)
        except BaseException as error:
            if steps.items["switch"]["status"] == "done":
                raise  # unified_db is off: RevOS is the source again; nothing is to be undone
            outcome = fence.lift()
            reason = str(error).strip() or type(error).__name__
            raise RunStepFailed(
                steps.current,
                f"Step {STEPS[steps.current]} failed: {reason}. {outcome[0].upper()}{outcome[1:]};"
                f" {link.name} stays cut over and nothing was lost.",
            ) from error


def _switch_back_steps(run: MigrationRun, steps: RunSteps, fence: _UnifiedFence, unified) -> dict:
    link = run.agency_link
    with steps.step("preflight") as step:
        cutover, detail = _preflight(link)
        step["detail"] = detail
    with steps.step("fence") as step:
        fence.set(unified)
        fenced_at = time.monotonic()
        step["detail"] = "the unified database refuses the agency's writes, naming it"
    with steps.step("drain") as step:
        waited = capture.transactions_older_wait(unified, xid=fence.xid, timeout=settings.CUTOVER_DRAIN_TIMEOUT_SECONDS)
        step["detail"] = f"no older transaction left after {waited:.2f} s"
    with steps.step("apply") as step:
        scope = _scope(link)  # read once nothing can change any more: what the fence froze
        report = reverse_apply(scope=scope)
        totals = report.as_dict()["totals"]
        step["detail"] = "{insert} inserted, {update} updated, {delete} deleted in RevOS".format(**totals)
    with steps.step("verify") as step:
        step["detail"] = _verify(link, scope)
    with steps.step("switch") as step:
        unified_db_switch(run=run)
        step["detail"] = "unified_db is off: the apps use RevOS for the agency again"
    with steps.step("reopen") as step:
        try:
            step["detail"] = agency_reopen_revos(link=link, cutover=cutover)
        except Exception as error:  # unified_db is off already: the switch back stands
            logger.warning("switch back of %s: the fences stay for now: %s", link, error)
            step["detail"] = f"not yet ({error}); the next request on the agency lifts the fences"
    return {"window_seconds": round(time.monotonic() - fenced_at, 3), **report.as_dict()}


def _preflight(link: AgencyLink) -> tuple[MigrationRun, str]:
    if refusal := agency_switch_back_refusal(link=link):
        raise RunRefused(refusal)
    state = reverse_capture_state(unified_agency_id=link.unified_agency_id)
    if state is None:
        raise RunRefused(
            "the unified database does not record this agency's changes (it was cut over before the reverse"
            " capture existed); what the apps wrote since cannot be told apart"
        )
    plan = reverse_plan(scope=_scope(link))
    if plan.problems:
        raise RunRefused("; ".join(plan.problems))
    totals = plan.as_dict()["totals"]
    return agency_cut_over(link=link), "about {insert} inserts, {update} updates, {delete} deletes".format(**totals)


def _verify(link: AgencyLink, scope: Scope) -> str:
    """Every changed row equal on both sides, and every table's counts."""
    left = reverse_verify(scope=scope)
    differing = {name: c for name, c in left.tables.items() if c.changes}
    if differing:
        named = "; ".join(f"{name}: {c.samples}" for name, c in list(differing.items())[:5])
        raise RunRefused(f"RevOS differs from the unified rows after applying: {named}")
    compared = sum(c.unchanged for c in left.tables.values())
    with (
        connect("revos", purpose="switch-back-verify") as source,
        connect("unified", purpose="switch-back-verify") as target,
    ):
        target_catalog = catalog_read(target)
        plans = migration_plan_build(source=catalog_read(source), target=target_catalog)
        agency = AgencyScope(link.revos_agency_id, link.unified_agency_id)
        outcomes = [
            counts_check(plan, scope=agency, source=source, target=target, target_catalog=target_catalog)
            for plan in plans
        ]
    failed = [o for o in outcomes if o.status != PASS]
    if failed:
        raise RunRefused("counts differ: " + "; ".join(f"{o.table_name}: {o.actual}" for o in failed[:5]))
    return f"{compared} changed rows equal in RevOS; counts of {len(outcomes)} tables match"


# --- complete ---------------------------------------------------------------------------------


def agency_complete(*, link: AgencyLink, reason: str, actor: AbstractBaseUser | None) -> MigrationRun:
    """End the agency's move for good (recorded as a run); RunRefused says why not."""
    reason = _reason(reason, "Completing a move")
    if refusal := agency_complete_refusal(link=link):
        raise RunRefused(refusal + ".")
    run = migration_run_request(link=link, kind=Kind.COMPLETE, actor=actor, enqueue=False, reason=reason)
    return migration_run_execute(run_id=run.pk, perform=_complete_perform)


def _complete_perform(run: MigrationRun, mark_running) -> dict:
    link = run.agency_link
    with connect("unified", purpose="complete") as unified, agency_lock(unified, link.revos_agency_id):
        mark_running()
        if refusal := agency_complete_refusal(link=link):
            raise RunRefused(refusal)
        reverse_capture_stop(source_agency_id=link.revos_agency_id, unified_agency_id=link.unified_agency_id)
        with connect("revos", purpose="complete") as revos:
            forgotten = capture.changes_forget(revos, agency_id=link.revos_agency_id)
    return {"revos_changes_forgotten": forgotten, "revos": "read-only for this agency", "reverse_capture": "stopped"}
