"""Where a measured run's time went, from what the run itself recorded: printed for a missed target.

The migration: its own steps (the engine logs them once per run, RUN_PHASES_MESSAGE, in the
worker's log) and, for the table copy, the writers' seconds per step of a batch (each table's
`phases` in the run's report), with how busy the writers were. The verification: the seconds of
each check (CheckResult.seconds), summed per kind of check, with the slowest ones.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from migration_jobs.etl.engine import RUN_PHASES_MESSAGE
from migration_jobs.models import MigrationRun, VerificationRun

SLOWEST = 5
_PHASE = re.compile(r"([a-z][a-z ]*?) (\d+(?:\.\d+)?)(?:,|$)")


def run_phases_logged(log: Path) -> dict[str, float]:
    """The run's own steps from the last RUN_PHASES_MESSAGE line of a worker's log; {} if none."""
    found: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if RUN_PHASES_MESSAGE in line:
            text = line.split(RUN_PHASES_MESSAGE + ": ", 1)[1].split('"')[0]
            found = {name.strip(): float(seconds) for name, seconds in _PHASE.findall(text)}
    return found


def migration_profile(*, run: MigrationRun, log: Path, writers: int) -> dict:
    """The run's steps, and the writers' seconds per step of the table copy."""
    phases: Counter[str] = Counter()
    for outcome in run.report.values():
        phases.update(outcome.get("phases", {}))
    steps = run_phases_logged(log)
    writer_seconds = sum(outcome.get("seconds", 0) for outcome in run.report.values())
    copy_seconds = steps.get("table copy")
    tables = sorted(run.report.items(), key=lambda item: -item[1].get("seconds", 0))[:SLOWEST]
    return {
        "run_steps": steps,
        "writer_phases": {name: round(seconds, 2) for name, seconds in phases.most_common()},
        "writer_seconds": round(writer_seconds, 2),
        "writers": writers,
        # Writer-seconds over what the writers could have given: below 1, some stood idle (a
        # table waiting for its parents, or one large table left alone at the end).
        "writers_busy": round(writer_seconds / (writers * copy_seconds), 2) if copy_seconds else None,
        "slowest_tables": {name: outcome.get("seconds", 0) for name, outcome in tables},
    }


def verification_profile(*, run: VerificationRun) -> dict:
    """Seconds per kind of check (isolation.* and schema.* each as one), and the slowest checks."""
    per_kind: Counter[str] = Counter()
    checks = list(run.results.exclude(seconds=None).values_list("check_name", "table_name", "seconds"))
    for name, _, seconds in checks:
        per_kind[name.split(".")[0]] += seconds
    slowest = sorted(checks, key=lambda check: -check[2])[:SLOWEST]
    return {
        "check_seconds": {kind: round(seconds, 2) for kind, seconds in per_kind.most_common()},
        "slowest_checks": {f"{name} {table}".strip(): seconds for name, table, seconds in slowest},
    }


def _seconds(figures: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.1f}" for name, seconds in figures.items()) or "-"


def profile_lines(report: dict) -> list[str]:
    """For each missed target of the migration or the verification, its median repeat's profile."""
    missed = {t["name"] for t in report["targets"] if t["met"] is False}
    lines = []
    migration = report["migration"].get("profile")
    migration_missed = missed & {"migration / pgloader rows/s", "migration / baseline rows/s"}
    if migration and report["migration"].get("seconds") and migration_missed:
        lines += [
            f"where the migration's {report['migration']['seconds']} s went (median repeat; baseline"
            f" {report['baseline']['seconds']} s):",
            f"  run steps (s): {_seconds(migration['run_steps'])}",
            f"  table copy, {migration['writers']} writers' seconds ({migration['writer_seconds']:.1f},"
            f" busy {migration['writers_busy']}): {_seconds(migration['writer_phases'])}",
            f"  slowest tables (writer-s): {_seconds(migration['slowest_tables'])}",
        ]
    verification = report["verification"].get("profile")
    if verification and report["verification"].get("seconds") and "verification / migration wall time" in missed:
        lines += [
            f"where the verification's {report['verification']['seconds']} s went (median repeat;"
            f" {report['parallelism']['verification_workers']} workers and the isolation checks beside them,"
            " so check-seconds add up to more than the wall time):",
            f"  check-seconds by kind: {_seconds(verification['check_seconds'])}",
            f"  slowest checks (s): {_seconds(verification['slowest_checks'])}",
        ]
    return ["", *lines] if lines else []
