"""The fleet rehearsal: a whole plan, migrate -> verify -> cutover, on scratch databases, measured.

`manage.py rehearse_fleet` creates scratch databases beside the configured ones and runs this in a
process of its own whose settings name only them (management/commands/rehearse_fleet.py); nothing
here opens anything but the configured databases of that process. It:

1. builds the schemas and seeds a fleet of skewed sizes (demo/fleet.py), a share merging into
   AudienceOS agencies, links and confirms each agency as staff would take the suggestions;
2. starts RQ worker processes and app-like writers on both databases (demo/app_writers.py);
3. migrates the fleet in a night's window, in waves (services/windows.py), opening another night
   whenever one ends with agencies left; the concurrency cap and the health throttle apply;
4. pauses the writers, catches every agency up (services/catch_up_stream.py) and verifies each on
   the workers (a full verification reads the agency whole: it needs a quiet moment); writers on;
5. cuts the fleet over in windows the same way, the writers moving to the unified database as
   each agency's RevOS fence refuses them;
6. stops the writers and looks for every acknowledged write where its agency's truth is, and
   reports (selectors/rehearsal.py renders it): wall times, each agency's migrate / verify /
   cutover seconds, write downtime p50 / p95 / max, writes acknowledged / refused / lost, throttle
   seconds, the slowest agencies, every failure with its step and reason, the databases' health.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID

import django_rq
from django.conf import settings
from django.core.management import call_command
from django.db.models import QuerySet
from django.utils import timezone

from migration_jobs.demo.app_writers import FleetWriters
from migration_jobs.demo.fleet import FleetAgency, fleet_seed
from migration_jobs.etl.capture_prune import capture_backlogs
from migration_jobs.etl.connections import connect, fetch_row
from migration_jobs.models import AgencyLink, BulkWindow, MigrationRun, VerificationRun
from migration_jobs.models.flags import FeatureFlag
from migration_jobs.run_kinds import run_kind_get, run_kind_values
from migration_jobs.selectors.agency_state import agency_cut_over, agency_cutover_refusal
from migration_jobs.selectors.rehearsal import Report, rehearsal_html
from migration_jobs.selectors.windows import bulk_window_plan
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
from migration_jobs.services.catch_up_stream import catch_up_stream_pass
from migration_jobs.services.database_marks import database_mark
from migration_jobs.services.schema import schema_apply
from migration_jobs.services.throttle import throttle_seconds_by_run, unified_health_problems
from migration_jobs.services.verification import verification_run_request
from migration_jobs.services.windows import bulk_window_advance, bulk_window_open, bulk_window_reopen

logger = logging.getLogger(__name__)
Status = MigrationRun.Status
REASON = "fleet rehearsal"
PHASE_LIMIT_SECONDS = 6 * 3600  # a phase that has not finished by then is reported as stuck
MAX_NIGHTS = 5  # a phase still not done after so many nights is reported with its failures


@dataclass(frozen=True)
class RehearsalPlan:
    """What to rehearse (the command's options)."""

    agencies: int
    max_rows: int
    merge_share: float
    workers: int
    writer_threads: int
    write_rate: float  # statements per second, all writers together
    wave_size: int
    window_minutes: float
    seed: int
    plan_agencies: int  # the real fleet's size, for the extrapolation
    report_dir: Path


@dataclass
class Sampler:
    """Once a second: rows copied so far, the unified database's health problems, the queue's depth."""

    samples: list[Report] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)

    def run(self) -> None:
        with connect("unified", autocommit=True, purpose="rehearsal-health") as unified:
            while not self.stopping.wait(1.0):
                rows = sum(
                    MigrationRun.objects.filter(kind__in=run_kind_values(loads=True)).values_list(
                        "rows_done", flat=True
                    )
                )
                self.samples.append(
                    {
                        "t": round(time.monotonic() - self.started, 1),
                        "rows": rows,
                        "problems": unified_health_problems(connection=unified),
                        "queued": django_rq.get_queue("migrations").count,
                    }
                )


def fleet_rehearse(*, plan: RehearsalPlan) -> Report:
    """Run the rehearsal (see the module docstring) and write its report; return the report."""
    started_at, started = timezone.now(), time.monotonic()
    _databases_build()
    fleet = fleet_seed(agencies=plan.agencies, max_rows=plan.max_rows, merge_share=plan.merge_share, seed=plan.seed)
    links = _links_confirm({agency.revos_agency_id for agency in fleet})
    # The waves take the largest agencies first, as staff would order them from the plans: a wave's
    # agencies are then of like sizes and its workers finish together, instead of one worker
    # carrying a large agency alone while the other waits for the next wave.
    planned = {agency.revos_agency_id: agency.planned_rows for agency in fleet}
    links.sort(key=lambda link: (-planned[link.revos_agency_id], link.name))
    seeded = time.monotonic()
    workers = [_worker_start(index, log_dir=plan.report_dir) for index in range(plan.workers)]
    writers = FleetWriters(
        agencies=[link.revos_agency_id for link in links],
        audience_leads=_audience_leads(links),
        threads=plan.writer_threads,
        rate=plan.write_rate,
        seed=plan.seed,
    )
    sampler = Sampler()
    sampling = threading.Thread(target=sampler.run, daemon=True)
    phases: dict[str, Report] = {}
    try:
        writers.start()
        sampling.start()
        phases["migrate"] = _phase_windows(plan, links, kind=BulkWindow.Kind.MIGRATE)
        phases["verify"] = _phase_verify(links, writers)
        phases["cutover"] = _phase_windows(plan, links, kind=BulkWindow.Kind.CUTOVER)
    finally:
        writers.stop()
        sampler.stopping.set()
        for worker in workers:
            _worker_stop(worker)
    lost = writers.lost(cut_over=lambda revos_id: _cut_over(links, revos_id))
    report = _report(plan, fleet, links, phases, writers, sampler, lost, started_at, seeded - started)
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    rehearsal_report_write(report=report, report_dir=plan.report_dir)
    return report


# --- set-up ------------------------------------------------------------------------------------


def _databases_build() -> None:
    call_command("migrate", verbosity=0)
    for alias in ("unified", "revos"):
        schema_apply(database=alias)
        database_mark(database=alias, purpose="test", reason="a fleet rehearsal's scratch database")
    FeatureFlag.objects.update_or_create(
        name="unified_db", defaults={"requires_verification": True, "enabled_globally": False, "rollout_percentage": 0}
    )


def _links_confirm(revos_ids: set[UUID]) -> list[AgencyLink]:
    agency_links_sync()
    links = []
    for link in AgencyLink.objects.filter(revos_agency_id__in=revos_ids).order_by("name"):
        links.append(
            agency_link_confirm(
                link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None
            )
        )
    return links


def _audience_leads(links: list[AgencyLink]) -> list[UUID]:
    """Leads of AudienceOS agencies the fleet does not move into: the other tenants' traffic."""
    with connect("unified", purpose="rehearsal") as unified:
        rows = unified.execute(
            "SELECT id FROM lead WHERE agency_id <> ALL(%s::uuid[]) ORDER BY id LIMIT 200",
            [[link.unified_agency_id for link in links]],
        ).fetchall()
    return [row[0] for row in rows]


def _worker_start(index: int, *, log_dir: Path) -> subprocess.Popen[bytes]:
    """A real worker process, as the Procfile runs one (a host of its own would look the same); its
    log beside the report."""
    command = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "rqworker", "migrations", "verification"]
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"worker-{index}.log", "w")  # noqa: SIM115 (the worker writes it until it stops)
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _worker_stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)  # a warm shutdown: the job in hand finishes
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def _cut_over(links: list[AgencyLink], revos_id: UUID) -> bool:
    link = next(link for link in links if link.revos_agency_id == revos_id)
    return agency_cut_over(link=link) is not None


# --- phases ------------------------------------------------------------------------------------


def _phase_windows(plan: RehearsalPlan, links: list[AgencyLink], *, kind: str) -> Report:
    """Every agency through one kind of run, in nights of `window_minutes`, until all are done."""
    started = time.monotonic()
    window = bulk_window_open(
        links=links, kind=kind, wave_size=plan.wave_size, stop_at=_night_end(plan), actor=None, reason=REASON
    )
    while time.monotonic() - started < PHASE_LIMIT_SECONDS:
        bulk_window_advance(window=window)
        window.refresh_from_db()
        state = bulk_window_plan(window=window)
        if state.finished:
            break
        if not state.active and (state.ended or not state.next_wave):
            # The night is over, or has nothing left to start, with agencies left (paused at its end,
            # refused or failed): the next night asks them again. A rehearsal's nights follow at once.
            if window.nights >= MAX_NIGHTS:
                break
            bulk_window_reopen(window=window, stop_at=_night_end(plan))
            continue
        time.sleep(0.5)
    window.refresh_from_db()
    state = bulk_window_plan(window=window)
    return {
        "seconds": round(time.monotonic() - started, 1),
        "nights": window.nights,
        "done": len(state.done),
        "bulk_request": str(window.bulk_request),
    }


def _night_end(plan: RehearsalPlan) -> datetime:
    return timezone.now() + timedelta(minutes=plan.window_minutes)


def _phase_verify(links: list[AgencyLink], writers: FleetWriters) -> Report:
    """A quiet moment: writers paused, every agency caught up, and verified on the workers where its
    cutover's interlock asks for it, writers on again.

    Each migration queued a verification of its agency (services/follow_ups.py); those that passed,
    writers on or not, are what the interlock asks for (passed, started after the migration), as in
    production: only the others are verified again, so the fleet is not read whole twice. Those
    still queued run now, in the quiet moment, and are waited for first."""
    started = time.monotonic()
    writers.paused.set()
    try:
        time.sleep(0.5)  # a write in flight commits
        catch_up_stream_pass()
        _verifications_wait(VerificationRun.objects.filter(agency_link__in=links))
        again = [link for link in links if agency_cutover_refusal(agency_link=link)]
        runs = [verification_run_request(link=link, actor=None) for link in again]
        _verifications_wait(VerificationRun.objects.filter(pk__in=[run.pk for run in runs]))
    finally:
        writers.paused.clear()
    passed = sum(agency_cutover_refusal(agency_link=link) is None for link in links)
    return {"seconds": round(time.monotonic() - started, 1), "nights": 1, "done": passed, "verified_again": len(again)}


def _verifications_wait(runs: QuerySet[VerificationRun]) -> None:
    deadline = time.monotonic() + PHASE_LIMIT_SECONDS
    while runs.filter(status__in=VerificationRun.ACTIVE_STATUSES).exists() and time.monotonic() < deadline:
        time.sleep(0.5)


# --- the report --------------------------------------------------------------------------------


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))], 3)


def _seconds(run: MigrationRun | VerificationRun) -> float | None:
    if run.started_at is None or run.finished_at is None:
        return None
    return round((run.finished_at - run.started_at).total_seconds(), 3)


def _report(
    plan: RehearsalPlan,
    fleet: list[FleetAgency],
    links: list[AgencyLink],
    phases: dict[str, Report],
    writers: FleetWriters,
    sampler: Sampler,
    lost: list[str],
    started_at: datetime,
    seed_seconds: float,
) -> Report:
    planned = {agency.revos_agency_id: agency for agency in fleet}
    agencies: list[Report] = []
    runs_out: list[Report] = []
    failures: list[Report] = []
    throttle = throttle_seconds_by_run()
    for link in links:
        runs = list(link.runs.order_by("created_at", "pk"))
        verifications = list(VerificationRun.objects.filter(agency_link=link).order_by("created_at"))
        migrate = [r for r in runs if run_kind_get(r.kind).loads]
        cutover = [r for r in runs if run_kind_get(r.kind).unified_db and r.status == Status.SUCCEEDED]
        rows = sum(r.rows_done for r in migrate if r.status == Status.SUCCEEDED) or max(
            (r.rows_done for r in migrate), default=0
        )
        agencies.append(
            {
                "name": link.name,
                "revos_agency_id": str(link.revos_agency_id),
                "merges": planned[link.revos_agency_id].merges,
                "rows": rows,
                "migrate_seconds": sum(s for r in migrate if (s := _seconds(r)) is not None),
                "verify_seconds": sum(s for v in verifications if (s := _seconds(v)) is not None),
                "cutover_seconds": _seconds(cutover[-1]) if cutover else None,
                "downtime_seconds": cutover[-1].report.get("window_seconds") if cutover else None,
                "cutover_steps": {step["name"]: step["seconds"] for step in cutover[-1].steps} if cutover else {},
                "throttle_seconds": round(sum(throttle.get(r.pk, 0.0) for r in runs), 2),
                "cut_over": bool(cutover),
            }
        )
        for run in runs:
            runs_out.append(
                {
                    "agency": link.name,
                    "kind": run.kind,
                    "status": run.status,
                    "start": _offset(run.started_at, started_at),
                    "end": _offset(run.finished_at, started_at),
                }
            )
            if run.status in (Status.FAILED, Status.CANCELLED):
                step = next((s["label"] for s in run.steps if s.get("status") == "failed"), run.failed_table or "")
                failures.append(
                    {"agency": link.name, "kind": run.kind, "step": step, "reason": run.error or run.status_note}
                )
        for verification in verifications:
            if verification.verdict == VerificationRun.Verdict.FAIL or verification.status == "error":
                failures.append(_verification_failure(link, verification))
    downtimes = [a["downtime_seconds"] for a in agencies if a["downtime_seconds"] is not None]
    total_rows = sum(a["rows"] for a in agencies)
    migrate_seconds = phases.get("migrate", {}).get("seconds") or 0
    largest = max(agencies, key=lambda a: a["rows"], default=None)
    fleet_seconds = sum(p["seconds"] for p in phases.values())
    return {
        "at": started_at.isoformat(),
        "plan": {k: (str(v) if isinstance(v, Path) else v) for k, v in plan.__dict__.items()},
        "seed_seconds": round(seed_seconds, 1),
        "fleet_seconds": round(fleet_seconds, 1),
        "phases": phases,
        "nights": sum(p["nights"] for p in phases.values() if "bulk_request" in p),
        "agencies_total": len(agencies),
        "agencies_cut_over": sum(a["cut_over"] for a in agencies),
        "rows_total": total_rows,
        "fleet_rows_per_second": round(total_rows / migrate_seconds, 1) if migrate_seconds else None,
        "largest_agency_rows_per_second": (
            round(largest["rows"] / largest["migrate_seconds"], 1) if largest and largest["migrate_seconds"] else None
        ),
        "downtime_seconds": {
            "p50": _percentile(downtimes, 0.5),
            "p95": _percentile(downtimes, 0.95),
            "max": max(downtimes) if downtimes else None,
            "mean": round(statistics.fmean(downtimes), 3) if downtimes else None,
        },
        "downtime_steps": _downtime_steps(agencies),
        "writes": {
            "acknowledged": sum(writers.tally.acknowledged.values()),
            "acknowledged_by_side": dict(writers.tally.acknowledged),
            "refused": sum(writers.tally.refused.values()),
            "refused_by_side": dict(writers.tally.refused),
            "lost": len(lost),
            "lost_examples": lost[:20],
            "errors": writers.tally.errors[:20],
        },
        "throttle_seconds": round(sum(throttle.values()), 1),
        "slowest": sorted(agencies, key=lambda a: -(a["migrate_seconds"] + (a["cutover_seconds"] or 0)))[:10],
        "failures": failures,
        "health": _health(sampler),
        "extrapolation": _extrapolation(plan, fleet_seconds, len(agencies)),
        "agencies": agencies,
        "runs": runs_out,
        "samples": sampler.samples,
    }


def _downtime_steps(agencies: list[Report]) -> Report:
    """Where the write downtime goes: each step from the fence to the switch, p50 / p95 / max over
    the cutovers, and what no step accounts for (the steps' own bookkeeping between them)."""
    fenced: dict[str, list[float]] = {}
    for agency in agencies:
        names = list(agency["cutover_steps"])
        if "fence" not in names or agency["downtime_seconds"] is None:
            continue
        inside = {name: agency["cutover_steps"][name] or 0.0 for name in names[names.index("fence") :]}
        for name, seconds in inside.items():
            fenced.setdefault(name, []).append(seconds)
        fenced.setdefault("between steps", []).append(agency["downtime_seconds"] - sum(inside.values()))
    return {
        name: {"p50": _percentile(values, 0.5), "p95": _percentile(values, 0.95), "max": round(max(values), 3)}
        for name, values in fenced.items()
    }


def _verification_failure(link: AgencyLink, verification: VerificationRun) -> Report:
    # The one queued after each migration runs while the app writes (the rehearsal verifies again
    # in a quiet moment before the cutovers); it says so, and which checks did not pass.
    step = "verification after the migration, writers on" if verification.migration_run_id else "verification"
    failed = verification.results.exclude(status="pass").values_list("check_name", "table_name")[:5]
    named = ", ".join(f"{check} {table}".strip() for check, table in failed)
    return {"agency": link.name, "kind": "verify", "step": step, "reason": verification.error or f"fail: {named}"}


def _offset(moment: datetime | None, origin: datetime) -> float | None:
    return round((moment - origin).total_seconds(), 2) if moment else None


def _health(sampler: Sampler) -> Report:
    """The databases at the end, and how often the unified database was strained on the way."""
    health: Report = {
        "strained_samples": sum(bool(s["problems"]) for s in sampler.samples),
        "samples": len(sampler.samples),
        "problems_seen": sorted({p for s in sampler.samples for p in s["problems"]})[:20],
    }
    for alias in ("revos", "unified"):
        with connect(alias, purpose="rehearsal-health") as connection:
            row = fetch_row(
                connection.execute(
                    "SELECT deadlocks, conflicts, xact_rollback, temp_bytes, pg_database_size(datname)"
                    " FROM pg_stat_database WHERE datname = current_database()"
                )
            )
            backlogs = capture_backlogs(connection)
            dead = connection.execute(
                "SELECT relname, n_dead_tup FROM pg_stat_user_tables ORDER BY n_dead_tup DESC LIMIT 3"
            ).fetchall()
        health[alias] = {
            "deadlocks": row[0],
            "conflicts": row[1],
            "rollbacks": row[2],
            "temp_bytes": row[3],
            "size_bytes": row[4],
            "capture_records_kept": sum(b.records for b in backlogs.values()),
            "most_dead_tuples": {name: count for name, count in dead},
        }
    return health


def _extrapolation(plan: RehearsalPlan, fleet_seconds: float, agencies: int) -> Report:
    per_agency = fleet_seconds / agencies if agencies else 0
    return {
        "plan_agencies": plan.plan_agencies,
        "seconds": round(per_agency * plan.plan_agencies, 1),
        "assumptions": (
            f"the real fleet's sizes are skewed like this one's (Zipf, the largest {plan.max_rows} rows); time grows"
            f" with the number of agencies at this run's {per_agency:.1f} s per agency; {plan.workers} workers and"
            " this machine's databases; nights of the same length"
        ),
    }


def rehearsal_report_write(*, report: Report, report_dir: Path) -> Path:
    """The report as JSON and as an HTML page with its plots; `latest.*` are the newest."""
    report_dir.mkdir(parents=True, exist_ok=True)
    stamp = report["at"][:19].replace(":", "").replace("-", "")
    text = json.dumps(report, indent=1, default=str)
    html = rehearsal_html(report=report)
    for name in (f"rehearsal-{stamp}", "latest"):
        (report_dir / f"{name}.json").write_text(text)
        (report_dir / f"{name}.html").write_text(html)
    return report_dir / "latest.json"
