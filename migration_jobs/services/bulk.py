"""Bulk requests ("Migrate selected agencies") and their auto-stop.

Every run a bulk request queues carries the request's id. When one of them finishes, the auto-stop
looks at the request: once BULK_AUTO_STOP_MIN_FINISHED of its runs have finished (or all of them,
in a smaller request), if more than BULK_AUTO_STOP_FAILURE_SHARE of the finished ones failed,
something is wrong beyond one agency, and the request's queued runs are paused rather than left
to fail one by one overnight. Each paused run says why in its note; the admin repeats it.
The request itself (`migration_runs_request_bulk`) is a migration request and lives with them.
"""

from __future__ import annotations

import logging
from typing import cast
from uuid import UUID

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q

from migration_jobs.models import MigrationRun
from migration_jobs.refusals import RunRefused
from migration_jobs.services.run_control import migration_run_control

logger = logging.getLogger(__name__)
Status = MigrationRun.Status
AUTO_STOP_PREFIX = "auto-stopped: "


def bulk_request_enforce(*, bulk_request: UUID) -> int:
    """Pause the request's queued runs if too many of its finished runs failed; return how many."""
    reason = _auto_stop_reason(bulk_request)
    if reason is None:
        return 0
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


def bulk_auto_stop_after(*, run: MigrationRun) -> None:
    """Apply the auto-stop of the run's bulk request now that the run succeeded or failed."""
    if not run.bulk_request or run.status not in (Status.SUCCEEDED, Status.FAILED):
        return
    try:
        bulk_request_enforce(bulk_request=run.bulk_request)
    except Exception:  # the run's own outcome stands; the next finished run of the bulk tries again
        logger.exception("could not apply the auto-stop of bulk request %s", run.bulk_request)


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
        stopped.setdefault(
            cast(UUID, run.bulk_request), (run.status_note, [])
        )  # the query keeps bulk runs only[1].append(run.agency_link.name)
    return [
        f"Bulk migration {str(bulk)[:8]} was stopped: {note.removeprefix(AUTO_STOP_PREFIX)} Paused: {', '.join(names)}."
        for bulk, (note, names) in stopped.items()
    ]
