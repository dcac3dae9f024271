"""The lifecycle of a VerificationRun: request (queue on `verification`), execute (in the worker).

A verification only reads tenant data; it may run at any time and as often as staff like. Its
verdict: `fail` if any check failed, else `error` if a check could not run, else `pass` — a
definite failure is the more useful thing to show, and either one keeps the cutover closed.
"""

from __future__ import annotations

import logging
import traceback
from collections import Counter

import django_rq
from django.contrib.auth.models import User
from django.db import transaction
from rq.exceptions import NoSuchJobError
from rq.job import Job

from migration_jobs.etl import id_map
from migration_jobs.etl.connections import DatabaseUnreachable, connect
from migration_jobs.models import AgencyLink, CheckResult, MigrationRun, VerificationRun
from migration_jobs.refusals import RunRefused
from migration_jobs.run_kinds import run_kind_get
from migration_jobs.selectors.agency_links import agency_linked
from migration_jobs.services.request_lock import agency_request_lock
from migration_jobs.services.run_control import RunJob, run_enqueue_once, run_queue_require
from migration_jobs.verify import ERROR, FAIL, AgencyScope, CheckOutcome
from migration_jobs.verify.runner import agency_verify

logger = logging.getLogger(__name__)
QUEUE = VerificationRun.QUEUE
Status, Verdict = VerificationRun.Status, VerificationRun.Verdict
JOB = RunJob(
    queue=QUEUE,
    function="migration_jobs.jobs_verify.execute_verification_run",
    failure="Could not queue the job: {error}. Nothing was checked.",
    options={"result_ttl": 24 * 3600, "failure_ttl": 7 * 24 * 3600},
)


class VerificationRefused(RunRefused):
    """The verification cannot be queued; the message says why. Nothing was queued."""


def verification_run_request(
    *,
    link: AgencyLink,
    migration_run: MigrationRun | None = None,
    actor: User | None,
    enqueue: bool = True,
) -> VerificationRun:
    """Queue a verification of one agency, or raise VerificationRefused saying why not.

    A verification already waiting in the queue is returned instead of queueing a second one: it
    has not started, so it will see the same data. With enqueue=False the run is only recorded,
    for a caller that executes it itself.
    """
    with agency_request_lock(link):
        return _request_locked(link=link, migration_run=migration_run, actor=actor, enqueue=enqueue)


def _request_locked(
    *, link: AgencyLink, migration_run: MigrationRun | None, actor: User | None, enqueue: bool
) -> VerificationRun:
    _require_verifiable(link, migration_run)
    if enqueue:
        run_queue_require(queue=QUEUE, refusal=VerificationRefused)
        waiting = _waiting_verification(link)
        if waiting is not None:
            if migration_run is not None:
                VerificationRun.objects.filter(pk=waiting.pk).update(migration_run=migration_run)
                waiting.refresh_from_db()
            return waiting
    with transaction.atomic():
        run = VerificationRun.objects.create(
            agency_link=link,
            migration_run=migration_run,
            job_id=VerificationRun.new_job_id() if enqueue else "",
            requested_by=actor if getattr(actor, "pk", None) else None,
        )
        if enqueue:
            run_enqueue_once(run=run, job=JOB)
    run.refresh_from_db()
    if run.status == Status.ERROR:
        raise VerificationRefused(run.error)
    return run


def _require_verifiable(link: AgencyLink, migration_run: MigrationRun | None) -> None:
    if not link.is_confirmed:
        raise VerificationRefused(f"{link.name} has no confirmed link to a unified agency; there is nothing to verify.")
    active = link.runs.filter(status__in=MigrationRun.ACTIVE_STATUSES)
    if migration_run is not None:
        active = active.exclude(pk=migration_run.pk)
    if (run := active.first()) is not None:
        raise VerificationRefused(
            f"{link.name} has a {run.get_kind_display().lower()} run {run.get_status_display().lower()} (run {run.pk});"
            " verify once it has ended."
        )


def _waiting_verification(link: AgencyLink) -> VerificationRun | None:
    """The agency's verification still waiting in the queue; one whose job is gone is closed as an error."""
    # A run without a job id belongs to a caller executing it in-process (verify_agency --sync).
    for run in link.verifications.filter(status=Status.QUEUED).exclude(job_id="").order_by("-created_at"):
        if _job_exists(run.job_id):
            return run
        _finish(run.pk, Status.ERROR, Verdict.ERROR, error="Its job is no longer in the queue; nothing was checked.")
    return None


def _job_exists(job_id: str) -> bool:
    if not job_id:
        return False
    try:
        Job.fetch(job_id, connection=django_rq.get_connection(QUEUE))
    except NoSuchJobError:
        return False
    return True


# In the worker ------------------------------------------------------------------------------


def verification_run_execute(*, verification_run_id: int) -> VerificationRun:
    """Run every check and record each result as it comes. Safe to call again: RQ may redeliver."""
    run = VerificationRun.objects.select_related("agency_link", "migration_run").get(pk=verification_run_id)
    if run.status in (Status.FINISHED, Status.ERROR):
        logger.info("verification %s is %s; nothing to do", run.pk, run.status)
        return run
    migrating = run.agency_link.runs.filter(status=MigrationRun.Status.RUNNING).first()
    if migrating is not None:  # its rows are changing under us: any verdict would be noise
        return _finish(
            run.pk,
            Status.ERROR,
            Verdict.ERROR,
            error=f"Run {migrating.pk} is migrating this agency; verify after it ends.",
        )
    run.results.all().delete()  # a redelivered job starts over rather than adding to a partial run
    if not run.start(finished_at=None, verdict="", error=""):
        return run  # ended meanwhile: there is nothing left to check
    tally: Counter[str] = Counter()
    errored: list[str] = []

    def record(outcome: CheckOutcome) -> None:
        CheckResult.objects.create(
            verification_run=run,
            check_name=outcome.check_name,
            table_name=outcome.table_name,
            status=outcome.status,
            expected=outcome.expected,
            actual=outcome.actual,
            details=outcome.details,
            seconds=outcome.seconds,
        )
        tally[outcome.status] += 1
        if outcome.status == ERROR:
            errored.append(f"{outcome.check_name} {outcome.table_name}".strip())

    try:
        agency_verify(scope=_scope(run), record=record)
    except DatabaseUnreachable as unreachable:
        return _finish(run.pk, Status.ERROR, Verdict.ERROR, error=f"{unreachable}. Verify again when it is back.")
    except Exception as error:  # recorded on the run, which is where staff look
        logger.exception("verification %s stopped", run.pk)
        return _finish(
            run.pk, Status.ERROR, Verdict.ERROR, error=f"{type(error).__name__}: {error}\n\n{traceback.format_exc()}"
        )
    verdict = verdict_of(tally)
    problem = f"{len(errored)} checks could not run: {', '.join(errored[:10])}" if errored else ""
    if not tally:
        problem = "No check ran."
    return _finish(run.pk, Status.FINISHED, verdict, error=problem)


def verdict_of(tally: Counter[str]) -> str:
    """fail beats error beats pass; no result at all is an error."""
    if tally[FAIL]:
        return Verdict.FAIL
    if tally[ERROR] or not sum(tally.values()):
        return Verdict.ERROR
    return Verdict.PASS


def _scope(run: VerificationRun) -> AgencyScope:
    link = run.agency_link
    return AgencyScope(
        source_agency_id=link.revos_agency_id,
        target_agency_id=agency_linked(link=link).unified_agency_id,  # _require_verifiable admits linked ones only
        migrated=_expects_migrated(run),
    )


def _expects_migrated(run: VerificationRun) -> bool:
    """Whether the agency's rows should be in the unified database, or (rolled back) none of them.

    The run that triggered the verification says so; on demand, the id map does: a migration,
    even one stopped half-way, leaves it filled, and a rollback empties it. Only a rollback takes
    the rows out: a switch back leaves them in the unified database (and in the id map) for the
    next cutover.
    """
    if run.migration_run is not None and not (kind := run_kind_get(run.migration_run.kind)).dry_run:
        return not kind.unloads
    with connect("unified", autocommit=True, purpose="verification") as connection, connection.cursor() as cursor:
        return id_map.agency_has_mapped_rows(cursor, agency_id=run.agency_link.revos_agency_id)


def _finish(run_id: int, status: str, verdict: str, *, error: str) -> VerificationRun:
    """End a queued or running verification (one that already ended is left as it is)."""
    run = VerificationRun.objects.select_related("agency_link").get(pk=run_id)
    run.finish(status, verdict=verdict, error=error)
    logger.info("verification %s of %s: %s %s", run.pk, run.agency_link.name, verdict, error)
    return run
