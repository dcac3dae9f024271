"""The cutover of one agency, as a tracked run: stop RevOS's writes, apply the last changes, check, switch.

As Vitess's SwitchTraffic and ghostferry's cutover do it, the write downtime is the time from the
fence to the switch, and it depends on the changes since the last catch-up, not on the agency's
size:

1. preflight: the cutover interlock (migrated, verified after the latest change), the capture
   in place, and an estimate of the pending changes;
   ahead of the fence, RevOS still writable: catch up until few changes are pending, run the whole
   delta verification below recording the unified writes from then on (verify/delta.py), and
   catch up again what came meanwhile;
2. fence: RevOS refuses every write to the agency's rows (etl/capture.py), and the flags API tells
   the apps the agency is read-only;
3. drain: wait until RevOS transactions older than the fence have ended (they could still write),
   at most CUTOVER_DRAIN_TIMEOUT_SECONDS;
4. final catch-up: the captured changes, through the migration's own batch writer;
5. delta verification: counts of every table, content of every row changed since the last full
   verification, and the isolation cases; inside the fence only those whose answer can have
   changed since the verification ahead of it (verify/delta.py argues why that proves the same);
6. switch: unified_db on for the agency, with its audit record;
7. RevOS stays fenced for the agency.

Any failure or a Cancel before step 6 lifts the fence and leaves unified_db off; the run names
the step and the reason. A worker that dies mid-cutover holds the agency's advisory lock no more;
the reconciler (or the next request) finds the run dead and finishes it (the switch was made) or
undoes it (it was not). The steps, the fence and those outcomes are services/fenced_switch.py's, shared with the
switch back; this module holds the cutover's declaration and its own steps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Unpack

import psycopg
from django.conf import settings
from django.contrib.auth.models import User

from migration_jobs.etl import capture
from migration_jobs.etl.catch_up import catch_up_rounds
from migration_jobs.etl.connections import connect
from migration_jobs.etl.engine import Control
from migration_jobs.etl.reverse_capture import (
    reverse_capture_start,
    reverse_capture_stop,
    reverse_changes,
    unified_captured_tables,
    unified_watch_start,
)
from migration_jobs.etl.unified_guard import unified_guard_remove, unified_guard_set
from migration_jobs.mapping import TABLE_MAPS
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.models.flags import FeatureFlag
from migration_jobs.refusals import RunRefused
from migration_jobs.run_kinds import Button, RunKind, run_kind_register
from migration_jobs.selectors.agency_state import agency_cutover_refusal, agency_kind_refusal
from migration_jobs.selectors.capture import agency_capture_needed_since
from migration_jobs.selectors.flags import agency_flag_enabled
from migration_jobs.services.fenced_switch import (
    REVOS,
    FencedSwitch,
    Step,
    SwitchRun,
    fenced_switch_held,
    fenced_switch_recovery,
)
from migration_jobs.services.kinds.migrate import agency_migration
from migration_jobs.services.runs import BulkOutcome, RunRequest, migration_run_request, reasoned_runs_request_bulk
from migration_jobs.verify import PASS, AgencyScope, CheckOutcome
from migration_jobs.verify.delta import Ahead, delta_verify_ahead, delta_verify_in_fence

logger = logging.getLogger(__name__)

# --- requesting -------------------------------------------------------------------------------


def cutover_run_request(
    *, link: AgencyLink, reason: str, actor: User | None, **request: Unpack[RunRequest]
) -> MigrationRun:
    """Queue a cutover of one agency, or raise RunRefused saying why not."""
    return migration_run_request(link=link, kind=CUTOVER.value, actor=actor, reason=reason, **request)


def _cutover_check(link: AgencyLink) -> None:
    """Not cut over already, and past the interlock: migrated, and verified since its latest change."""
    if refusal := agency_kind_refusal(link=link, kind=CUTOVER.value):
        raise RunRefused(refusal)
    if refusal := agency_cutover_refusal(agency_link=link):
        raise RunRefused(f"{link.name} cannot be cut over: {refusal}.")


def cutover_runs_request_bulk(*, links: Iterable[AgencyLink], reason: str, actor: User | None) -> BulkOutcome:
    """Queue a cutover of each agency (they run within MIGRATION_MAX_CONCURRENT_AGENCIES); skip those refused."""
    return reasoned_runs_request_bulk(kind=CUTOVER.value, links=links, reason=reason, actor=actor)


# --- executing --------------------------------------------------------------------------------


def _cutover(run: MigrationRun, mark_running: Callable[[], None]) -> dict[str, Any]:
    """The cutover's work (services/runs.py migration_run_execute runs it): its steps, in order."""
    try:
        with fenced_switch_held(run, mark_running, switch=SWITCH, steps=STEPS) as switch_run:
            for name, step in STEPS.items():
                with switch_run.step(name) as item:
                    item["detail"] = step.do(switch_run)
        return switch_run.report
    except BaseException:
        if not agency_flag_enabled(flag_name="unified_db", agency_link=run.agency_link):
            _unified_watch_stop(run.agency_link)  # not switched: nothing recorded outlives the run
        raise


def _unified_watch_stop(link: AgencyLink) -> None:
    if link.unified_agency_id is None:  # refused before its steps: nothing was recorded
        return
    try:
        reverse_capture_stop(source_agency_id=link.revos_agency_id, unified_agency_id=link.unified_agency_id)
    except Exception as error:  # unified down: the next cutover's watch starts afresh anyway
        logger.warning("could not stop recording the unified writes of %s: %s", link, error)


def _catch_up_ahead(switch_run: SwitchRun) -> str:
    """Catch-ups before the fence until few changed rows are pending (etl/catch_up.py catch_up_rounds)."""
    steps = switch_run.steps
    applied = catch_up_rounds(
        migration=lambda: agency_migration(
            link=switch_run.link,
            on_progress=lambda progress: Control.CANCEL if steps.cancel_requested() else Control.CONTINUE,
        ),
        target=switch_run.unified,
        pending_rows=settings.CUTOVER_PENDING_ROWS,
        rounds=settings.CUTOVER_CATCH_UP_ROUNDS,
    )
    return f"{len(applied)} round(s), {' + '.join(map(str, applied))} changed rows applied"


def _verify_ahead(switch_run: SwitchRun) -> str:
    """The whole delta verification before the fence, the unified writes recorded from then on (verify/delta.py)."""
    agency, started = switch_run.agency, time.monotonic()
    state = capture.capture_state(switch_run.fence.connection, agency_id=agency.revos_agency_id)
    if state is None:  # the preflight found it; a capture removed since would lose writes
        raise RunRefused("RevOS no longer captures this agency's changes")
    unified_watch_start(
        source_agency_id=agency.revos_agency_id,
        unified_agency_id=agency.unified_agency_id,
        agency_name=agency.name,
        wait_seconds=settings.CUTOVER_DRAIN_TIMEOUT_SECONDS,
    )
    watched = time.monotonic() - started
    ahead = delta_verify_ahead(
        scope=AgencyScope(agency.revos_agency_id, agency.unified_agency_id),
        content_ids=_changed_since_full(switch_run.link, switch_run.fence.connection),
        position=state.applied_snapshot,
    )
    switch_run.kept.ahead = ahead
    again = sum(o.status != PASS for o in ahead.outcomes)
    return (
        f"{len(ahead.outcomes)} checks in {time.monotonic() - started - watched:.2f} s, {again} not passed"
        f" (checked again inside the fence); unified writes recorded from then on ({watched:.2f} s)"
    )


def _catch_up(switch_run: SwitchRun) -> str:
    """The changes captured since the last catch-up, through the migration's own batch writer."""
    steps = switch_run.steps
    if _nothing_captured_since(switch_run):
        switch_run.report.update(catch_up_seconds=0.0, changed_rows=0, tables={})
        return "no write captured since the catch-up before the fence: 0 changed rows to apply"
    with connect("revos", purpose="cutover-read") as source:
        source.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        source.read_only = True
        started = time.monotonic()
        migration = agency_migration(
            link=switch_run.link,
            on_progress=lambda progress: Control.CANCEL if steps.cancel_requested() else Control.CONTINUE,
        )
        tables = migration.run_holding_lock(source, switch_run.unified)  # this run holds the agency's lock already
    switch_run.report.update(
        catch_up_seconds=round(time.monotonic() - started, 3),
        changed_rows=migration.changed_rows,
        tables=tables.as_dict(),
    )
    return f"{migration.changed_rows} changed rows applied"


def _nothing_captured_since(switch_run: SwitchRun) -> bool:
    """Would the final catch-up apply nothing? It reads only the records its position has not seen
    (and re-reads the tables RevOS does not capture): with every table captured and no such record
    once the fence is drained (no write to the agency's rows can commit any more), it would find
    nothing and leave the unified rows as they are; its fixed cost (catalogs, plan, counts: tenths
    of a second) is write downtime saved. The capture's triggers are checked inside the fence all
    the same, by the delta verification, before it reads the records."""
    if not all(entry.captured for entry in TABLE_MAPS):
        return False
    connection, agency_id = switch_run.fence.connection, switch_run.link.revos_agency_id
    state = capture.capture_state(connection, agency_id=agency_id)
    connection.commit()
    if state is None or state.applied_snapshot is None or state.pending_snapshot is not None:
        # No position (a full read owed after the triggers were repaired), or an attempt that did
        # not finish: the catch-up itself decides, and refuses what only a full read may do.
        return False
    records, _ = capture.changes_pending_count(connection, agency_id=agency_id)
    return records == 0


def _switch(switch_run: SwitchRun) -> str:
    agency = switch_run.agency
    # From here on the apps write the unified database: record it, so the agency can switch back
    # with those writes (services/kinds/switch_back.py). A fresh record: nothing before this counts.
    reverse_capture_stop(source_agency_id=agency.revos_agency_id, unified_agency_id=agency.unified_agency_id)
    reverse_capture_start(
        source_agency_id=agency.revos_agency_id,
        unified_agency_id=agency.unified_agency_id,
        agency_name=agency.name,
        wait_seconds=settings.CUTOVER_DRAIN_TIMEOUT_SECONDS,
    )
    # The unified copies become the agency's truth: the apps may write them (RevOS is fenced).
    unified_guard_remove(unified_agency_id=agency.unified_agency_id)
    try:
        switch_run.unified_db_switch()
    except BaseException:
        unified_guard_set(unified_agency_id=agency.unified_agency_id, agency_name=agency.name)
        reverse_capture_stop(source_agency_id=agency.revos_agency_id, unified_agency_id=agency.unified_agency_id)
        raise
    return "unified_db is on; RevOS stays fenced for the agency; unified changes are recorded"


def _preflight(link: AgencyLink, connection: psycopg.Connection) -> str:
    if refusal := agency_cutover_refusal(agency_link=link):
        raise RunRefused(refusal)
    if not FeatureFlag.objects.filter(name="unified_db").exists():
        raise RunRefused("there is no unified_db flag to turn on; add it under Feature flags")
    try:  # a write that went past a broken capture would be lost by the switch
        capture.capture_triggers_verify(connection, tables=capture.revos_captured_tables(), database="RevOS")
        with connect("unified", purpose="cutover-check") as unified:
            capture.capture_triggers_verify(unified, tables=unified_captured_tables(), database="unified")
    except capture.CaptureBroken as broken:
        raise RunRefused(str(broken)) from broken
    state = capture.capture_state(connection, agency_id=link.revos_agency_id)
    if state is None or state.applied_snapshot is None:
        raise RunRefused(
            "RevOS does not capture this agency's changes yet (it was migrated before capture existed, or its "
            "first load has not finished); run Catch up once, verify, and cut over again"
        )
    records, rows = capture.changes_pending_count(connection, agency_id=link.revos_agency_id)
    return f"interlock passed; about {rows} changed rows to apply ({records} captured writes)"


def _changed_since_full(link: AgencyLink, connection: psycopg.Connection) -> dict[str, list[str]]:
    """Source table -> ids of the rows written since the last full verification (all recorded ones without one)."""
    since = agency_capture_needed_since(link=link)
    return capture.changes_since(connection, agency_id=link.revos_agency_id, since=since)


def _verify_in_fence(switch_run: SwitchRun) -> str:
    agency = switch_run.agency
    outcomes: list[CheckOutcome] = []
    delta_verify_in_fence(
        scope=AgencyScope(agency.revos_agency_id, agency.unified_agency_id),
        ahead=switch_run.kept.ahead,
        unified_changed=reverse_changes(unified_agency_id=agency.unified_agency_id),
        record=outcomes.append,
    )
    failed = [o for o in outcomes if o.status != PASS]
    if failed:
        named = "; ".join(f"{o.check_name} {o.table_name}: {o.actual}".replace("  ", " ") for o in failed[:5])
        raise RunRefused(f"{len(failed)} of {len(outcomes)} checks did not pass ({named})")
    counted = sum(o.check_name == "counts" for o in outcomes)
    compared = [o for o in outcomes if o.check_name == "content"]
    rows = sum(o.details.get("source_rows", 0) for o in compared)
    return (
        f"{len(outcomes)} checks passed: counts of {counted} tables that changed since the check ahead (the others"
        f" proven unchanged by the capture), content of {rows} rows changed since, "
        f"{len(outcomes) - counted - len(compared)} isolation checks"
    )


@dataclass
class Kept:
    """What the cutover's steps leave for later ones."""

    ahead: Ahead | None = None  # the verification before the fence, which the one inside it completes


# The cutover's steps, in order.
STEPS = {
    "preflight": Step("Preflight", lambda switch_run: _preflight(switch_run.link, switch_run.fence.connection)),
    "catch_up_ahead": Step("Catch-up before the fence", _catch_up_ahead),
    "verify_ahead": Step("Verification before the fence", _verify_ahead),
    "catch_up_again": Step("Catch-up again before the fence", _catch_up_ahead),
    "fence": Step("Fence RevOS writes", SwitchRun.fence_set),
    "drain": Step("Drain older transactions", SwitchRun.fence_drain),
    "catch_up": Step("Final catch-up", _catch_up),
    "verify": Step("Delta verification", _verify_in_fence),
    "switch": Step("Switch unified_db on", _switch),
}

SWITCH = FencedSwitch(
    kind=MigrationRun.Kind.CUTOVER,
    name="cutover",
    fenced=REVOS,
    undone="unified_db stays off",
    recovered="before the switch: the fence is lifted and unified_db stays off. Nothing was lost; cut over again.",
    kept=Kept,
)

CUTOVER = run_kind_register(
    RunKind(
        value=MigrationRun.Kind.CUTOVER,
        label=MigrationRun.Kind.CUTOVER.label,
        work=_cutover,
        permission="migration_jobs.cutover_migrationrun",
        button=Button(
            done=(
                "Cutover of {name} queued (run {pk}): RevOS writes are fenced, the last changes applied and "
                "verified, then unified_db is on for it."
            ),
            reasoned=True,
            may_not="cut agencies over",
            refused="Cutover refused",
        ),
        reason_for="A cutover",
        request_check=_cutover_check,
        writes=True,
        cancellable=True,
        supersedes_dry_run=True,
        unified_db=True,
        when_cut_over="it is cut over already",
        recover=lambda run: fenced_switch_recovery(run=run, switch=SWITCH),
    )
)
