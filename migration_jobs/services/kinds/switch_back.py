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
which step failed and why. A worker killed mid-way leaves a run the reconciler (or the next request) recognises:
finished if unified_db was off already, undone otherwise. The steps, the fence and those outcomes
are services/fenced_switch.py's, shared with the cutover; this module holds its declaration and its own steps.

After a switch back the agency is a migrated agency again: its RevOS capture never stopped, the
id map knows the rows the apps created, so catch-up, verification and a later cutover work.

Complete ends the move for good: no switch back after it. The reverse capture stops, RevOS keeps
the agency fenced (read-only) and forgets its captured changes; a fenced agency's writes are
refused before anything is recorded, so nothing is captured for it any more (services/kinds/complete.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Unpack

from django.contrib.auth.models import User

from migration_jobs.etl.catalog import catalog_read
from migration_jobs.etl.connections import connect
from migration_jobs.etl.plan import migration_plan_build
from migration_jobs.etl.reverse import Scope, reverse_apply, reverse_plan, reverse_verify
from migration_jobs.etl.reverse_capture import reverse_capture_state, reverse_changes
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.refusals import RunRefused
from migration_jobs.run_kinds import Button, RunKind, run_kind_register
from migration_jobs.selectors.agency_links import LinkedAgency, agency_linked
from migration_jobs.selectors.agency_state import agency_cut_over, agency_switch_back_refusal
from migration_jobs.services.fence import agency_reopen_revos
from migration_jobs.services.fenced_switch import (
    UNIFIED,
    FencedSwitch,
    Step,
    SwitchRun,
    fenced_switch_held,
    fenced_switch_recovery,
)
from migration_jobs.services.runs import BulkOutcome, RunRequest, migration_run_request, reasoned_runs_request_bulk
from migration_jobs.verify import PASS, AgencyScope
from migration_jobs.verify.counts import counts_check

logger = logging.getLogger(__name__)


# --- requesting -------------------------------------------------------------------------------


def switch_back_run_request(
    *, link: AgencyLink, reason: str, actor: User | None, **request: Unpack[RunRequest]
) -> MigrationRun:
    """Queue a switch back of one agency, or raise RunRefused saying why not."""
    return migration_run_request(link=link, kind=SWITCH_BACK.value, actor=actor, reason=reason, **request)


def _switch_back_check(link: AgencyLink) -> None:
    """Only a cut-over agency whose move is not complete switches back."""
    if refusal := agency_switch_back_refusal(link=link):
        raise RunRefused(refusal + ".")


def switch_back_runs_request_bulk(*, links: Iterable[AgencyLink], reason: str, actor: User | None) -> BulkOutcome:
    """Queue a switch back of each agency; skip (with the reason) those refused."""
    return reasoned_runs_request_bulk(kind=SWITCH_BACK.value, links=links, reason=reason, actor=actor)


def switch_back_plan(*, link: AgencyLink) -> dict[str, Any]:
    """A dry run: rows per RevOS table a switch back would insert, update and delete, and what RevOS
    cannot hold. Writes nothing; refused (RunRefused) when there is nothing to switch back."""
    if refusal := agency_switch_back_refusal(link=link):
        raise RunRefused(refusal + ".")
    return reverse_plan(scope=_scope(agency_linked(link=link))).as_dict()


def _scope(agency: LinkedAgency) -> Scope:
    """The agency's rows changed in the unified database since its cutover, as the reverse capture says."""
    return Scope(
        source_agency_id=agency.revos_agency_id,
        target_agency_id=agency.unified_agency_id,
        changed=reverse_changes(unified_agency_id=agency.unified_agency_id),
    )


# --- executing --------------------------------------------------------------------------------


def _switch_back(run: MigrationRun, mark_running: Callable[[], None]) -> dict[str, Any]:
    """The switch back's work (services/runs.py migration_run_execute runs it): its steps."""
    with fenced_switch_held(run, mark_running, switch=SWITCH, steps=STEPS) as switch_run:
        for name, step in STEPS.items():
            with switch_run.step(name) as item:
                item["detail"] = step.do(switch_run)
    return switch_run.report


def _apply(switch_run: SwitchRun) -> str:
    """The captured changes to RevOS in one transaction, past RevOS's fence."""
    # Read once nothing can change any more: what the fence froze, which the verification checks too.
    scope = switch_run.kept.scope = _scope(switch_run.agency)
    report = reverse_apply(scope=scope)
    switch_run.report.update(report.as_dict())
    return "{insert} inserted, {update} updated, {delete} deleted in RevOS".format(**report.as_dict()["totals"])


def _switch(switch_run: SwitchRun) -> str:
    switch_run.unified_db_switch()
    return "unified_db is off: the apps use RevOS for the agency again"


def _reopen(switch_run: SwitchRun) -> str:
    link = switch_run.link
    try:
        return agency_reopen_revos(link=link, cutover=agency_cut_over(link=link))
    except Exception as error:  # unified_db is off already: the switch back stands
        logger.warning("switch back of %s: the fences stay for now: %s", link, error)
        return f"not yet ({error}); the reconciler lifts the fences once the database answers"


def _preflight(link: AgencyLink, agency: LinkedAgency) -> str:
    if refusal := agency_switch_back_refusal(link=link):
        raise RunRefused(refusal)
    state = reverse_capture_state(unified_agency_id=agency.unified_agency_id)
    if state is None:
        raise RunRefused(
            "the unified database does not record this agency's changes (it was cut over before the reverse"
            " capture existed); what the apps wrote since cannot be told apart"
        )
    plan = reverse_plan(scope=_scope(agency))
    if plan.problems:
        raise RunRefused("; ".join(plan.problems))
    totals = plan.as_dict()["totals"]
    return "about {insert} inserts, {update} updates, {delete} deletes".format(**totals)


def _verify(agency: LinkedAgency, scope: Scope) -> str:
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
        counted = AgencyScope(agency.revos_agency_id, agency.unified_agency_id)
        outcomes = [
            counts_check(plan, scope=counted, source=source, target=target, target_catalog=target_catalog)
            for plan in plans
        ]
    failed = [o for o in outcomes if o.status != PASS]
    if failed:
        raise RunRefused("counts differ: " + "; ".join(f"{o.table_name}: {o.actual}" for o in failed[:5]))
    return f"{compared} changed rows equal in RevOS; counts of {len(outcomes)} tables match"


@dataclass
class Kept:
    """What the switch back's steps leave for later ones."""

    scope: Scope | None = None  # the changes the apply step applied: what the fence froze, verified after


# The switch back's steps, in order.
STEPS = {
    "preflight": Step("Preflight", lambda switch_run: _preflight(switch_run.link, switch_run.agency)),
    "fence": Step("Fence unified writes", SwitchRun.fence_set),
    "drain": Step("Drain older transactions", SwitchRun.fence_drain),
    "apply": Step("Apply changes to RevOS", _apply),
    "verify": Step("Verify RevOS", lambda switch_run: _verify(switch_run.agency, switch_run.kept.scope)),
    "switch": Step("Switch unified_db off", _switch),
    "reopen": Step("Lift the RevOS fence", _reopen),
}

SWITCH = FencedSwitch(
    kind=MigrationRun.Kind.SWITCH_BACK,
    name="switch back",
    fenced=UNIFIED,
    undone="{name} stays cut over and nothing was lost",
    recovered=(
        "before unified_db was turned off: the unified fence is lifted and the agency stays cut over."
        " Nothing was lost; switch back again."
    ),
    # unified_db is off: RevOS is the source again, and takes the agency's writes.
    switched=lambda link: agency_reopen_revos(link=link, cutover=agency_cut_over(link=link)),
    kept=Kept,
)

SWITCH_BACK = run_kind_register(
    RunKind(
        value=MigrationRun.Kind.SWITCH_BACK,
        label=MigrationRun.Kind.SWITCH_BACK.label,
        work=_switch_back,
        permission="migration_jobs.switchback_migrationrun",
        button=Button(
            done=(
                "Switch back of {name} queued (run {pk}): unified writes are fenced, the apps' changes since the"
                " cutover applied to RevOS and verified, then unified_db is off for it."
            ),
            reasoned=True,
            may_not="switch agencies back",
        ),
        reason_for="A switch back",
        request_check=_switch_back_check,
        writes=True,
        # It changed RevOS and the id map: a later cutover needs a verification after it too.
        changes_data=True,
        verified_after=True,
        supersedes_dry_run=True,
        unified_db=False,
        when_cut_over=None,  # what a cut-over agency is for; its own refusal says the rest
        recover=lambda run: fenced_switch_recovery(run=run, switch=SWITCH),
    )
)
