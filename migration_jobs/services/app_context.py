"""Which app sees a unified row: staff decide, through the control plane; the apps cannot.

sql/unified/0061_app_context_guard.sql refuses the API roles' changes of an existing row's
app_context (an app could otherwise hide a shared row from the other app). The control plane's own
role may change it: this is the one place that does, for one row at a time, with a reason, and
records who, why and what it was in the unified database's audit_log, which both apps read.
"""

from __future__ import annotations

from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from migration_jobs.etl.connections import connect, fetch_value
from migration_jobs.models.unified import AppContext
from migration_jobs.refusals import RunRefused, reason_required


def unified_row_app_context_set(*, table: str, row_id: str, app_context: str, reason: str, actor: str) -> str:
    """Set one unified row's app_context; RunRefused says why not. Returns what was done, in a line."""
    if app_context not in AppContext.values:
        raise RunRefused(f"app_context must be one of {', '.join(AppContext.values)}, not {app_context!r}.")
    reason = reason_required(reason, "Changing which app sees a row")
    try:
        row = UUID(row_id)
    except ValueError:
        raise RunRefused(f"{row_id!r} is not a row id (a UUID).") from None
    with connect("unified", purpose="app-context") as connection:
        if table not in _tables_with_app_context(connection):
            raise RunRefused(f"The unified database has no table {table!r} with an app_context column.")
        key = "id" if table == "agency" else "agency_id"
        found = connection.execute(
            sql.SQL("SELECT app_context, {} FROM {} WHERE id = %s FOR UPDATE").format(
                sql.Identifier(key), sql.Identifier(table)
            ),
            [row],
        ).fetchone()
        if found is None:
            raise RunRefused(f"{table} has no row {row}.")
        before, agency = found
        if _held_by_revos(connection, table=table, row=row, agency=agency):
            raise RunRefused(
                f"{table} {row} came from RevOS, which holds its agency's data until the cutover: the next"
                " catch-up would set its app_context back. Change it after the cutover."
            )
        if before == app_context:
            connection.rollback()
            return f"{table} {row} is already {app_context}; nothing changed."
        connection.execute(
            sql.SQL("UPDATE {} SET app_context = %s WHERE id = %s").format(sql.Identifier(table)), [app_context, row]
        )
        connection.execute(
            "INSERT INTO audit_log (agency_id, action, entity_table, entity_id, details, app_context)"
            " VALUES (%s, 'app_context changed by staff', %s, %s, %s, 'both')",
            [agency, table, row, Jsonb({"from": before, "to": app_context, "reason": reason, "by": actor})],
        )
        connection.commit()
    return f"{table} {row}: app_context {before} -> {app_context} ({reason}); recorded in audit_log."


def _held_by_revos(connection: psycopg.Connection, *, table: str, row: UUID, agency: UUID) -> bool:
    """A row the migration inserted, of an agency RevOS holds the truth of (etl/unified_guard.py)."""
    return bool(
        fetch_value(
            connection.execute(
                "SELECT EXISTS (SELECT 1 FROM controlplane.agency_guard WHERE agency_id = %s) AND EXISTS"
                " (SELECT 1 FROM controlplane.id_map WHERE target_table = %s AND target_id = %s AND inserted)",
                [agency, table, row],
            )
        )
    )


def _tables_with_app_context(connection: psycopg.Connection) -> set[str]:
    rows = connection.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'app_context' AND NOT a.attisdropped"
        " WHERE n.nspname = 'public' AND c.relkind = 'r'"
    ).fetchall()
    return {name for (name,) in rows}
