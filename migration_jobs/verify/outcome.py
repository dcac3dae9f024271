"""What every check produces: one outcome per check and table, as a CheckResult row will hold it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

PASS, FAIL, ERROR = "pass", "fail", "error"
SAMPLE_SIZE = 20  # ids named per kind of problem; the totals are always exact


@dataclass(frozen=True)
class AgencyScope:
    """The agency under verification, by its id on each side of the migration."""

    source_agency_id: UUID  # the RevOS id, which is also the id map's agency_id
    target_agency_id: UUID  # the unified agency it became (the same id when it was new)
    # False after a rollback (or before any migration): nothing of the migration may remain.
    migrated: bool = True


@dataclass(frozen=True)
class CheckOutcome:
    check_name: str
    status: str
    table_name: str = ""
    expected: str = ""
    actual: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # what was found, as JSON
    # How long the check took, both databases' queries included (kept out of `details`, which says
    # what was found: a serial and a parallel run find the same, in different times).
    seconds: float | None = field(default=None, compare=False)


def status_of(ok: bool) -> str:
    return PASS if ok else FAIL


def not_applicable(check_name: str, table_name: str, reason: str) -> CheckOutcome:
    """A case this agency has no data for passes, saying so, rather than proving something vacuous."""
    return CheckOutcome(
        check_name, PASS, table_name, expected="not applicable", actual=reason, details={"not_applicable": reason}
    )


def ids(values: Iterable[object]) -> list[str]:
    return [str(value) for value in values]
