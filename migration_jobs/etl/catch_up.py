"""An agency's migration with RevOS change capture: the first load registers it, catch-ups read the capture.

The first run of an agency registers it for capture before its snapshot is taken and copies every
row (AgencyMigration's full read). Every later run reads only the rows the capture recorded since
the stored position, re-reads their current state in the same snapshot, and writes them through
the same batch writer (upsert, id map, deletes of vanished rows). `full=True` re-reads everything
anyway, for staff who want it. The argument that nothing is missed is in etl/capture.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import psycopg
from psycopg import sql

from migration_jobs.etl import capture
from migration_jobs.etl.connections import connect
from migration_jobs.etl.engine import CHECKPOINT, AgencyMigration, MigrationReport
from migration_jobs.etl.unified_guard import unified_guard_set

logger = logging.getLogger(__name__)


class CaptureOnly(Exception):
    """A catch-up from the capture alone cannot bring this agency level; the message says why."""


@dataclass
class CapturedMigration(AgencyMigration):
    """AgencyMigration that keeps RevOS's change capture and its position; see the module docstring."""

    full: bool = False  # re-read every row even when the capture could say what changed
    register_wait_seconds: float = 120.0
    # Only a catch-up from the capture, never a first load or a full read (the continuous
    # catch-up, services/catch_up_stream.py): CaptureOnly says why not, before anything is written.
    capture_only: bool = False
    # Filled by the run: whether it read the capture, and how many changed rows it brought level.
    used_capture: bool = False
    changed_rows: int = 0

    def run_holding_lock(self, source: psycopg.Connection, target: psycopg.Connection) -> MigrationReport:
        # `source` has not run a statement yet, so its snapshot is taken after the registration.
        with connect("revos", purpose="capture") as control:
            state = capture.capture_state(control, agency_id=self.source_agency_id)
            if self.capture_only:
                self._capture_only_check(state, target)
            if state is None:
                capture.capture_register(
                    control,
                    agency_id=self.source_agency_id,
                    agency_name=_agency_name(control, self.source_agency_id),
                    tables=capture.revos_captured_tables(),
                    wait_seconds=self.register_wait_seconds,
                )
            # RevOS holds the agency's truth until its cutover: the unified copies are the apps' to read only.
            unified_guard_set(
                unified_agency_id=self.target_agency_id, agency_name=_agency_name(control, self.source_agency_id)
            )
            tables = capture.revos_captured_tables()
            from_capture = not self.full and state is not None and state.applied_snapshot is not None
            from_capture = from_capture and self._has_previous_rows(target)  # not after a rollback
            if from_capture:  # trust the capture only if nothing could have written past it
                capture.capture_triggers_verify(control, tables=tables, database="RevOS")
            else:  # a full read re-reads everything: it may repair the triggers (before its snapshot)
                capture.capture_triggers_install(control, tables=tables, repair=True)
            snapshot = capture.snapshot_of(source)  # takes the run's snapshot
            if not from_capture and state is not None and state.pending_snapshot is not None:
                # An earlier attempt was interrupted: what it wrote may have changed since its own
                # snapshot, and this run reads the rest in a newer one (AgencyMigration._begun_bring_level).
                self.resumed_changes = capture.changes_read(
                    source, agency_id=self.source_agency_id, since=state.pending_snapshot
                )
            capture.apply_begin(control, agency_id=self.source_agency_id, snapshot=snapshot, full=not from_capture)
            if from_capture:
                assert state is not None and state.applied_snapshot is not None  # what from_capture says
                self._from_capture(source, target, since=state.applied_snapshot)
            report = super().run_holding_lock(source, target)
            capture.apply_finish(control, agency_id=self.source_agency_id)
        return report

    def _capture_only_check(self, state: capture.CaptureState | None, target: psycopg.Connection) -> None:
        if state is None or state.applied_snapshot is None:
            raise CaptureOnly("its first load (or a full read) has not finished, so the capture has no position")
        if state.fenced_at is not None:
            raise CaptureOnly("RevOS is fenced for it: a cutover holds or held its writes")
        if not self._has_previous_rows(target):
            raise CaptureOnly("its unified rows are gone (rolled back): only a full read may bring it level")

    def _from_capture(self, source: psycopg.Connection, target: psycopg.Connection, *, since: str) -> None:
        self.changed_ids = capture.changes_read(source, agency_id=self.source_agency_id, since=since)
        self.used_capture = True
        self.changed_rows = sum(len(ids) for ids in self.changed_ids.values())
        # A catch-up starts over: checkpoints of an interrupted run would skip changed ids below them.
        target.execute(sql.SQL("DELETE FROM {} WHERE agency_id = %s").format(CHECKPOINT), [self.source_agency_id])
        target.commit()
        logger.info(
            "catch-up from the change capture: %s changed rows in %s tables",
            self.changed_rows,
            len(self.changed_ids),
            extra={"agency_id": str(self.source_agency_id)},
        )


def _agency_name(connection: psycopg.Connection, agency_id: UUID) -> str:
    row = connection.execute("SELECT name FROM agencies WHERE id = %s", [agency_id]).fetchone()
    connection.commit()
    return row[0] if row else ""


def catch_up_rounds(
    *, migration: Callable[[], CapturedMigration], target: psycopg.Connection, pending_rows: int, rounds: int
) -> list[int]:
    """Catch up from the capture until at most `pending_rows` changed rows wait (at most `rounds`
    times); return the rows each round applied.

    As Vitess and ghostferry do before a cutover: the writes keep coming while a round runs, but
    each round has only what came during the last, so the fenced catch-up is left with the few
    rows written after the last round. The caller holds the agency's lock (`run_holding_lock`).
    """
    applied: list[int] = []
    with connect("revos", purpose="capture") as control:
        for _ in range(max(rounds, 1)):
            round_ = migration()
            with connect("revos", purpose="cutover-read") as source:
                source.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                source.read_only = True
                round_.run_holding_lock(source, target)
            applied.append(round_.changed_rows)
            if capture.changes_pending_count(control, agency_id=round_.source_agency_id)[1] <= pending_rows:
                break
    return applied
