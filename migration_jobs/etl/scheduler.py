"""Write several tables at once, parents before children, as pgcopydb's --table-jobs does.

A table starts once every table it references has finished: the foreign-key order is a graph, not
a line, so tables whose parents are done are written side by side. A table much larger than the
rest (MIGRATION_SPLIT_ROWS), and the largest table whatever its share, is written by every writer
at once, each an id range with its own checkpoint (Unit), as pgcopydb splits large tables; the
units on the longest chain of rows start first, so the largest is not left to one writer at the end.
Each writer owns a pair of connections: a RevOS one that reads the run's own snapshot
(etl/parallel.py), so every table is read as of the same instant, and a unified one that writes.
The first writer uses the run's own connections; the unified one holds the agency's lock, which
covers the other writers' work too.

Writers report each committed batch to the run's thread and wait for its answer. Progress, pause
and cancel, and the health throttle are therefore decided in one place, one batch at a time, as in
a serial run: a pause stops every writer at its next batch boundary, a throttled run holds every
writer between batches, and nothing but the run's thread touches Django.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from uuid import UUID

import psycopg

from migration_jobs.etl.connections import connect
from migration_jobs.etl.parallel import snapshot_export, snapshot_join
from migration_jobs.etl.plan import TablePlan

logger = logging.getLogger(__name__)

UUID_SPACE = 1 << 128
PART_KEY = re.compile(r"^(?P<table>\w+) part (?P<part>\d+)/(?P<parts>\d+)$")  # Unit.name of a split table


class Control(StrEnum):
    """What a run's thread answers a committed batch: go on, or stop at this batch boundary."""

    CONTINUE = "continue"
    PAUSE = "pause"
    CANCEL = "cancel"


@dataclass(frozen=True)
class Unit:
    """What one writer writes in one go: a table, or one id range of a table split for several.

    Its name is its checkpoint's key, so a split table resumes range by range. The ranges divide
    the uuid space evenly: stable from run to run, and even in rows for random (v4) ids.
    """

    plan: TablePlan
    part: int = 1
    parts: int = 1

    @property
    def table(self) -> str:
        return self.plan.source

    @property
    def name(self) -> str:
        return self.table if self.parts == 1 else f"{self.table} part {self.part}/{self.parts}"

    @property
    def id_range(self) -> tuple[UUID | None, UUID | None]:
        """[low, high) of the source ids; None where the range is open."""
        if self.parts == 1:
            return None, None
        low = None if self.part == 1 else UUID(int=UUID_SPACE * (self.part - 1) // self.parts)
        high = None if self.part == self.parts else UUID(int=UUID_SPACE * self.part // self.parts)
        return low, high


def units_plan(
    plans: list[TablePlan],
    *,
    rows: dict[str, int],
    checkpoint_keys: list[str],
    references: dict[str, set[str]],
    writers: int,
    split_rows: int,
) -> list[Unit]:
    """Every table as one unit, or as `writers` id ranges when it has more than `split_rows` rows
    or is the largest table, in the order they should start (`units_order`).

    The largest table is split whatever its share of the rows: written whole, it would be the one
    table left at the end, one writer busy and the others idle. A split an earlier run of the
    agency chose stands (its checkpoints are per range), and a table an earlier run began whole
    stays whole, whatever the writer count is now. A table whose rows reference each other is never
    split: a row could wait for a parent in another range.
    """
    earlier: dict[str, int] = {}
    for key in checkpoint_keys:
        split = PART_KEY.match(key)
        earlier[split["table"] if split else key] = int(split["parts"]) if split else 1
    largest = max(plans, key=lambda plan: rows.get(plan.source, 0), default=None)
    units = []
    for plan in plans:
        count = rows.get(plan.source, 0)
        wanted = count > split_rows or (plan is largest and count >= writers)
        splittable = writers > 1 and wanted and plan.target not in references.get(plan.target, set())
        parts = earlier.get(plan.source) or (writers if splittable else 1)
        units += [Unit(plan, part, parts) for part in range(1, parts + 1)]
    return units_order(units, rows=rows, parents=table_parents(plans, references))


def units_order(units: list[Unit], *, rows: dict[str, int], parents: dict[str, set[str]]) -> list[Unit]:
    """The units, those on the longest chain of rows first (the serial order among equals).

    A unit's weight is its rows (a split table's divided among its parts, which run side by side)
    plus the heaviest weight among the tables that wait for it: the largest table's parents start
    first, and it starts as soon as they are done, so it is not the table left alone at the end.
    The scheduler starts, of the units whose parents are done, the first in this order.
    """
    parts = {unit.table: unit.parts for unit in units}
    children: dict[str, set[str]] = {}
    for table, its_parents in parents.items():
        for parent in its_parents:
            children.setdefault(parent, set()).add(table)
    weights: dict[str, float] = {}

    def weight(table: str, path: frozenset[str] = frozenset()) -> float:
        if table not in weights:
            below = [weight(child, path | {table}) for child in children.get(table, ()) if child not in path]
            weights[table] = rows.get(table, 0) / parts.get(table, 1) + max(below, default=0)
        return weights[table]

    serial = {unit.name: index for index, unit in enumerate(units)}
    return sorted(units, key=lambda unit: (-weight(unit.table), serial[unit.name]))


@dataclass(frozen=True)
class Lane:
    """One writer's connections."""

    number: int
    source: psycopg.Connection
    target: psycopg.Connection


@dataclass(frozen=True)
class BatchDone:
    table: str
    unit: str  # the unit's name: the table, or the table and its part
    number: int  # the run's batch number, counted over all tables
    rows: int  # source rows the batch accounts for: written, and skipped because reused
    completed: bool  # the unit's last batch


@dataclass(frozen=True)
class Flight:
    """What is being written when a batch is reported."""

    in_flight: tuple[str, ...]  # units being written now, in the order they started
    tables_done: int  # tables finished, by this run or an earlier one


ReportBatch = Callable[[BatchDone], Control]  # a writer stops after a batch answered otherwise than CONTINUE
Copy = Callable[[Unit, Lane, ReportBatch], None]
OnBatch = Callable[[BatchDone, Flight], Control]


def table_dependencies(connection: psycopg.Connection, *, schema: str = "public") -> dict[str, set[str]]:
    """Unified table -> the tables its foreign keys reference (multi-column keys included).

    Tables are named as the catalog names them: bare in `schema`, "schema.table" elsewhere (auth.users).
    """
    rows = connection.execute(
        "SELECT CASE WHEN cn.nspname = %(schema)s THEN c.relname ELSE cn.nspname || '.' || c.relname END,"
        " CASE WHEN rn.nspname = %(schema)s THEN r.relname ELSE rn.nspname || '.' || r.relname END"
        " FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace"
        " JOIN pg_class r ON r.oid = k.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace"
        " WHERE k.contype = 'f'",
        {"schema": schema},
    ).fetchall()
    references: dict[str, set[str]] = {}
    for table, parent in rows:
        references.setdefault(table, set()).add(parent)
    return references


def table_parents(plans: list[TablePlan], references: dict[str, set[str]]) -> dict[str, set[str]]:
    """Source table -> the source tables that must finish before it starts.

    A table waits for every plan that writes a table its target references, and for the earlier
    plans into its own target (a self-reference may span them, so they keep the serial order).
    """
    writers_of: dict[str, list[str]] = {}
    for plan in plans:
        writers_of.setdefault(plan.target, []).append(plan.source)
    parents = {}
    for plan in plans:
        wanted = {
            source
            for parent in references.get(plan.target, set()) - {plan.target}
            for source in writers_of.get(parent, ())
        }
        same_target = writers_of[plan.target]
        wanted.update(same_target[: same_target.index(plan.source)])
        parents[plan.source] = wanted
    return parents


@dataclass
class _Finished:
    unit: Unit
    lane: Lane
    error: BaseException | None


@dataclass
class _Reported:
    batch: BatchDone
    answer: Future[Control] = field(default_factory=Future)


class TableScheduler:
    """Runs `copy` for every pending table on up to `len(lanes)` writers at once.

    `on_batch` (called on this thread) answers each committed batch; the first answer other than
    CONTINUE stops every writer at its next batch boundary, and no table starts after it. `run`
    returns that answer (CONTINUE if every table finished all the same), or re-raises the first
    error a writer raised, once every writer has stopped.
    """

    def __init__(self, *, pending: list[Unit], parents: dict[str, set[str]], tables_done: int, on_batch: OnBatch):
        self.waiting = list(pending)  # not started, in serial order: of the ready ones the first starts first
        self.parents = parents
        self.tables_done = tables_done
        self.on_batch = on_batch
        self.stop = Control.CONTINUE
        self.error: BaseException | None = None
        self.events: queue.SimpleQueue[_Reported | _Finished] = queue.SimpleQueue()
        self.in_flight: dict[str, threading.Thread] = {}  # by unit name
        self.told_to_stop: set[str] = set()
        self.unfinished = Counter(unit.table for unit in pending)  # units left per table

    def run(self, copy: Copy, lanes: list[Lane]) -> Control:
        free = list(lanes)
        try:
            while self.waiting or self.in_flight:
                if self.stop is Control.CONTINUE and self.error is None:
                    for unit in self._ready()[: len(free)]:
                        self._start(copy, unit, free.pop(0))
                if not self.in_flight:
                    break  # stopped or failed: the units not started stay for a resume
                self._handle(self.events.get(), free)
        except BaseException:
            # This thread is leaving (a job timeout, a database error while recording progress):
            # every writer is told to stop and is waited for, so none outlives its connections.
            self.stop = Control.PAUSE if self.stop is Control.CONTINUE else self.stop
            while self.in_flight:
                self._handle(self.events.get(), free)
            raise
        if self.error is not None:
            raise self.error
        return self.stop if +self.unfinished else Control.CONTINUE

    def _ready(self) -> list[Unit]:
        """Units not started whose table's parents have all finished."""
        return [unit for unit in self.waiting if not any(self.unfinished[p] for p in self.parents.get(unit.table, ()))]

    def _start(self, copy: Copy, unit: Unit, lane: Lane) -> None:
        def report_batch(batch: BatchDone) -> Control:
            reported = _Reported(batch)
            self.events.put(reported)
            return reported.answer.result()

        def work() -> None:
            error = None
            try:
                copy(unit, lane, report_batch)
            except BaseException as raised:  # handed to the run's thread, which decides
                error = raised
            self.events.put(_Finished(unit, lane, error))

        self.waiting.remove(unit)
        # The writer logs under the run's log context (run and agency ids), as the run's thread does.
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(work,), name=f"write-{unit.name}", daemon=True)
        self.in_flight[unit.name] = thread
        thread.start()

    def _handle(self, event: _Reported | _Finished, free: list[Lane]) -> None:
        if isinstance(event, _Reported):
            try:
                answer = self._answer(event.batch)
            except BaseException:
                event.answer.set_result(Control.PAUSE)  # the writer must not wait for an answer forever
                raise
            if answer is not Control.CONTINUE:
                self.told_to_stop.add(event.batch.unit)
            event.answer.set_result(answer)
            return
        self.in_flight.pop(event.unit.name).join()
        free.append(event.lane)
        free.sort(key=lambda lane: lane.number)
        if event.error is None:
            self.unfinished[event.unit.table] -= 1
            self.tables_done += 0 if self.unfinished[event.unit.table] else 1
        elif self.error is None and event.unit.name not in self.told_to_stop:
            self.error = event.error

    def _answer(self, batch: BatchDone) -> Control:
        if self.error is not None:
            return Control.PAUSE  # another writer failed: stop here, keep what is committed
        if self.stop is not Control.CONTINUE:
            return self.stop
        last_of_its_table = batch.completed and self.unfinished[batch.table] == 1
        flight = Flight(tuple(self.in_flight), self.tables_done + (1 if last_of_its_table else 0))
        self.stop = self.on_batch(batch, flight)
        return self.stop


@contextmanager
def lanes_open(*, source: psycopg.Connection, target: psycopg.Connection, count: int) -> Iterator[list[Lane]]:
    """`count` writers' connections: the run's own, and `count - 1` more reading its snapshot."""
    lanes = [Lane(1, source, target)]
    if count < 2:
        yield lanes
        return
    snapshot = snapshot_export(source)
    with ExitStack() as stack:
        for number in range(2, count + 1):
            # Closed, never committed: a writer told to stop leaves its COPY from RevOS unfinished,
            # and every batch on the unified side committed already.
            reader = connect("revos", purpose="migration-read")
            stack.callback(reader.close)
            reader.read_only = True
            snapshot_join(reader, snapshot)
            writer = connect("unified", purpose="migration-write")
            stack.callback(writer.close)
            lanes.append(Lane(number, reader, writer))
        yield lanes


def tables_write(
    *,
    pending: list[Unit],
    parents: dict[str, set[str]],
    tables_done: int,
    writers: int,
    source: psycopg.Connection,
    target: psycopg.Connection,
    copy: Copy,
    on_batch: OnBatch,
) -> Control:
    """Write every pending unit, up to `writers` at once; see TableScheduler."""
    started = time.monotonic()
    with lanes_open(source=source, target=target, count=max(1, min(writers, len(pending)))) as lanes:
        scheduler = TableScheduler(pending=pending, parents=parents, tables_done=tables_done, on_batch=on_batch)
        outcome = scheduler.run(copy, lanes)
    logger.info("%s units written by %s writers in %.1f s", len(pending), len(lanes), time.monotonic() - started)
    return outcome
