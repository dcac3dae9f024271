"""Move one agency from RevOS into the unified database: stream, transform, upsert, checkpoint.

Reads come from one REPEATABLE READ snapshot of RevOS (a consistent picture of the agency while
RevOS keeps writing) through COPY ... TO STDOUT. Writes go in batches: COPY into a temporary
staging table, then INSERT ... ON CONFLICT (id) DO UPDATE, the id map and the table's checkpoint,
all in one transaction. A killed run therefore resumes at its last committed batch, and a re-run
converges to the same rows instead of duplicating them. A table none of the agency's runs has
written yet (a first load) is copied straight into its table instead, its foreign keys checked
once per batch rather than row by row (BatchWriter._write_new). A session advisory lock, held on the
writing connection for the whole run, keeps a second run of the same agency out; PostgreSQL
releases it when that connection dies, so a crashed worker never leaves it behind.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import itertools
import logging
import platform
import queue
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from operator import itemgetter
from typing import Any, cast
from uuid import UUID

import psycopg
from psycopg import sql

from migration_jobs.etl import capture, id_map
from migration_jobs.etl.accounts import (
    AccountConflict,
    Match,
    accounts_match,
    identities_match,
    merged_people,
    source_emails,
)
from migration_jobs.etl.catalog import catalog_read, table_identifier
from migration_jobs.etl.connections import connect, fetch_row, fetch_value
from migration_jobs.etl.plan import (
    MappingError,
    TablePlan,
    app_triggers_plan,
    id_range_conditions,
    migration_plan_build,
    unmapped_source_tables,
)
from migration_jobs.etl.scheduler import (
    BatchDone,
    Copy,
    Flight,
    Lane,
    OnBatch,
    ReportBatch,
    Unit,
    table_dependencies,
    table_parents,
    tables_write,
    units_plan,
)
from migration_jobs.etl.scheduler import (
    Control as Control,  # re-exported: a run's on_progress answers with it
)
from migration_jobs.etl.tally import OnTally, TableTally
from migration_jobs.etl.unified_guard import unified_guard_forget
from migration_jobs.mapping import Identity

logger = logging.getLogger(__name__)

CHECKPOINT = sql.SQL("controlplane.checkpoint")
# A batch also ends at this size: with several writers each holding about three batches (read
# ahead, being written, in the COPY buffer), rows-only batches of a wide table (3 to 5 MiB per 20,000
# rows of messages or comments) made the worker's peak grow once large tables were split.
BATCH_BYTES = 2 << 20
# A catch-up compares an uncaptured table's rows with the unified ones through a set of their
# digests (about 80 bytes a row in Python): above this many rows it writes them all, as a full
# re-read does, rather than hold a set that grows with the table.
AS_THEY_ARE_MAX_ROWS = 200_000
RUN_PHASES_MESSAGE = "run phases (s)"  # the benchmark finds the run's own steps in the worker's log by it
NORMALIZED_NAME = "lower(regexp_replace(trim({}), '[^[:alnum:]]+', ' ', 'g'))"


class AgencyBusy(Exception):
    """Another run holds this agency's lock."""


class MigrationStopped(Exception):
    """Staff paused or cancelled the run; every committed batch and checkpoint stays."""

    def __init__(self, control: Control):
        super().__init__(f"Stopped at a batch boundary: {control.value} requested.")
        self.control = control


class RowRejected(Exception):
    """A source row the unified schema refuses; the batch it was in was not written."""

    def __init__(self, *, table: str, source_id: str, batch: int, reason: str):
        super().__init__(f"{table}: source row {source_id} was refused (batch {batch}): {reason}")
        self.table, self.source_id, self.batch, self.reason = table, source_id, batch, reason


@dataclass
class TableOutcome:
    source: str
    target: str
    source_rows: int = 0
    inserted: int = 0
    updated: int = 0
    reused: int = 0
    deleted: int = 0
    seconds: float = 0.0  # spent copying the table in this run (the per-table report shows it)
    # Where those writer-seconds went (PhaseClock's names), so a slow run says which step cost it.
    phases: dict[str, float] = field(default_factory=dict)


@dataclass
class Progress:
    table: str
    tables_done: int
    tables_total: int
    rows_done: int
    rows_total: int
    rows_per_second: float
    batch: int
    in_flight: tuple[str, ...] = ()  # every table (or part of a split table) being written now


@dataclass
class MigrationReport:
    tables: dict[str, TableOutcome] = field(default_factory=dict)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {name: vars(outcome) for name, outcome in self.tables.items()}


def lock_key(agency_id: UUID) -> sql.Composed:
    return sql.SQL("hashtextextended({}, 0)").format(sql.Literal(f"controlplane.agency:{agency_id}"))


class PhaseClock:
    """Seconds spent per step of a table's writing, on one writer's thread (merged into the report
    once the table or part is done). A monotonic clock read per statement costs nothing beside it."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    @contextmanager
    def measure(self, phase: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.seconds[phase] += time.monotonic() - began

    def merge_into(self, phases: dict[str, float]) -> None:
        for phase, seconds in self.seconds.items():
            phases[phase] = round(phases.get(phase, 0.0) + seconds, 3)


@functools.cache
def large_buffers_returned() -> None:
    """Serve buffers of 1 MiB and more with mmap, so that each batch's memory goes back to the
    system once it is written.

    After the first large free, glibc raises its mmap threshold and carves later batch buffers out
    of the heap, where fragmentation keeps them: a worker's peak RSS then grew with the number of
    batches (67 MiB for a 100k-row agency, 96 MiB for 5M). Fixing the threshold also stops that
    adjustment. Elsewhere than glibc this does nothing.
    """
    if platform.libc_ver()[0] != "glibc":
        return
    m_mmap_threshold = -3  # <malloc.h>
    ctypes.CDLL(None).mallopt(m_mmap_threshold, 1 << 20)


@contextmanager
def agency_lock(connection: psycopg.Connection, agency_id: UUID) -> Iterator[None]:
    """Hold the agency's session advisory lock, or raise AgencyBusy at once."""
    acquired = fetch_value(connection.execute(sql.SQL("SELECT pg_try_advisory_lock({})").format(lock_key(agency_id))))
    connection.commit()
    if not acquired:
        raise AgencyBusy(f"Another run of agency {agency_id} is in progress (its lock is held).")
    try:
        yield
    finally:
        if not connection.closed:
            connection.rollback()
            connection.execute(sql.SQL("SELECT pg_advisory_unlock({})").format(lock_key(agency_id)))
            connection.commit()


@dataclass
class RunState:
    """What one execution learns and counts as it goes, kept apart from what it was asked to do."""

    # Check a first load's foreign keys set-wise: asked for, the role may turn row triggers off, and
    # the target agency's writes are not captured there (where they are, its rows keep every row
    # trigger: the capture's record of them is what the cutover's check inside its fence reads).
    set_checks: bool = False
    started: float = 0.0  # time.monotonic() once the tables start copying
    rows_done: int = 0  # counted on the run's thread, as the writers report their batches
    rows_total: int = 0
    tables_total: int = 0
    batch_numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))  # next() is atomic
    # The parts of a split table add to one outcome from several writer threads.
    report_lock: threading.Lock = field(default_factory=threading.Lock)
    units_left: Counter[str] = field(default_factory=Counter)  # target table -> units of it not written yet
    analyzed: set[str] = field(default_factory=set)  # target tables ANALYZEd by the writers


@dataclass
class AgencyMigration:
    """One execution of one agency's migration; see the module docstring for the guarantees."""

    source_agency_id: UUID
    target_agency_id: UUID
    link_existing: bool
    batch_size: int
    # Check a first load's foreign keys set-wise, where the role may turn row triggers off.
    set_based_checks: bool = True
    on_progress: Callable[[Progress], Control] = lambda progress: Control.CONTINUE
    on_locked: Callable[[], None] = lambda: None  # called once the run holds the agency's lock
    client_links: dict[str, str] = field(default_factory=dict)  # source client id -> unified id
    # Source table -> the only ids to bring level (a catch-up from the change capture, see
    # etl/catch_up.py); None re-reads every row of the agency.
    changed_ids: dict[str, list[str]] | None = None
    # Source table -> ids written since the snapshot of an interrupted earlier attempt of this full
    # read (CapturedMigration reads them from the capture); None: not known. See `_begun_bring_level`.
    resumed_changes: dict[str, list[str]] | None = None
    writers: int = 1  # tables written at once, each over its own connections (etl/scheduler.py)
    split_rows: int = 100_000  # a table with more rows is written by all the writers, in id ranges
    state: RunState = field(default_factory=RunState, init=False, repr=False)

    def run(self) -> MigrationReport:
        large_buffers_returned()
        with connect("revos", purpose="migration-read") as source, connect("unified") as target:
            source.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            source.read_only = True
            with agency_lock(target, self.source_agency_id):
                self.on_locked()
                return self.run_holding_lock(source, target)

    # The run, under the lock -------------------------------------------------------------

    def _captured_here(self, target: psycopg.Connection) -> bool:
        """Are the target agency's writes captured on the target (a cut-over agency's reverse capture)?

        Turning row triggers off for a set-based check turns the capture trigger off too: its
        writes would then be neither recorded for the switch back nor held by its fence.
        """
        return bool(capture.agencies_registered(target, [self.target_agency_id]))

    def run_holding_lock(self, source: psycopg.Connection, target: psycopg.Connection) -> MigrationReport:
        """The run, by a caller that holds the agency's lock on `target` already: `run` takes it, a
        cutover holds it over its catch-ups (etl/catch_up.py catch_up_rounds, services/kinds/cutover.py)."""
        source_catalog = catalog_read(source)
        if unmapped := unmapped_source_tables(source_catalog):
            # Its rows would stay behind unseen, and the apps would lose them at the cutover.
            raise MappingError(
                f"RevOS has tables nobody mapped: {', '.join(unmapped)}. Map each in migration_jobs/mapping.py"
                " (TABLE_MAPS), or declare it left behind, with the reason, in NOT_MIGRATED."
            )
        plans = migration_plan_build(source=source_catalog, target=catalog_read(target))
        report = MigrationReport({p.source: TableOutcome(p.source, p.target) for p in plans})
        if self.changed_ids is not None:  # cost follows the changed rows: untouched tables are skipped
            plans = [p for p in plans if p.source in self.changed_ids or not p.entry.captured]
        clock = PhaseClock()  # the run's own steps, logged at the end (tables: TableOutcome.phases)
        with clock.measure("source counts"):
            totals = {
                p.source: fetch_value(
                    source.execute(p.count_query(source_agency_id=self.source_agency_id, ids=self._ids(p)))
                )
                for p in plans
            }
        for plan in plans:
            report.tables[plan.source].source_rows = totals[plan.source]
        had_previous = self._has_previous_rows(target)
        set_checks = self.set_based_checks and row_triggers_skippable(target) and not self._captured_here(target)
        with clock.measure("identities"):
            remap = self._resolve_identities(source, target, plans, report)
        checkpoints = self._checkpoints(target)
        self.state = RunState(
            set_checks=set_checks,
            started=time.monotonic(),
            rows_done=sum(c[1] for c in checkpoints.values()),
            rows_total=sum(totals.values()),
            tables_total=len(plans),
        )
        with clock.measure("table copy"):
            self._copy_tables(source, target, plans, remap, checkpoints, report, totals)
        with clock.measure("deletions"):
            if had_previous or self.changed_ids is not None:
                for plan in reversed(plans):
                    report.tables[plan.source].deleted = self._delete_vanished(source, target, plan)
            target.execute(sql.SQL("DELETE FROM {} WHERE agency_id = %s").format(CHECKPOINT), [self.source_agency_id])
            target.commit()
        with clock.measure("statistics"):
            if self.changed_ids is None:  # a few changed rows leave the statistics as good as they were
                self._analyze(target, plans)
        logger.info(
            "%s: %s",
            RUN_PHASES_MESSAGE,
            ", ".join(f"{phase} {seconds:.3f}" for phase, seconds in clock.seconds.items()),
            extra={"agency_id": str(self.source_agency_id)},
        )
        return report

    def _copy_tables(
        self,
        source: psycopg.Connection,
        target: psycopg.Connection,
        plans: list[TablePlan],
        remap: dict[str, str],
        checkpoints: dict[str, tuple[UUID | None, int, bool]],
        report: MigrationReport,
        totals: dict[str, int],
    ) -> None:
        """Every table (or part) not completed yet, `writers` at a time, parents first (etl/scheduler.py)."""
        references = table_dependencies(target)
        units = units_plan(
            plans,
            rows=totals,
            checkpoint_keys=list(checkpoints),
            references=references,
            writers=self.writers,
            split_rows=self.split_rows,
        )
        completed = {unit.name for unit in units if checkpoints.get(unit.name, (None, 0, False))[2]}
        unfinished_tables = {unit.table for unit in units if unit.name not in completed}
        tables_done = len({unit.table for unit in units} - unfinished_tables)
        parents = table_parents(plans, references)
        self._begun_bring_level(source, target, units, checkpoints, parents, remap, report, tables_done)
        self.state.units_left = Counter(unit.plan.target for unit in units if unit.name not in completed)
        self._units_write(
            pending=[unit for unit in units if unit.name not in completed],
            parents=parents,
            tables_done=tables_done,
            source=source,
            target=target,
            copy=lambda unit, lane, report_batch: self._copy_table(
                lane, unit, remap, checkpoints.get(unit.name, (None, 0, False))[0], report, report_batch
            ),
            on_batch=self._progress,
        )

    def _units_write(
        self,
        *,
        pending: list[Unit],
        parents: dict[str, set[str]],
        tables_done: int,
        source: psycopg.Connection,
        target: psycopg.Connection,
        copy: Copy,
        on_batch: OnBatch,
    ) -> None:
        """Write the units over `self.writers` writers (etl/scheduler.py); a pause or cancel stops the run."""
        control = tables_write(
            pending=pending,
            parents=parents,
            tables_done=tables_done,
            writers=self.writers,
            source=source,
            target=target,
            copy=copy,
            on_batch=on_batch,
        )
        if control is not Control.CONTINUE:
            raise MigrationStopped(control)

    def _begun_bring_level(
        self,
        source: psycopg.Connection,
        target: psycopg.Connection,
        units: list[Unit],
        checkpoints: dict[str, tuple[UUID | None, int, bool]],
        parents: dict[str, set[str]],
        remap: dict[str, str],
        report: MigrationReport,
        tables_done: int,
    ) -> None:
        """A resumed full read: first re-read, in this run's snapshot, the rows of the units an
        interrupted attempt wrote (up to its checkpoint) that changed since that attempt's snapshot.

        The rest of the tables is read in this run's snapshot, newer than the one those units were
        written from: a comment read now may reference a post inserted after the older snapshot,
        which the finished posts unit never saw, and its foreign key would refuse it. With the
        changed rows brought level first, parents before children, what the interrupted attempt
        wrote is this snapshot's too. (A table starts only once its parents have finished, so the
        parents of a begun unit were begun, and are brought level, too.) The written rows of a
        table the capture does not record are all read again.
        """
        changed = self._begun_changed(units, checkpoints)
        if not changed:
            return
        logger.info(
            "resuming: %s rows written by the interrupted attempt changed since, in %s units",
            sum(len(ids) for ids in changed.values() if ids is not None),
            len(changed),
            extra={"agency_id": str(self.source_agency_id)},
        )
        self._units_write(
            pending=[unit for unit in units if unit.name in changed],
            parents=parents,
            tables_done=tables_done,
            source=source,
            target=target,
            copy=lambda unit, lane, report_batch: self._copy_table(
                lane, unit, remap, None, report, report_batch, again=Again(changed[unit.name])
            ),
            # Rows counted once: the checkpoints counted them when they were first written.
            on_batch=lambda batch, flight: self._progress(
                replace(batch, rows=0), replace(flight, tables_done=tables_done)
            ),
        )

    def _begun_changed(
        self, units: list[Unit], checkpoints: dict[str, tuple[UUID | None, int, bool]]
    ) -> dict[str, list[str] | None]:
        """Unit name -> the ids, within what its interrupted attempt wrote, that changed since (None:
        all of them, for a table the capture does not record); units with none are left out."""
        if self.resumed_changes is None or self.changed_ids is not None:
            return {}
        changed: dict[str, list[str] | None] = {}
        for unit in units:
            last_id, _, completed = checkpoints.get(unit.name, (None, 0, False))
            if last_id is None and not completed:
                continue  # nothing of it written yet
            if not unit.plan.entry.captured:
                changed[unit.name] = None
                continue
            low, high = unit.id_range
            ids = [
                row_id
                for row_id in self.resumed_changes.get(unit.table, [])
                if (low is None or UUID(row_id) >= low)
                and (high is None or UUID(row_id) < high)
                and (completed or last_id is None or UUID(row_id) <= last_id)
            ]
            if ids:
                changed[unit.name] = ids
        return changed

    def _ids(self, plan: TablePlan) -> list[str] | None:
        if self.changed_ids is None or not plan.entry.captured:
            return None  # every row of the agency
        return self.changed_ids.get(plan.source, [])

    def _analyze(self, target: psycopg.Connection, plans: list[TablePlan]) -> None:
        """Refresh the planner's statistics of what the run wrote (the tables the writers did not
        analyze already: those an earlier run of the agency finished), and of the id map.

        The verification queued next reads these tables at once, before autovacuum would; with the
        statistics of the empty tables the planner picks nested loops that re-scan the id map per row.
        """
        tables = [t for t in dict.fromkeys(p.target for p in plans) if t not in self.state.analyzed]
        for table in [*(table_identifier(t) for t in tables), id_map.ID_MAP]:
            target.execute(sql.SQL("ANALYZE {}").format(table))
        target.commit()

    def _analyze_if_written(self, target: psycopg.Connection, plan: TablePlan) -> None:
        """ANALYZE the plan's target once the last unit writing it is done, on the writer that wrote
        it last: beside the other writers' tables rather than after them all, at the end of the run."""
        with self.state.report_lock:
            self.state.units_left[plan.target] -= 1
            last = self.state.units_left[plan.target] == 0
        if last and self.changed_ids is None:  # a few changed rows leave the statistics as good as they were
            target.execute(sql.SQL("ANALYZE {}").format(table_identifier(plan.target)))
            target.commit()
            with self.state.report_lock:
                self.state.analyzed.add(plan.target)

    def _has_previous_rows(self, target: psycopg.Connection) -> bool:
        with target.cursor() as cursor:
            previous = id_map.agency_has_mapped_rows(cursor, agency_id=self.source_agency_id)
        target.commit()
        return previous

    def _checkpoints(self, target: psycopg.Connection) -> dict[str, tuple[UUID | None, int, bool]]:
        rows = target.execute(
            sql.SQL("SELECT source_table, last_source_id, rows_done, completed FROM {} WHERE agency_id = %s").format(
                CHECKPOINT
            ),
            [self.source_agency_id],
        ).fetchall()
        target.commit()
        return {table: (last_id, done, completed) for table, last_id, done, completed in rows}

    # Identity: rows AudienceOS already has are reused, never duplicated -------------------

    def _resolve_identities(
        self, source: psycopg.Connection, target: psycopg.Connection, plans: list[TablePlan], report: MigrationReport
    ) -> dict[str, str]:
        """Record which source rows are existing unified rows; return source id -> unified id."""
        matches, conflicts = agency_identity_matches(
            source,
            target,
            plans,
            source_agency_id=self.source_agency_id,
            target_agency_id=self.target_agency_id,
            link_existing=self.link_existing,
            client_links=self.client_links,
        )
        if conflicts:
            target.rollback()
            raise RowRejected(table="auth.users", source_id=conflicts[0].source_id, batch=0, reason=str(conflicts[0]))
        self._refuse_other_agencies_rows(target, matches)
        with target.cursor() as cursor:
            id_map.identities_record(cursor, agency_id=self.source_agency_id, matches=matches)
            remap = id_map.agency_reused_ids(cursor, agency_id=self.source_agency_id)
        target.commit()
        for source_table, _, _, _ in matches:
            report.tables[source_table].reused += 1
        return remap

    def _refuse_other_agencies_rows(self, target: psycopg.Connection, matches: list[tuple[str, str, str, str]]) -> None:
        """A reused row must be the target agency's: the tenant foreign keys refuse references to
        another agency's rows, so a user matched by email in another agency stops the run here,
        before anything is written, rather than at the first row that references it."""
        for source_table, source_id, table, target_id in matches:
            if table == "agency" or "." in table:
                continue  # accounts: refused by agency_identity_matches (an account of another agency's person)
            owner = target.execute(
                sql.SQL("SELECT agency_id FROM {} WHERE id = %s").format(sql.Identifier(table)), [target_id]
            ).fetchone()
            if owner is not None and str(owner[0]) != str(self.target_agency_id):
                target.rollback()
                raise RowRejected(
                    table=source_table,
                    source_id=source_id,
                    batch=0,
                    reason=f"it is {table} {target_id} of unified agency {owner[0]} (same email), and rows may "
                    f"reference their own agency's {table} rows only: link this agency as existing {owner[0]}, "
                    f"or move that {table} first",
                )

    # Copy: stream the source, write batches ------------------------------------------------

    def _copy_table(
        self,
        lane: Lane,
        unit: Unit,
        remap: dict[str, str],
        last_id: UUID | None,
        report: MigrationReport,
        report_batch: ReportBatch,
        *,
        again: Again | None = None,
    ) -> None:
        """Stream one table (or one part of it) on a writer's connections: a reader thread fills
        batches while this thread writes the previous one. `again`: rows the unit's interrupted
        attempt wrote, read again by id, its checkpoint left as it is (`_begun_bring_level`)."""
        began = time.monotonic()
        source, target, plan = lane.source, lane.target, unit.plan
        query = plan.source_query(
            source_agency_id=self.source_agency_id,
            target_agency_id=self.target_agency_id,
            after_id=last_id,
            ids=self._ids(plan) if again is None else again.ids,
            id_range=unit.id_range,
        )
        # Set-wise checks stand in for the foreign-key triggers, so the batches run in replica mode
        # and the apps' own triggers (handle_new_user, ...) stay quiet for rows that are copies.
        quiet = self.state.set_checks and plan.references is not None
        first_load = quiet and again is None and not self._written_ahead(target, unit, last_id)
        writer = BatchWriter(
            target,
            plan,
            self.source_agency_id,
            first_load=first_load,
            quiet=quiet,
            checkpoint_key=unit.name,
            checkpointed=again is None,
        )
        as_they_are: frozenset[bytes] = frozenset()
        if self._compared(plan, report):
            with writer.clock.measure("rows as they are"):
                as_they_are = self._rows_as_they_are(target, writer, unit)
        logger.info(
            "writer %s: %s %s -> %s: %s",
            lane.number,
            "table" if again is None else "changed since the interrupted attempt:",
            unit.name,
            plan.target,
            "first load, foreign keys checked per batch"
            if first_load
            else f"upsert, foreign keys checked per {'batch' if quiet else 'row'}",
            extra={"agency_id": str(self.source_agency_id)},
        )
        batches: queue.Queue[_Batch | BaseException] = queue.Queue(
            maxsize=1
        )  # one batch read ahead: memory stays at ~3 batches
        stop = threading.Event()
        reader = threading.Thread(
            target=self._read_batches,
            args=(source, plan, remap, sql.SQL("COPY ({}) TO STDOUT").format(query), batches, stop, as_they_are),
            name=f"read-{unit.name}",
            daemon=True,
        )
        reader.start()
        try:
            while True:
                with writer.clock.measure("waiting for RevOS"):  # the reader is behind: the source is slower
                    batch = batches.get()
                if isinstance(batch, BaseException):
                    raise batch
                # Rows an existing unified row stands for (batch.skipped) are counted, not written.
                self._flush(writer, batch.rows, report, report_batch, skipped=batch.skipped, completed=batch.last)
                if batch.last:
                    break
            if again is None:
                with writer.clock.measure("statistics"):
                    self._analyze_if_written(target, plan)
        finally:
            stop.set()
            reader.join()
            outcome = report.tables[plan.source]
            with self.state.report_lock:  # a split table's seconds are its parts' writer-seconds
                outcome.seconds = round(outcome.seconds + time.monotonic() - began, 3)
                writer.clock.merge_into(outcome.phases)

    def _written_ahead(self, target: psycopg.Connection, unit: Unit, last_id: UUID | None) -> bool:
        """Has a run of this agency already written rows of the table (within the unit's id range)
        beyond its checkpoint?"""
        with target.cursor() as cursor:
            ahead = id_map.table_written_ahead(
                cursor,
                agency_id=self.source_agency_id,
                source_table=unit.table,
                last_id=last_id,
                id_range=unit.id_range,
            )
        target.commit()
        return ahead

    def _compared(self, plan: TablePlan, report: MigrationReport) -> bool:
        """Is this an uncaptured table (mapping.TableMap.captured), re-read whole by a catch-up that
        otherwise reads only what the capture says changed, and small enough to compare its rows
        with the unified ones before writing them (AS_THEY_ARE_MAX_ROWS)?"""
        reread_whole = self.changed_ids is not None and not plan.entry.captured
        return reread_whole and report.tables[plan.source].source_rows <= AS_THEY_ARE_MAX_ROWS

    def _rows_as_they_are(self, target: psycopg.Connection, writer: BatchWriter, unit: Unit) -> frozenset[bytes]:
        """Digests of the unified rows the agency's runs inserted from the unit's table (within its id
        range: an inserted row kept its source id), in COPY text.

        A catch-up re-reads an uncaptured table (the accounts) whole; a source row that comes out,
        ids rewritten, as exactly this text would be written as it is (the upsert changes nothing
        then), so it is not written at all: the fenced catch-up of a cutover writes the few
        accounts that changed rather than every account of the agency. Both sides print in the
        session settings etl/connections.py gives every connection; a row that prints otherwise
        (another type, another server version) is written, as before.
        """
        plan = writer.plan
        inserted = id_map.inserted_ids(agency_id=self.source_agency_id, source_table=plan.source)
        conditions = [sql.SQL("id IN ({})").format(inserted), *id_range_conditions(unit.id_range)]
        query = sql.SQL("COPY (SELECT {} FROM {} WHERE {}) TO STDOUT").format(
            writer.column_list, plan.target_table, sql.SQL(" AND ").join(conditions)
        )
        with target.cursor() as cursor, cursor.copy(query) as copy:
            digests = frozenset(_row_digest(data) for data in copy)
        target.commit()
        return digests

    def _read_batches(
        self,
        source: psycopg.Connection,
        plan: TablePlan,
        remap: dict[str, str],
        statement: sql.Composed,
        batches: queue.Queue[_Batch | BaseException],
        stop: threading.Event,
        as_they_are: frozenset[bytes],
    ) -> None:
        """Reader thread: COPY rows as they come (bytes, one per row), reused rows dropped, ids
        rewritten, rows the unified database holds as they are (`as_they_are`) dropped.

        Rows stay in COPY's text format from the source to the staging table: fields are split on
        tabs (a tab inside a value is escaped as \\t) only where an id must be looked at.
        """

        def hand_over(item: _Batch | BaseException) -> bool:
            while not stop.is_set():
                try:
                    batches.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            reused = {key.encode() for key in remap}
            rewrite = {key.encode(): value.encode() for key, value in remap.items()}
            positions, id_at = plan.remap_positions, plan.target_columns.index("id")
            rows, skipped = CopyRows(), 0
            with source.cursor() as cursor, cursor.copy(statement) as copy:
                for data in copy:
                    if reused:
                        fields = bytes(data)[:-1].split(b"\t")
                        if fields[id_at] in reused:
                            skipped += 1
                            continue
                        if positions:
                            for position in positions:
                                fields[position] = rewrite.get(fields[position], fields[position])
                            data = b"\t".join(fields) + b"\n"
                    if as_they_are and _row_digest(data) in as_they_are:
                        skipped += 1
                        continue
                    rows.append(data)
                    if len(rows) >= self.batch_size or len(rows.data) >= BATCH_BYTES:
                        if not hand_over(_Batch(rows, skipped, last=False)):
                            return
                        rows, skipped = CopyRows(), 0
            hand_over(_Batch(rows, skipped, last=True))
        except BaseException as error:  # handed to the writing thread, which raises it
            hand_over(error)

    def _flush(
        self,
        writer: BatchWriter,
        batch: CopyRows,
        report: MigrationReport,
        report_batch: ReportBatch,
        *,
        skipped: int,
        completed: bool,
    ) -> None:
        """Write one batch on a writer's thread, then stop there if the run's thread says so."""
        number = next(self.state.batch_numbers)
        inserted, updated = writer.write(batch, batch_no=number, completed=completed)
        outcome = report.tables[writer.plan.source]
        with self.state.report_lock:
            outcome.inserted += inserted
            outcome.updated += updated
        if completed:
            logger.info(
                "%s %s -> %s done: %s inserted, %s updated",
                "table" if writer.checkpointed else "changed since the interrupted attempt:",
                writer.checkpoint_key,
                writer.plan.target,
                outcome.inserted,
                outcome.updated,
                extra={"agency_id": str(self.source_agency_id)},
            )
        done = BatchDone(writer.plan.source, writer.checkpoint_key, number, len(batch) + skipped, completed)
        with writer.clock.measure("progress and control"):  # the run's thread records it in Django
            control = report_batch(done)
        if control is not Control.CONTINUE and not completed:
            raise MigrationStopped(control)

    def _progress(self, batch: BatchDone, flight: Flight) -> Control:
        """On the run's thread: count the batch and hand progress over, which answers with a control."""
        self.state.rows_done += batch.rows
        elapsed = max(time.monotonic() - self.state.started, 1e-6)
        return self.on_progress(
            Progress(
                table=batch.unit,
                tables_done=flight.tables_done,
                tables_total=self.state.tables_total,
                rows_done=self.state.rows_done,
                rows_total=self.state.rows_total,
                rows_per_second=self.state.rows_done / elapsed,
                batch=batch.number,
                in_flight=flight.in_flight,
            )
        )

    # Catch-up: rows deleted at the source leave the unified database -----------------------

    def _delete_vanished(self, source: psycopg.Connection, target: psycopg.Connection, plan: TablePlan) -> int:
        """Remove unified rows this agency's migration inserted whose source row is gone."""
        target.execute("CREATE TEMP TABLE IF NOT EXISTS seen_source_id (id uuid PRIMARY KEY) ON COMMIT DELETE ROWS")
        with (
            source.cursor() as reader,
            reader.copy(
                sql.SQL("COPY ({}) TO STDOUT").format(
                    plan.source_ids_query(source_agency_id=self.source_agency_id, ids=self._ids(plan))
                )
            ) as ids_out,
            target.cursor().copy("COPY seen_source_id (id) FROM STDIN") as ids_in,
        ):
            for data in ids_out:
                ids_in.write(data)
        ids = self._ids(plan)
        deleted = target.execute(
            id_map.vanished_delete(plan.target), [self.source_agency_id, plan.source, ids, ids]
        ).rowcount
        target.commit()
        return deleted


def _row_digest(row: bytes | bytearray | memoryview) -> bytes:
    """A row's COPY text, in 16 bytes (a set of them stands for the rows without holding them)."""
    return hashlib.blake2b(row, digest_size=16).digest()


class CopyRows:
    """A batch of COPY text rows in one buffer, as they go to the server.

    One bytes object per row cost more memory than the rows themselves, and joining them for the
    COPY doubled it. COPY's text format escapes newlines inside values, so a newline byte always
    ends a row.
    """

    def __init__(self) -> None:
        self.data = bytearray()
        self._count = self._last_start = 0

    def append(self, row: bytes | bytearray | memoryview) -> None:
        self._last_start = len(self.data)
        self.data += row
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[bytes]:
        data, start = bytes(self.data), 0
        while start < len(data):
            end = data.index(b"\n", start) + 1
            yield data[start:end]
            start = end

    @property
    def last_row(self) -> bytes:
        return bytes(self.data[self._last_start :])


@dataclass(frozen=True)
class Again:
    """A unit's rows read a second time in a resumed run: these ids, or (None) every row."""

    ids: list[str] | None


@dataclass
class _Batch:
    rows: CopyRows
    skipped: int  # source rows an existing unified row stands for
    last: bool


class BatchWriter:
    """Writes batches of one table: staging COPY, upsert (or, on a first load, a plain insert),
    id map and checkpoint in one commit."""

    def __init__(
        self,
        connection: psycopg.Connection,
        plan: TablePlan,
        source_agency_id: UUID,
        *,
        first_load: bool = False,
        quiet: bool = False,  # every batch in replica mode, its foreign keys checked set-wise
        checkpoint_key: str | None = None,  # a part of a split table keeps a checkpoint of its own
        checkpointed: bool = True,  # False: the batches leave the checkpoint as it is
    ):
        self.connection, self.plan, self.source_agency_id = connection, plan, source_agency_id
        self.first_load, self.quiet = first_load, quiet or first_load
        self.checkpoint_key, self.checkpointed = checkpoint_key or plan.source, checkpointed
        self.clock = PhaseClock()
        self.id_at = plan.target_columns.index("id")
        self.stage = sql.Identifier(f"stage_{plan.source.replace('.', '_')}")
        columns = [sql.Identifier(c) for c in plan.target_columns]
        self.column_list = sql.SQL(", ").join(columns)
        connection.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} AS SELECT {} FROM {} WITH NO DATA").format(
                self.stage, self.column_list, plan.target_table
            )
        )
        connection.commit()
        changed = [c for c in columns if c.as_string(None) != '"id"']
        guard = sql.SQL("t.agency_id = EXCLUDED.agency_id AND ") if plan.target_has_agency else sql.SQL("")
        # One statement: upsert the batch and record the rows it inserted in the id map. Rows
        # already there that this agency's runs did not write (another agency's, or AudienceOS's
        # with a colliding id) are neither updated (the guard) nor recorded; `unrecorded` finds them.
        self.upsert = sql.SQL(
            "WITH up AS (INSERT INTO {target} AS t ({columns}) SELECT {columns} FROM {stage}"
            " ON CONFLICT (id) DO UPDATE SET {assignments}"
            " WHERE {guard}({current}) IS DISTINCT FROM ({incoming})"
            " RETURNING t.id, (xmax = 0) AS inserted),"
            " mapped AS ({mapped})"
            " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up"
        ).format(
            target=plan.target_table,
            columns=self.column_list,
            stage=self.stage,
            mapped=id_map.record_inserted(sql.SQL("up WHERE inserted"), skip_recorded=True),
            assignments=sql.SQL(", ").join(sql.SQL("{} = EXCLUDED.{}").format(c, c) for c in changed),
            guard=guard,
            current=sql.SQL(", ").join(sql.SQL("t.{}").format(c) for c in changed),
            incoming=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(c) for c in changed),
        )
        self.unrecorded = id_map.first_unrecorded(self.stage)
        self._copy_in = sql.SQL("COPY {} ({}) FROM STDIN").format(self.stage, self.column_list)
        self.copy_into_target = sql.SQL("COPY {} ({}) FROM STDIN").format(plan.target_table, self.column_list)
        self.map_ids = id_map.record_inserted(sql.SQL("unnest(%s::uuid[]) AS batch(id)"))
        self.reference_checks = [
            ReferenceCheck.build(column, parent, self.stage, same_agency=same_agency)
            for column, parent, same_agency in plan.references or ()
        ]
        self.key_checks = [
            KeysCheck.build(column, parent, plan.target_columns, same_agency=same_agency)
            for column, parent, same_agency in plan.references or ()
        ]
        self.checkpoint = sql.SQL(
            "INSERT INTO {} AS c (agency_id, source_table, last_source_id, rows_done, completed)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (agency_id, source_table) DO UPDATE SET"
            " last_source_id = coalesce(EXCLUDED.last_source_id, c.last_source_id),"
            " rows_done = c.rows_done + EXCLUDED.rows_done, completed = EXCLUDED.completed, updated_at = now()"
        ).format(CHECKPOINT)

    def _row_id(self, row: bytes) -> str:
        return row.rstrip(b"\n").split(b"\t")[self.id_at].decode()

    def write(self, rows: CopyRows, *, batch_no: int, completed: bool) -> tuple[int, int]:
        """Write one batch and its checkpoint atomically; RowRejected names a refused row."""
        try:
            if self.first_load and rows:
                try:
                    return self._write_new(rows, batch_no=batch_no, completed=completed)
                except psycopg.errors.UniqueViolation:
                    # An id is taken already: the upsert path below sorts out by whom.
                    self.connection.rollback()
            counts = self._write(rows, batch_no=batch_no, completed=completed)
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as error:
            self.connection.rollback()
            raise self._find_rejected_row(rows, batch_no, error) from error
        return counts

    def _write_new(self, rows: CopyRows, *, batch_no: int, completed: bool) -> tuple[int, int]:
        """Copy rows no run of this agency has written straight into their table, and check their
        foreign keys set-wise before the batch commits.

        The row-by-row foreign-key triggers cost most of a first load; in this transaction they are
        off (session_replication_role). The batch's ids and referenced keys are read from its COPY
        text, so nothing is staged: one query per foreign key checks the batch's distinct keys and
        takes the same FOR KEY SHARE locks on the parents that the triggers would, so a parent
        cannot be deleted before the batch commits. Collisions on id still fail, as do CHECK and
        NOT NULL constraints.

        The keys are checked per batch, not once when the table is done: a batch commits, and a row
        whose parent is missing would then stand in the table for everyone to read until the check
        found it, against the schema's own promise; and a parent deleted between two batches (an
        AudienceOS client a reused row stands for, by cascade) would go unseen by a check that
        trusted the earlier batches' answer.
        """
        connection, clock = self.connection, self.clock
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")
            with clock.measure("insert"), cursor.copy(self.copy_into_target) as copy:
                copy.write(rows.data)
            with clock.measure("batch keys"):
                keys = BatchKeys.read(rows, id_at=self.id_at, checks=self.key_checks)
            with clock.measure("foreign key checks"):
                for check, wanted in zip(self.key_checks, keys.referenced, strict=True):
                    if missing := check.missing(cursor, wanted):
                        connection.rollback()
                        raise self._orphan_rejected(rows, check, missing, batch_no)
            with clock.measure("id map"):
                parameters = [self.source_agency_id, self.plan.source, self.plan.target, uuid_array(keys.ids)]
                cursor.execute(self.map_ids, parameters)
        self._checkpoint_commit(keys.ids[-1].decode(), len(rows), completed)
        return len(rows), 0

    def _orphan_rejected(self, rows: CopyRows, check: KeysCheck, missing: set[Key], batch_no: int) -> RowRejected:
        """The batch's first row (they come in id order) whose parent is missing."""
        for row in rows:
            fields = row[:-1].split(b"\t")
            key = check.key_of(fields)
            if key in missing:
                value = fields[check.positions[0]].decode()
                reason = f"{check.column} {value} references no {check.parent} row of the row's agency (foreign key)"
                source_id = fields[self.id_at].decode()
                return RowRejected(table=self.plan.source, source_id=source_id, batch=batch_no, reason=reason)
        return RowRejected(table=self.plan.source, source_id="(unknown)", batch=batch_no, reason="a parent is missing")

    def _check_references(self, cursor: psycopg.Cursor, batch_no: int) -> None:
        """The staged batch's foreign keys, one query each (the triggers are off): RowRejected names
        the first row whose parent is missing, and the batch is undone."""
        for check in self.reference_checks:
            orphan = check.first_orphan(cursor)
            if orphan is not None:
                self.connection.rollback()
                raise RowRejected(table=self.plan.source, source_id=orphan[0], batch=batch_no, reason=orphan[1])

    def _checkpoint_commit(self, last_id: str | None, rows: int, completed: bool) -> None:
        with self.clock.measure("checkpoint and commit"):
            if self.checkpointed:
                parameters = [self.source_agency_id, self.checkpoint_key, last_id, rows, completed]
                self.connection.execute(self.checkpoint, parameters)
            self.connection.commit()

    def _write(self, rows: CopyRows, *, batch_no: int, completed: bool) -> tuple[int, int]:
        connection, clock = self.connection, self.clock
        inserted = updated = 0
        if rows:
            with connection.cursor() as cursor:
                if self.quiet:  # no row trigger fires, ours (ENABLE ALWAYS) excepted: see `_write_new`
                    cursor.execute("SET LOCAL session_replication_role = replica")
                with clock.measure("staging COPY"), cursor.copy(self._copy_in) as copy:
                    copy.write(rows.data)
                with clock.measure("upsert and id map"):
                    inserted, updated = fetch_row(
                        cursor.execute(self.upsert, [self.source_agency_id, self.plan.source, self.plan.target])
                    )
                with clock.measure("id map"):
                    foreign = cursor.execute(self.unrecorded, [self.plan.source]).fetchone()
                if foreign:
                    connection.rollback()
                    raise RowRejected(
                        table=self.plan.source,
                        source_id=str(foreign[0]),
                        batch=batch_no,
                        reason=f"its id is already taken by a {self.plan.target} row this agency's runs did not write",
                    )
                if self.quiet:
                    with clock.measure("foreign key checks"):
                        self._check_references(cursor, batch_no)
                with clock.measure("staging COPY"):
                    cursor.execute(sql.SQL("TRUNCATE {}").format(self.stage))
        self._checkpoint_commit(self._row_id(rows.last_row) if rows else None, len(rows), completed)
        return inserted, updated

    def _find_rejected_row(self, rows: CopyRows, batch_no: int, error: Exception) -> RowRejected:
        """Replay the batch row by row under savepoints to name the first row the schema refuses."""
        connection = self.connection
        try:
            for row in rows:
                try:
                    with connection.transaction(), connection.cursor() as cursor:
                        with cursor.copy(
                            sql.SQL("COPY {} ({}) FROM STDIN").format(self.stage, self.column_list)
                        ) as copy:
                            copy.write(row)
                        cursor.execute(self.upsert, [self.source_agency_id, self.plan.source, self.plan.target])
                        cursor.execute(sql.SQL("TRUNCATE {}").format(self.stage))
                        raise _Undo
                except _Undo:
                    continue
                except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as row_error:
                    return RowRejected(
                        table=self.plan.source,
                        source_id=self._row_id(row),
                        batch=batch_no,
                        reason=_reason(row_error),
                    )
        finally:
            connection.rollback()
        return RowRejected(table=self.plan.source, source_id="(unknown)", batch=batch_no, reason=_reason(error))


@dataclass(frozen=True)
class ReferenceCheck:
    """One foreign key of a staged batch, checked for the whole batch at once.

    A tenant key (sql/unified/0053) matches the parent on (id, agency_id), as its trigger would:
    a parent of another agency counts as missing.
    """

    column: str
    parent: str
    lock_parents: sql.Composed  # how many referenced keys are missing, locking those present
    find_orphan: sql.Composed

    @classmethod
    def build(cls, column: str, parent: str, stage: sql.Identifier, *, same_agency: bool = False) -> ReferenceCheck:
        ref, parent_table = sql.Identifier(column), table_identifier(parent)
        key, parent_key = sql.SQL("{}").format(ref), sql.SQL("p.id")
        if same_agency:
            key, parent_key = sql.SQL("{}, agency_id").format(ref), sql.SQL("(p.id, p.agency_id)")
        return cls(
            column,
            parent,
            sql.SQL(
                "SELECT (SELECT count(*) FROM (SELECT DISTINCT {key} FROM {stage} WHERE {ref} IS NOT NULL) AS refs)"
                " - (SELECT count(*) FROM (SELECT 1 FROM {parent} p WHERE {parent_key} IN"
                " (SELECT {key} FROM {stage} WHERE {ref} IS NOT NULL) FOR KEY SHARE) AS held)"
            ).format(key=key, ref=ref, stage=stage, parent=parent_table, parent_key=parent_key),
            sql.SQL(
                "SELECT s.id::text, s.{ref}::text FROM {stage} s WHERE s.{ref} IS NOT NULL"
                " AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.id = s.{ref}{same}) ORDER BY s.id LIMIT 1"
            ).format(
                ref=ref,
                stage=stage,
                parent=parent_table,
                same=sql.SQL(" AND p.agency_id = s.agency_id") if same_agency else sql.SQL(""),
            ),
        )

    def first_orphan(self, cursor: psycopg.Cursor) -> tuple[str, str] | None:
        """(row id, why) of the first staged row whose parent is missing, or None."""
        if fetch_value(cursor.execute(self.lock_parents)) == 0:
            return None
        row_id, value = fetch_row(cursor.execute(self.find_orphan))
        return row_id, f"{self.column} {value} references no {self.parent} row of the row's agency (foreign key)"


NULL = b"\\N"  # COPY text's NULL
Key = bytes | tuple[bytes, ...]  # a referenced key as COPY prints it: the value, or (value, agency_id)


@dataclass(frozen=True)
class KeysCheck:
    """One foreign key of a batch copied straight into its table, checked over the batch's distinct
    keys (read from its COPY text: BatchKeys). A tenant key (sql/unified/0053) matches the parent on
    (id, agency_id), as its trigger would: a parent of another agency counts as missing."""

    column: str
    parent: str
    positions: tuple[int, ...]  # the key's fields in a row: the column, and agency_id for a tenant key
    lock_parents: sql.Composed  # how many of the keys have a parent, locking those present
    find_missing: sql.Composed

    @classmethod
    def build(cls, column: str, parent: str, columns: Sequence[str], *, same_agency: bool = False) -> KeysCheck:
        parent_table = table_identifier(parent)
        positions: tuple[int, ...]
        if same_agency:
            positions = (columns.index(column), columns.index("agency_id"))
            keys = sql.SQL("SELECT * FROM unnest(%s::uuid[], %s::uuid[]) AS k(id, agency_id)")
            match = sql.SQL("(p.id, p.agency_id) IN ({})").format(keys)
            key_text = sql.SQL("k.id::text, k.agency_id::text")
            absent = sql.SQL("p.id = k.id AND p.agency_id = k.agency_id")
        else:
            positions = (columns.index(column),)
            keys = sql.SQL("SELECT * FROM unnest(%s::uuid[]) AS k(id)")
            match = sql.SQL("p.id IN ({})").format(keys)
            key_text, absent = sql.SQL("k.id::text"), sql.SQL("p.id = k.id")
        return cls(
            column,
            parent,
            positions,
            sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} p WHERE {} FOR KEY SHARE) AS held").format(
                parent_table, match
            ),
            sql.SQL("SELECT {} FROM ({}) k WHERE NOT EXISTS (SELECT 1 FROM {} p WHERE {})").format(
                key_text, keys, parent_table, absent
            ),
        )

    def key_of(self, fields: list[bytes]) -> Key | None:
        """The key of a row's COPY fields: the value, or (value, agency_id) for a tenant key; None
        where the reference is NULL."""
        return None if fields[self.positions[0]] == NULL else self.read_key(fields)

    @property
    def read_key(self) -> Callable[[list[bytes]], Key]:
        return itemgetter(*self.positions)

    def missing(self, cursor: psycopg.Cursor, keys: set[Key]) -> set[Key]:
        """Of `keys`, those without a parent; the parents present stay locked until the commit."""
        if not keys:
            return set()
        tenant = len(self.positions) > 1
        if tenant:
            columns = [uuid_array(column) for column in zip(*cast(set[tuple[bytes, ...]], keys), strict=True)]
        else:
            columns = [uuid_array(cast(set[bytes], keys))]
        if fetch_value(cursor.execute(self.lock_parents, columns)) == len(keys):
            return set()
        found = cursor.execute(self.find_missing, columns).fetchall()
        return {tuple(value.encode() for value in row) if tenant else row[0].encode() for row in found}


def uuid_array(values: Iterable[bytes]) -> str:
    """uuids' text as one array literal for a `%s::uuid[]` parameter: one string to send, where a
    list would be adapted item by item."""
    return "{" + b",".join(values).decode() + "}"


@dataclass
class BatchKeys:
    """A batch's ids, in order, and the distinct keys each foreign key references, from its COPY text."""

    ids: list[bytes]
    referenced: list[set[Key]]

    @classmethod
    def read(cls, rows: CopyRows, *, id_at: int, checks: list[KeysCheck]) -> BatchKeys:
        ids: list[bytes] = []
        referenced: list[set[Key]] = [set() for _ in checks]
        # Split no further than the last field wanted (a uuid's text has no escapes); the loop is
        # written out for speed: it runs once per row of a first load.
        width = max([id_at, *(p for check in checks for p in check.positions)]) + 1
        readers = [(check.positions[0], check.read_key, keys) for check, keys in zip(checks, referenced, strict=True)]
        for row in bytes(rows.data).split(b"\n")[:-1]:
            fields = row.split(b"\t", width)
            ids.append(fields[id_at])
            for at, read_key, keys in readers:
                if fields[at] != NULL:
                    keys.add(read_key(fields))
        return cls(ids, referenced)


def row_triggers_skippable(connection: psycopg.Connection) -> bool:
    """May this session turn row triggers off (session_replication_role)?

    Superusers may, and so may Supabase's postgres role; where it is refused, batches keep the
    row-by-row foreign-key triggers and the upsert path.
    """
    try:
        connection.execute("SET LOCAL session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        return False
    finally:
        connection.rollback()
    return True


class _Undo(Exception):
    """Roll a trial savepoint back."""


def _reason(error: Exception) -> str:
    """PostgreSQL's message with its detail ("Key (campaign_id)=(...) is not present ..."), on one line."""
    diag = getattr(error, "diag", None)
    if diag is not None and diag.message_primary:
        return f"{diag.message_primary}. {diag.message_detail}" if diag.message_detail else diag.message_primary
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# Identity: rows AudienceOS already has are reused, never duplicated --------------------------


def agency_identity_matches(
    source: psycopg.Connection,
    target: psycopg.Connection,
    plans: list[TablePlan],
    *,
    source_agency_id: UUID,
    target_agency_id: UUID,
    link_existing: bool,
    client_links: dict[str, str] | None = None,
) -> tuple[list[Match], list[AccountConflict]]:
    """Every source row of the agency the unified database already has (see mapping.Identity), and
    the accounts that may not be merged into (another agency's people)."""
    matches: list[Match] = []
    conflicts: list[AccountConflict] = []
    if link_existing:
        matches.append(("agencies", str(source_agency_id), "agency", str(target_agency_id)))
    scope = {"source_agency_id": source_agency_id}
    # Identities last: they join the accounts the people were matched to.
    for plan in sorted(plans, key=lambda p: p.entry.identity is Identity.PROVIDER):
        if plan.entry.identity is Identity.ACCOUNT:
            found, refused = accounts_match(source, target, plan, target_agency_id=target_agency_id, **scope)
            matches, conflicts = matches + found, conflicts + refused
        elif plan.entry.identity is Identity.PROVIDER:
            with target.cursor() as cursor:  # earlier runs' merges: a catch-up may not match users again
                people = id_map.agency_people_merged(cursor, agency_id=source_agency_id)
            people.update({source_id: target_id for table, source_id, _, target_id in matches if table != "agencies"})
            matches += identities_match(source, target, plan, people=people, **scope)
        else:
            matches += identity_matches(
                source, target, plan, target_agency_id=target_agency_id, client_links=client_links, **scope
            )
    return matches, conflicts


def identity_matches(
    source: psycopg.Connection,
    target: psycopg.Connection,
    plan: TablePlan,
    *,
    source_agency_id: UUID,
    target_agency_id: UUID,
    client_links: dict[str, str] | None = None,
) -> list[tuple[str, str, str, str]]:
    """(source table, source id, target table, target id) of the table's rows the unified database
    already has: users by email, clients by staff's explicit link or else by normalized name."""
    if plan.entry.identity is Identity.EMAIL:
        return _match_by_email(source, target, plan, source_agency_id=source_agency_id)
    if plan.entry.identity is Identity.CLIENT_NAME:
        return _match_by_client_name(
            source,
            target,
            plan,
            source_agency_id=source_agency_id,
            target_agency_id=target_agency_id,
            client_links=client_links or {},
        )
    return []


def _match_by_email(
    source: psycopg.Connection, target: psycopg.Connection, plan: TablePlan, *, source_agency_id: UUID
) -> list[tuple[str, str, str, str]]:
    emails = source_emails(source, plan, source_agency_id=source_agency_id)
    if not emails:
        return []
    found = target.execute(
        sql.SQL("SELECT lower(email), id::text FROM {} WHERE lower(email) = ANY(%s)").format(plan.target_table),
        [list(emails)],
    ).fetchall()
    return [(plan.source, emails[email], plan.target, uid) for email, uid in found if uid != emails[email]]


def _match_by_client_name(
    source: psycopg.Connection,
    target: psycopg.Connection,
    plan: TablePlan,
    *,
    source_agency_id: UUID,
    target_agency_id: UUID,
    client_links: dict[str, str],
) -> list[tuple[str, str, str, str]]:
    names = source.execute(
        sql.SQL("SELECT {}, id::text FROM {} WHERE {}").format(
            sql.SQL(NORMALIZED_NAME.format("name")),
            plan.source_table,
            plan.scope_condition(source_agency_id),
        )
    ).fetchall()
    existing: dict[str, str] = dict(
        target.execute(
            sql.SQL("SELECT {}, id::text FROM {} WHERE agency_id = %s").format(
                sql.SQL(NORMALIZED_NAME.format("name")), plan.target_table
            ),
            [target_agency_id],
        ).fetchall()
    )
    matches = []
    for name, source_id in names:
        target_id = client_links.get(source_id) or existing.get(name)
        if target_id and target_id != source_id:
            matches.append((plan.source, source_id, plan.target, target_id))
    return matches


def agency_rollback(
    *,
    source_agency_id: UUID,
    unified_agency_id: UUID,
    on_locked: Callable[[], None] = lambda: None,
    on_tally: OnTally = lambda tally: None,
) -> MigrationReport:
    """Delete exactly the unified rows this agency's runs inserted, children first, in one commit.

    Rows that existed before (reused agency, users, clients) stay. If AudienceOS rows have come to
    reference a migrated row since, the foreign key refuses and nothing at all is deleted. The
    agency's guard goes in the same commit: with no copy left, nothing is read-only for the apps.
    `on_tally` hears each table begin and end, with its rows deleted (not yet committed).
    """
    with (
        connect("revos", purpose="rollback-read") as source,
        connect("unified", purpose="rollback") as target,
        agency_lock(target, source_agency_id),
    ):
        on_locked()
        plans = migration_plan_build(source=catalog_read(source), target=catalog_read(target))
        report = MigrationReport({p.source: TableOutcome(p.source, p.target) for p in plans})
        tally = TableTally(tables=[plan.source for plan in reversed(plans)])
        with target.cursor() as cursor:
            for plan in reversed(plans):
                on_tally(tally.begin(plan.source))
                report.tables[plan.source].deleted = id_map.inserted_rows_delete(
                    cursor, agency_id=source_agency_id, source_table=plan.source, target_table=plan.target
                )
                on_tally(tally.end(plan.source, report.tables[plan.source].deleted))
            id_map.agency_forget(cursor, agency_id=source_agency_id)
            cursor.execute(sql.SQL("DELETE FROM {} WHERE agency_id = %s").format(CHECKPOINT), [source_agency_id])
            unified_guard_forget(cursor, unified_agency_id=unified_agency_id)
        target.commit()
        return report


def agency_plan(
    *,
    source_agency_id: UUID,
    target_agency_id: UUID,
    link_existing: bool,
    client_links: dict[str, str] | None = None,
    set_based_checks: bool = True,
    on_tally: OnTally = lambda tally: None,
) -> dict[str, Any]:
    """A dry run: what would move, what would be reused, what is already there, what becomes of
    the apps' own triggers on the target tables. Writes nothing.

    Reuse is matched as the migration matches it, staff's explicit client links (`client_links`)
    included, so the plan's counts are the run's. `on_tally` hears each table's count begin and end."""
    with connect("revos", purpose="plan-read") as source, connect("unified", purpose="plan-read") as target:
        source.read_only = target.read_only = True
        target_catalog = catalog_read(target)
        plans = migration_plan_build(source=catalog_read(source), target=target_catalog)
        triggers = app_triggers_plan(plans, target_catalog, quiet=set_based_checks and row_triggers_skippable(target))
        with target.cursor() as cursor:
            already = id_map.agency_mapped_counts(cursor, agency_id=source_agency_id)
        conflicts = _email_conflicts(source, target, source_agency_id, target_agency_id)
        matches, refused = agency_identity_matches(
            source,
            target,
            plans,
            source_agency_id=source_agency_id,
            target_agency_id=target_agency_id,
            link_existing=link_existing,
            client_links=client_links,
        )
        conflicts += [f"refused: {conflict}" for conflict in refused]
        reused_per_table = Counter(table for table, *_ in matches)
        tables = {}
        tally = TableTally(tables=[plan.source for plan in plans])
        for plan in plans:
            reused = reused_per_table[plan.source]
            on_tally(tally.begin(plan.source))
            rows = fetch_value(source.execute(plan.count_query(source_agency_id=source_agency_id)))
            on_tally(tally.end(plan.source, rows))
            tables[plan.source] = {
                "target": plan.target,
                "source_rows": rows,
                "reused": reused,
                "to_write": rows - reused,
                "already_migrated": already.get(plan.source, 0),
            }
        people = merged_people(
            source,
            target,
            accounts=[m for m in matches if m[0] == "auth.users"],
            identities=[m for m in matches if m[0] == "auth.identities"],
        )
        return {"tables": tables, "conflicts": conflicts, "merged_people": people, "app_triggers": triggers}


def _email_conflicts(
    source: psycopg.Connection, target: psycopg.Connection, source_agency_id: UUID, target_agency_id: UUID
) -> list[str]:
    """Users whose email already belongs to a user of another unified agency: reused, but worth a look."""
    emails = [e for (e,) in source.execute("SELECT lower(email) FROM users WHERE agency_id = %s", [source_agency_id])]
    if not emails:
        return []
    rows = target.execute(
        'SELECT email, agency_id FROM "user" WHERE lower(email) = ANY(%s) AND agency_id <> %s',
        [emails, target_agency_id],
    ).fetchall()
    return [f"user {email} already exists in unified agency {agency}" for email, agency in rows]
