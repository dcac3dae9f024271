"""Change capture and the write fence of one agency, on whichever database it is moving out of.

The SQL objects (sql/revos/0002_change_capture.sql) know no tenant table; this module attaches
the trigger to a given list of tables on a given connection, registers agencies, reads what
changed, and sets and lifts the fence. Nothing here is specific to RevOS: the same functions
work on any database that has the controlplane capture objects, for any table list.

Correctness: why a catch-up from the capture misses nothing
-----------------------------------------------------------
A capture record says "row R of agency A was written by transaction X"; it carries no values,
and applying it means re-reading R's current state by id from a snapshot and upserting it (or
deleting it when it is gone). Applying records twice or out of order therefore converges to the
snapshot's state: the last application of R copies R as the snapshot sees it, whatever came
before. The record is written by the trigger inside the writing transaction, so it commits
exactly when the write does.

Positions are snapshots. A catch-up reads its changes and its rows in one REPEATABLE READ
snapshot S, applies every record whose transaction the stored position P did not see
(`xid >= xmin(P) AND NOT pg_visible_in_snapshot(xid, P)`, the first half for the index), and then
stores S as the new position. A record S saw was applied by this catch-up (its row was re-read in
S); a record S did not see belongs to a transaction that committed after S, so the next catch-up,
reading from S, finds it. A run that fails keeps the old position; the snapshot of its first
attempt is kept as pending and becomes the position when a later attempt finishes, so a resumed
run never skips what its first attempt had not seen (every later snapshot sees more, not less). A
full read clears the position: until it finishes, only a full read may bring the target level.

Before, during and after the first copy's snapshot. `capture_register` commits the agency's row
in capture_agency (transaction G) and then waits until no other session has a transaction or a
snapshot older than G (`transactions_older_wait`). Only then is the first copy's snapshot S0
taken. Take any write W to the agency's rows:
- W committed before S0: S0 sees it; the first copy copies it.
- W committed after S0: W's statement either saw G, and then the trigger recorded W in W's own
  transaction, and S0 (the position the first copy stores) did not see it; or it did not see G,
  which means its snapshot predates G's commit, so its transaction (or its snapshot) was older
  than G and the wait would not have ended before it did: W committed before S0 after all.
So every write is either in the first copy or recorded after its position. The fence's drain
is the same argument: a transaction whose snapshot predates the fence could still write; once no
transaction older than the fence is left, every later write sees the fence and is refused.

Only rows whose agency is registered are recorded (the trigger resolves a child row's agency
through its parents), so other agencies' rows are never captured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import psycopg
from psycopg import sql

from migration_jobs.mapping import TABLE_MAPS

TRIGGER = "controlplane_capture"
TRUNCATE_TRIGGER = "controlplane_capture_truncate"
BYPASS_SETTING = "controlplane.fence_bypass"
# The control plane's own sessions are named so (etl.connections.connect); none of them writes
# an agency's rows behind the fence's back, so the drain does not wait for them.
OWN_APPLICATION_PREFIX = "controlplane-"
# A change_log record not seen by snapshot %s (given three times; NULL: every record).
NOT_SEEN_BY = (
    "(%s::pg_snapshot IS NULL OR (xid >= pg_snapshot_xmin(%s::pg_snapshot)"
    " AND NOT pg_visible_in_snapshot(xid, %s::pg_snapshot)))"
)


class TransactionsStillOpen(Exception):
    """Transactions older than a point still run after the time allowed; the message names them."""


@dataclass(frozen=True)
class CapturedTable:
    """A table whose writes are captured: its name and the path from its rows to their agency id.

    `agency_path` is the row's column, then (parent table, parent column) pairs up to the agency
    id: ("agency_id",), ("id",) for the agency table itself, ("post_id", "posts", "agency_id").
    """

    name: str
    agency_path: tuple[str, ...]


@dataclass(frozen=True)
class CaptureState:
    agency_id: UUID
    registered_at: datetime
    applied_snapshot: str | None  # every change of a transaction this snapshot saw is applied
    applied_at: datetime | None
    pending_snapshot: str | None
    fenced_at: datetime | None
    fence_owner: str


def revos_captured_tables() -> list[CapturedTable]:
    """Every mapped RevOS table, with its agency path from the map's scope."""
    tables = []
    for entry in TABLE_MAPS:
        if not entry.captured:
            continue  # re-read whole by every catch-up (mapping.TableMap.captured)
        if entry.source == "agencies":
            path: tuple[str, ...] = ("id",)
        elif not entry.scope:
            path = ("agency_id",)
        else:
            path = (entry.scope[0][0],)
            for (_, parent), (next_column, _) in zip(entry.scope, [*entry.scope[1:], ("agency_id", "")], strict=True):
                path += (parent, next_column)
        tables.append(CapturedTable(entry.source, path))
    return tables


# --- installing -------------------------------------------------------------------------------


def capture_triggers_install(
    connection: psycopg.Connection, *, tables: Sequence[CapturedTable], schema: str = "public"
) -> list[str]:
    """Attach the capture and fence trigger to each table that lacks it; return the tables changed.

    CREATE TRIGGER briefly locks the table against writes, so it waits at most a few seconds for
    a lock (and fails rather than queue the apps' writes behind it) and skips tables that have it.
    """
    present = {
        (table, trigger)
        for table, trigger in connection.execute(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND t.tgname = ANY(%s)",
            [schema, [TRIGGER, TRUNCATE_TRIGGER]],
        ).fetchall()
    }
    connection.commit()
    changed = []
    for table in tables:
        target = sql.Identifier(schema, table.name)
        with connection.transaction():
            connection.execute("SET LOCAL lock_timeout = '5s'")
            if (table.name, TRIGGER) not in present:
                connection.execute(
                    sql.SQL(
                        "CREATE TRIGGER {} BEFORE INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW"
                        " EXECUTE FUNCTION controlplane.capture_row({})"
                    ).format(
                        sql.Identifier(TRIGGER),
                        target,
                        sql.SQL(", ").join(sql.Literal(step) for step in table.agency_path),
                    )
                )
            if (table.name, TRUNCATE_TRIGGER) not in present:
                connection.execute(
                    sql.SQL(
                        "CREATE TRIGGER {} BEFORE TRUNCATE ON {} FOR EACH STATEMENT"
                        " EXECUTE FUNCTION controlplane.capture_truncate()"
                    ).format(sql.Identifier(TRUNCATE_TRIGGER), target)
                )
        if (table.name, TRIGGER) not in present or (table.name, TRUNCATE_TRIGGER) not in present:
            changed.append(table.name)
    connection.commit()
    return changed


def capture_triggers_remove(
    connection: psycopg.Connection, *, tables: Sequence[CapturedTable], schema: str = "public"
) -> None:
    """Detach the triggers (for a database no agency moves out of any more)."""
    for table in tables:
        for trigger in (TRIGGER, TRUNCATE_TRIGGER):
            connection.execute(
                sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                    sql.Identifier(trigger), sql.Identifier(schema, table.name)
                )
            )
    connection.commit()


# --- registering an agency --------------------------------------------------------------------


def capture_register(
    connection: psycopg.Connection,
    *,
    agency_id: UUID,
    agency_name: str,
    tables: Sequence[CapturedTable],
    wait_seconds: float,
    should_stop: Callable[[], bool] = lambda: False,
) -> bool:
    """Capture the agency's changes from now on; return True if it was not captured before.

    Returns once no transaction older than the registration is left (see the module docstring),
    so a snapshot taken after it misses no write that the capture does not record.
    """
    capture_triggers_install(connection, tables=tables)
    row = connection.execute(
        "INSERT INTO controlplane.capture_agency (agency_id, agency_name) VALUES (%s, %s)"
        " ON CONFLICT (agency_id) DO NOTHING RETURNING pg_current_xact_id()::text::bigint",
        [agency_id, agency_name],
    ).fetchone()
    connection.commit()
    if row is None:
        return False
    transactions_older_wait(connection, xid=row[0], timeout=wait_seconds, should_stop=should_stop)
    return True


def capture_state(connection: psycopg.Connection, *, agency_id: UUID) -> CaptureState | None:
    row = connection.execute(
        "SELECT agency_id, registered_at, applied_snapshot::text, applied_at, pending_snapshot::text,"
        " fenced_at, fence_owner FROM controlplane.capture_agency WHERE agency_id = %s",
        [agency_id],
    ).fetchone()
    connection.commit()
    return CaptureState(*row) if row else None


def capture_remove(connection: psycopg.Connection, *, agency_id: UUID) -> None:
    """Stop capturing (and fencing) the agency and forget its records: its move is complete."""
    connection.execute("DELETE FROM controlplane.change_log WHERE agency_id = %s", [agency_id])
    connection.execute("DELETE FROM controlplane.capture_agency WHERE agency_id = %s", [agency_id])
    connection.commit()


# --- positions --------------------------------------------------------------------------------


def snapshot_of(snapshot: psycopg.Connection) -> str:
    """This REPEATABLE READ transaction's snapshot (taking it, if no statement has yet)."""
    return snapshot.execute("SELECT pg_current_snapshot()::text").fetchone()[0]


def changes_read(snapshot: psycopg.Connection, *, agency_id: UUID, since: str | None) -> dict[str, list[str]]:
    """Source table -> ids of its rows written by transactions the snapshot `since` did not see."""
    rows = snapshot.execute(
        "SELECT table_name, array_agg(DISTINCT row_id::text) FROM controlplane.change_log"
        f" WHERE agency_id = %s AND {NOT_SEEN_BY} GROUP BY table_name",
        [agency_id, since, since, since],
    ).fetchall()
    return {table: sorted(ids) for table, ids in rows}


def changes_pending_count(connection: psycopg.Connection, *, agency_id: UUID) -> tuple[int, int]:
    """(records, distinct rows) not applied yet: an estimate of the next catch-up's work."""
    state = capture_state(connection, agency_id=agency_id)
    since = state.applied_snapshot if state else None
    row = connection.execute(
        "SELECT count(*), count(DISTINCT (table_name, row_id)) FROM controlplane.change_log"
        f" WHERE agency_id = %s AND {NOT_SEEN_BY}",
        [agency_id, since, since, since],
    ).fetchone()
    connection.commit()
    return row[0], row[1]


def changes_since(connection: psycopg.Connection, *, agency_id: UUID, since: datetime | None) -> dict[str, list[str]]:
    """Source table -> ids of rows written since a moment (all recorded ones without one)."""
    rows = connection.execute(
        "SELECT table_name, array_agg(DISTINCT row_id::text) FROM controlplane.change_log"
        " WHERE agency_id = %s AND (%s::timestamptz IS NULL OR captured_at >= %s::timestamptz) GROUP BY table_name",
        [agency_id, since, since],
    ).fetchall()
    connection.commit()
    return {table: sorted(ids) for table, ids in rows}


def apply_begin(connection: psycopg.Connection, *, agency_id: UUID, snapshot: str, full: bool) -> None:
    """An application reading from `snapshot` starts: it becomes pending unless an earlier attempt's is.

    A full read clears the position: until it has finished, only another full read (resuming from
    its checkpoints) may bring the target level, not the capture.
    """
    connection.execute(
        "UPDATE controlplane.capture_agency SET pending_snapshot = coalesce(pending_snapshot, %s::pg_snapshot),"
        " applied_snapshot = CASE WHEN %s THEN NULL ELSE applied_snapshot END WHERE agency_id = %s",
        [snapshot, full, agency_id],
    )
    connection.commit()


def apply_finish(connection: psycopg.Connection, *, agency_id: UUID) -> None:
    """Every change the pending snapshot saw is in the target now: it becomes the position."""
    connection.execute(
        "UPDATE controlplane.capture_agency SET applied_snapshot = pending_snapshot, applied_at = now(),"
        " pending_snapshot = NULL WHERE agency_id = %s AND pending_snapshot IS NOT NULL",
        [agency_id],
    )
    connection.commit()


# --- the fence --------------------------------------------------------------------------------


def fence_set(connection: psycopg.Connection, *, agency_id: UUID, owner: str, message: str) -> int:
    """Refuse every write to the agency's rows from now on; return the fencing transaction's id.

    Transactions that started before it may still write: wait for them with
    `transactions_older_wait(xid=...)` before trusting that no write gets through.
    """
    row = connection.execute(
        "UPDATE controlplane.capture_agency SET fenced_at = now(), fence_owner = %s, fence_message = %s"
        " WHERE agency_id = %s RETURNING pg_current_xact_id()::text::bigint",
        [owner, message, agency_id],
    ).fetchone()
    if row is None:
        connection.rollback()
        raise LookupError(f"agency {agency_id} is not captured, so it cannot be fenced")
    connection.commit()
    return row[0]


def fence_lift(connection: psycopg.Connection, *, agency_id: UUID, owner: str | None = None) -> bool:
    """Accept the agency's writes again; with `owner`, only if that owner holds the fence."""
    lifted = connection.execute(
        "UPDATE controlplane.capture_agency SET fenced_at = NULL, fence_owner = '', fence_message = ''"
        " WHERE agency_id = %s AND fenced_at IS NOT NULL AND (%s::text IS NULL OR fence_owner = %s)",
        [agency_id, owner, owner],
    ).rowcount
    connection.commit()
    return bool(lifted)


def fence_bypass(connection: psycopg.Connection) -> None:
    """Let this connection's current transaction write fenced rows, unrecorded (the control plane's own work)."""
    key = connection.execute("SELECT key FROM controlplane.fence_key").fetchone()
    if key is None:  # the key row was removed (a test emptying tables): make a new one
        key = connection.execute("INSERT INTO controlplane.fence_key DEFAULT VALUES RETURNING key").fetchone()
    connection.execute("SELECT set_config(%s, %s, true)", [BYPASS_SETTING, key[0]])


def fenced_agencies(connection: psycopg.Connection) -> dict[UUID, str]:
    """Fenced agency -> the owner holding its fence."""
    rows = connection.execute(
        "SELECT agency_id, fence_owner FROM controlplane.capture_agency WHERE fenced_at IS NOT NULL"
    ).fetchall()
    connection.commit()
    return dict(rows)


# --- waiting for older transactions -----------------------------------------------------------


def transactions_older(connection: psycopg.Connection, *, xid: int) -> list[str]:
    """Other sessions of this database whose transaction or snapshot is older than transaction `xid`.

    pg_stat_activity shows other roles' transactions to a superuser or a member of
    pg_read_all_stats (pg_monitor). A role without it falls back on the oldest running
    transaction id of the whole server, which also waits for other databases' transactions.
    """
    rows = connection.execute(
        "SELECT pid, usename, application_name, state, date_trunc('second', now() - xact_start)"
        " FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = current_database()"
        " AND backend_type = 'client backend' AND application_name NOT LIKE %s"
        " AND (age(backend_xid) >= age(%s::text::xid8::xid) OR age(backend_xmin) >= age(%s::text::xid8::xid))",
        [OWN_APPLICATION_PREFIX + "%", xid, xid],
    ).fetchall()
    sees_all, oldest_running = connection.execute(
        "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
        " OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),"
        " pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
    ).fetchone()
    connection.commit()
    described = [
        f"pid {pid} ({user}, {app or 'no application name'}, {state}, open {age})"
        for pid, user, app, state, age in rows
    ]
    if not described and not sees_all and oldest_running <= xid:
        described.append(f"a transaction older than {xid} (grant pg_monitor to see which)")
    return described


def transactions_older_wait(
    connection: psycopg.Connection,
    *,
    xid: int,
    timeout: float,
    should_stop: Callable[[], bool] = lambda: False,
    interval: float = 0.05,
) -> float:
    """Wait until no transaction older than `xid` is left; return the seconds waited.

    Raises TransactionsStillOpen naming them once `timeout` seconds have passed; returns early
    (without waiting further) when `should_stop` says so.
    """
    started = time.monotonic()
    while True:
        older = transactions_older(connection, xid=xid)
        waited = time.monotonic() - started
        if not older or should_stop():
            return waited
        if waited >= timeout:
            raise TransactionsStillOpen(
                f"{len(older)} transaction(s) older than the point waited for still run after {timeout:g} s: "
                + "; ".join(older[:5])
            )
        time.sleep(min(interval * 2 ** min(int(waited / interval), 5), 0.5))


def agencies_registered(connection: psycopg.Connection, agency_ids: Iterable[UUID]) -> set[UUID]:
    rows = connection.execute(
        "SELECT agency_id FROM controlplane.capture_agency WHERE agency_id = ANY(%s)", [list(agency_ids)]
    ).fetchall()
    connection.commit()
    return {row[0] for row in rows}


def changes_forget(connection: psycopg.Connection, *, agency_id: UUID) -> int:
    """Forget the agency's recorded changes but keep its row (and fence): a completed move stays
    read-only, and a fenced agency's writes are refused before anything is recorded."""
    forgotten = connection.execute("DELETE FROM controlplane.change_log WHERE agency_id = %s", [agency_id]).rowcount
    connection.commit()
    return forgotten
