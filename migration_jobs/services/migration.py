"""The lifecycle of a MigrationRun: request (queue), execute (in the worker), pause, cancel, reconcile.

Admin views, management commands and the RQ job all call these functions and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID

import django_rq
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from redis.exceptions import RedisError
from rq import Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from migration_jobs.etl.connections import DatabaseUnreachable, connect
from migration_jobs.etl.engine import (
    AgencyBusy,
    AgencyMigration,
    Control,
    MigrationStopped,
    Progress,
    RowRejected,
    agency_plan,
    agency_rollback,
    lock_key,
)
from migration_jobs.etl.parallel import parallelism
from migration_jobs.log import log_context, run_log_fields
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.refusals import RunRefused
from migration_jobs.services.bulk import bulk_auto_stop_after
from migration_jobs.services.capacity import capacity_slot_hold
from migration_jobs.services.request_lock import agency_request_lock
from migration_jobs.services.run_control import MIGRATIONS_QUEUE, RunJob, run_enqueue_once
from migration_jobs.services.throttle import HealthThrottle, health_throttle

logger = logging.getLogger(__name__)
Status = MigrationRun.Status
QUEUE = MIGRATIONS_QUEUE


def migration_job() -> RunJob:
    """How a migration run is queued; settings are read per request so tests can change them."""
    return RunJob(
        queue=QUEUE,
        function="migration_jobs.jobs.execute_migration_run",
        failure="Could not queue the job: {error}. Nothing was written.",
        options={
            "unique": True,
            "job_timeout": settings.MIGRATION_JOB_TIMEOUT,
            "result_ttl": 24 * 3600,
            # A job whose worker died is handed to another worker, which resumes from the checkpoints.
            "retry": Retry(max=2, interval=[5, 30]),
            "failure_ttl": 7 * 24 * 3600,
        },
    )


def job_id_for(link: AgencyLink) -> str:
    """One job id per agency: a second click finds the first job instead of queueing another."""
    return f"agency-{link.revos_agency_id}"


def migration_run_request(
    *,
    link: AgencyLink,
    kind: str,
    actor: AbstractBaseUser | None,
    enqueue: bool = True,
    bulk_request: UUID | None = None,
) -> MigrationRun:
    """Queue a migrate, plan or rollback run of one agency, or raise RunRefused saying why not.

    With enqueue=False the run is only recorded, for a caller that executes it itself.
    """
    if kind in (MigrationRun.Kind.MIGRATE, MigrationRun.Kind.PLAN) and not link.is_confirmed:
        raise RunRefused(f"{link.name} has no confirmed link to a unified agency; confirm it first.")
    with agency_request_lock(link):
        return _request_locked(link=link, kind=kind, actor=actor, enqueue=enqueue, bulk_request=bulk_request)


def _request_locked(
    *, link: AgencyLink, kind: str, actor: AbstractBaseUser | None, enqueue: bool, bulk_request: UUID | None
) -> MigrationRun:
    migration_runs_reconcile(link=link)
    active = link.runs.filter(status__in=MigrationRun.ACTIVE_STATUSES).first()
    if active:
        raise RunRefused(f"{link.name} already has a run {active.get_status_display().lower()} (run {active.pk}).")
    _require_services()
    try:
        with transaction.atomic():
            run = MigrationRun.objects.create(
                agency_link=link,
                revos_agency_id=link.revos_agency_id,
                unified_agency_id=link.unified_agency_id,
                kind=kind,
                job_id=job_id_for(link),
                requested_by=actor if getattr(actor, "pk", None) else None,
                bulk_request=bulk_request,
            )
            if enqueue:
                run_enqueue_once(run=run, job=migration_job())
    except IntegrityError:
        raise RunRefused(f"{link.name} already has a run queued or running.") from None
    run.refresh_from_db()
    if run.status == Status.FAILED:
        logger.info("run %s of agency %s: failed %s", run.pk, run.revos_agency_id, run.error, extra=run_log_fields(run))
        bulk_auto_stop_after(run=run)
        raise RunRefused(run.error)
    return run


@dataclass
class BulkOutcome:
    bulk_request: UUID
    queued: list[MigrationRun] = field(default_factory=list)
    skipped: list[tuple[AgencyLink, str]] = field(default_factory=list)  # (agency, why)


def migration_runs_request_bulk(*, links: Iterable[AgencyLink], actor: AbstractBaseUser | None) -> BulkOutcome:
    """Queue a migration of each agency under one bulk request id; skip (saying why) those refused.

    The runs carry the id so that the auto-stop (services/bulk.py) can judge them together.
    """
    outcome = BulkOutcome(bulk_request=uuid.uuid4())
    for link in links:
        try:
            run = migration_run_request(
                link=link, kind=MigrationRun.Kind.MIGRATE, actor=actor, bulk_request=outcome.bulk_request
            )
        except RunRefused as refusal:
            outcome.skipped.append((link, str(refusal)))
        else:
            outcome.queued.append(run)
    return outcome


def _require_services() -> None:
    """Fail before queueing when a database or Redis the run needs does not answer."""
    try:
        django_rq.get_connection(QUEUE).ping()
    except RedisError as error:
        raise RunRefused(f"Redis (the job queue) cannot be reached: {error}. Nothing was queued.") from error
    for alias in ("revos", "unified"):
        try:
            connect(alias, autocommit=True, purpose="preflight").close()
        except DatabaseUnreachable as error:
            raise RunRefused(f"{error}. Nothing was queued.") from error


def migration_runs_reconcile(*, link: AgencyLink) -> None:
    """Fail runs whose execution is gone: a running run nobody holds the lock of, a queued run without a job."""
    for run in link.runs.filter(status__in=MigrationRun.ACTIVE_STATUSES):
        if run.status == Status.RUNNING and not _lock_is_held(run.revos_agency_id):
            _delete_job(run.job_id)  # RQ still lists it as started; its worker is gone
            _finish(
                run,
                Status.FAILED,
                error="The worker stopped without finishing. Resume continues from the last checkpoint.",
            )
        elif run.status == Status.QUEUED and not _job_pending(run.job_id):
            _finish(run, Status.FAILED, error="Its job is no longer in the queue. Queue the run again.")
        else:
            continue
        bulk_auto_stop_after(run=run)


def _lock_is_held(agency_id: UUID) -> bool:
    with connect("unified", autocommit=True, purpose="reconcile") as connection:
        granted = connection.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND ((classid::bigint << 32) | objid::bigint) = (" + lock_key(agency_id).as_string(connection) + ")"
        ).fetchone()[0]
    return granted > 0


def _delete_job(job_id: str) -> None:
    with contextlib.suppress(NoSuchJobError):
        Job.fetch(job_id, connection=django_rq.get_connection(QUEUE)).delete()


def _job_pending(job_id: str) -> bool:
    """The job is still to run or running: a run waiting for a slot waits inside a started job,
    and if that worker died meanwhile the job ends up failed (or stopped) while the run still says queued."""
    try:
        job = Job.fetch(job_id, connection=django_rq.get_connection(QUEUE))
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) not in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)


# In the worker ------------------------------------------------------------------------------


def migration_run_execute(*, run_id: int) -> MigrationRun:
    """Carry out one run. Safe to call twice: RQ may deliver a job again after a worker died."""
    run = MigrationRun.objects.select_related("agency_link").get(pk=run_id)
    with log_context(**run_log_fields(run)):
        if run.status not in MigrationRun.ACTIVE_STATUSES:
            logger.info("run %s is %s; nothing to do", run.pk, run.status)
            return run
        with contextlib.ExitStack() as slot:
            try:
                slot.enter_context(capacity_slot_hold(run=run))
            except MigrationStopped:  # paused or cancelled while it waited for a slot
                run.refresh_from_db()
                return run
            except Exception as error:
                _finish(run, Status.FAILED, error=f"{type(error).__name__}: {error}", trace=traceback.format_exc())
                raise
            return _run_execute(run)


def _run_execute(run: MigrationRun) -> MigrationRun:
    """The run itself, holding a slot when the concurrency limit applies to it."""
    link = run.agency_link

    def mark_running() -> None:
        # A redelivered job takes over its run where the dead worker left it, first start time kept.
        if not run.start(started_at=run.started_at or timezone.now(), status_note=""):
            raise MigrationStopped(Control.PAUSE)  # paused or cancelled while it waited in the queue

    try:
        if run.kind == MigrationRun.Kind.PLAN:
            mark_running()
            report = agency_plan(
                source_agency_id=link.revos_agency_id,
                target_agency_id=link.unified_agency_id,
                link_existing=link.kind == AgencyLink.Kind.EXISTING,
            )
        elif run.kind == MigrationRun.Kind.ROLLBACK:
            report = agency_rollback(source_agency_id=link.revos_agency_id, on_locked=mark_running).as_dict()
        else:
            with health_throttle(run_id=run.pk) as throttle:
                report = (
                    AgencyMigration(
                        source_agency_id=link.revos_agency_id,
                        target_agency_id=link.unified_agency_id,
                        link_existing=link.kind == AgencyLink.Kind.EXISTING,
                        batch_size=settings.MIGRATION_BATCH_SIZE,
                        set_based_checks=settings.MIGRATION_SET_BASED_FK_CHECKS,
                        writers=parallelism(settings.MIGRATION_WRITERS),
                        split_rows=settings.MIGRATION_SPLIT_ROWS,
                        on_progress=lambda progress: _record_progress(run.pk, progress, throttle=throttle),
                        on_locked=mark_running,
                        client_links={
                            str(c.revos_client_id): str(c.unified_client_id) for c in link.client_links.all()
                        },
                    )
                    .run()
                    .as_dict()
                )
    except AgencyBusy as busy:
        # A live execution holds the lock: this is a second delivery of the job. Leave the run to it.
        logger.warning("run %s: %s", run.pk, busy)
        return run
    except MigrationStopped as stop:
        run.refresh_from_db()
        if run.status not in MigrationRun.ACTIVE_STATUSES:
            return run
        status = Status.PAUSED if stop.control is Control.PAUSE else Status.CANCELLED
        return _finish(run, status, error="", note=str(stop))
    except RowRejected as rejected:
        return _finish(
            run, Status.FAILED, error=str(rejected), failed_table=rejected.table, failed_batch=rejected.batch
        )
    except DatabaseUnreachable as unreachable:
        return _finish(run, Status.FAILED, error=f"{unreachable}. Nothing more was written; Resume when it is back.")
    except Exception as error:
        _finish(run, Status.FAILED, error=f"{type(error).__name__}: {error}", trace=traceback.format_exc())
        raise
    return _finish(run, Status.SUCCEEDED, error="", report=report)


def _record_progress(run_id: int, progress: Progress, *, throttle: HealthThrottle | None = None) -> Control:
    # Every table being written, so staff see all the writers at work.
    in_flight = ", ".join(progress.in_flight or (progress.table,))
    MigrationRun.objects.filter(pk=run_id).update(
        current_table=in_flight[: MigrationRun._meta.get_field("current_table").max_length],
        tables_done=progress.tables_done,
        tables_total=progress.tables_total,
        rows_done=progress.rows_done,
        rows_total=progress.rows_total,
        rows_per_second=round(progress.rows_per_second, 1),
        failed_batch=None,
    )
    control = _requested_control(run_id)
    if control is Control.CONTINUE and throttle is not None:
        control = throttle.wait_until_healthy(requested=lambda: _requested_control(run_id))
    return control


def _requested_control(run_id: int) -> Control:
    control = MigrationRun.objects.filter(pk=run_id).values_list("control", flat=True).get()
    return {"pause": Control.PAUSE, "cancel": Control.CANCEL}.get(control, Control.CONTINUE)


def _finish(
    run: MigrationRun,
    status: str,
    *,
    error: str,
    note: str = "",
    report: dict | None = None,
    trace: str = "",
    failed_table: str = "",
    failed_batch: int | None = None,
) -> MigrationRun:
    """End an active run (a run that already ended is left as it is) and log how it ended."""
    fields = {
        "error": error,
        "error_traceback": trace,
        "failed_table": failed_table,
        "failed_batch": failed_batch,
        "status_note": note,
        "control": "",
    }
    if report is not None:
        fields["report"] = report
    run.finish(status, **fields)
    logger.info("run %s of agency %s: %s %s", run.pk, run.revos_agency_id, status, error, extra=run_log_fields(run))
    return run
