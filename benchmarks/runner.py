"""One benchmark run on the configured databases: every measurement, in an order that keeps them fair."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from django.conf import settings

from benchmarks.baseline import baseline_measure
from benchmarks.changelist import changelist_measure
from benchmarks.cutover import cutover_measure
from benchmarks.fleet import fleet_measure
from benchmarks.machine import code_describe, machine_describe
from benchmarks.pgloader import pgloader_measure
from benchmarks.project import migration_measure, verification_measure
from benchmarks.repeats import measurement_summary
from benchmarks.report import (
    SETTLED_SPREAD_PCT,
    cutover_ratios,
    fleet_ratios,
    repeated_ratio_spreads,
    repeats_settled,
    report_evaluate,
)
from benchmarks.reverse_capture import reverse_capture_measure
from benchmarks.rls_read import rls_read_measure
from benchmarks.workload import bench_agency_seed, unified_reset
from migration_jobs.etl.parallel import parallelism

Say = Callable[[str], None]

DEFAULT_SIZES = (100_000, 1_000_000, 5_000_000)
DEFAULT_SCALES = (5_000_000,)  # besides --rows (1M): the ratios at 1M and at 5M
MEASUREMENTS = ("baseline", "baseline_fk", "pgloader", "migration", "verification")
# A verification slower than this many times the migration misses its target (0.25x) by so much that
# waiting for the exact figure is not worth it: it is stopped and reported as at least that slow.
VERIFY_WAIT_FACTOR = 4
VERIFY_MIN_WAIT = 120
VERIFICATION_NOT_RUN = {
    "status": "not run: the migration did not succeed",
    "verdict": "",
    "error": "",
    "seconds": None,
    "waited_seconds": None,
    "checks": 0,
    "not_passed": [],
    "peak_rss_bytes": None,
}


@dataclass(frozen=True)
class BenchOptions:
    rows: int = 1_000_000
    sizes: tuple[int, ...] = DEFAULT_SIZES
    clients: int = 1_000_000
    requests: int = 30
    repeats: int = 3  # of the baseline, pgloader, migration and verification measurements
    max_repeats: int = 5  # repeats in all while the ratios spread over SETTLED_SPREAD_PCT
    seed: int = 7
    capture_writes: int = 3000  # single-row transactions per set-up of the reverse capture measurement
    rls_leads: int = 1_000_000  # unified leads for the RLS read cost, over rls_agencies agencies
    rls_agencies: int = 50
    timeout: float = 3600  # seconds one worker may run before it is killed
    changes: int = 1000  # RevOS rows changed before each catch-up and the cutover
    writes: int = 2000  # single-row updates in each capture-overhead loop
    # The main agency's people: the cutover's window must not grow with them (accounts are
    # captured, not compared), so it is measured with many (5,000 come with 1M rows anyway).
    people: int = 10_000
    fleet_agencies: int = 200  # the fleet rehearsal (benchmarks/fleet.py; 0: left out): its agencies, rows in all,
    fleet_rows: int = 2_000_000
    fleet_workers: int = 2  # worker processes (the two)
    fleet_plan_agencies: int = 300  # the real fleet's size its wall time is extrapolated to
    fleet_redis_url: str = ""  # an empty Redis database for its queues ("": rehearse_fleet's own choice)
    # Further agency sizes at which the migration is held against the baseline and pgloader as at
    # `rows`, repeats and all (throughput falls as the indexes grow: the ratios must hold there too).
    scales: tuple[int, ...] = ()
    log_dir: Path = field(default_factory=lambda: Path("bench-results"))


def _say(message: str) -> None:
    print(f"bench {datetime.now():%H:%M:%S} {message}", file=sys.stderr, flush=True)


def _copy_tools_measure(*, agency_id: UUID, say: Say) -> dict:
    """The two references the migration is held against, on the agency just seeded."""
    say("baseline: COPY (SELECT ...) TO STDOUT -> COPY ... FROM STDIN")
    baseline = baseline_measure(agency_id=agency_id)
    say(f"baseline: {baseline['rows']:,} rows in {baseline['seconds']} s; again with the target's foreign keys")
    baseline_fk = baseline_measure(agency_id=agency_id, foreign_keys=True)
    say(f"baseline with foreign keys: {baseline_fk['seconds']} s; pgloader")
    pgloader = pgloader_measure()
    say(f"pgloader: {pgloader['status']} {pgloader.get('seconds', '')}")
    return {"baseline": baseline, "baseline_fk": baseline_fk, "pgloader": pgloader}


def _project_measure(
    *, agency_id: UUID, options: BenchOptions, worker_env: Mapping[str, str], say: Say
) -> tuple[dict, dict]:
    """Migrate the agency and verify it, each through a worker process."""
    say("migration through `rqworker migrations --burst`")
    migration, run = migration_measure(
        agency_id=agency_id, worker_env=worker_env, log_dir=options.log_dir, timeout=options.timeout
    )
    say(f"migration {migration['status']}: {migration['rows']:,} rows in {migration['seconds']} s; verification")
    if migration["status"] != "succeeded":
        return migration, VERIFICATION_NOT_RUN
    wait = max(VERIFY_MIN_WAIT, VERIFY_WAIT_FACTOR * migration["seconds"])
    verification = verification_measure(
        migration_run=run, worker_env=worker_env, log_dir=options.log_dir, timeout=min(options.timeout, wait)
    )
    seconds = verification["seconds"] or f"more than {verification['waited_seconds']:.0f}"
    say(f"verification {verification['verdict'] or verification['status']} in {seconds} s")
    return migration, verification


def _reverse_capture_measure(*, agency_id: UUID, migrated: dict, writes: int, say: Say) -> dict:
    """The reverse capture's cost on another agency's unified writes (the migrated agency's rows)."""
    if migrated["status"] != "succeeded":
        return {"status": "not run: the migration did not succeed"}
    say("unified app writes: without the control plane's triggers, with them idle, while agencies move")
    figures = reverse_capture_measure(writes=writes)
    if figures["status"] != "ok":
        return figures
    say(f"unified app writes: {figures['moving_vs_without']}x the writes/s while agencies move")
    return figures


def _cutover_measure(*, agency_id: UUID, options: BenchOptions, main: tuple[dict, dict], worker_env, say: Say) -> dict:
    """The cutover of the main agency, once it is migrated and verified (else: why not)."""
    migration, verification = main
    if migration["status"] != "succeeded" or verification["verdict"] != "pass":
        return {"status": "not run: the migration or its verification did not succeed"}
    say(f"cutover: capture overhead, catch-ups of {options.changes:,} changed rows, the cutover")
    figures = cutover_measure(
        agency_id=agency_id,
        worker_env=worker_env,
        log_dir=options.log_dir,
        timeout=options.timeout,
        changes=options.changes,
        writes=options.writes,
    )
    cutover = figures["cutover"]
    say(f"cutover {cutover['status']}: write downtime {cutover.get('window_seconds')} s")
    return {"status": "measured", **figures}


def _size_entry(requested: int, migration: dict, verification: dict) -> dict:
    return {
        "rows_requested": requested,
        "rows": migration["rows"],
        "peak_rss_bytes": migration["peak_rss_bytes"],
        "tree_peak_rss_bytes": migration["tree_peak_rss_bytes"],
        "migration_status": migration["status"],
        "migration_seconds": migration["seconds"],
        "migration_rows_per_second": migration["rows_per_second"],
        "verification_verdict": verification["verdict"],
        "verification_seconds": verification["seconds"],
        "verification_waited_seconds": verification["waited_seconds"],
        "verification_peak_rss_bytes": verification["peak_rss_bytes"],
    }


def _sizes_measure(
    *, options: BenchOptions, measured: Mapping[int, tuple[dict, dict]], worker_env, say: Say
) -> list[dict]:
    """The migration at every size of --sizes; a size measured already (the main agency, a scale)
    stands as it was measured."""
    sizes = []
    for index, size in enumerate(sorted(set(options.sizes))):
        if size in measured:
            sizes.append(_size_entry(size, *measured[size]))
            continue
        say(f"size {size:,}: seeding a RevOS agency")
        agency_id = bench_agency_seed(rows=size, seed=options.seed + 1 + index)
        figures = _project_measure(agency_id=agency_id, options=options, worker_env=worker_env, say=say)
        sizes.append(_size_entry(size, *figures))
    return sizes


def scale_entry(rows_requested: int, repeats: list[dict]) -> dict:
    """One agency size's repeats: each tool's summary and the repeated ratios' spreads."""
    return {
        "rows_requested": rows_requested,
        **{name: measurement_summary([repeat[name] for repeat in repeats]) for name in MEASUREMENTS},
        "ratio_spreads": repeated_ratio_spreads(repeats),
        "repeats": repeats,
    }


def _scales_measure(*, options: BenchOptions, worker_env: Mapping[str, str], say: Say) -> list[dict]:
    """The repeats of every further scale, each on an agency of its size alone in RevOS."""
    scales = []
    for index, rows in enumerate(sorted(set(options.scales) - {options.rows})):
        say(f"scale {rows:,}: seeding a RevOS agency")
        unified_reset()
        agency_id = bench_agency_seed(rows=rows, seed=options.seed + 100 + index)
        scales.append(
            scale_entry(rows, _repeats_measure(agency_id=agency_id, options=options, worker_env=worker_env, say=say))
        )
    return scales


def _repeats_measure(*, agency_id: UUID, options: BenchOptions, worker_env: Mapping[str, str], say: Say) -> list:
    """Every tool once per repeat, interleaved, so a slow spell of the machine touches them all alike.

    Between repeats the unified database is emptied again (it held only what the migration wrote),
    so each migration starts from the same empty, indexed tables. Where the ratios still spread over
    more than SETTLED_SPREAD_PCT after `options.repeats` (or a figure is missing), the repeats go on
    up to `options.max_repeats`, so a noisy median has more samples under it.
    """
    repeats: list[dict] = []
    planned = options.repeats
    while len(repeats) < planned:
        number = len(repeats) + 1
        if number > 1:
            unified_reset()
        say(f"repeat {number} of {planned}")
        figures = _copy_tools_measure(agency_id=agency_id, say=say)
        figures["migration"], figures["verification"] = _project_measure(
            agency_id=agency_id, options=options, worker_env=worker_env, say=say
        )
        repeats.append(figures)
        if len(repeats) == planned < options.max_repeats and not repeats_settled(repeats):
            planned = options.max_repeats
            say(f"the ratios spread over more than {SETTLED_SPREAD_PCT} % or lack a figure: {planned} repeats in all")
    return repeats


def _report_start(options: BenchOptions) -> dict:
    """What every report opens with: when, with which options, on which machine, at which commit."""
    options.log_dir.mkdir(parents=True, exist_ok=True)
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": {**asdict(options), "log_dir": str(options.log_dir)},
        "machine": machine_describe(),
        "code": code_describe(),
    }


def cutover_benchmark_run(*, options: BenchOptions, worker_env: Mapping[str, str], say: Say = _say) -> dict:
    """Only the cutover measurement (`--only cutover`): seed the main agency, migrate and verify it
    once through workers, then measure its cutover as `benchmark_run` does."""
    report = _report_start(options)
    say(f"seeding the main agency of about {options.rows:,} rows")
    agency_id = bench_agency_seed(rows=options.rows, seed=options.seed, people=options.people)
    main = _project_measure(agency_id=agency_id, options=options, worker_env=worker_env, say=say)
    report["reverse_capture"] = _reverse_capture_measure(
        agency_id=agency_id, migrated=main[0], writes=options.capture_writes, say=say
    )
    report["cutover"] = _cutover_measure(
        agency_id=agency_id, options=options, main=main, worker_env=worker_env, say=say
    )
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["ratios"] = {
        **cutover_ratios(report["cutover"]),
        "unified_writes_moving_vs_without": report["reverse_capture"].get("moving_vs_without"),
    }
    return report


def _fleet_measure(*, options: BenchOptions, worker_env: Mapping[str, str], say: Say) -> dict:
    return fleet_measure(
        agencies=options.fleet_agencies,
        rows=options.fleet_rows,
        workers=options.fleet_workers,
        plan_agencies=options.fleet_plan_agencies,
        redis_url=options.fleet_redis_url,
        seed=options.seed,
        worker_env=worker_env,
        log_dir=options.log_dir,
        timeout=options.timeout * 4,  # the whole fleet, seeding included, not one run
        say=say,
    )


def fleet_benchmark_run(*, options: BenchOptions, worker_env: Mapping[str, str], say: Say = _say) -> dict:
    """Only the fleet (`--only fleet`): one large agency migrated alone, then the fleet rehearsed."""
    report = _report_start(options)
    report["fleet"] = _fleet_measure(options=options, worker_env=worker_env, say=say)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["ratios"] = fleet_ratios(report["fleet"])
    return report


def benchmark_run(*, options: BenchOptions, worker_env: Mapping[str, str], say: Say = _say) -> dict:
    """Measure everything on the databases Django is configured with; returns the report.

    The RevOS and unified databases are emptied first and between sizes: point them at scratch
    databases (`python -m benchmarks` does).
    """
    started = time.monotonic()
    report = _report_start(options) | {
        "parallelism": {
            "migration_writers": parallelism(settings.MIGRATION_WRITERS),
            "verification_workers": parallelism(settings.VERIFICATION_WORKERS),
        },
    }
    say(f"seeding the main agency of about {options.rows:,} rows")
    agency_id = bench_agency_seed(rows=options.rows, seed=options.seed, people=options.people)
    report["repeats"] = _repeats_measure(agency_id=agency_id, options=options, worker_env=worker_env, say=say)
    for name in MEASUREMENTS:
        report[name] = measurement_summary([repeat[name] for repeat in report["repeats"]])
    main = report["migration"], report["verification"]
    # Before the cutover: it starts the reverse capture of this agency, whose writes are measured here.
    report["reverse_capture"] = _reverse_capture_measure(
        agency_id=agency_id, migrated=main[0], writes=options.capture_writes, say=say
    )
    report["cutover"] = _cutover_measure(
        agency_id=agency_id, options=options, main=main, worker_env=worker_env, say=say
    )
    # After the cutover: seeding an agency of another size empties the databases.
    report["scales"] = [
        scale_entry(options.rows, report["repeats"]),
        *_scales_measure(options=options, worker_env=worker_env, say=say),
    ]
    measured = {scale["rows_requested"]: (scale["migration"], scale["verification"]) for scale in report["scales"]}
    report["memory"] = {"sizes": _sizes_measure(options=options, measured=measured, worker_env=worker_env, say=say)}
    say(f"changelist: {options.clients:,} clients, {options.requests} requests")
    report["changelist"] = changelist_measure(clients=options.clients, requests=options.requests)
    say(f"RLS read cost: {options.rls_leads:,} leads over {options.rls_agencies} agencies")
    report["rls_read"] = rls_read_measure(
        leads=options.rls_leads, agencies=options.rls_agencies, requests=options.requests
    )
    report["fleet"] = (
        _fleet_measure(options=options, worker_env=worker_env, say=say)
        if options.fleet_agencies
        else {"status": "not run (--fleet-agencies 0)"}
    )
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["total_seconds"] = round(time.monotonic() - started, 1)
    report.update(report_evaluate(report))
    return report
