"""The project's own migration and verification of the agency, each through a real `rqworker` process."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from uuid import UUID

from django.conf import settings

from benchmarks.memory import ProcessRun, process_run_sampled
from benchmarks.profile import migration_profile, verification_profile
from benchmarks.workload import bench_link_confirm, database_backends_stop, database_checkpoint
from migration_jobs.etl.parallel import parallelism
from migration_jobs.models import CheckResult, MigrationRun, VerificationRun
from migration_jobs.services.kinds.migrate import MIGRATE
from migration_jobs.services.runs import migration_run_request
from migration_jobs.services.verification import verification_run_request


def worker_run(*, queue: str, worker_env: Mapping[str, str], log_dir: Path, timeout: float) -> ProcessRun:
    """`manage.py rqworker <queue> --burst` in its own process: it drains the queue and exits.

    Past `timeout` seconds the worker is killed and the queries it left running are cancelled.
    """
    command = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "rqworker", queue, "--burst"]
    worker = process_run_sampled(command, env=worker_env, log=log_dir / f"worker-{queue}.log", timeout=timeout)
    if worker.timed_out:
        database_backends_stop(application_prefix="controlplane-")
    return worker


def _seconds(started, finished) -> float | None:
    return round((finished - started).total_seconds(), 3) if started and finished else None


def _failure(worker: ProcessRun, error: str) -> str:
    """What went wrong, when something did: the run's own error, else the worker's last lines."""
    if worker.timed_out:
        return f"stopped waiting after {worker.seconds:.1f} s (the worker was killed)"
    if error or worker.returncode == 0:
        return error
    return f"the worker exited with {worker.returncode}:\n{worker.output_tail}"


def _worker_figures(worker: ProcessRun) -> dict:
    return {
        "worker_seconds": round(worker.seconds, 3),
        "timed_out": worker.timed_out,
        "worker_exit_code": worker.returncode,
        "peak_rss_bytes": worker.process_peak_bytes,
        "tree_peak_rss_bytes": worker.tree_peak_bytes,
        "rss_samples": worker.samples,
    }


def migration_measure(
    *, agency_id: UUID, worker_env: Mapping[str, str], log_dir: Path, timeout: float
) -> tuple[dict, MigrationRun]:
    """Queue the agency's migration as staff would, run it in a worker; rows/s from the MigrationRun.

    The time is the run's own, from taking the agency's lock to its last commit (started_at to
    finished_at); the worker's process time, Python start-up included, is reported beside it.
    """
    link = bench_link_confirm(agency_id=agency_id)
    run = migration_run_request(link=link, kind=MIGRATE.value, actor=None)
    database_checkpoint()
    worker = worker_run(queue="migrations", worker_env=worker_env, log_dir=log_dir, timeout=timeout)
    log = log_dir / "worker-migrations.log"
    run.refresh_from_db()
    succeeded = run.status == MigrationRun.Status.SUCCEEDED
    seconds = _seconds(run.started_at, run.finished_at) if succeeded else None
    figures = {
        "status": run.status,
        "error": _failure(worker, run.error),
        "rows": run.rows_total,
        "seconds": seconds,
        "rows_per_second": round(run.rows_total / seconds, 1) if seconds else None,
        "engine_rows_per_second": run.rows_per_second,  # the engine's own figure: copy phase only
        "profile": migration_profile(run=run, log=log, writers=parallelism(settings.MIGRATION_WRITERS)),
        **_worker_figures(worker),
    }
    return figures, run


def verification_measure(
    *, migration_run: MigrationRun, worker_env: Mapping[str, str], log_dir: Path, timeout: float
) -> dict:
    """Run the verification the migration queued (or queue one) in a worker; its wall time.

    A verification still running after `timeout` seconds is stopped; `waited_seconds` is then a
    lower bound of its time.
    """
    verification = VerificationRun.objects.filter(migration_run=migration_run).order_by("-created_at").first()
    if verification is None:
        verification = verification_run_request(link=migration_run.agency_link, migration_run=migration_run, actor=None)
    database_checkpoint()
    worker = worker_run(queue="verification", worker_env=worker_env, log_dir=log_dir, timeout=timeout)
    verification.refresh_from_db()
    not_passed = verification.results.exclude(status=CheckResult.Status.PASS)
    finished = verification.status == VerificationRun.Status.FINISHED
    return {
        "status": verification.status,
        "verdict": verification.verdict,
        "error": _failure(worker, verification.error[:2000]),
        "seconds": _seconds(verification.started_at, verification.finished_at) if finished else None,
        "waited_seconds": round(worker.seconds, 3),
        "checks": verification.results.count(),
        "not_passed": [f"{r.status}: {r.check_name} {r.table_name}".strip() for r in not_passed[:20]],
        "profile": verification_profile(run=verification),
        **_worker_figures(worker),
    }
