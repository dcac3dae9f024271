"""The reconciler: what the next request on an agency would put right, done every few seconds without one.

A run whose worker died is failed (or finished, for a switch that had turned unified_db over) and a
fence that no live run owns is lifted. The pages and the next request already do both for the
agency they look at (`migration_runs_reconcile` in services/runs.py, `fences_reconcile` in
services/fence.py); a pass runs the same functions for every agency that needs them, so an agency
whose cutover failed while RevOS was down is unfenced once RevOS answers again, whether anyone looks
or not. Each action goes into the agency's admin history, by the `reconciler` account.

`manage.py reconcile` runs a pass every RECONCILE_INTERVAL seconds (beside the worker; `--once`
for cron and tests). A database or Redis that does not answer leaves what needs it to the next pass.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import django_rq
import psycopg
from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connections
from django.db.models import Q
from django.utils import timezone
from redis.exceptions import RedisError

from migration_jobs.etl import capture
from migration_jobs.etl.connections import DatabaseUnreachable, connect, connection_failure_reason, fetch_value
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.selectors.reconcile import LAST_PASS_KEY, PERIODS_KEPT
from migration_jobs.services.fence import fence_owners_live, fences_reconcile
from migration_jobs.services.run_control import MIGRATIONS_QUEUE
from migration_jobs.services.runs import migration_runs_reconcile_running
from migration_jobs.services.windows import bulk_windows_advance

logger = logging.getLogger(__name__)
Status = MigrationRun.Status
# The account the reconciler's actions are logged by: the admin history names a user. Inactive,
# without a usable password: nobody logs in as it.
RECONCILER_USERNAME = "reconciler"
# One pass at a time across every reconciler process (a second one started by mistake, or cron).
PASS_LOCK = "hashtext('controlplane.reconcile')"


@dataclass(frozen=True)
class Action:
    """One thing a pass put right, on one agency."""

    link: AgencyLink
    message: str

    def __str__(self) -> str:
        return f"{self.link.name} ({self.link.revos_agency_id}): {self.message}"


@dataclass
class PassReport:
    """What one pass did, and what it could not reach (one line each), left for the next pass."""

    actions: list[Action] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)  # one sentence per server, in the commands' words

    def unreachable_add(self, error: BaseException) -> None:
        """What did not answer, named as every command names it (a server lost half-way included)."""
        if isinstance(error, RedisError):
            said = f"Redis (the job queue) cannot be reached: {connection_failure_reason(error)}"
        elif isinstance(error, DatabaseUnreachable):
            said = str(error)
        else:
            said = f"A database stopped answering half-way: {connection_failure_reason(error)}"
        if said not in self.unreachable:
            self.unreachable.append(said)

    skipped: bool = False  # another reconciler was in its pass
    windows: list[str] = field(default_factory=list)  # what advancing the nights' windows did


def reconcile_pass(*, now: datetime | None = None, interval: float | None = None) -> PassReport:
    """Fail runs whose worker died and lift fences no live run owns, for every agency; record each
    action in the agency's history and when the next pass is due (`interval` seconds after `now`).

    Raises only when the control plane's own database does not answer.
    """
    now = now or timezone.now()
    interval = interval or settings.RECONCILE_INTERVAL
    report = PassReport()
    with _pass_lock() as held:
        if not held:
            report.skipped = True
            return report
        for part in (_runs_reconcile, _fences_reconcile):
            try:
                actions = part(report)
            except (psycopg.Error, RedisError) as error:  # lost half-way: what is left, next pass
                report.unreachable_add(error)
                continue
            for action in actions:
                agency_history_record(link=action.link, message=f"Reconciler: {action.message}")
            report.actions += actions
        try:  # the nights' windows: the next wave queued, or the runs of an ended night stopped
            report.windows = bulk_windows_advance(now=now)
        except (psycopg.Error, RedisError) as error:
            report.unreachable_add(error)
    try:
        # Whole seconds: the cache rounds down, and a timeout of 0 deletes the key.
        kept = math.ceil(interval * PERIODS_KEPT)
        cache.set(LAST_PASS_KEY, {"at": now.isoformat(), "interval": interval}, timeout=kept)
    except RedisError as error:
        report.unreachable_add(error)
    return report


def agency_history_record(*, link: AgencyLink, message: str) -> None:
    """One line in the agency's admin history (its page's "History"), as the staff buttons leave."""
    LogEntry.objects.log_actions(
        user_id=_reconciler_user_id(), queryset=[link], action_flag=CHANGE, change_message=message, single_object=True
    )


def _reconciler_user_id() -> int:
    user, created = get_user_model().objects.get_or_create(
        username=RECONCILER_USERNAME, defaults={"is_active": False, "is_staff": False}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user.pk


@contextmanager
def _pass_lock() -> Iterator[bool]:
    with connections["default"].cursor() as cursor:
        cursor.execute(f"SELECT pg_try_advisory_lock({PASS_LOCK})")
        held = fetch_value(cursor)
    try:
        yield held
    finally:
        if held:
            with connections["default"].cursor() as cursor:
                cursor.execute(f"SELECT pg_advisory_unlock({PASS_LOCK})")


def _runs_reconcile(report: PassReport) -> list[Action]:
    """The running runs whose worker died, failed (or finished), with the fences they held."""
    # Whether a running run lives is read from the unified database's locks and from Redis: the
    # shared function leaves every run as it is when either does not answer, so ask first.
    try:
        django_rq.get_connection(MIGRATIONS_QUEUE).ping()
        connect("unified", autocommit=True, purpose="reconcile").close()
    except (RedisError, DatabaseUnreachable) as error:
        report.unreachable_add(error)
        return []
    actions = []
    for link, done in migration_runs_reconcile_running().items():
        for run in done.runs:
            reason = run.error or run.status_note
            actions.append(Action(link, f"run {run.pk} ({run.get_kind_display()}) {run.status}: {reason}"))
        actions += [Action(link, line) for line in done.fences]
    return actions


def _fences_reconcile(report: PassReport) -> list[Action]:
    """The fences no live run owns, lifted, with the read-only mark the flags API gives their agencies."""
    fenced: dict[str, dict[UUID, str]] = {}
    for alias in ("revos", "unified"):
        try:
            with connect(alias, purpose="reconcile") as connection:
                fenced[alias] = capture.fenced_agencies(connection)
        except DatabaseUnreachable as error:
            report.unreachable_add(error)
            # RevOS's fence is the one an app that writes to RevOS meets: without RevOS, wait.
            if alias == "revos":
                return []
    actions = []
    for link in _fenced_links(fenced):
        if _any_orphaned(link, fenced) or _stale_read_only(link):
            actions += [Action(link, line) for line in fences_reconcile(link=link)]
    return actions


def _fenced_links(fenced: dict[str, dict[UUID, str]]) -> Iterator[AgencyLink]:
    """The agencies fenced somewhere, or marked read-only for the apps by a run that ended."""
    marked = MigrationRun.objects.filter(fence_held=True).exclude(status__in=(Status.RUNNING, Status.SUCCEEDED))
    condition = (
        Q(revos_agency_id__in=list(fenced.get("revos", {})))
        | Q(unified_agency_id__in=list(fenced.get("unified", {})))
        | Q(pk__in=marked.values("agency_link_id"))
    )
    yield from AgencyLink.objects.filter(condition).order_by("pk")


def _any_orphaned(link: AgencyLink, fenced: dict[str, dict[UUID, str]]) -> bool:
    # The owners are read after the fences (see services/fence.py `_orphaned`).
    owners = fence_owners_live(link=link)
    revos = fenced.get("revos", {}).get(link.revos_agency_id)
    unified = fenced.get("unified", {}).get(link.unified_agency_id) if link.unified_agency_id else None
    return (revos is not None and revos not in owners.revos) or (unified is not None and unified not in owners.unified)


def _stale_read_only(link: AgencyLink) -> bool:
    return link.runs.filter(fence_held=True).exclude(status__in=(Status.RUNNING, Status.SUCCEEDED)).exists()
