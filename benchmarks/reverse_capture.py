"""What moving agencies costs the unified database's live traffic: other agencies' writes.

Every unified table RevOS rows go to carries the control plane's reverse capture
(etl/reverse_capture.py: the writes of cut-over agencies, for a switch back) and guard
(etl/unified_guard.py: the copies of agencies RevOS still holds are read-only for the apps), in one
trigger call once the capture is installed (sql/unified/0066). Every app write to those tables runs
it, for whichever agency. This writes the rows of an agency that is neither captured nor guarded,
as the apps do: one row per transaction, as role `authenticated` with the agency's JWT claims (so
under RLS, as PostgREST writes). Three set-ups, measured in one run, taking turns: without the
triggers; with them idle (no agency captured or guarded); and while agencies move (one captured,
another guarded). The writes are updates of `lead` and `client` rows (a RevOS-only and a shared
table) and inserts of `lead` rows; each set-up is measured `repeats` times and the median kept.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from pathlib import Path

import psycopg

from migration_jobs.etl import capture
from migration_jobs.etl.connections import connect
from migration_jobs.etl.reverse_capture import unified_captured_tables

# The agencies of the measurement: the one that writes, one captured, one guarded.
WRITING_AGENCY = uuid.UUID("00000000-0000-4000-8000-00000000ca96")
CAPTURED_AGENCY = uuid.UUID("00000000-0000-4000-8000-00000000ca97")
GUARDED_AGENCY = uuid.UUID("00000000-0000-4000-8000-00000000ca98")
GUARDED_TABLES = ("lead", "client")  # the tables written, whose guard trigger the baseline disables


def _as_app(connection: psycopg.Connection) -> None:
    """The transaction's role and claims, as PostgREST sets them for a request of the agency."""
    claims = json.dumps({"agency_id": str(WRITING_AGENCY), "app_context": "revos", "role": "authenticated"})
    connection.execute(
        "SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)", [claims]
    )


def _backend_cpu_seconds(pid: int) -> float | None:
    """CPU time the server process of a connection has used, where the server runs on this machine
    (the embedded and local set-ups); None where it does not. Unlike the wall time it leaves out the
    round trips, the commit's flush and the other processes a shared machine runs meanwhile."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _write_loop(connection: psycopg.Connection, *, writes: int) -> tuple[float, float | None]:
    """Seconds for `writes` single-row transactions of the writing agency (update lead, update client,
    insert lead), and the server's CPU seconds for them (None if not on this machine)."""
    leads = [r[0] for r in connection.execute("SELECT id FROM lead WHERE agency_id = %s", [WRITING_AGENCY])]
    clients = [r[0] for r in connection.execute("SELECT id FROM client WHERE agency_id = %s", [WRITING_AGENCY])]
    connection.commit()
    inserted = []
    backend = connection.info.backend_pid
    cpu_started = _backend_cpu_seconds(backend)
    started = time.perf_counter()
    for n in range(writes):
        _as_app(connection)
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
                [row_id, WRITING_AGENCY],
            )
            inserted.append(row_id)
        connection.commit()
    seconds = time.perf_counter() - started
    cpu_ended = _backend_cpu_seconds(backend)
    connection.execute("DELETE FROM lead WHERE id = ANY(%s)", [inserted])
    connection.commit()
    cpu = None if cpu_started is None or cpu_ended is None else cpu_ended - cpu_started
    return seconds, cpu


def _writing_agency_create(connection: psycopg.Connection) -> None:
    connection.execute(
        "INSERT INTO agency (id, name, slug, app_context) VALUES (%s, 'Benchmark writer', 'benchmark-writer', 'both')",
        [WRITING_AGENCY],
    )
    for table, app_context in (("client", "both"), ("lead", "revos")):
        connection.execute(
            f"INSERT INTO {table} (agency_id, name, app_context)"
            " SELECT %s, 'Bench ' || i, %s FROM generate_series(1, 200) i",
            [WRITING_AGENCY, app_context],
        )
    connection.commit()


def _writing_agency_drop(connection: psycopg.Connection) -> None:
    for table in ("lead", "client", "agency"):
        key = "id" if table == "agency" else "agency_id"
        connection.execute(f"DELETE FROM {table} WHERE {key} = %s", [WRITING_AGENCY])
    connection.commit()


def _guard_triggers(connection: psycopg.Connection, *, enabled: bool) -> None:
    for table in GUARDED_TABLES:
        state = "ENABLE ALWAYS" if enabled else "DISABLE"
        connection.execute(f"ALTER TABLE {table} {state} TRIGGER controlplane_guard")


def _agencies_moving(connection: psycopg.Connection, *, moving: bool) -> None:
    """One agency captured (cut over, switch back possible) and one guarded (migrated, not cut over)."""
    if moving:
        connection.execute(
            "INSERT INTO controlplane.capture_agency (agency_id, agency_name) VALUES (%s, 'benchmark')",
            [CAPTURED_AGENCY],
        )
        connection.execute(
            "INSERT INTO controlplane.agency_guard (agency_id, message) VALUES (%s, 'benchmark')", [GUARDED_AGENCY]
        )
    else:
        capture.capture_remove(connection, agency_id=CAPTURED_AGENCY)
        connection.execute("DELETE FROM controlplane.agency_guard WHERE agency_id = %s", [GUARDED_AGENCY])
    connection.commit()


def _measured(seconds: list[float], cpu: list[float | None], measured: tuple[float, float | None]) -> None:
    seconds.append(measured[0])
    cpu.append(measured[1])


def _cpu_figures(cpu: dict[str, list[float | None]], *, writes: int) -> dict:
    """The server's CPU microseconds per write in each set-up (the least of the repeats: what the
    work itself costs, with the least interference), and what the triggers add to a write."""
    if any(value is None for values in cpu.values() for value in values):
        return {"server_cpu_us_per_write": "not measured: the server is not on this machine"}
    least = {name: round(min(v for v in values if v is not None) / writes * 1e6, 1) for name, values in cpu.items()}
    return {
        "server_cpu_us_per_write": least,
        "server_cpu_added_moving": round((least["moving"] - least["without"]) / least["without"], 3),
    }


def reverse_capture_measure(*, writes: int = 3000, repeats: int = 3) -> dict:
    """Writes/s of an agency's rows without the triggers, with them idle, and while agencies move."""
    tables = unified_captured_tables()
    with connect("unified", purpose="benchmark") as connection:
        if connection.execute("SELECT count(*) FROM controlplane.capture_agency").fetchone()[0]:
            connection.rollback()
            return {"status": "not run: an agency is captured on the unified database already"}
        # The benchmark's migrated agency is guarded (its copy is RevOS's until a cutover): set
        # aside while measuring, so that "idle" is idle, and put back after.
        guards = connection.execute("DELETE FROM controlplane.agency_guard RETURNING agency_id, message").fetchall()
        _writing_agency_create(connection)
        # The set-ups take turns within each repeat, so that the machine's drift hits them alike.
        seconds: dict[str, list[float]] = {"without": [], "idle": [], "moving": []}
        cpu: dict[str, list[float | None]] = {"without": [], "idle": [], "moving": []}
        try:
            for _ in range(repeats):
                capture.capture_triggers_remove(connection, tables=tables)
                _guard_triggers(connection, enabled=False)
                connection.commit()
                _measured(seconds["without"], cpu["without"], _write_loop(connection, writes=writes))
                # The install disables the guard's trigger where the capture's does its work (sql/unified/0066).
                capture.capture_triggers_install(connection, tables=tables)
                connection.commit()
                _measured(seconds["idle"], cpu["idle"], _write_loop(connection, writes=writes))
                _agencies_moving(connection, moving=True)
                _measured(seconds["moving"], cpu["moving"], _write_loop(connection, writes=writes))
                _agencies_moving(connection, moving=False)
        finally:
            connection.rollback()
            _agencies_moving(connection, moving=False)
            _guard_triggers(connection, enabled=True)
            capture.capture_triggers_remove(connection, tables=tables)
            _writing_agency_drop(connection)
            with connection.cursor() as cursor:
                cursor.executemany("INSERT INTO controlplane.agency_guard (agency_id, message) VALUES (%s, %s)", guards)
            connection.commit()
    without, idle, moving = (round(writes / statistics.median(seconds[k])) for k in ("without", "idle", "moving"))
    return _cpu_figures(cpu, writes=writes) | {
        "status": "ok",
        "writes": writes,
        "repeats": repeats,
        "without_trigger_per_second": without,
        "trigger_idle_per_second": idle,
        "agencies_moving_per_second": moving,
        "idle_vs_without": round(idle / without, 3),
        "moving_vs_without": round(moving / without, 3),
    }
