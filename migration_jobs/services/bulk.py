"""Bulk requests ("Migrate selected agencies") and their auto-stop.

Every run a bulk request queues carries the request's id. When one of them finishes, the auto-stop
looks at the request: once BULK_AUTO_STOP_MIN_FINISHED of its runs have finished (or all of them,
in a smaller request), if more than BULK_AUTO_STOP_FAILURE_SHARE of the finished ones failed,
something is wrong beyond one agency, and the request's queued runs are paused rather than left
to fail one by one overnight. Each paused run says why in its note; the admin repeats it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Exists, OuterRef, Q

from migration_jobs.models import AgencyLink, MigrationRun

logger = logging.getLogger(__name__)
Status = MigrationRun.Status
AUTO_STOP_PREFIX = "auto-stopped: "


@dataclass
class BulkOutcome:
    bulk_request: UUID
    queued: list[MigrationRun] = field(default_factory=list)
    skipped: list[tuple[AgencyLink, str]] = field(default_factory=list)  # (agency, why)


def migration_runs_request_bulk(*, links: Iterable[AgencyLink], actor: AbstractBaseUser | None) -> BulkOutcome:
    """Queue a migration of each agency under one bulk request id; skip (saying why) those refused."""
    from migration_jobs.services.migration import RunRefused, migration_run_request

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


def bulk_request_enforce(*, bulk_request: UUID) -> int:
    """Pause the request's queued runs if too many of its finished runs failed; return how many."""
    reason = _auto_stop_reason(bulk_request)
    if reason is None:
        return 0
    from migration_jobs.services.migration import RunRefused, migration_run_control

    paused = 0
    for run in MigrationRun.objects.filter(bulk_request=bulk_request, status=Status.QUEUED):
        try:
            migration_run_control(run=run, control=MigrationRun.Control.PAUSE, actor=None)
        except RunRefused:  # it finished or was stopped meanwhile
            continue
        MigrationRun.objects.filter(pk=run.pk, status=Status.PAUSED).update(status_note=reason)
        paused += 1
    if paused:
        logger.warning("bulk request %s: paused %s queued runs; %s", bulk_request, paused, reason)
    return paused


def _auto_stop_reason(bulk_request: UUID) -> str | None:
    counts = MigrationRun.objects.filter(bulk_request=bulk_request).aggregate(
        total=Count("pk"),
        failed=Count("pk", filter=Q(status=Status.FAILED)),
        finished=Count("pk", filter=Q(status__in=(Status.FAILED, Status.SUCCEEDED))),
    )
    total, failed, finished = counts["total"], counts["failed"], counts["finished"]
    share = settings.BULK_AUTO_STOP_FAILURE_SHARE
    if finished < min(settings.BULK_AUTO_STOP_MIN_FINISHED, total) or failed <= share * finished:
        return None
    return (
        f"{AUTO_STOP_PREFIX}{failed} of {finished} finished runs of bulk request {str(bulk_request)[:8]} failed"
        f" ({failed / finished:.0%}, more than BULK_AUTO_STOP_FAILURE_SHARE {share:.0%}). Look at the failures,"
        " then migrate the paused agencies again."
    )[:300]


def bulk_requests_stopped() -> list[str]:
    """One line per auto-stopped bulk request whose paused agencies have not been migrated again since."""
    newer = MigrationRun.objects.filter(agency_link=OuterRef("agency_link"), created_at__gt=OuterRef("created_at"))
    runs = (
        MigrationRun.objects.filter(status=Status.PAUSED, status_note__startswith=AUTO_STOP_PREFIX)
        .exclude(Exists(newer))
        .select_related("agency_link")
        .order_by("bulk_request", "agency_link__name")
    )
    stopped: dict[UUID, tuple[str, list[str]]] = {}
    for run in runs:
        stopped.setdefault(run.bulk_request, (run.status_note, []))[1].append(run.agency_link.name)
    return [
        f"Bulk migration {str(bulk)[:8]} was stopped: {note.removeprefix(AUTO_STOP_PREFIX)} Paused: {', '.join(names)}."
        for bulk, (note, names) in stopped.items()
    ]
