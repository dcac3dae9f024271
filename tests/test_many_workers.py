"""Many workers, one unified database: parallel agencies, the concurrency limit, visible waiting.

Real `rqworker` processes (not burst, as in production) share the test Redis and databases; a
sampler thread looks at the control plane and the unified database every 50 ms and records what
it sees, so the assertions are about what actually happened at once, not about the final state.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

import psycopg
import pytest

from migration_jobs.demo.demo import demo_agency_seed, demo_data_seed
from migration_jobs.models import AgencyLink, MigrationRun, VerificationRun
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
from migration_jobs.services.capacity import SLOT_CLASS
from migration_jobs.services.kinds.migrate import migration_runs_request_bulk
from migration_jobs.services.run_control import migration_run_control
from migration_jobs.services.runs import migration_run_request
from tests.conftest import database_url, start_worker_process

Status = MigrationRun.Status
CAP = 2
# Migration log lines (every one must name its agency and run); verification keeps its own.
MIGRATION_LOGGERS = (
    "logger=migration_jobs.services.runs",
    "logger=migration_jobs.services.kinds.",
    "logger=migration_jobs.services.capacity",
    "logger=migration_jobs.services.throttle",
    "logger=migration_jobs.services.bulk",
    "logger=migration_jobs.etl.",
)


class Worker:
    """A real `rqworker` process whose output is read as it comes (a full pipe would stall it)."""

    def __init__(self, *queues: str, burst: bool = False, **env: str):
        self.process = start_worker_process(*queues, burst=burst, **env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def stop(self) -> None:
        """Warm shutdown (finish the current job, then exit); killed if it will not."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self._reader.join(timeout=10)


def migration_log_lines(workers: list[Worker]) -> list[str]:
    return [line for w in workers for line in w.lines if any(name in line for name in MIGRATION_LOGGERS)]


def wait_for(condition, *, timeout: float = 300, what: str = "condition", every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def all_jobs_done(queues) -> bool:
    watched = (queues["migrations"], queues["verification"])
    return all(queue.count == 0 and queue.started_job_registry.count == 0 for queue in watched)


def confirm_all() -> list[AgencyLink]:
    agency_links_sync()
    links = list(AgencyLink.objects.order_by("name"))
    for link in links:
        agency_link_confirm(link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None)
    return list(AgencyLink.objects.order_by("name"))


@dataclass
class Observed:
    samples: int = 0
    peak_running: int = 0
    peak_slots: int = 0
    peak_agencies_locked: int = 0
    most_holders_of_one_agency: int = 0
    waiting_notes: set[str] = field(default_factory=set)


class Sampler(threading.Thread):
    """Every 50 ms: running runs, slots taken, agency locks held (and by how many sessions each)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.observed = Observed()
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with (
                psycopg.connect(database_url("default"), autocommit=True, application_name="sampler") as cp,
                psycopg.connect(database_url("unified"), autocommit=True, application_name="sampler") as unified,
            ):
                while not self.done.is_set():
                    self._sample(cp, unified)
                    self.done.wait(0.05)
        except BaseException as error:  # surfaced by the test, not lost in the thread
            self.error = error

    def _sample(self, cp: psycopg.Connection, unified: psycopg.Connection) -> None:
        o = self.observed
        running = cp.execute(f"SELECT count(*) FROM {MigrationRun._meta.db_table} WHERE status = 'running'")
        o.peak_running = max(o.peak_running, running.fetchone()[0])
        notes = cp.execute(
            f"SELECT status_note FROM {MigrationRun._meta.db_table} WHERE status = 'queued' AND status_note <> ''"
        )
        o.waiting_notes.update(note for (note,) in notes.fetchall())
        this_db = "database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        slots = unified.execute(
            f"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND {this_db}"
            f" AND classid = ({SLOT_CLASS})::oid"
        )
        o.peak_slots = max(o.peak_slots, slots.fetchone()[0])
        # Agency locks are one-key (objsubid 1) advisory locks: one row per holding session.
        holders = unified.execute(
            "SELECT (classid::bigint << 32) | objid::bigint AS key, count(*) FROM pg_locks"
            f" WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND {this_db} GROUP BY 1"
        ).fetchall()
        o.peak_agencies_locked = max(o.peak_agencies_locked, len(holders))
        o.most_holders_of_one_agency = max([o.most_holders_of_one_agency, *(n for _, n in holders)])
        o.samples += 1


@pytest.fixture
def workers(tenant_db, rq_queues):
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def test_many_workers_migrate_a_bulk_request_in_parallel_within_the_cap(workers, rq_queues):
    demo_data_seed(agencies=8, scale=1, seed=21)
    links = confirm_all()
    assert len(links) == 8
    bulk = migration_runs_request_bulk(links=links, actor=None)
    assert len(bulk.queued) == 8, bulk.skipped
    # A second delivery of every job (as RQ does after a worker died), at the front of the queue:
    # two workers now hold jobs for the same agency at once, and only the agency lock keeps them apart.
    for run in bulk.queued:
        rq_queues["migrations"].enqueue(
            "migration_jobs.jobs.execute_migration_run", run.pk, job_id=f"redelivered-{run.pk}", at_front=True
        )
    sampler = Sampler()
    sampler.start()
    env = {
        "MIGRATION_MAX_CONCURRENT_AGENCIES": str(CAP),
        "MIGRATION_BATCH_SIZE": "25",
        "THROTTLE_CHECK_INTERVAL_SECONDS": "0.2",
    }
    workers.extend(Worker("migrations", "verification", **env) for _ in range(4))

    run_ids = [run.pk for run in bulk.queued]
    try:
        wait_for(
            lambda: not MigrationRun.objects.filter(pk__in=run_ids, status__in=MigrationRun.ACTIVE_STATUSES).exists(),
            what="every run of the bulk request to finish",
        )
        wait_for(lambda: all_jobs_done(rq_queues), what="the workers to drain the migration and verification queues")
    finally:
        sampler.done.set()
        sampler.join(timeout=30)
    assert sampler.error is None, sampler.error

    runs = MigrationRun.objects.filter(pk__in=run_ids)
    assert {run.status for run in runs} == {Status.SUCCEEDED}, [(r.pk, r.status, r.error) for r in runs]
    assert all(run.bulk_request == bulk.bulk_request for run in runs)
    latest = {link.pk: link.verifications.order_by("-created_at", "-id").first() for link in links}
    verdicts = {pk: verification.verdict if verification else None for pk, verification in latest.items()}
    assert set(verdicts.values()) == {VerificationRun.Verdict.PASS}, verdicts

    seen = sampler.observed
    print(
        f"\n{seen.samples} samples: peak running {seen.peak_running}, slots {seen.peak_slots}, "
        f"agencies locked {seen.peak_agencies_locked} (limit {CAP}); waiting notes {sorted(seen.waiting_notes)}"
    )
    assert seen.samples > 20
    assert seen.most_holders_of_one_agency == 1, "no agency was migrated by two sessions at once"
    assert seen.peak_running <= CAP and seen.peak_slots <= CAP and seen.peak_agencies_locked <= CAP
    assert seen.peak_running == CAP, "four workers and eight agencies: the limit was reached"
    assert f"waiting: {CAP} running, limit {CAP}" in seen.waiting_notes, "runs over the limit waited visibly"

    lines = migration_log_lines(workers)
    assert any("took migration slot" in line for line in lines)
    unlabelled = [line for line in lines if "agency_id=" not in line or "run_id=" not in line]
    assert unlabelled == [], "every migration log line names its agency and run"


def test_a_run_over_the_limit_waits_visibly_honours_pause_and_goes_once_a_slot_frees(workers):
    link = AgencyLink.objects.get(revos_agency_id=_seeded_agency())
    link = agency_link_confirm(
        link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None
    )
    env = {"MIGRATION_MAX_CONCURRENT_AGENCIES": "1", "THROTTLE_CHECK_INTERVAL_SECONDS": "0.2"}
    # Another host's migration holds the only slot.
    with psycopg.connect(database_url("unified"), autocommit=True) as other_host:
        other_host.execute(f"SELECT pg_advisory_lock({SLOT_CLASS}, 0)")
        run = migration_run_request(link=link, kind=MigrationRun.Kind.MIGRATE, actor=None)
        worker = Worker("migrations", burst=True, **env)
        workers.append(worker)
        wait_for(
            lambda: MigrationRun.objects.filter(pk=run.pk, status_note="waiting: 1 running, limit 1").exists(),
            what="the run to show that it waits",
        )
        migration_run_control(run=run, control=MigrationRun.Control.PAUSE, actor=None)
        assert worker.wait(timeout=120) == 0
        run.refresh_from_db()
        assert run.status == Status.PAUSED and run.started_at is None and run.rows_done == 0

        resumed = migration_run_request(link=link, kind=MigrationRun.Kind.MIGRATE, actor=None)
        worker = Worker("migrations", burst=True, **env)
        workers.append(worker)
        wait_for(
            lambda: MigrationRun.objects.filter(pk=resumed.pk, status_note__startswith="waiting").exists(),
            what="the new run to wait as well",
        )
    # The other host's connection is gone, and its slot with it.
    assert worker.wait(timeout=300) == 0
    resumed.refresh_from_db()
    assert resumed.status == Status.SUCCEEDED, resumed.error
    assert resumed.status_note == ""


def _seeded_agency():
    agency_id = demo_agency_seed(scale=1, seed=31, name="Waiting Agency")
    agency_links_sync()
    return agency_id
