"""The fleet: the whole plan rehearsed (`manage.py rehearse_fleet`), held against one large agency's migration.

The issue's question is whether moving hundreds of agencies of very different sizes keeps the pace
of moving one large one. So, in the same run and on the same databases:

1. one agency as large as the fleet's largest is seeded alone and migrated through a worker, as
   the main measurement does (benchmarks/project.py): the single agency's rows/s;
2. the rehearsal runs in a process of its own (its scratch databases `<bench name>_rehearsal`
   beside the bench's, its queues in an empty Redis database) with the fleet's agencies, its rows
   in all spread by Zipf's law, two worker processes and app writers on both databases; its
   report gives the fleet's rows/s (all rows over the migrate phase), write downtime p50 / p95 /
   max with the steps it went to, writes acknowledged / refused / lost, the fleet's wall time
   and its extrapolation.

The fleet's largest agency follows from its size: Zipf's law gives the k-th agency about
max / k rows, so `rows` in all over n agencies make the largest rows / H(n) (H the harmonic number).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from django.conf import settings

from benchmarks.project import migration_measure
from benchmarks.workload import bench_agency_seed
from migration_jobs.demo.fleet import MIN_ROWS

Say = Callable[[str], None]
PLAN_AGENCIES_NOTE = (
    "The plan (DATABASE-MERGE: RevOS + AudienceOS Unified Database) names no number of agencies: it gives a day for"
    " the data migration (Phase 2) and RevOS's tables, not its tenants. The extrapolation takes the issue's"
    " 'hundreds of agencies' at --fleet-plan-agencies and says how many of this fleet's agencies a day holds."
)


def fleet_largest_rows(*, agencies: int, rows: int) -> int:
    """The largest agency of a Zipf fleet of `agencies` holding about `rows` in all."""
    harmonic = sum(1 / rank for rank in range(1, agencies + 1))
    return max(MIN_ROWS, round(rows / harmonic))


def fleet_measure(
    *,
    agencies: int,
    rows: int,
    workers: int,
    plan_agencies: int,
    redis_url: str,
    seed: int,
    worker_env: Mapping[str, str],
    log_dir: Path,
    timeout: float,
    say: Say,
) -> dict:
    """The single large agency, then the rehearsal; the fleet's figures and their ratio."""
    largest = fleet_largest_rows(agencies=agencies, rows=rows)
    say(f"fleet: a single agency of {largest:,} rows (the fleet's largest) migrated alone")
    agency_id = bench_agency_seed(rows=largest, seed=seed)
    single, _ = migration_measure(agency_id=agency_id, worker_env=worker_env, log_dir=log_dir, timeout=timeout)
    say(f"fleet: single agency {single['status']}, {single['rows_per_second']} rows/s; the rehearsal")
    rehearsal = _rehearsal_run(
        agencies=agencies,
        largest=largest,
        workers=workers,
        plan_agencies=plan_agencies,
        redis_url=redis_url,
        seed=seed,
        worker_env=worker_env,
        report_dir=log_dir / "fleet",
        timeout=timeout,
    )
    figures = {
        "agencies": agencies,
        "rows_requested": rows,
        "largest_rows": largest,
        "workers": workers,
        "single_agency": {k: single[k] for k in ("status", "rows", "seconds", "rows_per_second", "error")},
        **rehearsal,
    }
    figures["fleet_vs_single_agency"] = _ratio(figures.get("fleet_rows_per_second"), single["rows_per_second"])
    say(f"fleet: {figures['status']}; {figures.get('fleet_rows_per_second')} rows/s")
    return figures


def _rehearsal_run(
    *,
    agencies: int,
    largest: int,
    workers: int,
    plan_agencies: int,
    redis_url: str,
    seed: int,
    worker_env: Mapping[str, str],
    report_dir: Path,
    timeout: float,
) -> dict:
    """`manage.py rehearse_fleet` in its own process (it makes and drops its scratch databases); its report."""
    command = [
        sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "rehearse_fleet",
        "--agencies", str(agencies), "--max-rows", str(largest), "--workers", str(workers),
        "--seed", str(seed), "--plan-agencies", str(plan_agencies), "--report-dir", str(report_dir),
    ]  # fmt: skip
    if redis_url:
        command += ["--redis-url", redis_url]
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "latest.json").unlink(missing_ok=True)  # an older report must not pass for this one
    started = time.monotonic()
    with open(report_dir / "rehearse_fleet.log", "w") as log:
        try:
            done = subprocess.run(command, env=dict(worker_env), stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"status": f"not measured: the rehearsal ran past {timeout:.0f} s"}
    seconds = round(time.monotonic() - started, 1)
    try:
        report = json.loads((report_dir / "latest.json").read_text())
    except (OSError, ValueError):
        tail = (report_dir / "rehearse_fleet.log").read_text()[-1500:]
        return {"status": f"not measured: the rehearsal exited {done.returncode} with no report", "output": tail}
    status = "measured" if done.returncode == 0 else f"measured, but the rehearsal exited {done.returncode}"
    return {"status": status, "process_seconds": seconds, **fleet_rehearsal_figures(report)}


def fleet_rehearsal_figures(report: dict) -> dict:
    """What the bench prints of the rehearsal's report (the whole report stays beside it)."""
    writes = report["writes"]
    extrapolation = report["extrapolation"]
    per_agency = report["fleet_seconds"] / report["agencies_total"] if report["agencies_total"] else None
    return {
        "agencies_cut_over": report["agencies_cut_over"],
        "agencies_total": report["agencies_total"],
        "rows": report["rows_total"],
        "seed_seconds": report["seed_seconds"],
        "fleet_seconds": report["fleet_seconds"],
        "phases_seconds": {name: phase["seconds"] for name, phase in report["phases"].items()},
        "nights": report["nights"],
        "fleet_rows_per_second": report["fleet_rows_per_second"],
        "downtime_seconds": report["downtime_seconds"],
        "downtime_steps": report.get("downtime_steps", {}),
        "writes": {k: writes[k] for k in ("acknowledged", "refused", "lost")},
        "throttle_seconds": report["throttle_seconds"],
        "failures": len(report["failures"]),
        "failure_examples": report["failures"][:5],
        "extrapolation": {
            **extrapolation,
            "agencies_per_day": round(86_400 / per_agency) if per_agency else None,
            "plan_note": PLAN_AGENCIES_NOTE,
        },
    }


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator and denominator else None
