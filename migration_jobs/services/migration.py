"""The lifecycle of a MigrationRun: request (queue), execute (in the worker), pause, cancel, reconcile.

Admin views, management commands and the RQ job all call these functions and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
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
from migration_jobs.services.bulk import bulk_request_enforce
from migration_jobs.services.capacity import capacity_slot_hold
from migration_jobs.services.request_lock import agency_request_lock
from migration_jobs.services.throttle import HealthThrottle, health_throttle

logger = logging.getLogger(__name__)
Status = MigrationRun.Status
QUEUE = "migrations"


class RunRefused(Exception):
    """The run cannot be queued; the message tells staff why. Nothing was queued or written."""


def agency_link_resolve(reference: str) -> AgencyLink:
    """Find the RevOS agency by its RevOS id or its unified id, as typed by a person."""
    try:
        agency_id = UUID(str(reference).strip())
    except ValueError:
        raise RunRefused(f"{reference!r} is not an agency id (a UUID such as 4f0c...-...).") from None
    link = AgencyLink.objects.filter(revos_agency_id=agency_id).first()
    link = link or AgencyLink.objects.filter(unified_agency_id=agency_id).first()
    if link is None:
        raise RunRefused(f"No RevOS agency {agency_id} is known. Sync agencies from RevOS first.")
    return link


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
                transaction.on_commit(lambda: _enqueue(run))
    except IntegrityError:
        raise RunRefused(f"{link.name} already has a run queued or running.") from None
    run.refresh_from_db()
    if run.status == Status.FAILED:
        raise RunRefused(run.error)
    return run


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


def _enqueue(run: MigrationRun) -> None:
    queue = django_rq.get_queue(QUEUE)
    try:
        _forget_finished_job(queue.connection, run.job_id)
        queue.enqueue(
            "migration_jobs.jobs.execute_migration_run",
            run.pk,
            job_id=run.job_id,
            unique=True,
            job_timeout=settings.MIGRATION_JOB_TIMEOUT,
            result_ttl=24 * 3600,
            # A job whose worker died is handed to another worker, which resumes from the checkpoints.
            retry=Retry(max=2, interval=[5, 30]),
            failure_ttl=7 * 24 * 3600,
            description=str(run),
        )
    except Exception as error:  # whatever Redis said, the run must not stay "queued"
        logger.exception("could not queue run %s", run.pk, extra=run_log_fields(run))
        _finish(run, Status.FAILED, error=f"Could not queue the job: {str(error).rstrip('.')}. Nothing was written.")


def _forget_finished_job(connection, job_id: str) -> None:
    """Drop the agency's previous job so its id can be used again.

    Called only when the agency has no active run, so a job still under that id belongs to a run
    that has ended (or was cancelled while queued). One still executing would find its run over and
    return; it is left alone and the new run waits for a second click.
    """
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return
    if job.get_status(refresh=False) == JobStatus.STARTED:
        raise RunRefused("The agency's previous job is still winding down; try again in a few seconds.")
    job.delete()


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


def migration_run_control(*, run: MigrationRun, control: str, actor: AbstractBaseUser | None) -> MigrationRun:
    """Ask a run to pause or cancel. A queued run stops at once; a running one at its next batch."""
    if control not in (MigrationRun.Control.PAUSE, MigrationRun.Control.CANCEL):
        raise RunRefused(f"Unknown control {control!r}.")
    stopped = Status.PAUSED if control == MigrationRun.Control.PAUSE else Status.CANCELLED
    # Conditional updates: the worker may be moving the run from queued to running right now.
    if MigrationRun.objects.filter(pk=run.pk, status=Status.QUEUED).update(
        status=stopped, finished_at=timezone.now(), control=""
    ):
        _cancel_queued_job(run.job_id)
    elif not MigrationRun.objects.filter(pk=run.pk, status=Status.RUNNING).update(control=control):
        run.refresh_from_db()
        raise RunRefused(f"Run {run.pk} is {run.get_status_display().lower()}; there is nothing to {control}.")
    run.refresh_from_db()
    return run


def _cancel_queued_job(job_id: str) -> None:
    with contextlib.suppress(NoSuchJobError):
        job = Job.fetch(job_id, connection=django_rq.get_connection(QUEUE))
        # A started job of a queued run is waiting for a slot: it sees the run stopped and returns by
        # itself, and cancelling it would let a new run reuse its job id before that.
        if job.get_status(refresh=False) != JobStatus.STARTED:
            job.cancel()


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
            run = _run_execute(run)
    if run.status == Status.SUCCEEDED:
        _after_success(run)
    return run


def _run_execute(run: MigrationRun) -> MigrationRun:
    """The run itself, holding a slot when the concurrency limit applies to it."""
    link = run.agency_link

    def mark_running() -> None:
        started = MigrationRun.objects.filter(pk=run.pk, status__in=MigrationRun.ACTIVE_STATUSES).update(
            status=Status.RUNNING, started_at=run.started_at or timezone.now(), status_note=""
        )
        if not started:  # paused or cancelled while it waited in the queue
            raise MigrationStopped(Control.PAUSE)

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
    fields = {
        "status": status,
        "finished_at": timezone.now(),
        "error": error,
        "error_traceback": trace,
        "failed_table": failed_table,
        "failed_batch": failed_batch,
        "status_note": note,
        "control": "",
    }
    if report is not None:
        fields["report"] = report
    MigrationRun.objects.filter(pk=run.pk).update(**fields)
    run.refresh_from_db()
    logger.info("run %s of agency %s: %s %s", run.pk, run.revos_agency_id, status, error, extra=run_log_fields(run))
    if run.bulk_request and status in (Status.SUCCEEDED, Status.FAILED):
        try:
            bulk_request_enforce(bulk_request=run.bulk_request)
        except Exception:  # the run's own outcome stands; the next finished run of the bulk tries again
            logger.exception("could not apply the auto-stop of bulk request %s", run.bulk_request)
    return run


def _after_success(run: MigrationRun) -> None:
    """A migration or rollback that changed data is verified straight away."""
    if run.kind == MigrationRun.Kind.PLAN:
        return
    # Imported here: verification builds on this module (RunRefused, the run model's lifecycle).
    from migration_jobs.services.verification import verification_run_request

    try:
        verification_run_request(link=run.agency_link, migration_run=run, actor=run.requested_by)
    except Exception:  # the migration stands; staff can press Verify
        logger.exception("could not queue the verification after run %s", run.pk, extra=run_log_fields(run))
