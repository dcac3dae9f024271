"""The reconciler: runs whose worker died and fences no run owns are put right without any request.

Real databases and Redis: the orphaned states are made for real (a running run whose job and
worker do not exist, a fence set in RevOS for a run that ended), and "RevOS down" is RevOS refusing
connections for real (ALTER DATABASE ... ALLOW_CONNECTIONS false, its sessions ended), during a
cutover's drain in one test.
"""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.core.cache import cache
from django.core.management import CommandError, call_command, get_commands
from django.db import connections
from django.utils import timezone
from psycopg import sql
from psycopg.conninfo import make_conninfo

from migration_jobs.demo.demo import demo_data_seed
from migration_jobs.etl import capture
from migration_jobs.etl.connections import connect
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.models.flags import FeatureFlag
from migration_jobs.selectors.agency_state import agency_revos_read_only
from migration_jobs.selectors.flags import agency_flag_enabled
from migration_jobs.selectors.reconcile import LAST_PASS_KEY
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
from migration_jobs.services.fence import fence_message, fence_owner
from migration_jobs.services.kinds.cutover import cutover_run_request
from migration_jobs.services.reconcile import RECONCILER_USERNAME
from migration_jobs.services.runs import migration_run_request
from migration_jobs.services.verification import verification_run_request
from tests.conftest import database_url, run_worker, worker_environment

Status, Kind = MigrationRun.Status, MigrationRun.Kind
BASE_DIR = Path(settings.BASE_DIR)


@pytest.fixture
def links(tenant_db, rq_queues) -> tuple[AgencyLink, AgencyLink]:
    """Two confirmed RevOS agencies with demo rows, their changes captured in RevOS (nothing migrated)."""
    cache.delete(LAST_PASS_KEY)  # no reconciler has reported: each test says when one has
    demo_data_seed(agencies=3, scale=1, seed=5)
    agency_links_sync()
    confirmed = [
        agency_link_confirm(link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None)
        for link in AgencyLink.objects.order_by("name")[:2]
    ]
    with connect("revos", purpose="test") as connection:
        for link in confirmed:
            capture.capture_register(
                connection,
                agency_id=link.revos_agency_id,
                agency_name=link.name,
                tables=capture.revos_captured_tables(),
                wait_seconds=30,
            )
    yield confirmed[0], confirmed[1]
    cache.delete(LAST_PASS_KEY)


def ended_cutover(link: AgencyLink, status: str) -> MigrationRun:
    """A cutover run that ended in `status`, still marked as holding its fence."""
    return MigrationRun.objects.create(
        agency_link=link,
        revos_agency_id=link.revos_agency_id,
        unified_agency_id=link.unified_agency_id,
        kind=Kind.CUTOVER,
        status=status,
        started_at=timezone.now(),
        finished_at=timezone.now(),
        fence_held=True,
        error="" if status == Status.SUCCEEDED else "Step Drain older transactions failed: the server closed",
    )


def fence(link: AgencyLink, run: MigrationRun) -> None:
    with connect("revos", purpose="test") as connection:
        capture.fence_set(
            connection, agency_id=link.revos_agency_id, owner=fence_owner(run), message=fence_message(link)
        )


def revos_fence(link: AgencyLink) -> str | None:
    """The owner of the agency's RevOS fence, None when it is not fenced."""
    with connect("revos", purpose="test") as connection:
        state = capture.capture_state(connection, agency_id=link.revos_agency_id)
    return state.fence_owner if state and state.fenced_at else None


def revos_write_error(link: AgencyLink) -> str | None:
    """One update of one of the agency's leads in RevOS, as an app would: the error, or None."""
    try:
        with psycopg.connect(database_url("revos"), autocommit=True) as connection:
            connection.execute(
                "UPDATE leads SET name = left(coalesce(name, '') || '+', 200)"
                " WHERE id = (SELECT id FROM leads WHERE agency_id = %s ORDER BY id LIMIT 1)",
                [link.revos_agency_id],
            )
    except psycopg.errors.ReadOnlySqlTransaction as error:
        return str(error)
    return None


def history(link: AgencyLink) -> list[str]:
    entries = LogEntry.objects.filter(object_id=str(link.pk), user__username=RECONCILER_USERNAME)
    return list(entries.order_by("id").values_list("change_message", flat=True))


def reconcile_once() -> str:
    out = io.StringIO()
    call_command("reconcile", "--once", stdout=out)
    return out.getvalue()


def agency_page(client, admin_user, link: AgencyLink) -> str:
    client.force_login(admin_user)
    response = client.get(f"/admin/migration_jobs/agencylink/{link.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


@contextmanager
def revos_refusing_connections() -> Iterator[None]:
    """RevOS down, for real: its database takes no new connection and its sessions are ended."""
    name = settings.DATABASES["revos"]["NAME"]
    # Another database of the same server (the URL may name a socket directory in its query).
    with psycopg.connect(make_conninfo(database_url("revos"), dbname="postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
            yield
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(name)))
            connections["revos"].close()  # this process's session was ended with the others


# --- runs whose worker died ----------------------------------------------------------------------


def test_a_running_run_whose_job_and_worker_are_gone_is_failed_by_a_pass_and_in_the_agencys_history(links):
    link, other = links
    dead = MigrationRun.objects.create(
        agency_link=link,
        revos_agency_id=link.revos_agency_id,
        unified_agency_id=link.unified_agency_id,
        kind=Kind.MIGRATE,
        status=Status.RUNNING,
        job_id=f"run-{uuid.uuid4()}",  # never queued: no job, no worker, no lock
        started_at=timezone.now(),
    )
    waiting = migration_run_request(link=other, kind=Kind.PLAN, actor=None)  # queued, its job in Redis

    out = reconcile_once()

    dead.refresh_from_db()
    waiting.refresh_from_db()
    assert dead.status == Status.FAILED and "worker stopped" in dead.error
    assert waiting.status == Status.QUEUED, "a queued run waits for its worker"
    assert f"run {dead.pk} (Migrate) failed" in out
    assert [entry for entry in history(link) if f"run {dead.pk} (Migrate) failed" in entry]
    assert history(other) == []


# --- fences no run owns --------------------------------------------------------------------------


def test_a_fence_whose_run_failed_is_lifted_once_revos_answers_and_the_page_says_when(links, client, admin_user):
    link, cut_over = links
    failed = ended_cutover(link, Status.FAILED)
    fence(link, failed)
    fence(cut_over, ended_cutover(cut_over, Status.SUCCEEDED))  # cut over: its fence stands
    assert revos_write_error(link) is not None and agency_revos_read_only(link=link)
    page = agency_page(client, admin_user, link)
    assert "fenced, no run owns it; no reconciler is running" in page, "the page alone does not lift it"

    # A pass while RevOS is down says so in one line, and leaves the fence to the next pass.
    with revos_refusing_connections(), pytest.raises(CommandError) as refused:
        reconcile_once()
    assert "cannot be reached" in str(refused.value) and "\n" not in str(refused.value)
    assert revos_fence(link) == fence_owner(failed) and history(link) == []
    page = agency_page(client, admin_user, link)  # RevOS is back; the next pass is due
    assert re.search(r"RevOS \(by migrationrun:\d+\): fenced, no run owns it; lifting at \d{4}-\d\d-\d\d ", page)

    out = reconcile_once()

    assert revos_fence(link) is None and revos_write_error(link) is None
    assert not agency_revos_read_only(link=link), "the flags API no longer says read-only"
    assert f"lifted the RevOS fence held by {fence_owner(failed)}" in out
    assert any(f"lifted the RevOS fence held by {fence_owner(failed)}" in entry for entry in history(link))
    assert revos_fence(cut_over) is not None and revos_write_error(cut_over) is not None
    assert history(cut_over) == []
    assert "no run owns it" not in agency_page(client, admin_user, link)


def verified_and_migrated(link: AgencyLink) -> AgencyLink:
    # The seed flag (a transactional test elsewhere may have flushed the data migration's row).
    FeatureFlag.objects.update_or_create(
        name="unified_db", defaults={"requires_verification": True, "enabled_globally": False, "rollout_percentage": 0}
    )
    migration_run_request(link=link, kind=Kind.MIGRATE, actor=None)
    run_worker("migrations", "verification")
    verification_run_request(link=link, actor=None)
    run_worker("verification")
    return link


def draining(run: MigrationRun) -> bool:
    """Wait until the cutover holds its fence and drains; False if it ended (or 60 s passed) first."""
    deadline = time.monotonic() + 60
    while not MigrationRun.objects.filter(
        pk=run.pk, fence_held=True, current_table="Drain older transactions"
    ).exists():
        active = MigrationRun.objects.filter(pk=run.pk, status__in=MigrationRun.ACTIVE_STATUSES).exists()
        if time.monotonic() > deadline or not active:
            return False
        time.sleep(0.05)
    return True


def stop_revos_in_the_drain(run: MigrationRun, seen: list) -> None:
    """Stop RevOS once the cutover drains; when the run has ended, make one pass while RevOS is
    still down; then start RevOS again. `seen` gets what that pass raised (or any failure here)."""
    try:
        if not draining(run):
            return
        with revos_refusing_connections():
            seen.append("stopped")
            while MigrationRun.objects.filter(pk=run.pk, status=Status.RUNNING).exists():
                time.sleep(0.05)
            reconcile_once()
    except BaseException as error:  # seen by the test, not lost in the thread
        seen.append(error)
    finally:
        connections.close_all()


def cutover_with_revos_stopped_in_its_drain(link: AgencyLink) -> tuple[MigrationRun, list]:
    app = psycopg.connect(database_url("revos"), application_name="slow-app")
    try:
        # An app transaction older than the fence: the drain waits for it, and RevOS stops meanwhile.
        app.execute("UPDATE leads SET name = 'w3' WHERE agency_id = %s", [link.revos_agency_id])
        run = cutover_run_request(link=link, reason="go", actor=None)
        seen: list = []
        stopper = threading.Thread(target=stop_revos_in_the_drain, args=(run, seen))
        stopper.start()
        try:
            run_worker("migrations")
        finally:
            stopper.join(timeout=120)
    finally:
        app.close()  # ended with RevOS's other sessions
        connections["revos"].close()
    run.refresh_from_db()
    return run, seen


def test_revos_stopped_during_a_cutovers_drain_leaves_the_agency_unfenced_after_the_next_pass(links, settings):
    link, _ = links
    verified_and_migrated(link)
    settings.CUTOVER_DRAIN_TIMEOUT_SECONDS = 60

    run, seen = cutover_with_revos_stopped_in_its_drain(link)

    assert seen[0] == "stopped", "RevOS was stopped during the drain"
    assert run.status == Status.FAILED and "could not be lifted yet" in run.error, run.error
    assert "the reconciler lifts it" in run.error
    assert not agency_flag_enabled(flag_name="unified_db", agency_link=link)
    assert len(seen) == 2 and isinstance(seen[1], CommandError), seen
    assert "cannot be reached" in str(seen[1]), "the pass while RevOS was down says so and lifts nothing"
    assert revos_fence(link) == fence_owner(run) and history(link) == []

    out = reconcile_once()

    assert revos_fence(link) is None and revos_write_error(link) is None
    assert not agency_revos_read_only(link=link)
    assert f"lifted the RevOS fence held by {fence_owner(run)}" in out
    assert any(f"lifted the RevOS fence held by {fence_owner(run)}" in entry for entry in history(link))


# --- the long-running command ---------------------------------------------------------------------


def test_the_running_reconciler_survives_revos_down_and_lifts_the_fence_when_it_answers(links):
    link, _ = links
    failed = ended_cutover(link, Status.FAILED)
    fence(link, failed)
    with revos_refusing_connections():
        reconciler = subprocess.Popen(
            [sys.executable, str(BASE_DIR / "manage.py"), "reconcile", "--interval", "0.2"],
            env=worker_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            wait_for(lambda: cache.get(LAST_PASS_KEY) is not None, what="a pass while RevOS is down")
            assert reconciler.poll() is None
        except BaseException:
            reconciler.kill()
            print(*reconciler.communicate(timeout=30))
            raise
    try:
        wait_for(lambda: revos_fence(link) is None, what="the reconciler to lift the fence")
    finally:
        reconciler.send_signal(signal.SIGTERM)
        out, err = reconciler.communicate(timeout=60)
    assert reconciler.returncode == 0, err
    assert "cannot be reached" in err and "Traceback" not in err
    assert f"lifted the RevOS fence held by {fence_owner(failed)}" in out
    assert revos_write_error(link) is None and history(link)


def wait_for(condition, *, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited for {what}"
        time.sleep(0.1)


def test_every_process_of_the_procfile_and_the_demo_runs_a_command_that_exists_the_reconciler_among_them():
    lines = (BASE_DIR / "Procfile").read_text().splitlines()
    processes = dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))
    commands = {
        name: command.split("manage.py ", 1)[1].split()[0]
        for name, command in processes.items()
        if "manage.py " in command and "&&" not in command
    }
    assert commands["reconciler"] == "reconcile"
    assert all(command in get_commands() for command in commands.values()), commands
    demo = re.findall(r'spawn\(manage\("([a-z_]+)"', (BASE_DIR / "bin" / "stack").read_text())
    assert "reconcile" in demo and "rqworker" in demo
    assert all(command in get_commands() for command in demo if command != "runserver"), demo


DOWN = [
    ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/dead_controlplane", "control-plane database (dead_controlplane)"),
    ("UNIFIED_DATABASE_URL", "postgres://postgres@127.0.0.1:1/dead_unified", "unified database (dead_unified)"),
    ("REVOS_DATABASE_URL", "postgres://postgres@127.0.0.1:1/dead_revos", "revos database (dead_revos)"),
    ("REDIS_URL", "redis://127.0.0.1:1/0", "127.0.0.1:1"),
]


@pytest.mark.parametrize(("variable", "url", "named"), DOWN, ids=[variable for variable, _, _ in DOWN])
def test_one_pass_with_a_database_or_redis_down_is_one_line_naming_it_and_exits_1(tenant_db, variable, url, named):
    result = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "reconcile", "--once"],
        env={**worker_environment(), "ENV_FILE": "", variable: url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in result.stderr, result.stderr
