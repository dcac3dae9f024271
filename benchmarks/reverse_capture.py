"""What the reverse capture costs the unified database's live traffic: other agencies' writes.

Once an agency is cut over, every unified table RevOS rows go to carries the capture trigger
(etl/reverse_capture.py), and every write to them, AudienceOS's included, runs it. This writes the
rows of an agency that is not captured, one row per transaction as an app does, in three set-ups
measured in one run: no trigger at all; the trigger with no agency captured (its fast path); and
the trigger while another agency is captured (the cost every other agency pays during a
switch-back window). The writes are updates of `lead` and `client` rows (a RevOS-only and a shared
table) and inserts of `lead` rows; each set-up is measured `repeats` times and the median kept.
"""

from __future__ import annotations

import statistics
import time
import uuid

import psycopg

from migration_jobs.etl import capture
from migration_jobs.etl.connections import connect
from migration_jobs.etl.reverse_capture import unified_captured_tables

CAPTURED_AGENCY = uuid.UUID("00000000-0000-4000-8000-00000000ca97")


def _write_loop(connection: psycopg.Connection, *, agency_id: uuid.UUID, writes: int) -> float:
    """Seconds for `writes` single-row transactions on the agency's rows (update lead, update client, insert lead)."""
    leads = [r[0] for r in connection.execute("SELECT id FROM lead WHERE agency_id = %s LIMIT 200", [agency_id])]
    clients = [r[0] for r in connection.execute("SELECT id FROM client WHERE agency_id = %s LIMIT 200", [agency_id])]
    connection.commit()
    inserted = []
    started = time.perf_counter()
    for n in range(writes):
        kind = n % 3
        if kind == 0:
            connection.execute("UPDATE lead SET name = %s WHERE id = %s", [f"bench {n}", leads[n % len(leads)]])
        elif kind == 1:
            connection.execute(
                "UPDATE client SET website = %s WHERE id = %s", [f"https://{n}.example", clients[n % len(clients)]]
            )
        else:
            row_id = uuid.uuid4()
            connection.execute(
                "INSERT INTO lead (id, agency_id, name, app_context) VALUES (%s, %s, 'bench', 'revos')",
                [row_id, agency_id],
            )
            inserted.append(row_id)
        connection.commit()
    seconds = time.perf_counter() - started
    connection.execute("DELETE FROM lead WHERE id = ANY(%s)", [inserted])
    connection.commit()
    return seconds


def reverse_capture_measure(*, agency_id: uuid.UUID, writes: int = 3000, repeats: int = 3) -> dict:
    """Writes/s of another agency's rows without the trigger, with it idle, and with an agency captured."""
    tables = unified_captured_tables()
    with connect("unified", purpose="benchmark") as connection:
        if connection.execute("SELECT count(*) FROM controlplane.capture_agency").fetchone()[0]:
            connection.rollback()
            return {"status": "not run: an agency is captured on the unified database already"}
        for table in ("client", "lead"):  # the agency's rows to update, if it has none of its own
            if not connection.execute(f"SELECT 1 FROM {table} WHERE agency_id = %s LIMIT 1", [agency_id]).fetchone():
                connection.execute(
                    f"INSERT INTO {table} (agency_id, name) SELECT %s, 'Bench ' || i FROM generate_series(1, 50) i",
                    [agency_id],
                )
        connection.commit()
        # The set-ups take turns within each repeat, so that the machine's drift hits them alike.
        seconds: dict[str, list[float]] = {"without": [], "idle": [], "captured": []}
        try:
            for _ in range(repeats):
                capture.capture_triggers_remove(connection, tables=tables)
                seconds["without"].append(_write_loop(connection, agency_id=agency_id, writes=writes))
                capture.capture_triggers_install(connection, tables=tables)
                seconds["idle"].append(_write_loop(connection, agency_id=agency_id, writes=writes))
                connection.execute(
                    "INSERT INTO controlplane.capture_agency (agency_id, agency_name) VALUES (%s, 'benchmark')",
                    [CAPTURED_AGENCY],
                )
                connection.commit()
                seconds["captured"].append(_write_loop(connection, agency_id=agency_id, writes=writes))
                capture.capture_remove(connection, agency_id=CAPTURED_AGENCY)
        finally:
            capture.capture_remove(connection, agency_id=CAPTURED_AGENCY)
            capture.capture_triggers_remove(connection, tables=tables)
    without, idle, captured = (round(writes / statistics.median(seconds[k])) for k in ("without", "idle", "captured"))
    return {
        "status": "ok",
        "writes": writes,
        "repeats": repeats,
        "without_trigger_per_second": without,
        "trigger_idle_per_second": idle,
        "another_agency_captured_per_second": captured,
        "idle_vs_without": round(idle / without, 3),
        "captured_vs_without": round(captured / without, 3),
    }
