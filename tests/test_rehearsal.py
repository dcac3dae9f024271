"""manage.py rehearse_fleet: a tiny fleet through migrate -> verify -> cutover on scratch databases, and
its refusals to come near the configured ones."""

from __future__ import annotations

import io
import json
from urllib.parse import urlparse

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from benchmarks.fleet import fleet_rehearsal_figures
from benchmarks.report import fleet_ratios, fleet_report_table
from tests.conftest import database_url


def databases_named(pattern: str) -> list[str]:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [pattern])
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db(databases="__all__")
def test_a_tiny_rehearsal_cuts_every_agency_over_loses_no_write_reports_and_cleans_up(tmp_path, admin_client, settings):
    out = io.StringIO()
    call_command(
        "rehearse_fleet", "--agencies", "3", "--max-rows", "400", "--workers", "2", "--write-rate", "30",
        "--wave-size", "2", "--report-dir", str(tmp_path), "--suffix", "rehearsaltest", stdout=out,
    )  # fmt: skip
    report = json.loads((tmp_path / "latest.json").read_text())
    assert report["agencies_total"] == 3 and report["agencies_cut_over"] == 3, report["failures"]
    assert report["writes"]["lost"] == 0 and report["writes"]["acknowledged"] > 0, report["writes"]
    assert report["writes"]["acknowledged_by_side"].get("unified", 0) > 0, "the writers followed the agencies over"
    assert report["downtime_seconds"]["max"] is not None and report["phases"]["migrate"]["nights"] >= 1
    assert report["phases"]["migrate"]["done"] == 3 and report["phases"]["cutover"]["done"] == 3
    page = (tmp_path / "latest.html").read_text()
    assert page.count("<svg") == 3 and "Write downtime p50 / p95 / max" in page
    assert databases_named("%rehearsaltest") == [], "the scratch databases are dropped"
    settings.REHEARSAL_REPORT_DIR = tmp_path
    shown = admin_client.get("/admin/migration_jobs/bulkwindow/rehearsal/").content.decode()
    assert shown.count('class="pygal-chart"') == 3 and f"{report['writes']['acknowledged']} / " in shown
    # Where the downtime went: the steps from the fence to the switch, each cutover's own in its row.
    steps = report["downtime_steps"]
    assert list(steps) == ["fence", "drain", "catch_up", "verify", "switch", "between steps"]
    assert steps["verify"]["p50"] <= steps["verify"]["p95"] <= steps["verify"]["max"]
    assert all(len(agency["cutover_steps"]) == 9 for agency in report["agencies"])
    assert "Write downtime by step, p95 (s)" in shown
    bench_reads(report)


def bench_reads(report: dict) -> None:
    """`make bench`'s fleet section (benchmarks/fleet.py) reads a real report: every figure it prints is there."""
    figures = {
        "status": "measured",
        "largest_rows": 400,
        "workers": 2,
        "single_agency": {"rows": 400, "rows_per_second": report["fleet_rows_per_second"] * 2},
        **fleet_rehearsal_figures(report),
    }
    figures["fleet_vs_single_agency"] = 0.5
    ratios = fleet_ratios(figures)
    assert (
        ratios["fleet_writes_lost"] == 0 and ratios["fleet_downtime_max_seconds"] == report["downtime_seconds"]["max"]
    )
    table = fleet_report_table({"machine": {"load_average_at_start": [1.0]}, "fleet": figures, "ratios": ratios})
    assert "3 of 3 agencies cut over" in table and f"{report['writes']['acknowledged']:,} acknowledged" in table
    words = " ".join(table.split())
    assert "fleet rows/s / one large agency's 0.50 >= 0.8 MISSED" in words
    assert "fleet app writes lost 0.00 0 met" in words
    assert "extrapolated: 300 agencies in" in table and "agencies a day at this pace" in table


@pytest.mark.django_db(databases="__all__")
def test_the_rehearsal_refuses_the_configured_databases_and_redis(monkeypatch, settings):
    # A configured database that happens to bear the scratch name is refused, never emptied.
    # The name is the URL's path; a unix-socket URL carries its directory in the query (?host=/dir).
    live = urlparse(database_url("revos"))._replace(path=f"/{settings.DATABASES['revos']['NAME']}_rehearsal").geturl()
    monkeypatch.setenv("REVOS_DATABASE_URL", live)
    with pytest.raises(CommandError, match=r"^Refusing to rehearse in .*_rehearsal: the rehearsal never touches"):
        call_command("rehearse_fleet", "--agencies", "1")
    monkeypatch.undo()
    with pytest.raises(CommandError, match=r"^Refusing the configured Redis database"):
        call_command("rehearse_fleet", "--agencies", "1", "--redis-url", settings.REDIS_URL)
    # The rehearsal's own process, pointed at databases that are not a rehearsal's scratch ones.
    monkeypatch.setenv("CONTROLPLANE_REHEARSAL", "1")
    with pytest.raises(CommandError, match=r"^Refusing to rehearse in .*: not a scratch database of a rehearsal"):
        call_command("rehearse_fleet", "--agencies", "1")
    with psycopg.connect(database_url("revos")) as connection:  # untouched: still the test schema
        assert connection.execute("SELECT count(*) FROM controlplane.database_mark").fetchone()[0] == 1
    with pytest.raises(CommandError, match="--merge-share is a share"):
        call_command("rehearse_fleet", "--merge-share", "2")
