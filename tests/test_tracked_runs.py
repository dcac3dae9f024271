"""The lifecycle every tracked run shares (models/tracked.py) and the enqueue-once helper
(services/run_control.py), against the real control-plane database and the real Redis."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from django.db import transaction
from django.test import override_settings
from rq.job import Job

from migration_jobs.models import AgencyLink, MigrationRun, SchemaAuditRun, VerificationRun
from migration_jobs.services.run_control import RunJob, run_enqueue_once

pytestmark = pytest.mark.django_db(transaction=True)

JOB = RunJob(queue="migrations", function="migration_jobs.jobs.execute_migration_run")


@pytest.fixture
def link() -> AgencyLink:
    return AgencyLink.objects.create(revos_agency_id=uuid.uuid4(), name="Lifecycle Agency", suggested_kind="new")


def migration_run(link: AgencyLink, **fields) -> MigrationRun:
    return MigrationRun.objects.create(agency_link=link, revos_agency_id=link.revos_agency_id, **fields)


def test_a_queued_run_is_claimed_once_and_a_redelivery_keeps_the_first_start(link):
    run = migration_run(link)
    assert run.start() and run.status == MigrationRun.Status.RUNNING
    first_start = run.started_at
    # A job handed to another worker after its first died takes the running run over.
    assert run.start(started_at=run.started_at) and run.started_at == first_start


def test_an_audit_is_started_by_one_worker_only():
    run = SchemaAuditRun.objects.create(database="revos", job_id=SchemaAuditRun.new_job_id())
    assert run.job_id.startswith("schema-audit-")
    assert run.start()
    assert not run.start() and run.status == SchemaAuditRun.Status.RUNNING


def test_a_run_that_ended_is_neither_started_nor_ended_again(link):
    run = migration_run(link, status=MigrationRun.Status.CANCELLED)
    assert not run.start()
    assert not run.fail("too late")
    assert (run.status, run.error, run.finished_at) == (MigrationRun.Status.CANCELLED, "", None)


def test_finish_only_from_the_statuses_named(link):
    run = migration_run(link)
    assert not run.finish(MigrationRun.Status.PAUSED, from_statuses=(MigrationRun.Status.RUNNING,))
    assert run.finish(MigrationRun.Status.PAUSED, from_statuses=(MigrationRun.Status.QUEUED,))
    assert run.status == MigrationRun.Status.PAUSED and run.finished_at is not None


def test_a_failed_verification_has_verdict_error(link):
    run = VerificationRun.objects.create(agency_link=link, job_id=VerificationRun.new_job_id())
    assert run.job_id.startswith("verification-")
    assert run.fail("no database")
    assert (run.status, run.verdict, run.error) == ("error", "error", "no database")


def migration_run_with_job_id(link: AgencyLink, **fields) -> MigrationRun:
    run = migration_run(link, **fields)
    run.job_id_assign()
    return run


def test_the_job_is_enqueued_under_the_runs_id_only_after_commit(link, rq_queues):
    with transaction.atomic():
        run = migration_run_with_job_id(link)
        run_enqueue_once(run=run, job=JOB)
        assert rq_queues["migrations"].job_ids == []  # the worker would not find the row yet
    assert rq_queues["migrations"].job_ids == [run.job_id]


def test_every_run_of_an_agency_has_a_job_of_its_own_named_after_it(link, rq_queues):
    first = migration_run_with_job_id(link, status=MigrationRun.Status.SUCCEEDED)
    second = migration_run_with_job_id(link)
    assert first.job_id.startswith(f"migration-{first.pk}-") and second.job_id.startswith(f"migration-{second.pk}-")
    assert MigrationRun.objects.get(pk=second.pk).job_id == second.job_id, "stored before any enqueue"
    run_enqueue_once(run=first, job=JOB)
    run_enqueue_once(run=second, job=JOB)
    connection = rq_queues["migrations"].connection
    assert [Job.fetch(run.job_id, connection=connection).args for run in (first, second)] == [(first.pk,), (second.pk,)]


def test_redis_refusing_the_job_fails_the_run_with_the_kinds_own_words(link, rq_queues):
    job = RunJob(queue="migrations", function=JOB.function, failure="Nothing was queued ({error}).")
    dead_redis = {**settings.RQ_QUEUES, "migrations": {"URL": "redis://127.0.0.1:1/0"}}
    run = migration_run_with_job_id(link)
    with override_settings(RQ_QUEUES=dead_redis):
        run_enqueue_once(run=run, job=job)
    run.refresh_from_db()
    assert run.status == MigrationRun.Status.FAILED
    assert run.error.startswith("Nothing was queued (") and run.error.endswith(").")
    assert rq_queues["migrations"].job_ids == []
