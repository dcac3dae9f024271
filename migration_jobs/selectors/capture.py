"""Reads about an agency's change capture that more than one writer relies on."""

from __future__ import annotations

from datetime import datetime, timedelta

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
    return last_full.started_at - CLOCK_MARGIN if last_full else None
