"""The latest plan (dry run) of an agency, read for its page, its CSV of refused rows and Migrate's warning."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.run_kinds import run_kind_values

PLAN_COLUMNS = ("source_rows", "reused", "to_write", "already_migrated")
REFUSED_CSV_COLUMNS = ("table", "source_id", "constraint", "reason", "value")


@dataclass(frozen=True)
class PlanRow:
    source: str
    target: str
    source_rows: int
    reused: int
    to_write: int
    already_migrated: int
    refused: int


@dataclass(frozen=True)
class PlanSummary:
    run: MigrationRun
    rows: list[PlanRow]  # parents first, as the run will go
    totals: dict[str, int]
    refused: list[dict]
    refused_total: int
    not_migrated: dict[str, str]
    unmapped: list[str]
    conflicts: list[str] = field(default_factory=list)
    # People already in AudienceOS: their one account, the password they will use (for staff to tell them).
    merged_people: list[dict] = field(default_factory=list)


def plan_latest(*, link: AgencyLink) -> PlanSummary | None:
    """The agency's latest finished plan, or None if it never had one."""
    run = link.runs.filter(kind__in=run_kind_values(dry_run=True), status=MigrationRun.Status.SUCCEEDED).first()
    return plan_summary(run=run) if run else None


def plan_summary(*, run: MigrationRun) -> PlanSummary:
    report = run.report or {}
    tables = report.get("tables", {})
    refused = report.get("refused", [])
    per_table: dict[str, int] = {}
    for row in refused:
        per_table[row["table"]] = per_table.get(row["table"], 0) + 1
    # jsonb keeps object keys in its own order: the plan records the run's order beside them.
    order = [name for name in report.get("order", []) if name in tables] or sorted(tables)
    rows = [
        PlanRow(name, tables[name]["target"], *(tables[name].get(c, 0) for c in PLAN_COLUMNS), per_table.get(name, 0))
        for name in order
    ]
    totals = {c: sum(getattr(r, c) for r in rows) for c in (*PLAN_COLUMNS, "refused")}
    totals["refused"] = report.get("refused_total", len(refused))
    return PlanSummary(
        run=run,
        rows=rows,
        totals=totals,
        refused=refused,
        refused_total=totals["refused"],
        not_migrated=report.get("not_migrated", {}),
        unmapped=report.get("unmapped", []),
        conflicts=report.get("conflicts", []),
        merged_people=report.get("merged_people", []),
    )


def plan_refused_csv(*, plan: PlanSummary) -> str:
    """The refused rows as CSV (pgloader's reject file, for a spreadsheet)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REFUSED_CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(plan.refused)
    return out.getvalue()
