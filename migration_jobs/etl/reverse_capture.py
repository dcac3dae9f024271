"""Reverse capture: from its cutover on, what changes in an agency's unified rows, for a switch back.

The mechanism is the RevOS change capture (etl/capture.py) installed on the unified database: the
same SQL objects (sql/unified/0030_reverse_capture.sql is sql/revos/0002_change_capture.sql), the
same trigger, here on every unified table that RevOS rows go to (the shared ones included), keyed
by the unified agency id. Its fence is the unified-side fence of a switch back: the apps' writes
to the agency's rows fail with a message naming it, other agencies write on.

The same correctness argument holds: the agency is registered before unified_db is turned on for
it, and registering waits until no older unified transaction is left, so every write of the apps
to its rows from the cutover on is recorded (none can come earlier: RevOS is the agency's source
until the flag is on, and RevOS is fenced meanwhile).

With it, the rows AudienceOS already had and the agency reused are kept as they were at the
cutover (controlplane.reverse_baseline), so that a switch back sends back only what changed.
"""

from __future__ import annotations

from uuid import UUID

import psycopg
from psycopg import sql

from migration_jobs.etl import capture, id_map
from migration_jobs.etl.connections import connect
from migration_jobs.etl.reverse_accounts import accounts_baseline_record
from migration_jobs.mapping import QUALIFIED_TABLES, SHARED_TARGETS, TABLE_MAPS, table_map

BASELINE = sql.SQL("controlplane.reverse_baseline")


def unified_captured_tables() -> list[capture.CapturedTable]:
    """Every unified table a RevOS table goes to: the public ones carry agency_id (the agency its
    own id); the accounts (auth.users, auth.identities) reach it through the person's user row.

    A switch back still compares the accounts whole (etl/reverse_accounts.py); capturing them here
    is what holds them behind its fence, GoTrue's writes included (sign-ins alone pass: volatile).
    """
    tables: list[capture.CapturedTable] = []
    for entry in TABLE_MAPS:
        if not entry.captured or any(t.name == entry.target for t in tables):
            continue
        if entry.target == "agency":
            path: tuple[str, ...] = ("id",)
        elif entry.target not in QUALIFIED_TABLES:
            path = ("agency_id",)
        else:  # auth.users: ("id", "user", "agency_id"), the RevOS scope's hops in unified names
            path = (entry.scope[0][0],)
            for (_, parent), (next_column, _) in zip(entry.scope, [*entry.scope[1:], ("agency_id", "")], strict=True):
                path += (table_map(parent).target, next_column)
        tables.append(capture.CapturedTable(entry.target, path, entry.volatile))
    return tables


def reverse_capture_start(
    *, source_agency_id: UUID, unified_agency_id: UUID, agency_name: str, wait_seconds: float
) -> bool:
    """Record the agency's unified changes from now on, and keep its reused rows as they are now
    (the baseline a switch back compares with); True if it was not recorded before."""
    with connect("unified", purpose="reverse-capture") as connection:
        started = capture.capture_register(
            connection,
            agency_id=unified_agency_id,
            agency_name=agency_name,
            tables=unified_captured_tables(),
            wait_seconds=wait_seconds,
        )
        _baseline_record(connection, source_agency_id=source_agency_id)
        return started


def _baseline_record(connection: psycopg.Connection, *, source_agency_id: UUID) -> None:
    connection.execute(sql.SQL("DELETE FROM {} WHERE agency_id = %s").format(BASELINE), [source_agency_id])
    captured = {table.name for table in unified_captured_tables()} - QUALIFIED_TABLES  # accounts: below
    for table in sorted(SHARED_TARGETS & captured):
        connection.execute(
            sql.SQL(
                "INSERT INTO {baseline} (agency_id, table_name, row_id, row_data)"
                " SELECT %s, %s, t.id, to_jsonb(t) FROM {table} t WHERE t.id IN ({reused})"
            ).format(
                baseline=BASELINE,
                table=sql.Identifier(table),
                reused=id_map.agency_reused_in(agency_id=source_agency_id, target_table=table),
            ),
            [source_agency_id, table],
        )
    # The accounts are compared whole at a switch back; what AudienceOS had is kept for it too.
    with connection.cursor() as cursor:
        accounts_baseline_record(cursor, source_agency_id=source_agency_id)
    connection.commit()


def reverse_capture_stop(*, source_agency_id: UUID, unified_agency_id: UUID) -> None:
    """Stop recording (and fencing) the agency's unified rows and forget what was recorded."""
    with connect("unified", purpose="reverse-capture") as connection:
        capture.capture_remove(connection, agency_id=unified_agency_id)
        connection.execute(sql.SQL("DELETE FROM {} WHERE agency_id = %s").format(BASELINE), [source_agency_id])
        connection.commit()


def reverse_capture_state(*, unified_agency_id: UUID) -> capture.CaptureState | None:
    with connect("unified", purpose="reverse-capture") as connection:
        return capture.capture_state(connection, agency_id=unified_agency_id)


def reverse_changes(*, unified_agency_id: UUID) -> dict[str, frozenset[UUID]]:
    """Unified table -> ids of the agency's rows written since the cutover."""
    with connect("unified", purpose="reverse-capture") as connection:
        capture.capture_triggers_verify(connection, tables=unified_captured_tables(), database="unified")
        changed = capture.changes_since(connection, agency_id=unified_agency_id, since=None)
    return {table: frozenset(UUID(i) for i in ids) for table, ids in changed.items()}


def unified_watch_start(
    *, source_agency_id: UUID, unified_agency_id: UUID, agency_name: str, wait_seconds: float
) -> None:
    """Record the agency's unified writes from now on, afresh, before the cutover's check ahead of its
    fence (verify/delta.py): what changed there after that check is checked again inside the fence.

    The cutover's switch starts the reverse capture anew (reverse_capture_start), and a cutover that
    does not switch stops this (reverse_capture_stop): nothing recorded here outlives the cutover.
    """
    reverse_capture_stop(source_agency_id=source_agency_id, unified_agency_id=unified_agency_id)
    with connect("unified", purpose="reverse-capture") as connection:
        capture.capture_register(
            connection,
            agency_id=unified_agency_id,
            agency_name=agency_name,
            tables=unified_captured_tables(),
            wait_seconds=wait_seconds,
        )
