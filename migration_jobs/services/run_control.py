"""What every tracked run's request path shares: the refusal, the enqueue-once helper, pause, cancel, supersede.

Its own module so that migration, verification, the bulk auto-stop and the schema audit can all
build on it without importing one another.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import django_rq
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import User
from django.db import transaction
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from migration_jobs.etl.connections import connection_failure_reason
from migration_jobs.models import MigrationRun
from migration_jobs.models.tracked import TrackedRun
from migration_jobs.refusals import RunRefused

logger = logging.getLogger(__name__)
MIGRATIONS_QUEUE = MigrationRun.QUEUE


@dataclass(frozen=True)
class RunJob:
    """How one kind of tracked run is queued: its queue, the RQ job that takes its primary key, RQ's
    options, and the error the run is left with when Redis refuses the job (`{error}` is Redis's word)."""

    queue: str
    function: str
    failure: str = "Could not queue the job: {error}."
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of Queue.enqueue


def run_queue_require(*, queue: str, refusal: type[RunRefused] = RunRefused) -> None:
    """Refuse before recording a run when Redis, which would hold its job, does not answer."""
    try:
        django_rq.get_connection(queue).ping()
    except RedisError as error:
        raise refusal(
            f"Redis (the job queue) cannot be reached: {connection_failure_reason(error)}. Nothing was queued."
        ) from error


def run_enqueue_once(*, run: TrackedRun, job: RunJob) -> None:
    """Enqueue the run's job under the job id the run already carries, once the row is committed.

    The worker must find the row, so the enqueue waits for the commit (and runs at once outside a
    transaction). Every run has a job id of its own, so no earlier job stands in the way. Whatever
    Redis says, the run never stays queued without a job: it fails with `job.failure`.
    """
    transaction.on_commit(partial(_enqueue, run, job), using="default")


def _enqueue(run: TrackedRun, job: RunJob) -> None:
    # Already deferred to the commit by run_enqueue_once: django-rq must not defer it a second time.
    queue = django_rq.get_queue(job.queue, commit_mode="auto")
    try:
        queue.enqueue(job.function, run.pk, job_id=run.job_id, description=str(run), **job.options)
    except Exception as error:  # whatever Redis said, the run must not stay "queued"
        logger.exception("could not queue %s %s", type(run).__name__, run.pk)
        run.fail(job.failure.format(error=str(error).rstrip(".")))


def migration_run_control(*, run: MigrationRun, control: str, actor: User | None) -> MigrationRun:
    """Ask a run to pause or cancel. A queued run stops at once, a running one at its next batch; a
    paused run can still be cancelled."""
    if control not in (MigrationRun.Control.PAUSE, MigrationRun.Control.CANCEL):
        raise RunRefused(f"Unknown control {control!r}.")
    Status = MigrationRun.Status
    stopped = Status.PAUSED if control == MigrationRun.Control.PAUSE else Status.CANCELLED
    runs = MigrationRun.objects.filter(pk=run.pk)
    # A paused run has no job left: cancelling it only records that staff gave it up.
    paused = runs.filter(status=Status.PAUSED) if control == MigrationRun.Control.CANCEL else runs.none()
    # Conditional updates: the worker may be moving the run from queued to running right now.
    if run.finish(stopped, from_statuses=(Status.QUEUED,), control=""):
        _cancel_queued_job(run.job_id)
    elif not paused.update(status=Status.CANCELLED, status_note="cancelled while paused") and not runs.filter(
        status=Status.RUNNING
    ).update(control=control):
        run.refresh_from_db()
        raise RunRefused(f"Run {run.pk} is {run.get_status_display().lower()}; there is nothing to {control}.")
    run.refresh_from_db()
    return run


def migration_run_supersede(*, run: MigrationRun, by: str, actor: User | None) -> bool:
    """Cancel a queued run that no worker has picked up, noting what took its place (`by`, e.g. "a switch
    back"); False when a worker holds its job or it is no longer queued.

    The cancelled run stays in the agency's runs with that note, and in the agency's admin history when a
    person asked.
    """
    with contextlib.suppress(NoSuchJobError):
        job = Job.fetch(run.job_id, connection=django_rq.get_connection(MIGRATIONS_QUEUE))
        if job.get_status(refresh=False) == JobStatus.STARTED:
            return False  # a worker has it (waiting for a slot at most): it is not "not started"
    note = f"superseded by {by} requested before a worker started it"
    if not run.finish(MigrationRun.Status.CANCELLED, from_statuses=(MigrationRun.Status.QUEUED,), control="",
                      status_note=note):  # fmt: skip
        return False
    _cancel_queued_job(run.job_id)
    logger.info("run %s of agency %s: %s", run.pk, run.revos_agency_id, note)
    if actor is not None and actor.pk:
        LogEntry.objects.log_actions(
            user_id=actor.pk,
            queryset=[run.agency_link],
            action_flag=CHANGE,
            change_message=f"{run.get_kind_display()} run {run.pk} cancelled: {note}.",
        )
    return True


def _cancel_queued_job(job_id: str) -> None:
    with contextlib.suppress(NoSuchJobError):
        job = Job.fetch(job_id, connection=django_rq.get_connection(MIGRATIONS_QUEUE))
        # A started job of a queued run is waiting for a slot: it sees the run stopped and returns by
        # itself, and cancelling would take it out of the started registry under its worker's feet.
        if job.get_status(refresh=False) != JobStatus.STARTED:
            job.cancel()
