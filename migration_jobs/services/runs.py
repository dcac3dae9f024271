"""The lifecycle of a MigrationRun of any kind: request (queue), execute (in the worker), reconcile, finish.

Admin views, management commands and the RQ job all call these functions; what a kind does, and
what this module asks about it, is its declaration in the registry (migration_jobs/run_kinds.py,
one module per kind under services/kinds/).
"""

from __future__ import annotations

import contextlib
import logging
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypedDict
from uuid import UUID

import django_rq
from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone
from redis.exceptions import RedisError
from rq import Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from migration_jobs.etl.capture import TransactionsStillOpen
from migration_jobs.etl.connections import DatabaseUnreachable, connect
from migration_jobs.etl.engine import AgencyBusy, Control, MigrationStopped, RowRejected
from migration_jobs.etl.tally import TableTally
from migration_jobs.log import log_context, run_log_fields
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.refusals import RunRefused, reason_required
from migration_jobs.run_kinds import RunKind, run_kind_get
from migration_jobs.selectors.agency_state import agency_kind_refusal
from migration_jobs.services.bulk import bulk_auto_stop_after
from migration_jobs.services.capacity import capacity_slot_hold
from migration_jobs.services.fence import fences_reconcile
from migration_jobs.services.fenced_switch import RunStepFailed
from migration_jobs.services.lock_holders import (
    agency_lock_holders,
    orphaned_holders,
    worker_alive,
    worker_backends_terminate,
    worker_gone_reason,
)
from migration_jobs.services.request_lock import agency_request_lock
from migration_jobs.services.run_control import (
    MIGRATIONS_QUEUE,
    RunJob,
    migration_run_supersede,
    run_enqueue_once,
    run_queue_require,
)

logger = logging.getLogger(__name__)
Status = MigrationRun.Status
QUEUE = MIGRATIONS_QUEUE


@dataclass
class Reconciled:
    """What a reconcile did to one agency: the runs it ended, and one line per fence it lifted."""

    runs: list[MigrationRun] = field(default_factory=list)
    fences: list[str] = field(default_factory=list)


class RunRequest(TypedDict, total=False):
    """How a run is asked for beyond its agency, kind and actor: see migration_run_request."""

    enqueue: bool
    bulk_request: UUID | None


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


def migration_run_request(
    *,
    link: AgencyLink,
    kind: str,
    actor: User | None,
    enqueue: bool = True,
    bulk_request: UUID | None = None,
    **options: Any,
) -> MigrationRun:
    """Queue a run of one agency, of any kind, or raise RunRefused saying why not.

    With enqueue=False the run is only recorded, for a caller that executes it itself. `options`
    are fields of the run (full_reread, reason).
    """
    declared = run_kind_get(kind)
    if declared.reason_for:
        options["reason"] = reason_required(options.get("reason"), declared.reason_for)
    if declared.request_check is not None:
        declared.request_check(link)
    with agency_request_lock(link):
        return _request_locked(
            link=link, kind=kind, actor=actor, enqueue=enqueue, bulk_request=bulk_request, options=options
        )


def _request_locked(
    *,
    link: AgencyLink,
    kind: str,
    actor: User | None,
    enqueue: bool,
    bulk_request: UUID | None,
    options: dict[str, Any],
) -> MigrationRun:
    migration_runs_reconcile(link=link)
    declared = run_kind_get(kind)
    active = link.runs.filter(status__in=MigrationRun.ACTIVE_STATUSES).first()
    # A dry run only reads and can be asked for again at any time; a cutover or switch back must not
    # wait for a worker to run a queued one first (nor be refused for it), so it takes its place.
    if (
        active is not None
        and run_kind_get(active.kind).dry_run
        and declared.supersedes_dry_run
        and migration_run_supersede(run=active, by=f"a {declared.label.lower()}", actor=actor)
    ):
        active = None
    if active:
        raise RunRefused(f"{link.name} already has a run {active.get_status_display().lower()} (run {active.pk}).")
    if refusal := agency_kind_refusal(link=link, kind=kind):
        raise RunRefused(refusal)
    _require_services()
    if declared.queue_check is not None:
        declared.queue_check(link)
    try:
        with transaction.atomic():
            run = MigrationRun.objects.create(
                agency_link=link,
                revos_agency_id=link.revos_agency_id,
                unified_agency_id=link.unified_agency_id,
                kind=kind,
                requested_by=actor if getattr(actor, "pk", None) else None,
                bulk_request=bulk_request,
                **options,
            )
            if enqueue:
                # The run's own job id, before the enqueue (deferred to the commit, where django-rq returns
                # no job). A second click queues no second job: the request lock puts it after the first,
                # whose active run refuses it above; and whatever path writes runs, the
                # one_active_run_per_agency constraint refuses a second active row (the IntegrityError below).
                run.job_id_assign()
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


def runs_request_bulk(
    *, links: Iterable[AgencyLink], request: Callable[[AgencyLink, UUID], MigrationRun]
) -> BulkOutcome:
    """Call `request(link, bulk_request)` for each agency under one new bulk request id; collect
    the runs queued and, saying why, the agencies refused."""
    outcome = BulkOutcome(bulk_request=uuid.uuid4())
    for link in links:
        try:
            outcome.queued.append(request(link, outcome.bulk_request))
        except RunRefused as refusal:
            outcome.skipped.append((link, str(refusal)))
    return outcome


def reasoned_runs_request_bulk(
    *, kind: str, links: Iterable[AgencyLink], reason: str, actor: User | None
) -> BulkOutcome:
    """Queue a run of a kind that needs a reason (a cutover, a switch back) for each agency, under one
    bulk request id; skip, saying why, the agencies refused."""
    return runs_request_bulk(
        links=links,
        request=lambda link, bulk: migration_run_request(
            link=link, kind=kind, actor=actor, reason=reason, bulk_request=bulk
        ),
    )


def _require_services() -> None:
    """Fail before queueing when a database or Redis the run needs does not answer."""
    run_queue_require(queue=QUEUE)
    for alias in ("revos", "unified"):
        try:
            connect(alias, autocommit=True, purpose="preflight").close()
        except DatabaseUnreachable as error:
            raise RunRefused(f"{error}. Nothing was queued.") from error


def migration_runs_reconcile(*, link: AgencyLink, running_only: bool = False) -> Reconciled:
    """Fail runs whose execution is gone: a running run nobody holds the lock of, or whose lock holder's
    worker stopped sending heartbeats (its backends are ended, which frees the agency), and a queued
    run without a job. Pages and `migration_status` call it with running_only (a queued run may be
    recorded for a caller that executes it itself). Returns what it did, for the reconciler's history."""
    statuses = (Status.RUNNING,) if running_only else MigrationRun.ACTIVE_STATUSES
    reconciled = Reconciled()
    for run in link.runs.filter(status__in=statuses):
        if run.status == Status.RUNNING:
            error = _running_run_gone(run)
            if not error:
                continue
            _delete_job(run.job_id)  # RQ still lists it as started; its worker is gone
            recover = run_kind_get(run.kind).recover
            if recover is not None:
                # A switch whose worker died is finished if it had flipped the flag, undone otherwise.
                status, recovery_error = recover(run)
                if MigrationRun.objects.filter(pk=run.pk, status=Status.RUNNING).exists():
                    note = "" if recovery_error else "Finished after its worker stopped."
                    reconciled.runs.append(_finish(run, status, error=recovery_error, note=note))
            elif _fail_if_running(run, error=error):
                reconciled.runs.append(run)
        elif not _job_pending(run.job_id):
            reconciled.runs.append(
                _finish(run, Status.FAILED, error="Its job is no longer in the queue. Queue the run again.")
            )
        else:
            continue
        bulk_auto_stop_after(run=run)
    reconciled.fences += fences_reconcile(link=link)
    return reconciled


def migration_runs_reconcile_running(*, link: AgencyLink | None = None) -> dict[AgencyLink, Reconciled]:
    """Reconcile every running run (of one agency, with `link`), for the pages, `migration_status` and
    the reconciler; return what was done, by agency.

    A run whose worker died is failed (and its agency freed) when someone looks, instead of showing
    "running 40%" until the next request. If a database or Redis does not answer, the runs are left
    as they are: the page that reads them reports that itself.
    """
    running = MigrationRun.objects.filter(status=Status.RUNNING).select_related("agency_link")
    if link is not None:
        running = running.filter(agency_link=link)
    done: dict[AgencyLink, Reconciled] = {}
    for link in {run.agency_link for run in running}:
        try:
            done[link] = migration_runs_reconcile(link=link, running_only=True)
        except (DatabaseUnreachable, RedisError) as error:
            logger.warning("could not reconcile the runs of %s: %s", link.name, error)
            break
    return done


def _running_run_gone(run: MigrationRun) -> str:
    """Why a running run's execution is gone, or "" while it lives."""
    holders = agency_lock_holders(agency_id=run.revos_agency_id)
    if not holders:
        # No lock: a plan takes none, and a run that has just released its lock is still recording
        # how it ended. Its job's worker, alive and busy with it, says it is not gone.
        if _job_worker_alive(run.job_id):
            return ""
        return "The worker stopped without finishing. Resume continues from the last checkpoint."
    orphans = orphaned_holders(holders)
    if len(orphans) < len(holders):
        return ""
    names = [h.worker_name for h in orphans if h.worker_name]  # an orphan is a worker's: every one is named
    worker_name = names[0]
    reason = worker_gone_reason(worker_name=worker_name) or "stopped without finishing"
    ended = [pid for name in set(names) for pid in worker_backends_terminate(worker_name=name)]
    sessions = f"its database sessions (pid {', '.join(map(str, ended))}) were ended" if ended else "its sessions ended"
    return (
        f"The worker {worker_name} {reason}; {sessions} to free the agency. Resume continues from the last checkpoint."
    )


def _fail_if_running(run: MigrationRun, *, error: str) -> bool:
    # Conditional: the run may have finished by itself between the checks and now.
    if MigrationRun.objects.filter(pk=run.pk, status=Status.RUNNING).exists():
        _finish(run, Status.FAILED, error=error)
        return True
    return False


def _job(job_id: str) -> Job | None:
    """The run's own job; None for a run executed by its caller (no job id) or whose job Redis dropped."""
    if not job_id:
        return None
    try:
        return Job.fetch(job_id, connection=django_rq.get_connection(QUEUE))
    except NoSuchJobError:
        return None


def _job_worker_alive(job_id: str) -> bool:
    job = _job(job_id)
    if job is None:
        return False
    if job.get_status(refresh=False) != JobStatus.STARTED or not job.worker_name:
        return False
    return worker_alive(worker_name=job.worker_name)


def _delete_job(job_id: str) -> None:
    if job := _job(job_id):
        job.delete()


def _job_pending(job_id: str) -> bool:
    """The job is still to run or running: a run waiting for a slot waits inside a started job,
    and if that worker died meanwhile the job ends up failed (or stopped) while the run still says queued."""
    job = _job(job_id)
    return job is not None and job.get_status(refresh=False) not in (
        JobStatus.FAILED,
        JobStatus.STOPPED,
        JobStatus.CANCELED,
    )


# # In the worker ------------------------------------------------------------------------------


def migration_run_execute(*, run_id: int) -> MigrationRun:
    """Carry out one run of any kind: what the RQ job calls. Safe to call twice: RQ may deliver a
    job again after a worker died. The kind's work (its declaration's `work`) does the rest."""
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
            return _run_execute(run, run_kind_get(run.kind))


def _run_execute(run: MigrationRun, kind: RunKind) -> MigrationRun:
    """The run itself, holding a slot when the concurrency limit applies to it."""

    def mark_running() -> None:
        # A redelivered job takes over its run where the dead worker left it, first start time kept.
        if not run.start(started_at=run.started_at or timezone.now(), status_note=""):
            raise MigrationStopped(Control.PAUSE)  # paused or cancelled while it waited in the queue

    try:
        done = kind.work(run, mark_running)
        report, note = done if isinstance(done, tuple) else (done, "")
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
    except RunStepFailed as failed:
        return _finish(run, Status.FAILED, error=str(failed), failed_table=failed.step)
    except TransactionsStillOpen as still_open:
        return _finish(run, Status.FAILED, error=f"{still_open} Nothing was written; try again once they end.")
    except RowRejected as rejected:
        return _finish(
            run, Status.FAILED, error=str(rejected), failed_table=rejected.table, failed_batch=rejected.batch
        )
    except DatabaseUnreachable as unreachable:
        return _finish(run, Status.FAILED, error=f"{unreachable}. Nothing more was written; Resume when it is back.")
    except Exception as error:
        _finish(run, Status.FAILED, error=f"{type(error).__name__}: {error}", trace=traceback.format_exc())
        raise
    return _finish(run, Status.SUCCEEDED, error="", report=report, note=note)


def migration_run_tally_record(*, run_id: int, tally: TableTally, rows_total: int | None = None) -> None:
    """Record the progress a rollback or a plan reports table by table (etl/tally.py): tables done of
    all, the table under way, the rows so far (deleted, counted) in all and per table; `rows_total`
    when the kind knows it beforehand."""
    fields: dict[str, Any] = {
        "current_table": tally.current[: MigrationRun._meta.get_field("current_table").max_length],
        "tables_done": len(tally.done),
        "tables_total": len(tally.tables),
        "rows_done": tally.rows,
        "table_rows": [[table, rows] for table, rows in tally.done],
    }
    if rows_total is not None:
        fields["rows_total"] = rows_total
    MigrationRun.objects.filter(pk=run_id).update(**fields)


def _finish(
    run: MigrationRun,
    status: str,
    *,
    error: str,
    note: str = "",
    report: dict[str, Any] | None = None,
    trace: str = "",
    failed_table: str = "",
    failed_batch: int | None = None,
) -> MigrationRun:
    """End an active run (a run that already ended is left as it is) and log how it ended."""
    fields: dict[str, Any] = {
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
