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
