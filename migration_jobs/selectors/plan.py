"""The latest plan (dry run) of an agency, read for its page, its CSV of refused rows and Migrate's warning."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

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
    refused: list[dict[str, str]]  # RefusedRow.as_dict() of each (etl/preflight.py)
    refused_total: int
    not_migrated: dict[str, str]
    unmapped: list[str]
    conflicts: list[str] = field(default_factory=list)
    # People already in AudienceOS: their one account, the password they will use (for staff to tell them).
    merged_people: list[dict[str, Any]] = field(default_factory=list)
    # The apps' own triggers on the target tables and what the copy does with each (etl/plan.py).
    app_triggers: list[dict[str, Any]] = field(default_factory=list)
    sessions: str = ""  # what the cutover means for the people's sign-ins (selectors/sessions.py)


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
        PlanRow(
            name,
            tables[name]["target"],
            **{c: tables[name].get(c, 0) for c in PLAN_COLUMNS},
            refused=per_table.get(name, 0),
        )
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
        app_triggers=report.get("app_triggers", []),
        sessions=report.get("sessions", ""),
    )


def plan_refused_csv(*, plan: PlanSummary) -> str:
    """The refused rows as CSV (pgloader's reject file, for a spreadsheet)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REFUSED_CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(plan.refused)
    return out.getvalue()


def plan_lines(*, plan: PlanSummary) -> list[str]:
    """The plan as the agency page shows it, in plain lines: tables parents first with totals, then
    every refused row (table, id, constraint, why, value) and what stays behind."""
    header = ("source rows", "reused", "to write", "already migrated", "refused")
    lines = [f"  {'#':>3}  {'RevOS table -> unified table':52} " + " ".join(f"{h:>16}" for h in header)]
    for number, row in enumerate(plan.rows, start=1):
        counts = (row.source_rows, row.reused, row.to_write, row.already_migrated, row.refused)
        tables = f"{row.source} -> {row.target}"
        lines.append(f"  {number:>3}  {tables:52} " + " ".join(f"{c:>16,}" for c in counts))
    totals = [plan.totals[c] for c in (*PLAN_COLUMNS, "refused")]
    label = f"Total ({len(plan.rows)} tables, parents first)"
    lines.append(f"  {'':>3}  {label:52} " + " ".join(f"{c:>16,}" for c in totals))
    lines.append(f"Rows the unified schema would refuse: {plan.refused_total:,}")
    for bad in plan.refused:
        value = " ".join(str(bad.get("value", "")).split())
        value = value if len(value) <= 80 else value[:79] + "…"
        lines.append(f"  {bad['table']} {bad['source_id']}: {bad['constraint']} ({bad['reason']}) value {value!r}")
    if plan.refused_total > len(plan.refused):
        lines.append(f"  (the first {len(plan.refused)} are listed; the CSV has the same)")
    for conflict in plan.conflicts:
        lines.append(f"Conflict: {conflict}")
    if plan.unmapped:
        lines.append(f"Not mapped (their rows stay in RevOS): {', '.join(plan.unmapped)}")
    return lines


def plan_rows_planned(*, plan: PlanSummary | None) -> dict[str, int]:
    """Source rows per RevOS table in the plan (what a run's per-table progress is measured against)."""
    return {row.source: row.source_rows for row in plan.rows} if plan else {}
