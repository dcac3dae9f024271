"""A fenced switch: a run that stops one database's writes to an agency, brings the other up to date,
checks it, and turns unified_db over. The cutover (services/kinds/cutover.py: RevOS fenced, unified_db
on) and the switch back (services/kinds/switch_back.py: the unified database fenced, unified_db off)
are two kinds of it.

A kind is data in its own module: its declaration in the registry (migration_jobs/run_kinds.py:
the unified_db value its switch sets, whether Cancel applies), a `FencedSwitch` (the database it
fences, how its outcomes read) and its steps, in order, each a label and a function (`Step`).
This module holds every kind alike:

- its steps, which its module runs in order inside `fenced_switch_held`, are saved on the run as
  each one starts and ends, for staff to follow (`SwitchRun.step`, `RunSteps`);
- the fence is set, drained and lifted on a connection of its own (`Fence`; the steps
  `SwitchRun.fence_set` and `.fence_drain`), and unified_db set alike (`.unified_db_switch`);
- anything that ends the run before its switch step is done (a failure, a Cancel) lifts the fence
  and says which step ended it and why; after the switch nothing is undone, since the other
  database is the agency's source of truth by then;
- a run whose worker died is finished if its switch was made, undone otherwise
  (`fenced_switch_recovery`, the kind's `recover`, from the reconcile in services/runs.py: the
  reconciler's next pass, or the next request on the agency).

A third kind is a third module under services/kinds/.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from django.conf import settings

from migration_jobs.etl import capture
from migration_jobs.etl.connections import connect
from migration_jobs.etl.engine import Control, MigrationStopped, agency_lock
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.refusals import RunRefused
from migration_jobs.run_kinds import run_kind_get
from migration_jobs.selectors.agency_links import LinkedAgency, agency_linked
from migration_jobs.selectors.flags import agency_flag_enabled
from migration_jobs.services.fence import fence_message, fence_owner
from migration_jobs.services.flags import flags_cache_invalidate, unified_db_switch

logger = logging.getLogger(__name__)
Status = MigrationRun.Status


class RunStepFailed(Exception):
    """A step of a run failed and everything before it was undone; the message says which step and why."""

    def __init__(self, step: str, message: str):
        super().__init__(message)
        self.step = step


# --- the kinds, as data -----------------------------------------------------------------------


def unified_fence_message(link: AgencyLink) -> str:
    """What a refused unified write says: which agency, and why."""
    return (
        f'Agency "{link.name}" ({link.unified_agency_id}) is switching back to RevOS: the unified database'
        " accepts no writes to its rows meanwhile."
    )


@dataclass(frozen=True)
class FencedSide:
    """A database a switch fences, and how staff read what became of its fence."""

    alias: str  # "revos" or "unified"
    agency_of: Callable[[MigrationRun], UUID | None]  # the run's id of the agency in that database
    fence: str  # the fence, as the outcomes name it
    unfenced: str  # what a run ended before its fence step says
    refusing: str  # the fence step's detail once it is set
    reopened: str  # what lifting the fence gives back
    message: Callable[[AgencyLink], str]  # what a refused write says

    def agency_id(self, run: MigrationRun) -> UUID:
        agency_id = self.agency_of(run)
        if agency_id is None:  # requested unlinked: every switch's request is refused before that
            raise RunRefused(f"{run.agency_link.name} has no agency in the {self.alias} database to fence.")
        return agency_id


REVOS = FencedSide(
    alias="revos",
    agency_of=lambda run: run.revos_agency_id,
    fence="the fence",
    unfenced="RevOS was not fenced",
    refusing="RevOS refuses the agency's writes; the flags API reports it read-only",
    reopened="RevOS accepts the agency's writes again",
    message=fence_message,
)
UNIFIED = FencedSide(
    alias="unified",
    agency_of=lambda run: run.unified_agency_id,
    fence="the unified fence",
    unfenced="the unified database was not fenced",
    refusing="the unified database refuses the agency's writes, naming it",
    reopened="the apps write to the unified database again",
    message=unified_fence_message,
)


@dataclass(frozen=True)
class FencedSwitch:
    """One kind of fenced switch, as its runs and the recovery of a dead one need to know it: the
    database it fences, what its switch step sets unified_db to, and how a run that ended before
    its switch says so (`undone`, "{name}" the agency's; `recovered`, after its worker died)."""

    kind: str
    name: str  # the unified_db change's reason when the run gives none; its sessions' names
    fenced: FencedSide
    undone: str
    recovered: str
    # What finishing a run whose worker died after the switch still takes.
    switched: Callable[[AgencyLink], object] = lambda link: None
    # A fresh holder, per run, of what its steps leave for later ones (fields of the kind's own).
    kept: Callable[[], Any] = lambda: None

    @property
    def unified_db(self) -> bool | None:
        """What its switch step sets unified_db to, as its kind declares."""
        return run_kind_get(self.kind).unified_db

    @property
    def cancellable(self) -> bool:
        """Cancel is honoured between its steps before the switch, as its kind declares."""
        return run_kind_get(self.kind).cancellable

    @property
    def purpose(self) -> str:
        """What its database sessions are named after (etl/connections.py application_name)."""
        return self.name.replace(" ", "-")


# --- running one ------------------------------------------------------------------------------


class SwitchCancelled(MigrationStopped):
    """Staff cancelled the switch before it was made; the fence is lifted (see `outcome`)."""

    def __init__(self, *, label: str, undone: str, unfenced: str):
        super().__init__(Control.CANCEL)
        self.label, self.undone, self.outcome = label, undone, f"{unfenced} yet"

    def __str__(self) -> str:
        return f"Cancelled during step {self.label}: {self.outcome}; {self.undone}."


class RunSteps:
    """The run's steps as staff see them, saved on the run as each one starts and ends."""

    def __init__(self, run: MigrationRun, switch: FencedSwitch, labels: dict[str, str]):
        self.run, self.switch, self.labels = run, switch, labels
        self.items: dict[str, dict[str, Any]] = {
            name: {"name": name, "label": label, "status": "pending", "seconds": None, "detail": ""}
            for name, label in labels.items()
        }
        self.current = ""
        self._save()

    def _save(self) -> None:
        MigrationRun.objects.filter(pk=self.run.pk).update(
            steps=list(self.items.values()), current_table=self.labels.get(self.current, "")
        )

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
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

    @property
    def switched(self) -> bool:
        """The switch step is done: from here on nothing is undone."""
        status: str = self.items["switch"]["status"]
        return status == "done"

    def undone(self) -> str:
        return self.switch.undone.format(name=self.run.agency_link.name)

    def cancel_requested(self) -> bool:
        if not self.switch.cancellable:
            return False
        control: str = MigrationRun.objects.filter(pk=self.run.pk).values_list("control", flat=True).get()
        return control == MigrationRun.Control.CANCEL

    def cancelled(self) -> SwitchCancelled:
        return SwitchCancelled(
            label=self.labels[self.current], undone=self.undone(), unfenced=self.switch.fenced.unfenced
        )

    def check_cancel(self) -> None:
        if self.cancel_requested():
            raise self.cancelled()


@dataclass
class Fence:
    """The fence this run set, so that whatever ends the run before its switch lifts exactly it."""

    run: MigrationRun
    side: FencedSide
    connection: psycopg.Connection  # of its own, so that a failure elsewhere leaves it usable
    purpose: str
    xid: int | None = None
    set_at: float | None = None

    def set(self) -> None:
        self.xid = capture.fence_set(
            self.connection,
            agency_id=self.side.agency_id(self.run),
            owner=fence_owner(self.run),
            message=self.side.message(self.run.agency_link),
        )
        self.set_at = time.monotonic()

    def announce(self) -> None:
        """Have the flags API tell the apps the agency is read-only, as while any run holds a fence."""
        MigrationRun.objects.filter(pk=self.run.pk).update(fence_held=True)
        flags_cache_invalidate()

    def lift(self) -> str:
        """Lift it if set; say what became of it."""
        side = self.side
        if self.xid is None:
            return side.unfenced
        try:
            if self.connection.closed or self.connection.broken:
                with connect(side.alias, purpose=self.purpose) as connection:
                    self._lift_on(connection)
            else:
                self.connection.rollback()
                self._lift_on(self.connection)
        except Exception as error:  # the database down: the reconciler lifts it once it answers
            logger.warning("could not lift %s of run %s: %s", side.fence, self.run.pk, error)
            return f"{side.fence} could not be lifted yet ({error}); the reconciler lifts it once the database answers"
        MigrationRun.objects.filter(pk=self.run.pk).update(fence_held=False)
        flags_cache_invalidate()
        return f"{side.fence} is lifted, {side.reopened}"

    def _lift_on(self, connection: psycopg.Connection) -> None:
        capture.fence_lift(connection, agency_id=self.side.agency_id(self.run), owner=fence_owner(self.run))

    def held(self) -> tuple[int, float]:
        """The fence's transaction id and when it was set, for the steps after the fence step."""
        if self.xid is None or self.set_at is None:
            raise RuntimeError(f"run {self.run.pk}: a step after the fence ran without it")  # the steps' order
        return self.xid, self.set_at


@dataclass
class SwitchRun:
    """What the steps of one switch run share."""

    run: MigrationRun
    agency: LinkedAgency  # the run's agency, its unified id known (a switch runs only on a linked one)
    steps: RunSteps
    fence: Fence
    unified: psycopg.Connection  # holds the agency's lock
    report: dict[str, Any] = field(default_factory=dict)  # the run's report, as its steps add to it
    kept: Any = None  # what a step leaves for a later one, in its kind's holder (`FencedSwitch.kept`)

    @property
    def link(self) -> AgencyLink:
        return self.run.agency_link

    # The steps every kind has, for its table of steps (`Step("Fence RevOS writes", SwitchRun.fence_set)`).

    def fence_set(self) -> str:
        """Refuse the agency's writes in the fenced database."""
        self.fence.set()
        return self.fence.side.refusing

    def fence_drain(self) -> str:
        """Wait (at most CUTOVER_DRAIN_TIMEOUT_SECONDS) until the transactions older than the fence,
        which could still write, have ended."""
        # Announced once this step shows as running, so that a run seen holding its fence is seen
        # draining or further on (what a dead worker's run then says); the fence is a moment older.
        self.fence.announce()
        waited = capture.transactions_older_wait(
            self.fence.connection,
            xid=self.fence.held()[0],
            timeout=settings.CUTOVER_DRAIN_TIMEOUT_SECONDS,
            should_stop=self.steps.cancel_requested,
        )
        self.steps.check_cancel()
        return f"no older transaction left after {waited:.2f} s"

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        """One step, as staff follow it: its item's "detail" is what the step says it did."""
        with self.steps.step(name) as item:
            yield item
            # A Cancel ends the run between its steps up to the switch, checked before a step counts
            # as done so that the next one starts at once (the drain watches for it itself).
            if name not in ("fence", "switch") and not self.steps.switched:
                self.steps.check_cancel()

    def unified_db_switch(self) -> None:
        """The switch itself: unified_db for the agency as its kind sets it, the run's reason and
        requester in the flag's audit record."""
        unified_db_switch(run=self.run)  # the only way unified_db changes (services/flags.py)


@dataclass(frozen=True)
class Step:
    """One step of a switch: its label for staff, and what it does (returning its detail for staff)."""

    label: str
    do: Callable[[SwitchRun], str]


@contextmanager
def fenced_switch_held(
    run: MigrationRun, mark_running: Callable[[], None], *, switch: FencedSwitch, steps: dict[str, Step]
) -> Iterator[SwitchRun]:
    """What a switch run's steps need, under the agency's lock, for its kind's module to run its steps
    in order (`SwitchRun.step`); whatever ends the run before its switch lifts the fence and says why.
    Once it ends, the run's report holds the write downtime (`window_seconds`)."""
    link = run.agency_link
    agency = agency_linked(link=link)
    progress = RunSteps(run, switch, {name: step.label for name, step in steps.items()})
    fence_purpose = f"{switch.purpose}-fence"
    with (
        connect("unified", purpose=switch.purpose) as unified,
        connect(switch.fenced.alias, purpose=fence_purpose) as fenced,
        agency_lock(unified, link.revos_agency_id),
    ):
        mark_running()
        fence = Fence(run, switch.fenced, fenced, fence_purpose)
        switch_run = SwitchRun(run, agency, progress, fence, unified, kept=switch.kept())
        try:
            yield switch_run
        except SwitchCancelled as cancelled:
            cancelled.outcome = fence.lift()
            raise
        except MigrationStopped:  # a step's own work stopped on the Cancel
            stopped = progress.cancelled()
            stopped.outcome = fence.lift()
            raise stopped from None
        except BaseException as error:
            if progress.switched:
                raise  # the other database is the agency's source now: nothing is to be undone
            outcome = fence.lift()
            reason = str(error).strip() or type(error).__name__
            raise RunStepFailed(
                progress.current,
                f"Step {progress.labels[progress.current]} failed: {reason}. {outcome[0].upper()}{outcome[1:]};"
                f" {progress.undone()}.",
            ) from error
    window = time.monotonic() - fence.held()[1]
    logger.info(
        "%s of %s: write downtime %.2f s", switch.name, link, window, extra={"agency_id": str(run.revos_agency_id)}
    )
    switch_run.report = {"window_seconds": round(window, 3), **switch_run.report}


# --- a run whose worker died ------------------------------------------------------------------


def fenced_switch_recovery(*, run: MigrationRun, switch: FencedSwitch) -> tuple[str, str]:
    """(status, message) for a switch whose worker died: finished if it had turned unified_db over,
    else undone. Its fence is lifted by the `fences_reconcile` (services/fence.py) that follows, as
    is any fence no running run holds."""
    link = run.agency_link
    if agency_flag_enabled(flag_name="unified_db", agency_link=link) == switch.unified_db:
        switch.switched(link)
        return Status.SUCCEEDED, ""
    step = next((s["label"] for s in run.steps if s.get("status") == "running"), "an unknown step")
    return Status.FAILED, f"The worker stopped during step {step}, {switch.recovered}"
