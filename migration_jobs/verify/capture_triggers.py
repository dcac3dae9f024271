"""The change capture's triggers are in place on both databases, for an agency that relies on them.

A catch-up, the cutover and the switch back refuse to read a capture whose triggers were dropped,
disabled or changed (etl/capture.py `capture_triggers_verify`); this check says the same in every
verification, so staff see it before they ask for either.
"""

from __future__ import annotations

from uuid import UUID

from migration_jobs.etl import capture
from migration_jobs.etl.connections import connect
from migration_jobs.etl.reverse_capture import unified_captured_tables
from migration_jobs.verify.outcome import CheckOutcome, status_of

CHECK_NAME = "capture.triggers_in_place"


def capture_triggers_check(*, source_agency_id: UUID, target_agency_id: UUID) -> CheckOutcome:
    """Every captured table of each database that captures this agency has its triggers, enabled always."""
    problems: dict[str, list[str]] = {}
    sides = (
        ("revos", "RevOS", source_agency_id, capture.revos_captured_tables),
        ("unified", "unified", target_agency_id, unified_captured_tables),
    )
    watched = []
    for alias, label, agency_id, tables in sides:
        with connect(alias, purpose="verification") as connection:
            if not capture.agencies_registered(connection, [agency_id]):
                continue
            watched.append(label)
            found = capture.capture_triggers_problems(connection, tables=tables())
            problems.update({f"{label} {table}": issues for table, issues in found.items()})
    described = "; ".join(f"{table}: {', '.join(issues)}" for table, issues in sorted(problems.items()))
    return CheckOutcome(
        CHECK_NAME,
        status_of(not problems),
        ", ".join(sorted(problems))[:100],
        expected=f"the capture triggers on every captured table ({' and '.join(watched) or 'no database captures it'})",
        actual=described or "all in place, enabled always",
    )
