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

from migration_jobs.etl.connections import fetch_row, fetch_value
from migration_jobs.mapping import TABLE_MAPS

TRIGGER = "controlplane_capture"
DELETE_TRIGGER = "controlplane_capture_delete"
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


class CaptureBroken(Exception):
    """A captured table's triggers are missing, disabled or not the control plane's: writes may have
    gone unrecorded, so nothing may trust the capture until a full read brings the agency level."""


class TransactionsStillOpen(Exception):
    """Transactions older than a point still run after the time allowed; the message names them."""


@dataclass(frozen=True)
class CapturedTable:
    """A table whose writes are captured: its name and the path from its rows to their agency id.

    `name` is bare in public, "schema.table" elsewhere (auth.users), as the catalog names tables.
    `agency_path` is the row's column, then (parent table, parent column) pairs up to the agency
    id: ("agency_id",), ("id",) for the agency table itself, ("post_id", "posts", "agency_id").
    An update that changes only `volatile` columns is neither recorded nor fenced (GoTrue's
    sign-in bookkeeping: mapping.TableMap.volatile).
    """

    name: str
    agency_path: tuple[str, ...]
    volatile: tuple[str, ...] = ()

    @property
    def schema_and_name(self) -> tuple[str, str]:
        schema, _, name = self.name.rpartition(".")
        return schema or "public", name

    @property
    def trigger_arguments(self) -> list[str]:
        """What sql/revos/0003_capture_final_values.sql's capture_row reads from TG_ARGV."""
        return [*self.agency_path, *(f"volatile:{column}" for column in self.volatile)]


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
        tables.append(CapturedTable(entry.source, path, entry.volatile))
    return tables


# --- installing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TriggerShape:
    """One of the triggers every captured table carries, as pg_trigger describes it."""

    name: str
    definition: str  # what CREATE TRIGGER says between the name and the table
    function: str
    tgtype: int  # pg_trigger.tgtype: 1 row, 2 before, 4 insert, 8 delete, 16 update, 32 truncate
    with_path: bool  # called with the row's agency path as arguments


# Inserts and updates AFTER the row is final (no later BEFORE trigger can move it past the fence);
# deletes BEFORE, so that the record exists when a cascade changes the children (see
# sql/revos/0003_capture_final_values.sql); every one ENABLE ALWAYS, for replica-mode sessions too.
TRIGGER_SHAPES = (
    TriggerShape(TRIGGER, "AFTER INSERT OR UPDATE", "controlplane.capture_row", 1 | 4 | 16, True),
    TriggerShape(DELETE_TRIGGER, "BEFORE DELETE", "controlplane.capture_row", 1 | 2 | 8, True),
    TriggerShape(TRUNCATE_TRIGGER, "BEFORE TRUNCATE", "controlplane.capture_truncate", 2 | 32, False),
)
TRIGGER_NAMES = tuple(shape.name for shape in TRIGGER_SHAPES)
# The unified database's guard (sql/unified/0062, etl/unified_guard.py). Where a unified table
# carries the capture triggers, their function makes the guard's decision too, in the same call
# (sql/unified/0066): the guard's own trigger is disabled with their install, enabled again with
# their removal, so that an app's write runs one trigger, not two. RevOS has no such trigger.
GUARD_TRIGGER = "controlplane_guard"
# Installs take turns on each database (capture_triggers_install); a key no other lock uses.
INSTALL_LOCK = "hashtext('controlplane.capture-install')"
ALWAYS = "A"  # pg_trigger.tgenabled: fires whatever session_replication_role says


def capture_triggers_problems(
    connection: psycopg.Connection, *, tables: Sequence[CapturedTable]
) -> dict[str, list[str]]:
    """Table -> what is wrong with its capture triggers (missing, disabled, changed); {} if nothing."""
    names = [f"{schema}.{name}" for schema, name in (t.schema_and_name for t in tables)]
    rows = connection.execute(
        "SELECT n.nspname || '.' || c.relname, t.tgname, t.tgtype, t.tgenabled, t.tgfoid::regproc::text, t.tgargs"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname = ANY(%s)"
        " WHERE n.nspname || '.' || c.relname = ANY(%s)",
        [list(TRIGGER_NAMES), names],
    ).fetchall()
    connection.commit()
    existing = {row[0] for row in rows}
    found = {
        (table, name): (tgtype, enabled, function, bytes(args).decode().split("\0")[:-1])  # each argument ends in NUL
        for table, name, tgtype, enabled, function, args in rows
        if name is not None
    }
    problems: dict[str, list[str]] = {}
    for table, qualified in zip(tables, names, strict=True):
        if qualified not in existing:
            problems.setdefault(table.name, []).append("the table is missing")
            continue
        for shape in TRIGGER_SHAPES:
            problem = _trigger_problem(shape, found.get((qualified, shape.name)), table)
            if problem:
                problems.setdefault(table.name, []).append(f"{shape.name} {problem}")
    return problems


def _trigger_problem(shape: TriggerShape, found: tuple[int, str, str, list[str]] | None, table: CapturedTable) -> str:
    if found is None:
        return "is missing"
    tgtype, enabled, function, args = found
    arguments = table.trigger_arguments if shape.with_path else []
    if tgtype != shape.tgtype or function != shape.function or list(args) != arguments:
        return "is not the control plane's (its events, function or arguments changed)"
    if enabled == "D":
        return "is disabled"
    if enabled != ALWAYS:
        return "does not fire in replica-mode sessions"
    return ""


def capture_triggers_verify(connection: psycopg.Connection, *, tables: Sequence[CapturedTable], database: str) -> None:
    """Refuse (CaptureBroken, naming the tables) unless every captured table's triggers are in place,
    when any agency is captured on this database (otherwise nothing relies on them yet).

    Only a table owner or a superuser can drop or disable a trigger, and no event trigger can tell
    (they need a superuser to create): so every catch-up, verification, cutover and switch back
    looks before it trusts the capture.
    """
    relied_on = fetch_value(connection.execute("SELECT EXISTS (SELECT 1 FROM controlplane.capture_agency)"))
    connection.commit()
    problems = capture_triggers_problems(connection, tables=tables) if relied_on else {}
    if problems:
        listed = sorted(problems.items())
        described = "; ".join(f"{table}: {', '.join(found)}" for table, found in listed[:5])
        if len(listed) > 5:
            described += f"; and {len(listed) - 5} more tables"
        raise CaptureBroken(
            f"The change capture on the {database} database is broken, so writes may have gone unrecorded"
            f" ({described}). A full read (migrate_agency --full) re-installs the triggers and brings the"
            " agency level."
        )


def capture_triggers_install(
    connection: psycopg.Connection, *, tables: Sequence[CapturedTable], repair: bool = False
) -> list[str]:
    """Give each table exactly the capture triggers (TRIGGER_SHAPES); return the tables changed.

    A trigger that is missing, disabled or changed while agencies are captured here may have let
    their writes through unrecorded. Without `repair` that refuses (CaptureBroken); with it (a full
    read, which re-reads everything anyway) the triggers are replaced and every captured agency's
    position is cleared, so that only a full read may bring any of them level again (`apply_begin`).
    A table's triggers are replaced in one transaction, so no write falls between old and new.
    CREATE TRIGGER briefly locks the table against writes: it waits at most a few seconds for the
    lock, and fails rather than queue the apps' writes behind it. Installs on one database take
    turns (INSTALL_LOCK): two agencies' first loads starting together would otherwise both create
    the same trigger, and the second fail.
    """
    connection.execute(f"SELECT pg_advisory_lock({INSTALL_LOCK})")
    connection.commit()
    try:
        return _triggers_install(connection, tables=tables, repair=repair)
    finally:
        connection.rollback()  # a failed statement must not keep the unlock from running
        connection.execute(f"SELECT pg_advisory_unlock({INSTALL_LOCK})")
        connection.commit()


def _triggers_install(connection: psycopg.Connection, *, tables: Sequence[CapturedTable], repair: bool) -> list[str]:
    problems = {
        table: found
        for table, found in capture_triggers_problems(connection, tables=tables).items()
        if found != ["the table is missing"]  # nothing to capture; the plan names a missing table
    }
    if not problems:
        return []
    captured = fetch_value(connection.execute("SELECT count(*) FROM controlplane.capture_agency"))
    connection.commit()
    if captured and not repair:
        capture_triggers_verify(connection, tables=tables, database=connection.info.dbname)
    by_name = {table.name: table for table in tables}
    guarded = _guard_trigger_tables(connection)
    for name in problems:
        target = sql.Identifier(*by_name[name].schema_and_name)
        with connection.transaction():
            connection.execute("SET LOCAL lock_timeout = '5s'")
            for shape in TRIGGER_SHAPES:
                arguments = by_name[name].trigger_arguments if shape.with_path else ()
                connection.execute(
                    sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(shape.name), target)
                )
                connection.execute(
                    sql.SQL("CREATE TRIGGER {} {} ON {} FOR EACH {} EXECUTE FUNCTION {}({})").format(
                        sql.Identifier(shape.name),
                        sql.SQL(shape.definition),
                        target,
                        sql.SQL("ROW" if shape.tgtype & 1 else "STATEMENT"),
                        sql.SQL(shape.function),
                        sql.SQL(", ").join(sql.Literal(step) for step in arguments),
                    )
                )
                connection.execute(
                    sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(target, sql.Identifier(shape.name))
                )
            if by_name[name].name in guarded:
                connection.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(target, GUARD))
            connection.execute("UPDATE controlplane.capture_agency SET applied_snapshot = NULL")
    connection.commit()
    return list(problems)


def capture_triggers_remove(connection: psycopg.Connection, *, tables: Sequence[CapturedTable]) -> None:
    """Detach the triggers (for a database no agency moves out of any more); a unified table's
    guard trigger takes the guard's work back in the same transaction."""
    guarded = _guard_trigger_tables(connection)
    for table in tables:
        target = sql.Identifier(*table.schema_and_name)
        for trigger in TRIGGER_NAMES:
            connection.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(trigger), target))
        if table.name in guarded:
            connection.execute(sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(target, GUARD))
    connection.commit()


GUARD = sql.Identifier(GUARD_TRIGGER)


def _guard_trigger_tables(connection: psycopg.Connection) -> set[str]:
    """The tables carrying the guard trigger, named as CapturedTable names them (bare in public)."""
    rows = connection.execute(
        "SELECT CASE WHEN n.nspname = 'public' THEN c.relname ELSE n.nspname || '.' || c.relname END"
        " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE t.tgname = %s",
        [GUARD_TRIGGER],
    ).fetchall()
    connection.commit()
    return {row[0] for row in rows}


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
    taken: str = fetch_value(snapshot.execute("SELECT pg_current_snapshot()::text"))
    return taken


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
    records, rows = fetch_row(
        connection.execute(
            "SELECT count(*), count(DISTINCT (table_name, row_id)) FROM controlplane.change_log"
            f" WHERE agency_id = %s AND {NOT_SEEN_BY}",
            [agency_id, since, since, since],
        )
    )
    connection.commit()
    return records, rows


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
    xid: int = row[0]
    return xid


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
        key = fetch_row(connection.execute("INSERT INTO controlplane.fence_key DEFAULT VALUES RETURNING key"))
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
    sees_all, oldest_running = fetch_row(
        connection.execute(
            "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
            " OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),"
            " pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
        )
    )
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
