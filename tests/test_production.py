"""Running it for real: the production profile, the health throttle and the bulk auto-stop.

The production profile is checked in subprocesses (settings are read once per process): Django's
deploy checks, and gunicorn serving the admin behind an HTTPS proxy with WhiteNoise's static files.
The throttle is checked against a real worker process while the test holds a transaction or a
lock on the unified test database from a connection of its own.
"""

from __future__ import annotations

import http.client
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connections

from migration_jobs.demo.demo import demo_agency_seed, demo_data_seed
from migration_jobs.etl.catalog import catalog_read
from migration_jobs.etl.connections import connect
from migration_jobs.etl.plan import migration_plan_build
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
from migration_jobs.services.runs import migration_run_request
from migration_jobs.services.throttle import unified_health_problems
from tests.conftest import database_url, run_worker, worker_environment
from tests.test_many_workers import Worker, migration_log_lines, wait_for

Status = MigrationRun.Status
BASE_DIR = Path(settings.BASE_DIR)
HOST = "controlplane.example.com"


def production_environment(**extra: str) -> dict[str, str]:
    environment = worker_environment(
        DEBUG="false", SECRET_KEY=secrets.token_urlsafe(64), ALLOWED_HOSTS=HOST, LOG_FORMAT="keyvalue", **extra
    )
    for name in list(environment):  # the defaults are what is under test, not a developer's overrides
        if name.startswith(("SECURE_", "SESSION_COOKIE_", "CSRF_COOKIE_")) and name not in extra:
            del environment[name]
    return environment


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# The production profile -----------------------------------------------------------------------


def test_deploy_checks_pass_with_no_warning_under_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_environment())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize(
    ("missing", "message"),
    [("SECRET_KEY", "SECRET_KEY is not set"), ("ALLOWED_HOSTS", "ALLOWED_HOSTS is not set")],
)
def test_production_refuses_to_start_without_a_secret_key_or_allowed_hosts(missing, message):
    environment = production_environment()
    environment[missing] = ""
    result = manage("check", env=environment)
    assert result.returncode != 0
    assert message in result.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port: int, path: str, *, https: bool) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Host": HOST, **({"X-Forwarded-Proto": "https"} if https else {})}
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


def procfile() -> dict[str, str]:
    lines = (BASE_DIR / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_gunicorn_from_the_procfile_serves_the_admin_over_https_with_whitenoise_static_files(tmp_path):
    processes = procfile()
    assert processes["worker"].endswith("rqworker migrations verification audit")
    port = free_port()
    environment = production_environment(STATIC_ROOT=str(tmp_path / "static"), PORT=str(port))
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    collected = manage("collectstatic", "--noinput", env=environment)
    assert collected.returncode == 0, collected.stderr
    web = subprocess.Popen(
        processes["web"].split(), cwd=BASE_DIR, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for(lambda: _accepts(port) or web.poll() is not None, timeout=120, what="gunicorn to listen")
        assert web.poll() is None, web.stderr.read().decode()

        plain = get(port, "/admin/login/", https=False)
        assert plain.status == 301
        assert plain.getheader("Location") == f"https://{HOST}/admin/login/"

        login = get(port, "/admin/login/", https=True)
        assert login.status == 200
        assert login.getheader("Strict-Transport-Security") == "max-age=31536000; includeSubDomains; preload"
        assert "Secure" in login.getheader("Set-Cookie") and "csrftoken" in login.getheader("Set-Cookie")
        # The page links the hashed (forever-cacheable) name from the manifest collectstatic wrote.
        page = login.body.decode()
        hashed = page.split('href="/static/admin/css/base.', 1)[1].split('"', 1)[0]
        assert hashed.count(".") == 1 and hashed.endswith(".css"), hashed

        css = get(port, f"/static/admin/css/base.{hashed}", https=True)
        assert css.status == 200
        assert "immutable" in css.getheader("Cache-Control")
        assert css.body == (tmp_path / "static" / "admin" / "css" / f"base.{hashed}").read_bytes()
    finally:
        web.terminate()
        web.wait(timeout=30)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


# The health throttle -------------------------------------------------------------------------

THROTTLE_ENV = {
    "MIGRATION_BATCH_SIZE": "20",
    "THROTTLE_CHECK_INTERVAL_SECONDS": "0.2",
    "THROTTLE_MAX_SLEEP_SECONDS": "1",
}


@pytest.fixture
def big_agency(tenant_db, rq_queues):
    """A RevOS-only agency of some ten thousand rows: a run of many small batches."""
    agency_id = demo_agency_seed(scale=10, seed=41, name="Busy Agency")
    agency_links_sync()
    link = AgencyLink.objects.get(revos_agency_id=agency_id)
    return agency_link_confirm(
        link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None
    )


@pytest.fixture
def worker_processes(tenant_db, rq_queues):
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def outsider() -> psycopg.Connection:
    """A connection that is not the control plane's: AudienceOS traffic, as the throttle sees it."""
    return psycopg.connect(database_url("unified"), application_name="audienceos-report")


def run_row(run: MigrationRun) -> MigrationRun:
    run.refresh_from_db()
    return run


def assert_backs_off_then_finishes(run: MigrationRun, *, release, reason: str) -> None:
    """Throttled with the reason, no batch written meanwhile; after release it finishes the agency."""
    throttled = wait_for(
        lambda: (r := run_row(run)).status_note.startswith("throttled: ") and r,
        timeout=180,
        what="the run to report that it is throttled",
    )
    assert throttled.status == Status.RUNNING
    assert reason in throttled.status_note, throttled.status_note
    rows_while_throttled = throttled.rows_done
    time.sleep(2)  # a few checks go by: it keeps backing off
    still = run_row(run)
    assert still.status_note.startswith("throttled: ") and still.rows_done == rows_while_throttled
    release()
    finished = wait_for(
        lambda: (r := run_row(run)).status not in MigrationRun.ACTIVE_STATUSES and r,
        timeout=300,
        what="the run to finish once the database is healthy",
    )
    assert finished.status == Status.SUCCEEDED, finished.error
    assert finished.rows_done > rows_while_throttled and finished.status_note == ""
    with connections["unified"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM lead WHERE agency_id = %s", [run.unified_agency_id])
        migrated_leads = cursor.fetchone()[0]
    with connections["revos"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM leads WHERE agency_id = %s", [run.revos_agency_id])
        assert migrated_leads == cursor.fetchone()[0] > 0


def test_a_long_open_transaction_throttles_a_running_migration_until_it_ends(big_agency, worker_processes):
    run = migration_run_request(link=big_agency, kind=MigrationRun.Kind.MIGRATE, actor=None)
    worker = Worker("migrations", burst=True, THROTTLE_MAX_TRANSACTION_SECONDS="1", **THROTTLE_ENV)
    worker_processes.append(worker)
    wait_for(lambda: run_row(run).rows_done > 0, what="the run to write its first batches")
    report = outsider()
    try:  # closed whatever the outcome: left open, it would hold the next test's TRUNCATE
        report.execute("SELECT pg_sleep(0.1)")  # and the transaction stays open, idle
        assert_backs_off_then_finishes(run, release=report.close, reason="a transaction open")
    finally:
        report.close()
    assert worker.wait(timeout=120) == 0
    throttle_lines = [line for line in migration_log_lines([worker]) if "throttled: " in line]
    assert throttle_lines and all(f"run_id={run.pk}" in line for line in throttle_lines)
    assert all(f"agency_id={run.revos_agency_id}" in line for line in throttle_lines)


def test_a_lock_held_on_a_table_the_migration_writes_throttles_it_until_released(big_agency, worker_processes):
    with connect("revos") as source, connect("unified") as target:
        plans = migration_plan_build(source=catalog_read(source), target=catalog_read(target))
    last = plans[-1]  # nothing the run writes before it references it, so holding it blocks no batch
    run = migration_run_request(link=big_agency, kind=MigrationRun.Kind.MIGRATE, actor=None)
    worker = Worker("migrations", burst=True, THROTTLE_MAX_TRANSACTION_SECONDS="3600", **THROTTLE_ENV)
    worker_processes.append(worker)
    early = wait_for(lambda: (r := run_row(run)).rows_done > 0 and r, what="the run to write its first batches")
    assert early.current_table not in {p.source for p in plans[-3:]}, "the run is still far from that table"
    ddl = outsider()
    try:
        ddl.execute(f'LOCK TABLE "{last.target}" IN ACCESS EXCLUSIVE MODE')
        assert_backs_off_then_finishes(run, release=ddl.close, reason=f"{last.target} locked in AccessExclusiveLock")
    finally:
        ddl.close()
    assert worker.wait(timeout=120) == 0


def test_health_signals_name_lock_waits_and_read_healthy_otherwise(tenant_db, settings):
    settings.THROTTLE_MAX_TRANSACTION_SECONDS = 3600
    with connect("unified", autocommit=True, purpose="throttle") as checker:
        assert unified_health_problems(connection=checker) == []
        holder, waiter = outsider(), outsider()
        try:
            holder.execute("LOCK TABLE lead IN SHARE MODE")  # CREATE INDEX takes this one
            waiter.execute("SET lock_timeout = '30s'")
            waiting = _in_thread(lambda: waiter.execute("LOCK TABLE lead IN ROW EXCLUSIVE MODE"))
            problems = wait_for(
                lambda: (p := unified_health_problems(connection=checker)) and any("lock waits" in x for x in p) and p,
                timeout=60,
                what="the waiting writer to show",
            )
            assert "1 lock waits on lead (limit 0)" in problems
            assert any(x.startswith("lead locked in ShareLock by pid") for x in problems)
            settings.THROTTLE_MAX_LOCK_WAITS = 5
            assert not any("lock waits" in x for x in unified_health_problems(connection=checker))
        finally:
            holder.close()
            waiting.join(timeout=60)
            waiter.close()
        assert unified_health_problems(connection=checker) == []
        # The same between two of the control plane's own sessions (one run's trigger DDL, another
        # run's batch waiting for it) is the fleet's own work: no reason to back off.
        settings.THROTTLE_MAX_LOCK_WAITS = 0
        with connect("unified", purpose="migration") as holder, connect("unified", purpose="migration") as waiter:
            holder.execute("LOCK TABLE lead IN SHARE MODE")
            waiter.execute("SET lock_timeout = '30s'")
            waiting = _in_thread(lambda: waiter.execute("LOCK TABLE lead IN ROW EXCLUSIVE MODE"))
            wait_for(
                lambda: checker.execute(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid = %s", [waiter.info.backend_pid]
                ).fetchone()[0],
                timeout=60,
                what="the control plane's writer to wait",
            )
            assert unified_health_problems(connection=checker) == []
            holder.rollback()
            waiting.join(timeout=60)


def _in_thread(work):
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


# The bulk auto-stop ------------------------------------------------------------------------


def test_too_many_failures_pause_the_rest_of_a_bulk_request_and_staff_are_told(
    tenant_db, rq_queues, admin_client, settings
):
    settings.BULK_AUTO_STOP_FAILURE_SHARE = 0.25
    settings.BULK_AUTO_STOP_MIN_FINISHED = 2
    demo_data_seed(agencies=5, scale=1, seed=51)
    agency_links_sync()
    for link in AgencyLink.objects.all():
        agency_link_confirm(link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None)
    links = list(AgencyLink.objects.order_by("name"))  # the order the bulk action queues them in
    broken = links[:2]
    with connections["revos"].cursor() as cursor:
        for link in broken:  # a lead status the unified schema refuses: these runs fail
            cursor.execute(
                "UPDATE leads SET status = 'maybe later'"
                " WHERE id = (SELECT id FROM leads WHERE agency_id = %s ORDER BY id LIMIT 1)",
                [link.revos_agency_id],
            )

    response = admin_client.post(
        "/admin/migration_jobs/agencylink/",
        {"action": "migrate_selected", "_selected_action": [link.pk for link in links]},
        follow=True,
    )
    assert response.status_code == 200
    runs = list(MigrationRun.objects.order_by("pk"))
    assert len(runs) == 5 and len({run.bulk_request for run in runs}) == 1 and runs[0].bulk_request

    run_worker("migrations")

    by_agency = {run.agency_link_id: run_row(run) for run in runs}
    failed = [by_agency[link.pk] for link in broken]
    rest = [by_agency[link.pk] for link in links[2:]]
    assert [run.status for run in failed] == [Status.FAILED, Status.FAILED]
    assert [run.status for run in rest] == [Status.PAUSED] * 3
    assert all(run.started_at is None and run.rows_done == 0 for run in rest), "none of the rest started"
    for run in rest:
        assert run.status_note.startswith("auto-stopped: 2 of 2 finished runs of bulk request"), run.status_note
        assert "more than BULK_AUTO_STOP_FAILURE_SHARE 25%" in run.status_note
    assert rq_queues["migrations"].count == 0

    for page in ("/admin/migration_jobs/migrationrun/", "/admin/migration_jobs/agencylink/"):
        shown = admin_client.get(page).content.decode()
        assert f"Bulk migration {str(runs[0].bulk_request)[:8]} was stopped: 2 of 2 finished runs" in shown, page
        assert all(link.name in shown for link in links[2:])

    # Once staff migrate a paused agency again, its line no longer nags.
    for link in links[2:]:
        migration_run_request(link=link, kind=MigrationRun.Kind.MIGRATE, actor=None)
    assert "was stopped" not in admin_client.get("/admin/migration_jobs/migrationrun/").content.decode()
