"""A verification's results as staff read them: failures first, a table x check matrix, the rest folded."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from migration_jobs.models import CheckResult, VerificationRun

# Checks made once per table; the matrix has one column each.
TABLE_CHECKS = ("counts", "content", "references")


@dataclass(frozen=True)
class Check:
    """One result with its details as readable lines (ids, columns), not one JSON blob."""

    result: CheckResult

    @property
    def passed(self) -> bool:
        return self.result.status == CheckResult.Status.PASS

    @property
    def detail_lines(self) -> list[tuple[str, str]]:
        lines = []
        for key, value in sorted((self.result.details or {}).items()):
            if isinstance(value, list):
                text = ", ".join(json.dumps(v) if isinstance(v, dict | list) else str(v) for v in value)
            elif isinstance(value, dict):
                text = "; ".join(f"{k}: {v}" for k, v in value.items())
            else:
                text = str(value)
            lines.append((key.replace("_", " "), text))
        return lines


@dataclass(frozen=True)
class VerificationMatrix:
    tally: dict[str, int]  # status -> how many checks
    failures: list[Check]  # every check that did not pass, in the order they ran
    columns: tuple[str, ...]
    rows: list[tuple[str, list[Check | None]]]  # table, one cell per column; tables with a failure first
    others: list[Check]  # whole-database and per-case checks (isolation.*, schema.*)


def verification_matrix(*, run: VerificationRun) -> VerificationMatrix:
    checks = [Check(result) for result in run.results.all()]
    grid: dict[str, dict[str, Check]] = {}
    others = []
    for check in checks:
        if check.result.check_name in TABLE_CHECKS and check.result.table_name:
            grid.setdefault(check.result.table_name, {})[check.result.check_name] = check
        else:
            others.append(check)
    columns = tuple(c for c in TABLE_CHECKS if any(c in cells for cells in grid.values()))
    rows = [(table, [cells.get(c) for c in columns]) for table, cells in grid.items()]
    rows.sort(key=lambda row: (all(c is None or c.passed for c in row[1]), row[0]))
    return VerificationMatrix(
        tally=dict(Counter(check.result.status for check in checks)),
        failures=[check for check in checks if not check.passed],
        columns=columns,
        rows=rows,
        others=sorted(others, key=lambda check: (check.passed, check.result.check_name)),
    )
