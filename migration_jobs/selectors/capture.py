"""Reads about the change capture: what the cutover and the pruner both rely on, and the backlogs shown."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from migration_jobs.etl.capture_prune import Backlog, capture_backlogs
from migration_jobs.etl.connections import DatabaseUnreachable, connect
from migration_jobs.models import AgencyLink, VerificationRun

# A full verification's snapshot may be older than its recorded start by a little clock skew
# between hosts; rows changed this long before it are checked again.
CLOCK_MARGIN = timedelta(minutes=5)


def agency_capture_needed_since(*, link: AgencyLink) -> datetime | None:
    """From when the cutover's check before the fence reads the agency's RevOS records (the rows
    changed since its last passing full verification, less the clock margin); None: every record.

    The cutover reads from here and the pruner keeps every row's newest record from here on
    (etl/capture_prune.py): one answer for both, or the pruner could take what the check needs.
    """
    last_full = (
        VerificationRun.objects.filter(agency_link=link, verdict=VerificationRun.Verdict.PASS)
        .exclude(started_at=None)
        .order_by("-started_at")
        .first()
    )
    # started_at is never None here (excluded above); the check tells mypy so.
    return last_full.started_at - CLOCK_MARGIN if last_full and last_full.started_at else None


@dataclass(frozen=True)
class AgencyBacklog:
    """One agency's capture backlog as the overview shows it."""

    name: str
    rows: int  # distinct rows written and not yet applied
    age_seconds: float  # age of the oldest of those writes (0: none)
    records: int  # records kept in the capture


def capture_backlogs_shown() -> tuple[list[AgencyBacklog], str]:
    """Every captured, unfenced agency's RevOS backlog, largest first; and why not, if RevOS does not answer."""
    try:
        with connect("revos", purpose="overview") as connection:
            backlogs = capture_backlogs(connection)
    except DatabaseUnreachable as error:
        return [], str(error)
    names = dict(AgencyLink.objects.filter(revos_agency_id__in=list(backlogs)).values_list("revos_agency_id", "name"))
    now = timezone.now()
    shown = [
        _backlog_shown(names.get(agency_id, str(agency_id)), backlog, now)
        for agency_id, backlog in backlogs.items()
        if not backlog.fenced
    ]
    return sorted(shown, key=lambda b: (-b.rows, b.name)), ""


def agency_capture_backlog(*, link: AgencyLink) -> tuple[AgencyBacklog | None, str]:
    """The agency's RevOS backlog as the overview shows it (None: RevOS does not capture it, or has
    fenced it, so the apps write elsewhere); and why not, if RevOS does not answer."""
    try:
        with connect("revos", purpose="agency-page") as connection:
            backlog = capture_backlogs(connection, agency_id=link.revos_agency_id).get(link.revos_agency_id)
    except DatabaseUnreachable as error:
        return None, str(error)
    if backlog is None or backlog.fenced:
        return None, ""
    return _backlog_shown(link.name, backlog, timezone.now()), ""


def _backlog_shown(name: str, backlog: Backlog, now: datetime) -> AgencyBacklog:
    age = (now - backlog.oldest_pending_at).total_seconds() if backlog.oldest_pending_at else 0.0
    return AgencyBacklog(name, backlog.pending_rows, age, backlog.records)
