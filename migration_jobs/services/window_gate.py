"""The gate a run of a night's window passes before it starts: none starts at or after the night's end.

Its own module, without the request path, so that the concurrency slot (services/capacity.py), the
last point before a run writes, can ask it without importing the windows' requests.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from migration_jobs.models import BulkWindow, MigrationRun

WINDOW_ENDED_PREFIX = "window ended: "


def window_ended_note(window: BulkWindow) -> str:
    """The note of a run its night's end stopped; the next night (`bulk_window_reopen`) asks it again."""
    closed = f"{window.stop_at:%Y-%m-%d %H:%M}"
    return f"{WINDOW_ENDED_PREFIX}the night's window closed at {closed} UTC; the next night resumes it"


def window_start_refusal(*, run: MigrationRun, now: datetime | None = None) -> str | None:
    """Why the run may not start now (its night's window has ended), or None."""
    if run.bulk_request is None:
        return None
    window = BulkWindow.objects.filter(bulk_request=run.bulk_request).first()
    if window is None or (now or timezone.now()) < window.stop_at:
        return None
    return window_ended_note(window)
