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
"""

from __future__ import annotations

from uuid import UUID

from migration_jobs.etl import capture
from migration_jobs.etl.connections import connect
from migration_jobs.mapping import TABLE_MAPS

OWNER_PREFIX = "switchback:"


def unified_captured_tables() -> list[capture.CapturedTable]:
    """Every unified table a RevOS table goes to; each carries agency_id (the agency its own id)."""
    targets = dict.fromkeys(entry.target for entry in TABLE_MAPS)
    return [capture.CapturedTable(t, ("id",) if t == "agency" else ("agency_id",)) for t in targets]


def reverse_capture_start(*, unified_agency_id: UUID, agency_name: str, wait_seconds: float) -> bool:
    """Record the agency's unified changes from now on; True if it was not recorded before."""
    with connect("unified", purpose="reverse-capture") as connection:
        return capture.capture_register(
            connection,
            agency_id=unified_agency_id,
            agency_name=agency_name,
            tables=unified_captured_tables(),
            wait_seconds=wait_seconds,
        )


def reverse_capture_stop(*, unified_agency_id: UUID) -> None:
    """Stop recording (and fencing) the agency's unified rows and forget what was recorded."""
    with connect("unified", purpose="reverse-capture") as connection:
        capture.capture_remove(connection, agency_id=unified_agency_id)


def reverse_capture_state(*, unified_agency_id: UUID) -> capture.CaptureState | None:
    with connect("unified", purpose="reverse-capture") as connection:
        return capture.capture_state(connection, agency_id=unified_agency_id)


def reverse_changes(*, unified_agency_id: UUID) -> dict[str, frozenset[UUID]]:
    """Unified table -> ids of the agency's rows written since the cutover."""
    with connect("unified", purpose="reverse-capture") as connection:
        changed = capture.changes_since(connection, agency_id=unified_agency_id, since=None)
    return {table: frozenset(UUID(i) for i in ids) for table, ids in changed.items()}
