"""The concurrency limit: at most MIGRATION_MAX_CONCURRENT_AGENCIES runs write to the unified database at once.

The limit holds across every worker on every host because the slots live in the unified database
itself: slot n is the session advisory lock (SLOT_CLASS, n). A run takes any free slot on a
connection of its own and keeps it until it has finished; if its worker dies, PostgreSQL drops the
connection and the slot with it, so a crash never leaks one. A run that finds every slot taken
stays queued with the note "waiting: 4 running, limit 4" and looks again every
THROTTLE_CHECK_INTERVAL_SECONDS; staff can pause or cancel it meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.conf import settings

from migration_jobs.etl.connections import connect, fetch_value
from migration_jobs.etl.engine import Control, MigrationStopped
from migration_jobs.models import MigrationRun
from migration_jobs.run_kinds import run_kind_get
from migration_jobs.services.window_gate import window_start_refusal

logger = logging.getLogger(__name__)
Status = MigrationRun.Status

# The first key of the two-key advisory locks, so slots never collide with the agency locks.
SLOT_CLASS = "hashtext('controlplane.migration-slot')"


@contextmanager
def capacity_slot_hold(*, run: MigrationRun) -> Iterator[int | None]:
    """Hold a slot for the run's whole execution, waiting for one; yield its number (None: no limit).

    Raises MigrationStopped if staff pause or cancel the run while it waits.
    """
    _window_gate(run)
    limit = settings.MIGRATION_MAX_CONCURRENT_AGENCIES
    if limit <= 0 or not run_kind_get(run.kind).writes:
        yield None
        return
    with connect("unified", autocommit=True, purpose="slot") as connection:
        slot = _slot_wait(connection, run=run, limit=limit)
        logger.info("took migration slot %s of %s", slot, limit)
        try:
            yield slot
        finally:
            # A broken connection has dropped the slot already; its error must not hide the run's.
            with contextlib.suppress(psycopg.Error):
                connection.execute(f"SELECT pg_advisory_unlock({SLOT_CLASS}, %s)", [slot])


def _slot_wait(connection: psycopg.Connection, *, run: MigrationRun, limit: int) -> int:
    shown = None
    while True:
        slot = _slot_try(connection, limit)
        if slot is not None:
            if shown is not None:
                MigrationRun.objects.filter(pk=run.pk, status=Status.QUEUED).update(status_note="")
            try:
                _window_gate(run)  # the night may have ended while it waited
            except MigrationStopped:
                connection.execute(f"SELECT pg_advisory_unlock({SLOT_CLASS}, %s)", [slot])
                raise
            return slot
        taken = _slots_taken(connection)
        if taken < limit:  # one came free since we tried
            time.sleep(0.05)
            continue
        note = f"waiting: {taken} running, limit {limit}"
        if not MigrationRun.objects.filter(pk=run.pk, status__in=MigrationRun.ACTIVE_STATUSES).exists():
            raise MigrationStopped(Control.PAUSE)  # staff paused or cancelled it while it waited
        if note != shown:
            # Only a queued run shows it: a second delivery of a running run's job must not.
            MigrationRun.objects.filter(pk=run.pk, status=Status.QUEUED).update(status_note=note)
            logger.info("%s", note)
            shown = note
        time.sleep(settings.THROTTLE_CHECK_INTERVAL_SECONDS)


def _window_gate(run: MigrationRun) -> None:
    """A run of a night's window that would start after the night ended is paused, not started."""
    note = window_start_refusal(run=run) if run.status == Status.QUEUED else None
    if note is None:  # a running run's job delivered again carries on: it started inside the window
        return
    if run.finish(Status.PAUSED, from_statuses=(Status.QUEUED,), control="", status_note=note):
        logger.info("run %s not started: %s", run.pk, note)
    raise MigrationStopped(Control.PAUSE)


def _slot_try(connection: psycopg.Connection, limit: int) -> int | None:
    for slot in range(limit):
        if fetch_value(connection.execute(f"SELECT pg_try_advisory_lock({SLOT_CLASS}, %s)", [slot])):
            return slot
    return None


def _slots_taken(connection: psycopg.Connection) -> int:
    # Two-key advisory locks store the keys in classid/objid with objsubid = 2.
    taken: int = fetch_value(
        connection.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2"
            f" AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            f" AND classid = ({SLOT_CLASS})::oid"
        )
    )
    return taken
