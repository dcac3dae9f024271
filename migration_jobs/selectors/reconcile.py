"""Reads about the reconciler (services/reconcile.py): when its next pass is due, and how the agency
page tells of a fence that no run owns while it waits for that pass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.core.cache import cache
from django.utils import timezone
from redis.exceptions import RedisError

# Each pass leaves its time and period here, kept for a few periods: a reconciler that stopped
# reporting is seen as not running.
LAST_PASS_KEY = "reconcile:last-pass"
PERIODS_KEPT = 3


@dataclass(frozen=True)
class OrphanedFence:
    """A fence set in `database` ("RevOS" or "unified") by `owner`, which no live run is."""

    database: str
    owner: str
    fenced_at: datetime


def reconcile_next_pass() -> datetime | None:
    """When the running reconciler's next pass is due; None if none has reported lately."""
    try:
        last = cache.get(LAST_PASS_KEY)
    except RedisError:
        return None
    if not last:
        return None
    return datetime.fromisoformat(last["at"]) + timedelta(seconds=last["interval"])


def orphaned_fences_note(*, orphaned: Sequence[OrphanedFence], next_pass: datetime | None) -> str:
    """One line for the agency page: which fences no run owns, and when they will be lifted."""
    if not orphaned:
        return ""
    which = " and ".join(f"{fence.database} (by {fence.owner})" for fence in orphaned)
    if next_pass is None:
        when = "no reconciler is running to lift it: start `manage.py reconcile` (or request a run)"
    else:
        # A pass overdue (a slow one, or a database it waits for) is still the next one.
        moment = max(next_pass, timezone.now()).astimezone(UTC)
        when = f"lifting at {moment:%Y-%m-%d %H:%M:%S} UTC, at the reconciler's next pass"
    return f"{which}: fenced, no run owns it; {when}."
