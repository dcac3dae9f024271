"""A finished run's per-table report (inserted, updated, deleted, reused, refused, seconds), formatted."""

from __future__ import annotations

from dataclasses import dataclass

from migration_jobs.mapping import TABLE_MAPS
from migration_jobs.models import MigrationRun
from migration_jobs.run_kinds import run_kind_get

COUNTS = ("inserted", "updated", "deleted", "reused", "refused")
# The mapping lists tables roughly parents first; jsonb has lost the run's own order.
MAPPING_ORDER = {entry.source: index for index, entry in enumerate(TABLE_MAPS)}


@dataclass(frozen=True)
class RunReportRow:
    source: str
    target: str
    inserted: int
    updated: int
    deleted: int
    reused: int
    refused: int
    seconds: float | None


@dataclass(frozen=True)
class RunReport:
    run: MigrationRun
    rows: list[RunReportRow]
    totals: dict[str, float]


def run_report(*, run: MigrationRun | None) -> RunReport | None:
    """The report of a migrate or rollback run that has one; None otherwise (plans have their own)."""
    if run is None or run_kind_get(run.kind).dry_run or not run.report:
        return None
    tables = {
        name: outcome for name, outcome in run.report.items() if isinstance(outcome, dict) and "target" in outcome
    }
    rows = []
    for name in sorted(tables, key=lambda n: (MAPPING_ORDER.get(n, len(MAPPING_ORDER)), n)):
        outcome = tables[name]
        # A run stops at the first row the unified schema refuses: that table has one.
        refused = int(run.status == MigrationRun.Status.FAILED and run.failed_table == name)
        counts = {c: int(outcome.get(c, 0)) for c in COUNTS if c != "refused"}
        rows.append(RunReportRow(name, outcome["target"], **counts, refused=refused, seconds=outcome.get("seconds")))
    if not rows:  # a switch run's report holds its window, not tables: no empty "Total 0 tables"
        return None
    totals = {c: sum(getattr(r, c) for r in rows) for c in COUNTS}
    totals["seconds"] = round(sum(r.seconds or 0 for r in rows), 1)
    return RunReport(run=run, rows=rows, totals=totals)
