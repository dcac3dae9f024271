"""The benchmark's code path at a tiny scale, so it cannot rot between the runs that measure.

Not a timed test: the figures at this size mean nothing; what matters is that every figure of the
report is produced, by the same code `python -m benchmarks` runs, through real worker processes.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.report import TARGETS, report_table, report_write
from benchmarks.runner import BenchOptions, benchmark_run
from migration_jobs.models.flags import FeatureFlag
from tests.conftest import worker_environment


@pytest.fixture
def report(tenant_db, rq_queues, tmp_path):
    # The seed flag the cutover turns on (a transactional test may have flushed the data migration's row).
    FeatureFlag.objects.update_or_create(name="unified_db", defaults={"requires_verification": True})
    options = BenchOptions(
        rows=1_500,
        sizes=(800, 1_500),
        clients=2_000,
        requests=3,
        capture_writes=60,
        changes=20,
        writes=30,
        log_dir=tmp_path,
    )
    return benchmark_run(options=options, worker_env=worker_environment(), say=lambda message: None)


def test_benchmark_reports_every_figure(report, tmp_path):
    assert report["baseline"]["rows"] == report["migration"]["rows"] > 1_000
    assert report["baseline"]["rows_per_second"] > 0
    assert report["baseline_fk"]["rows"] == report["baseline"]["rows"]
    assert report["pgloader"]["status"] in ("ok", "not installed"), report["pgloader"]
    if report["pgloader"]["status"] == "ok":
        assert report["pgloader"]["rows"] == report["baseline"]["rows"]
    assert report["migration"]["status"] == "succeeded", report["migration"]["error"]
    assert report["migration"]["rows_per_second"] > 0
    assert report["verification"]["verdict"] == "pass", report["verification"]["not_passed"]
    assert report["verification"]["seconds"] > 0
    sizes = report["memory"]["sizes"]
    assert [s["rows_requested"] for s in sizes] == [800, 1_500]
    assert all(s["peak_rss_bytes"] > 20 * 2**20 and s["migration_status"] == "succeeded" for s in sizes)
    assert report["changelist"]["clients"] == 2_000
    assert 0 < report["changelist"]["p50_ms"] <= report["changelist"]["p95_ms"]
    assert report["changelist"]["rows_on_page"] == 50
    cutover = report["cutover"]
    assert cutover["cutover"]["status"] == "succeeded", cutover["cutover"].get("error")
    assert cutover["cutover"]["window_seconds"] > 0 and cutover["cutover"]["changed_rows"] >= 20
    assert cutover["capture_catch_up"]["status"] == cutover["full_catch_up"]["status"] == "succeeded"
    assert cutover["capture_overhead"]["writes"] == 30
    assert cutover["capture_overhead"]["with_capture_rows_per_second"] > 0
    assert [t["name"] for t in report["targets"]] == [label for _, label, _, _ in TARGETS]
    capture = report["reverse_capture"]
    assert capture["status"] == "ok" and capture["writes"] == 60
    assert all(capture[k] > 0 for k in ("without_trigger_per_second", "another_agency_captured_per_second"))
    measured = [t for t in report["targets"] if t["name"] != "migration / pgloader rows/s"]
    assert all(isinstance(t["met"], bool) for t in measured)

    table = report_table(report)
    for label in (
        "baseline",
        "pgloader",
        "migration",
        "verification",
        "peak RSS",
        "p95",
        "while an agency is captured",
        "write downtime",
        "rows/s without capture",
        *(name for _, name, _, _ in TARGETS),
    ):
        assert label in table
    report_write(report, tmp_path / "out" / "latest.json")
    assert json.loads((tmp_path / "out" / "latest.json").read_text())["ratios"] == report["ratios"]
