"""The health throttle: between batches a migration backs off while the unified database is strained.

The unified database also serves live AudienceOS traffic, so, as GitLab's batched background
migrations do, each run looks at the database's health signals after every committed batch and
sleeps (THROTTLE_CHECK_INTERVAL_SECONDS, doubling up to THROTTLE_MAX_SLEEP_SECONDS) while any is
over its threshold, with the note "throttled: <reason>" on its MigrationRun. The signals:

- a transaction open longer than THROTTLE_MAX_TRANSACTION_SECONDS (it holds back vacuum, so every
  row we upsert now stays as bloat) - the control plane's own connections are left out;
- sessions waiting for a lock on a table the migration writes (more than THROTTLE_MAX_LOCK_WAITS),
  or a lock held there that a write would queue behind (SHARE or stronger: DDL, CREATE INDEX,
  LOCK TABLE) - our next batch would join the queue and hold up everyone behind it. The control
  plane's own sessions are left out here too: with several agencies moving, one run's brief
  trigger DDL or another run waiting for it is the fleet's own work, not the apps' strain, and
  backing off for it only idled the workers (an app session waiting behind it still counts);
- replication lag over THROTTLE_MAX_REPLICATION_LAG_SECONDS, where pg_stat_replication has rows;
- autovacuum working on one of those tables (THROTTLE_ON_AUTOVACUUM).

Between batches the run holds no transaction on the unified database, so backing off holds
nothing up. Pause and Cancel are honoured while it waits. Reading other sessions' activity needs
the role to have pg_monitor (or pg_read_all_stats); without it those signals read as healthy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import cast

import django_rq
import psycopg
from django.conf import settings
from redis.exceptions import RedisError

from migration_jobs.etl import id_map
from migration_jobs.etl.connections import connect
from migration_jobs.etl.scheduler import Control
from migration_jobs.mapping import TABLE_MAPS
from migration_jobs.models import MigrationRun

logger = logging.getLogger(__name__)
# Redis hash: run id -> seconds it waited for the unified database's health.
THROTTLE_SECONDS_KEY = "controlplane:throttle-seconds"

# Every table a migration writes: the mapped targets and the control plane's bookkeeping.
WRITTEN_TABLES = (
    *sorted({m.target if "." in m.target else f"public.{m.target}" for m in TABLE_MAPS}),
    id_map.TABLE,
    "controlplane.checkpoint",
)
# Lock modes a RowExclusiveLock (INSERT/UPDATE/DELETE) conflicts with.
WRITE_BLOCKING_MODES = ("ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")
OUR_APPLICATIONS = "controlplane-%"  # connect() names every engine connection controlplane-<purpose>
THIS_DATABASE = "(SELECT oid FROM pg_database WHERE datname = current_database())"
WATCHED = "(SELECT to_regclass(t) FROM unnest(%(tables)s::text[]) AS t)"


def unified_health_problems(*, connection: psycopg.Connection, tables: Sequence[str] = WRITTEN_TABLES) -> list[str]:
    """The health signals over their thresholds right now, each as a short reason; [] when healthy."""
    checks = [_long_transaction, _lock_trouble, _replication_lag]
    if settings.THROTTLE_ON_AUTOVACUUM:
        checks.append(_autovacuum)
    return [reason for check in checks for reason in check(connection, list(tables))]


def _long_transaction(connection: psycopg.Connection, tables: list[str]) -> list[str]:
    row = connection.execute(
        "SELECT pid, extract(epoch FROM now() - xact_start)::int, state FROM pg_stat_activity"
        " WHERE datname = current_database() AND backend_type = 'client backend' AND xact_start IS NOT NULL"
        " AND pid <> pg_backend_pid() AND coalesce(application_name, '') NOT LIKE %(ours)s"
        " AND now() - xact_start > make_interval(secs => %(limit)s) ORDER BY xact_start LIMIT 1",
        {"ours": OUR_APPLICATIONS, "limit": settings.THROTTLE_MAX_TRANSACTION_SECONDS},
    ).fetchone()
    if row is None:
        return []
    pid, seconds, state = row
    return [f"a transaction open {seconds}s (pid {pid}, {state})"]


def _lock_trouble(connection: psycopg.Connection, tables: list[str]) -> list[str]:
    rows = connection.execute(
        "SELECT l.granted, l.mode, c.relname, l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
        f" WHERE l.locktype = 'relation' AND l.database = {THIS_DATABASE} AND l.pid <> pg_backend_pid()"
        f" AND l.relation IN {WATCHED} AND (NOT l.granted OR l.mode = ANY(%(modes)s))"
        " AND coalesce(a.application_name, '') NOT LIKE %(ours)s ORDER BY c.relname, l.pid",
        {"tables": tables, "modes": list(WRITE_BLOCKING_MODES), "ours": OUR_APPLICATIONS},
    ).fetchall()
    reasons = []
    waiting = sorted({table for granted, _, table, _ in rows if not granted})
    waits = sum(1 for granted, *_ in rows if not granted)
    if waits > settings.THROTTLE_MAX_LOCK_WAITS:
        reasons.append(f"{waits} lock waits on {', '.join(waiting)} (limit {settings.THROTTLE_MAX_LOCK_WAITS})")
    for granted, mode, table, pid in rows:
        if granted:
            reasons.append(f"{table} locked in {mode} by pid {pid}")
    return reasons


def _replication_lag(connection: psycopg.Connection, tables: list[str]) -> list[str]:
    row = connection.execute(
        "SELECT application_name, extract(epoch FROM replay_lag)::float FROM pg_stat_replication"
        " WHERE replay_lag IS NOT NULL ORDER BY replay_lag DESC LIMIT 1"
    ).fetchone()
    if row is None or row[1] <= settings.THROTTLE_MAX_REPLICATION_LAG_SECONDS:
        return []
    replica, lag = row
    return [f"replica {replica or '?'} is {lag:.0f}s behind (limit {settings.THROTTLE_MAX_REPLICATION_LAG_SECONDS:g}s)"]


def _autovacuum(connection: psycopg.Connection, tables: list[str]) -> list[str]:
    rows = connection.execute(
        "SELECT c.relname, p.phase FROM pg_stat_progress_vacuum p JOIN pg_class c ON c.oid = p.relid"
        " JOIN pg_stat_activity a ON a.pid = p.pid"
        f" WHERE p.datid = {THIS_DATABASE} AND a.backend_type = 'autovacuum worker' AND p.relid IN {WATCHED}",
        {"tables": tables},
    ).fetchall()
    return [f"autovacuum on {table} ({phase})" for table, phase in rows]


def throttle_seconds_add(*, run_id: int, seconds: float) -> None:
    """Add to the seconds the run waited for the database's health (the metrics and the rehearsal read them).

    In Redis, beside the run's job: the workers are many processes on many hosts, and a run's
    report is written once, at its end, by its own worker.
    """
    try:
        django_rq.get_connection("migrations").hincrbyfloat(THROTTLE_SECONDS_KEY, str(run_id), seconds)
    except RedisError as error:  # the run goes on; only the figure misses these seconds
        logger.warning("could not record %.1f throttle seconds of run %s: %s", seconds, run_id, error)


def throttle_seconds_by_run() -> dict[int, float]:
    """Run id -> the seconds it has waited for the unified database's health, as recorded so far.

    redis-py types a reply as either client's (a value or, for its asyncio client, an awaitable);
    this is the blocking client, whose reply is the dict.
    """
    reply = django_rq.get_connection("migrations").hgetall(THROTTLE_SECONDS_KEY)
    return {int(run_id): float(seconds) for run_id, seconds in cast("dict[bytes, bytes]", reply).items()}


class HealthThrottle:
    """One run's throttle: its own connection for the checks, and the note it shows while waiting."""

    def __init__(self, *, run_id: int):
        self.run_id = run_id
        self._connection: psycopg.Connection | None = None

    def wait_until_healthy(self, *, requested: Callable[[], Control]) -> Control:
        """Return CONTINUE once the database is healthy, or the control staff asked for meanwhile."""
        sleep, shown, started = settings.THROTTLE_CHECK_INTERVAL_SECONDS, None, time.monotonic()
        while problems := unified_health_problems(connection=self._connect()):
            note = f"throttled: {'; '.join(problems)}"[:300]
            if note != shown:
                MigrationRun.objects.filter(pk=self.run_id).update(status_note=note)
                logger.warning("%s", note)
                shown = note
            time.sleep(sleep)
            sleep = min(sleep * 2, settings.THROTTLE_MAX_SLEEP_SECONDS)
            control = requested()
            if control is not Control.CONTINUE:
                throttle_seconds_add(run_id=self.run_id, seconds=time.monotonic() - started)
                return control
        if shown is not None:
            throttle_seconds_add(run_id=self.run_id, seconds=time.monotonic() - started)
            MigrationRun.objects.filter(pk=self.run_id, status_note=shown).update(status_note="")
            logger.info("unified database healthy again; continuing")
        return Control.CONTINUE

    def _connect(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed:
            self._connection = connect("unified", autocommit=True, purpose="throttle")
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


@contextmanager
def health_throttle(*, run_id: int) -> Iterator[HealthThrottle]:
    throttle = HealthThrottle(run_id=run_id)
    try:
        yield throttle
    finally:
        throttle.close()
