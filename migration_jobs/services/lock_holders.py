"""Who holds an agency's lock, and whether that worker is still alive.

An agency's advisory lock dies with the PostgreSQL backend that took it, but a backend whose host
vanished without closing its sockets lives on until keepalives notice (see etl/connections.py), and
meanwhile the agency cannot be migrated, resumed or rolled back. Every connection the engine opens
is named `controlplane-<purpose> w=<RQ worker name>` inside a job, so the holder's worker can be
looked up in Redis: an RQ worker refreshes its key (`rq:worker:<name>`) with each heartbeat, and a
forking worker busy with a job lets it expire `job_monitoring_interval + 60` seconds (90 s by
default) after its last one. A holder whose worker key is gone is an orphan: ending its backends
frees the agency.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast
from uuid import UUID

import django_rq
import psutil
from rq.defaults import DEFAULT_JOB_MONITORING_INTERVAL
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.utils import utcparse
from rq.worker import Worker

from migration_jobs.etl.connections import WORKER_TAG, connect
from migration_jobs.etl.engine import lock_key

QUEUE = "migrations"
# How often a forking worker busy with a job says it is alive, and the longest a dead one's key
# outlives its last heartbeat (RQ's own TTL during a job).
HEARTBEAT_INTERVAL_SECONDS = DEFAULT_JOB_MONITORING_INTERVAL
HEARTBEAT_TIMEOUT_SECONDS = HEARTBEAT_INTERVAL_SECONDS + 60
# Engine connections are named `controlplane-<purpose>`; nothing else is ever ended.
OUR_APPLICATIONS = "controlplane-%"


@dataclass(frozen=True)
class LockHolder:
    """A backend holding an agency's advisory lock in the unified database."""

    pid: int
    application_name: str
    backend_start: datetime

    @property
    def worker_name(self) -> str | None:
        """The RQ worker that opened the connection; None outside a job (a `--sync` command)."""
        _, tag, name = self.application_name.partition(WORKER_TAG)
        return name or None if tag else None


def agency_lock_holders(*, agency_id: UUID) -> list[LockHolder]:
    """The backends holding the agency's lock, as pg_locks and pg_stat_activity show them."""
    with connect("unified", autocommit=True, purpose="reconcile") as connection:
        rows = connection.execute(
            "SELECT a.pid, coalesce(a.application_name, ''), a.backend_start"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            # pg_locks and pg_stat_activity span the cluster; another database's agency of the same
            # id (a second control plane, a test database) holds a lock of the same key there.
            " WHERE l.locktype = 'advisory' AND l.granted"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND ((l.classid::bigint << 32) | l.objid::bigint) = (" + lock_key(agency_id).as_string(connection) + ")"
        ).fetchall()
    return [LockHolder(pid=pid, application_name=name, backend_start=started) for pid, name, started in rows]


def _worker_fields(worker_name: str, *fields: str) -> list[bytes | None]:
    """Fields of the worker's hash in Redis, None for each one missing (all once its key expired).

    redis-py types a reply as either client's (a value or, for its asyncio client, an awaitable);
    this is the blocking client, whose reply is the list.
    """
    reply = django_rq.get_connection(QUEUE).hmget(Worker.redis_worker_namespace_prefix + worker_name, list(fields))
    return cast("list[bytes | None]", reply)


def worker_alive(*, worker_name: str) -> bool:
    """Is the worker still there? Its heartbeat key expires when the heartbeats stop; a worker on this
    host is also looked up in the process table, which knows of a killed one at once."""
    hostname, pid = _worker_fields(worker_name, "hostname", "pid")
    if hostname is None:
        return False
    if pid and hostname.decode() == socket.gethostname():
        return psutil.pid_exists(int(pid))
    return True


def worker_last_heartbeat(*, worker_name: str) -> datetime | None:
    """When the worker last said it is alive; None once its key has expired (the worker is gone)."""
    (raw,) = _worker_fields(worker_name, "last_heartbeat")
    return utcparse(raw.decode()) if raw else None


def worker_gone_reason(*, worker_name: str) -> str:
    """How the worker was found gone, for the run's error; "" while it is alive."""
    hostname, pid = _worker_fields(worker_name, "hostname", "pid")
    if hostname is None:
        return f"stopped sending heartbeats (none for over {HEARTBEAT_TIMEOUT_SECONDS} s)"
    if worker_alive(worker_name=worker_name):
        return ""
    process = int(cast(bytes, pid))  # without a pid, worker_alive said alive
    return f"stopped without finishing (its process {process} on this host is gone)"


def orphaned_holders(holders: list[LockHolder]) -> list[LockHolder]:
    """The holders opened by an RQ worker whose heartbeat key has expired."""
    return [h for h in holders if h.worker_name and not worker_alive(worker_name=h.worker_name)]


def worker_backends_terminate(*, worker_name: str, wait_seconds: float = 10) -> list[int]:
    """End every backend the dead worker left in the unified and RevOS databases; return their pids.

    Its agency lock and its concurrency slot go with them. Waits until the unified ones are gone, so
    the caller finds the agency free.
    """
    pattern = f"{OUR_APPLICATIONS}{WORKER_TAG}{worker_name}"
    ended: list[int] = []
    for alias in ("unified", "revos"):
        with connect(alias, autocommit=True, purpose="reconcile") as connection:
            rows = connection.execute(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name LIKE %s AND datname = current_database() AND pid <> pg_backend_pid()",
                [pattern],
            ).fetchall()
            ended += [pid for pid, _ in rows]
            deadline = time.monotonic() + wait_seconds
            while rows and time.monotonic() < deadline:
                pids = [pid for pid, _ in rows]
                if not connection.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", [pids]).fetchone():
                    break
                time.sleep(0.1)
    return ended


@dataclass(frozen=True)
class Heartbeat:
    worker_name: str
    seconds_ago: int | None  # None: the worker's key has expired (it is gone)


def run_heartbeat(*, job_id: str) -> Heartbeat | None:
    """The worker executing a job and how long ago it last said it is alive (for the agency page)."""
    connection = django_rq.get_connection(QUEUE)
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return None
    if not job.worker_name:
        return None
    last = worker_last_heartbeat(worker_name=job.worker_name)
    age = None if last is None else max(0, int((datetime.now(UTC) - last.replace(tzinfo=UTC)).total_seconds()))
    return Heartbeat(worker_name=job.worker_name, seconds_ago=age)
