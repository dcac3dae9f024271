"""While RevOS holds an agency's truth, the unified copies of its RevOS rows are read-only for the apps.

The guard (sql/unified/0062_migrated_rows_guard.sql) is on from the agency's first copy until its
cutover switches unified_db on, and again from a switch back on: a write the apps make to those
rows meanwhile is refused, with a message naming the agency, instead of being acknowledged and then
overwritten by the next catch-up or never reaching RevOS. Rows AudienceOS already had (reused) and
rows the apps create stay writable: no catch-up overwrites them. The control plane writes through.
"""

from __future__ import annotations

from uuid import UUID

import psycopg

from migration_jobs.etl.connections import connect


def guard_message(*, agency_name: str, unified_agency_id: UUID) -> str:
    return (
        f'Agency "{agency_name}" ({unified_agency_id}) lives in RevOS until its cutover: the unified copies of'
        " its RevOS rows are read-only meanwhile."
    )


def unified_guard_set(*, unified_agency_id: UUID, agency_name: str) -> None:
    """RevOS holds the agency's truth: refuse the apps' writes to the unified copies of its rows."""
    with connect("unified", purpose="guard") as connection:
        connection.execute(
            "INSERT INTO controlplane.agency_guard (agency_id, message) VALUES (%s, %s)"
            " ON CONFLICT (agency_id) DO UPDATE SET message = EXCLUDED.message",
            [unified_agency_id, guard_message(agency_name=agency_name, unified_agency_id=unified_agency_id)],
        )
        connection.commit()


def unified_guard_remove(*, unified_agency_id: UUID) -> None:
    """The unified database holds the agency's truth (its cutover), or nothing of it (a rollback)."""
    with connect("unified", purpose="guard") as connection:
        connection.execute("DELETE FROM controlplane.agency_guard WHERE agency_id = %s", [unified_agency_id])
        connection.commit()


def unified_guard_forget(cursor: psycopg.Cursor, *, unified_agency_id: UUID) -> None:
    """The guard's removal as one statement of a caller's transaction (a rollback's)."""
    cursor.execute("DELETE FROM controlplane.agency_guard WHERE agency_id = %s", [unified_agency_id])


def unified_guarded(*, unified_agency_id: UUID) -> bool:
    with connect("unified", purpose="guard") as connection:
        row = connection.execute(
            "SELECT 1 FROM controlplane.agency_guard WHERE agency_id = %s", [unified_agency_id]
        ).fetchone()
        connection.commit()
        return row is not None
