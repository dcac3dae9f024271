"""The benchmark's code path at a tiny scale, so it cannot rot between the runs that measure.

Not a timed test: the figures at this size mean nothing; what matters is that every figure of the
report is produced, by the same code `python -m benchmarks` runs, through real worker processes.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import _arguments, _options
from benchmarks.pgloader import HEAP_MIN_MB, pgloader_heap_mb
from benchmarks.repeats import measurement_summary, spread_of
from benchmarks.report import FLEET_TARGETS, TARGETS, repeats_settled, report_table, report_write
from benchmarks.runner import BenchOptions, benchmark_run
from tests.conftest import worker_environment


@pytest.fixture
def report(tenant_db, rq_queues, tmp_path):
    from migration_jobs.models.flags import FeatureFlag

    # The cutover needs the unified_db flag, which a transactional test run before may have flushed.
    FeatureFlag.objects.update_or_create(
        name="unified_db", defaults={"requires_verification": True, "enabled_globally": False, "rollout_percentage": 0}
    )
    # Two repeats: the fewest that exercise the medians and spreads.
    options = BenchOptions(
        rows=1_500,
        sizes=(800, 1_500),
        clients=2_000,
        requests=3,
        capture_writes=60,
        rls_leads=5_000,
        rls_agencies=50,
        changes=20,
        writes=30,
        people=12,
        repeats=2,
        max_repeats=2,  # however the tiny figures spread (repeats_settled is tested on its own)
        fleet_agencies=0,  # a rehearsal of its own: tests/test_rehearsal.py runs one and reads it as the bench does
        scales=(800,),  # measured with repeats, it stands for the memory series' 800 too
        log_dir=tmp_path,
    )
    return benchmark_run(options=options, worker_env=worker_environment(), say=lambda message: None)


def test_benchmark_reports_every_figure(report, tmp_path):
    assert report["baseline"]["rows"] == report["migration"]["rows"] > 1_000
    assert report["baseline"]["rows_per_second"] > 0
    assert report["baseline_fk"]["rows"] == report["baseline"]["rows"]
    assert report["pgloader"]["status"] in ("ok", "not installed"), report["pgloader"]
    if report["pgloader"]["status"] == "ok":
        left_out = report["pgloader"]["left_out"]  # pgloader loads the public schema only
        assert set(left_out) == {"auth.users", "auth.identities", "auth.mfa_factors"}
        assert left_out["auth.users"] and left_out["auth.identities"]  # the demo people have no second factor
        assert report["pgloader"]["rows"] + sum(left_out.values()) == report["baseline"]["rows"]
    assert report["migration"]["status"] == "succeeded", report["migration"]["error"]
    assert report["migration"]["rows_per_second"] > 0
    assert report["verification"]["verdict"] == "pass", report["verification"]["not_passed"]
    assert report["verification"]["seconds"] > 0
    assert len(report["repeats"]) == 2
    for name in ("baseline", "baseline_fk", "migration", "verification"):
        spread = report[name]["seconds_spread"]
        assert spread["samples"] == spread["of"] == 2, name
        assert spread["min"] <= report[name]["seconds"] == spread["median"] <= spread["max"], name
    assert [r["migration"]["rows"] for r in report["repeats"]] == [report["baseline"]["rows"]] * 2
    assert all(r["verification"]["verdict"] == "pass" for r in report["repeats"])
    per_repeat = [r["migration_vs_baseline"] for r in report["per_repeat_ratios"]]
    assert report["ratio_spreads"]["migration_vs_baseline"]["min"] == min(per_repeat)
    assert report["parallelism"]["migration_writers"] >= 1
    scales = report["scales"]
    assert [scale["rows_requested"] for scale in scales] == [1_500, 800]
    assert scales[0]["migration"] == report["migration"]
    for scale in scales:
        assert scale["migration"]["status"] == "succeeded" and len(scale["repeats"]) == 2
        assert scale["ratio_spreads"]["migration_vs_baseline"]["samples"] == 2
        assert scale["baseline"]["rows"] == scale["migration"]["rows"]
    sizes = report["memory"]["sizes"]
    assert [s["rows_requested"] for s in sizes] == [800, 1_500]
    assert sizes[0]["peak_rss_bytes"] == scales[1]["migration"]["peak_rss_bytes"]
    assert all(s["peak_rss_bytes"] > 20 * 2**20 and s["migration_status"] == "succeeded" for s in sizes)
    assert report["changelist"]["clients"] == 2_000
    assert 0 < report["changelist"]["p50_ms"] <= report["changelist"]["p95_ms"]
    assert report["changelist"]["rows_on_page"] == 50
    rls = report["rls_read"]
    assert rls["leads"] >= 5_000 and rls["agency_leads"] == 100
    assert 0 < rls["authenticated"]["p50_ms"] <= rls["authenticated"]["p95_ms"]
    assert rls["authenticated_vs_owner_p95"] == round(rls["authenticated"]["p95_ms"] / rls["owner"]["p95_ms"], 3)
    cutover = report["cutover"]
    assert cutover["cutover"]["status"] == "succeeded", cutover["cutover"].get("error")
    # The rows changed before the cutover are applied before its fence; the fenced catch-up has what came after.
    assert cutover["cutover"]["window_seconds"] > 0 and cutover["cutover"]["changed_rows"] >= 0
    assert cutover["cutover"]["steps"]["catch_up_ahead"] is not None and "app_writes" in cutover["cutover"]
    assert cutover["capture_catch_up"]["status"] == cutover["full_catch_up"]["status"] == "succeeded"
    assert cutover["capture_overhead"]["writes"] == cutover["capture_overhead"]["recorded"] == 30
    assert cutover["capture_overhead"]["with_capture_rows_per_second"] > 0
    assert [t["name"] for t in report["targets"]] == [label for _, label, _, _ in TARGETS]
    capture = report["reverse_capture"]
    assert capture["status"] == "ok" and capture["writes"] == 60
    assert all(capture[k] > 0 for k in ("without_trigger_per_second", "agencies_moving_per_second"))
    fleet = {label for key, label, _, _ in FLEET_TARGETS}
    measured = [t for t in report["targets"] if t["name"] != "migration / pgloader rows/s" and t["name"] not in fleet]
    assert all(isinstance(t["met"], bool) for t in measured)
    assert report["fleet"]["status"] == "not run (--fleet-agencies 0)"
    assert all(t["met"] is None for t in report["targets"] if t["name"] in fleet)

    table = report_table(report)
    for label in (
        "baseline",
        "pgloader",
        "migration",
        "verification",
        "peak RSS",
        "p95",
        "migration writers",
        "median of 2 repeat(s)",
        "while other agencies are captured and guarded",
        "RLS read cost",
        "write downtime",
        "rows/s without capture",
        "fleet: not run (--fleet-agencies 0)",
        "throughput by agency size",
        *(name for _, name, _, _ in TARGETS),
    ):
        assert label in table
    report_write(report, tmp_path / "out" / "latest.json")
    assert json.loads((tmp_path / "out" / "latest.json").read_text())["ratios"] == report["ratios"]


def test_repeats_reduce_to_the_median_and_a_failed_repeat_is_shown_not_averaged_away():
    assert spread_of([3.0, 1.0, 2.0]) == {
        "median": 2.0,
        "min": 1.0,
        "max": 3.0,
        "spread_pct": 100.0,
        "samples": 3,
        "of": 3,
    }
    assert spread_of([None, None]) is None
    summary = measurement_summary(
        [
            {"seconds": 12.0, "rows_per_second": 100.0, "note": "slow"},
            {"seconds": 10.0, "rows_per_second": 120.0, "note": "median"},
            {"seconds": 8.0, "rows_per_second": 150.0, "note": "fast"},
        ]
    )
    assert (summary["note"], summary["seconds"], summary["rows_per_second"]) == ("median", 10.0, 120.0)
    assert summary["seconds_spread"]["spread_pct"] == 40.0
    failed = measurement_summary([{"seconds": 1.0}, {"seconds": None, "status": "failed", "error": "boom"}])
    assert (failed["status"], failed["failed_repeats"], failed["repeats"]) == ("failed", 1, 2)


def _repeat(*, migration: float, baseline: float, pgloader: float | None) -> dict:
    """A repeat's figures as repeats_settled reads them: rows/s, and seconds for the verification ratio."""
    return {
        "migration": {"rows_per_second": migration, "seconds": 10.0},
        "verification": {"seconds": 1.0, "waited_seconds": None},
        "baseline": {"rows_per_second": baseline},
        "baseline_fk": {"rows_per_second": baseline},
        "pgloader": {"rows_per_second": pgloader},
    }


def test_more_repeats_where_the_ratios_spread_over_a_quarter_or_a_peer_figure_is_missing():
    steady = [_repeat(migration=100, baseline=200, pgloader=90), _repeat(migration=110, baseline=210, pgloader=95)]
    assert repeats_settled(steady)
    # migration / baseline: 0.5 and 0.75, a spread of 40 % of their median.
    assert not repeats_settled([*steady[:1], _repeat(migration=150, baseline=200, pgloader=90)])
    # pgloader failed once: its ratio is missing from one repeat.
    assert not repeats_settled([*steady, _repeat(migration=100, baseline=200, pgloader=None)])
    # pgloader not installed: no repeat has the ratio, so it has nothing to settle.
    assert repeats_settled([_repeat(migration=100, baseline=200, pgloader=None)] * 3)
    assert _options(_arguments([])).max_repeats == 5
    assert _options(_arguments(["--repeats", "7"])).max_repeats == 7


def test_the_ratios_are_measured_at_5m_rows_too_unless_told_otherwise():
    assert (_options(_arguments([])).rows, _options(_arguments([])).scales) == (1_000_000, (5_000_000,))
    assert _options(_arguments(["--quick"])).scales == ()
    assert _options(_arguments(["--scales", "2M,500k"])).scales == (2_000_000, 500_000)
    assert _options(_arguments(["--scales", ""])).scales == ()


def test_pgloader_heap_fits_the_tables_within_half_the_memory():
    gib = 1024**3
    assert pgloader_heap_mb(source_bytes=100 * 1024**2, memory_bytes=24 * gib) == HEAP_MIN_MB
    assert pgloader_heap_mb(source_bytes=5 * gib, memory_bytes=64 * gib) == 2 * 5 * 1024 + 1024
    assert pgloader_heap_mb(source_bytes=50 * gib, memory_bytes=24 * gib) == 12 * 1024


def test_repeats_must_be_a_positive_count(capsys):
    with pytest.raises(SystemExit):
        _arguments(["--repeats", "0"])
    assert "0 is not a count of repeats" in capsys.readouterr().err


def test_rls_read_cost_is_measured_as_authenticated_and_as_owner(tenant_db):
    """The RLS part on its own, so it is exercised whatever the other parts do."""
    from benchmarks.rls_read import rls_read_measure

    rls = rls_read_measure(leads=5_000, agencies=50, requests=3)
    assert (rls["leads"], rls["agencies"], rls["agency_leads"]) == (5_000, 50, 100)
    for role in ("authenticated", "owner"):
        assert 0 < rls[role]["p50_ms"] <= rls[role]["p95_ms"]
    assert rls["authenticated_vs_owner_p95"] > 0
