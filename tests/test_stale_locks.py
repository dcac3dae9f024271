"""A worker whose host vanished: its backend keeps the agency's lock until the control plane ends it.

A vanished host is played by a real connection that holds the agency's advisory lock under an
engine connection's name, `controlplane-migration w=<worker>`, for a worker with no heartbeat key
in Redis (as after a kill: the key expires 90 s after the last heartbeat).
"""

from __future__ import annotations

import uuid

import django_rq
import psycopg
import pytest
from django.core.management import call_command
from django.db import connections
from django.test import Client
from django.urls import reverse
from psycopg import sql
from rq import Worker

from migration_jobs.demo.demo import demo_data_seed
from migration_jobs.etl.connections import connect
from migration_jobs.etl.engine import lock_key
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
from migration_jobs.services.lock_holders import agency_lock_holders, worker_backends_terminate
from migration_jobs.services.runs import migration_run_request
from tests.conftest import database_url

Status = MigrationRun.Status


@pytest.fixture
def running(tenant_db, rq_queues):
    """A confirmed agency whose migration run says running, under a job id of its own as a queued run has."""
    demo_data_seed(agencies=1, scale=1, seed=5)
    agency_links_sync()
    link = AgencyLink.objects.get()
    link = agency_link_confirm(link=link, kind="new", unified_agency_id=None, actor=None)
    run = migration_run_request(link=link, kind=MigrationRun.Kind.MIGRATE, actor=None, enqueue=False)
    run.job_id_assign()
    MigrationRun.objects.filter(pk=run.pk).update(status=Status.RUNNING, rows_done=40, rows_total=100)
    return link, run


def holding_lock(agency_id, worker_name: str) -> psycopg.Connection:
    connection = psycopg.connect(
        database_url("unified"), autocommit=True, application_name=f"controlplane-migration w={worker_name}"
    )
    connection.execute(sql.SQL("SELECT pg_advisory_lock({})").format(lock_key(agency_id)))
    return connection


def backend_alive(pid: int) -> bool:
    with connections["unified"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0] == 1


def test_a_dead_workers_lock_is_ended_and_the_agency_is_free_again(running):
    link, run = running
    holder = holding_lock(link.revos_agency_id, f"gone-{uuid.uuid4().hex[:8]}")
    pid = holder.info.backend_pid
    try:
        resumed = migration_run_request(link=link, kind=MigrationRun.Kind.MIGRATE, actor=None, enqueue=False)
    finally:
        holder.close()
    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert "stopped sending heartbeats" in run.error and str(pid) in run.error
    assert not backend_alive(pid)
    assert resumed.status == Status.QUEUED


def test_a_live_workers_lock_is_left_alone(running):
    link, run = running
    redis = django_rq.get_connection("migrations")
    worker = Worker(["migrations"], connection=redis, name=f"alive-{uuid.uuid4().hex[:8]}")
    worker.register_birth()
    holder = holding_lock(link.revos_agency_id, worker.name)
    try:
        with pytest.raises(Exception, match="already has a run running"):
            migration_run_request(link=link, kind=MigrationRun.Kind.MIGRATE, actor=None, enqueue=False)
        assert backend_alive(holder.info.backend_pid)
    finally:
        holder.close()
        worker.register_death()
    run.refresh_from_db()
    assert run.status == Status.RUNNING


def test_the_agency_page_and_migration_status_reconcile_a_dead_run(running, capsys):
    link, run = running
    holder = holding_lock(link.revos_agency_id, "vanished-host-worker")
    try:
        call_command("migration_status")
    finally:
        holder.close()
    out = capsys.readouterr().out
    assert "running" not in out and "failed" in out, out
    run.refresh_from_db()
    assert run.status == Status.FAILED

    # A run that died without a lock (killed between batches) is failed when the page reads it.
    second = migration_run_request(link=link, kind=MigrationRun.Kind.MIGRATE, actor=None, enqueue=False)
    MigrationRun.objects.filter(pk=second.pk).update(status=Status.RUNNING)
    client = Client()
    client.force_login(
        __import__("django.contrib.auth.models", fromlist=["User"]).User.objects.create_superuser("boss", "", "x")
    )
    body = client.get(reverse("admin:migration_jobs_agencylink_change", args=[link.pk])).content.decode()
    second.refresh_from_db()
    assert second.status == Status.FAILED
    assert "stopped without finishing" in body


def test_every_connection_the_control_plane_opens_sets_keepalives(db):
    with connect("unified", autocommit=True) as engine_connection:
        parameters = engine_connection.info.get_parameters()
        assert (parameters["keepalives"], parameters["keepalives_idle"]) == ("1", "30")
        assert "-c tcp_keepalives_idle=30" in parameters["options"]
        assert "controlplane-migration pid=" in engine_connection.execute("SHOW application_name").fetchone()[0]
    for alias in ("default", "unified", "revos"):
        connections[alias].ensure_connection()
        parameters = connections[alias].connection.info.get_parameters()
        assert parameters["keepalives_count"] == "3", alias
        assert "-c tcp_keepalives_interval=10" in parameters["options"], alias


def test_the_agency_page_shows_the_running_runs_worker_and_its_heartbeat(running):
    from django.contrib.auth.models import User
    from rq.job import Job

    link, run = running
    redis = django_rq.get_connection("migrations")
    worker = Worker(["migrations"], connection=redis, name=f"beating-{uuid.uuid4().hex[:8]}")
    worker.register_birth()
    job = Job.create("migration_jobs.jobs.execute_migration_run", args=[run.pk], id=run.job_id, connection=redis)
    job.worker_name = worker.name
    job.save()
    holder = holding_lock(link.revos_agency_id, worker.name)
    client = Client()
    client.force_login(User.objects.create_superuser("boss", "", "x"))
    try:
        page = client.get(reverse("admin:migration_jobs_agencylink_change", args=[link.pk]))
        assert f"worker {worker.name} · alive, heard from" in page.content.decode()
        assert "silent for 90 s" in page.content.decode()
        progress = client.get(reverse("admin:migration_jobs_agencylink_progress", args=[link.pk])).json()
        assert progress["heartbeat"].startswith(f"worker {worker.name}")
    finally:
        holder.close()
        worker.register_death()
        job.delete()


def test_a_killed_worker_of_this_host_is_dead_at_once_though_its_key_lives(running):
    import subprocess
    import sys

    link, run = running
    redis = django_rq.get_connection("migrations")
    worker = Worker(["migrations"], connection=redis, name=f"killed-{uuid.uuid4().hex[:8]}")
    worker.register_birth()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    redis.hset(worker.key, "pid", gone.pid)  # its process has exited; the key would live for minutes
    holder = holding_lock(link.revos_agency_id, worker.name)
    pid = holder.info.backend_pid
    try:
        migration_run_request(link=link, kind=MigrationRun.Kind.MIGRATE, actor=None, enqueue=False)
    finally:
        holder.close()
        redis.delete(worker.key)
    run.refresh_from_db()
    assert run.status == Status.FAILED and str(pid) in run.error
    assert not backend_alive(pid)


def test_a_lock_of_the_same_agency_in_another_database_is_neither_a_holder_nor_ended(running):
    """pg_locks spans the cluster: the same agency id in another database (a second control plane, a
    test database beside this one) takes a lock of the same key there, which is none of ours."""
    link, _ = running
    elsewhere = psycopg.connect(
        database_url("default"), autocommit=True, application_name="controlplane-migration w=gone-elsewhere"
    )
    try:
        elsewhere.execute(sql.SQL("SELECT pg_advisory_lock({})").format(lock_key(link.revos_agency_id)))
        assert agency_lock_holders(agency_id=link.revos_agency_id) == []
        assert worker_backends_terminate(worker_name="gone-elsewhere", wait_seconds=0) == []
        assert elsewhere.execute("SELECT 1").fetchone() == (1,)
    finally:
        elsewhere.close()


def test_a_run_between_its_lock_and_its_last_word_is_not_taken_for_dead(running):
    """A run records how it ended just after releasing its lock; a page read in that moment must not
    fail it while its job's worker is alive and busy with it."""
    from django.contrib.auth.models import User
    from rq.job import Job, JobStatus

    link, run = running
    redis = django_rq.get_connection("migrations")
    worker = Worker(["migrations"], connection=redis, name=f"finishing-{uuid.uuid4().hex[:8]}")
    worker.register_birth()
    job = Job.create("migration_jobs.jobs.execute_migration_run", args=[run.pk], id=run.job_id, connection=redis)
    job.worker_name = worker.name
    job.save()
    job.set_status(JobStatus.STARTED)
    client = Client()
    client.force_login(User.objects.create_superuser("boss", "", "x"))
    try:
        client.get(reverse("admin:migration_jobs_agencylink_progress", args=[link.pk]))
        run.refresh_from_db()
        assert run.status == Status.RUNNING
    finally:
        worker.register_death()
        job.delete()
    redis.delete(worker.key)  # now the worker is gone: the next read fails the run
    client.get(reverse("admin:migration_jobs_agencylink_progress", args=[link.pk]))
    run.refresh_from_db()
    assert run.status == Status.FAILED and "stopped without finishing" in run.error
