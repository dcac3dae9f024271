"""The cutover of the migrated agency: write downtime and catch-up time, against a full re-read.

On the agency the main measurement migrated and verified, in this order:
1. capture overhead: the same loop of single-row autocommitted updates of the agency's leads (as an
   app writes) with the capture triggers detached, then attached with the agency captured;
2. a catch-up from the capture after `changes` rows changed in RevOS, through a worker;
3. a full re-read catch-up (`migrate_agency --full`) after as many changes, through a worker;
4. a verification (the cutover's interlock needs one newer than the last catch-up);
5. the cutover after as many changes, through a worker, while an app keeps writing the agency's
   leads (APP_WRITES_PER_SECOND single-row updates, acknowledged until the fence, refused after
   it): its write downtime (fence to switch), each step's time and its final catch-up, from the
   run's own report.
Then the agency's capture is removed on both sides (as when its move is complete), so the later
measurements start from no capture and can empty both databases.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from uuid import UUID

import psycopg

from benchmarks.project import verification_measure, worker_run
from benchmarks.workload import database_checkpoint
from migration_jobs.etl import capture
from migration_jobs.etl.connections import connect
from migration_jobs.etl.reverse_capture import reverse_capture_stop
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.services.fence import agency_capture_remove
from migration_jobs.services.kinds.cutover import cutover_run_request
from migration_jobs.services.kinds.migrate import MIGRATE
from migration_jobs.services.runs import migration_run_request


def cutover_measure(
    *, agency_id: UUID, worker_env: Mapping[str, str], log_dir: Path, timeout: float, changes: int, writes: int
) -> dict:
    """Every figure of the cutover measurement (see the module docstring)."""
    link = AgencyLink.objects.get(revos_agency_id=agency_id)
    figures: dict = {
        "changes": changes,
        "people": _people_count(agency_id=agency_id),
        **capture_overhead_measure(agency_id=agency_id, writes=writes),
    }

    def worker() -> None:
        database_checkpoint()
        worker_run(queue="migrations", worker_env=worker_env, log_dir=log_dir, timeout=timeout)

    revos_rows_change(agency_id=agency_id, rows=changes)
    run = migration_run_request(link=link, kind=MIGRATE.value, actor=None)
    worker()
    figures["capture_catch_up"] = _run_figures(run)
    revos_rows_change(agency_id=agency_id, rows=changes)
    run = migration_run_request(link=link, kind=MIGRATE.value, actor=None, full_reread=True)
    worker()
    figures["full_catch_up"] = _run_figures(run)
    verification = verification_measure(migration_run=run, worker_env=worker_env, log_dir=log_dir, timeout=timeout)
    figures["verification_verdict"] = verification["verdict"]
    revos_rows_change(agency_id=agency_id, rows=changes)
    try:
        run = cutover_run_request(link=link, reason="benchmark", actor=None)
    except Exception as refused:  # the interlock said no (a failed verification): say why
        figures["cutover"] = {"status": "refused", "error": str(refused)}
    else:
        with _AppWriter(agency_id) as writer:
            worker()
        run.refresh_from_db()
        figures["cutover"] = {
            **_run_figures(run),
            "window_seconds": run.report.get("window_seconds"),
            "catch_up_seconds": run.report.get("catch_up_seconds"),
            "changed_rows": run.report.get("changed_rows"),
            "steps": {step["name"]: step["seconds"] for step in run.steps},
            "app_writes": writer.figures(),
        }
    # The move is complete as far as the benchmark goes: no capture left on either side.
    agency_capture_remove(link=link)
    reverse_capture_stop(source_agency_id=link.revos_agency_id, unified_agency_id=link.unified_agency_id)
    return figures


APP_WRITES_PER_SECOND = 50


class _AppWriter:
    """An app updating the agency's leads one row at a time, as a thread, while the cutover runs;
    named like an app (not `controlplane-…`), so the cutover's drain waits for it like for any app."""

    def __init__(self, agency_id: UUID):
        self.agency_id, self.stop = agency_id, threading.Event()
        self.acknowledged = self.refused = 0
        self.thread = threading.Thread(target=self._write, name="bench-app-writer", daemon=True)

    def __enter__(self) -> _AppWriter:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    def _write(self) -> None:
        with connect("revos", autocommit=True, purpose="benchmark-writes") as connection:
            connection.execute("SET application_name = 'bench-app'")
            ids = [
                row[0]
                for row in connection.execute(
                    "SELECT id FROM leads WHERE agency_id = %s ORDER BY random() LIMIT 20000", [self.agency_id]
                )
            ]
            for row_id in ids:
                if self.stop.wait(1 / APP_WRITES_PER_SECOND):
                    return
                try:
                    connection.execute(
                        "UPDATE leads SET name = left(coalesce(name, '') || '~', 200) WHERE id = %s", [row_id]
                    )
                    self.acknowledged += 1
                except psycopg.errors.ReadOnlySqlTransaction:
                    self.refused += 1

    def figures(self) -> dict:
        return {"per_second": APP_WRITES_PER_SECOND, "acknowledged": self.acknowledged, "refused": self.refused}


def _run_figures(run: MigrationRun) -> dict:
    run.refresh_from_db()
    seconds = (run.finished_at - run.started_at).total_seconds() if run.started_at and run.finished_at else None
    return {"status": run.status, "error": run.error, "seconds": round(seconds, 3) if seconds else None}


def revos_rows_change(*, agency_id: UUID, rows: int) -> int:
    """Change `rows` of the agency's RevOS leads (a different set each time), as committed app writes."""
    with connect("revos", autocommit=True, purpose="benchmark-writes") as connection:
        return connection.execute(
            "UPDATE leads SET name = left(coalesce(name, '') || '.', 200) WHERE id IN"
            " (SELECT id FROM leads WHERE agency_id = %s ORDER BY random() LIMIT %s)",
            [agency_id, rows],
        ).rowcount


def _people_count(*, agency_id: UUID) -> int:
    with connect("revos", purpose="benchmark") as connection:
        return connection.execute("SELECT count(*) FROM users WHERE agency_id = %s", [agency_id]).fetchone()[0]


def capture_overhead_measure(*, agency_id: UUID, writes: int) -> dict:
    """Rows/s of one app-like write loop without the capture triggers, and with the agency captured.

    The updates set a column to its own value, so the loop without triggers (which the capture
    cannot see) leaves nothing for the catch-up to miss.
    """
    tables = capture.revos_captured_tables()
    with connect("revos", autocommit=True, purpose="benchmark-writes") as connection:
        ids = [
            row[0]
            for row in connection.execute(
                "SELECT id FROM leads WHERE agency_id = %s ORDER BY id LIMIT %s", [agency_id, writes]
            )
        ]
        with connect("revos", purpose="benchmark-capture") as control:
            # Putting the triggers back clears every captured agency's position (a write might have
            # gone unrecorded meanwhile); these updates change nothing, so the positions are restored.
            positions = control.execute(
                "SELECT agency_id, applied_snapshot FROM controlplane.capture_agency"
            ).fetchall()
            capture.capture_triggers_remove(control, tables=tables)
            try:
                without = _write_loop(connection, ids)
            finally:
                capture.capture_triggers_install(control, tables=tables, repair=True)
                for agency, position in positions:
                    control.execute(
                        "UPDATE controlplane.capture_agency SET applied_snapshot = %s WHERE agency_id = %s",
                        [position, agency],
                    )
                control.commit()
        records = "SELECT count(*) FROM controlplane.change_log WHERE agency_id = %s"
        before = connection.execute(records, [agency_id]).fetchone()[0]
        captured = _write_loop(connection, ids)
        # Evidence that the loop measured the capture: each write left its record.
        recorded = connection.execute(records, [agency_id]).fetchone()[0] - before
    return {
        "capture_overhead": {
            "writes": len(ids),
            "recorded": recorded,
            "without_capture_rows_per_second": without,
            "with_capture_rows_per_second": captured,
        }
    }


def _write_loop(connection, ids: list) -> float | None:
    started = time.perf_counter()
    for row_id in ids:
        connection.execute("UPDATE leads SET name = name WHERE id = %s", [row_id])
    seconds = time.perf_counter() - started
    return round(len(ids) / seconds, 1) if ids and seconds else None
