"""Reads about the nights' windows: where each stands, for the overview, the Bulk windows page and the loops."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from migration_jobs.models import AgencyLink, BulkWindow, MigrationRun

Status = MigrationRun.Status


@dataclass(frozen=True)
class WindowPlan:
    """Where a window stands: its waves of agency names, and what is done, running, next."""

    window: BulkWindow
    waves: list[list[str]]
    done: list[str]
    active: list[str]
    stopped: list[str]  # paused by the night's end, failed or refused: the next night asks again
    next_wave: list[str]
    next_ids: list[int]
    ended: bool  # the night's end has passed

    @property
    def finished(self) -> bool:
        return len(self.done) == len(self.window.agency_link_ids)

    def __str__(self) -> str:
        window = self.window
        state = "finished" if self.finished else "ended" if self.ended else f"until {window.stop_at:%H:%M} UTC"
        wave = len(self.done) // window.wave_size + (0 if self.finished else 1)
        return (
            f"{window} night {window.nights}, {state}: {len(self.waves)} waves of {window.wave_size},"
            f" {len(self.done)} done, {len(self.active)} running, {len(self.stopped)} stopped;"
            f" wave {min(wave, len(self.waves))} of {len(self.waves)}"
            + (f"; next: {', '.join(self.next_wave)}" if self.next_wave and not self.finished else "")
        )


def bulk_window_plan(*, window: BulkWindow, now: datetime | None = None) -> WindowPlan:
    """The window's waves and where each agency stands, from its runs (the latest of each agency)."""
    now = now or timezone.now()
    names = dict(AgencyLink.objects.filter(pk__in=window.agency_link_ids).values_list("pk", "name"))
    latest: dict[int, MigrationRun] = {}
    for run in MigrationRun.objects.filter(bulk_request=window.bulk_request).order_by("created_at", "pk"):
        latest[run.agency_link_id] = run
    done, active, stopped, todo = [], [], [], []
    for link_id in window.agency_link_ids:
        run, name = latest.get(link_id), names.get(link_id, f"link {link_id}")
        if run is not None and run.status == Status.SUCCEEDED:
            done.append(name)
        elif run is not None and run.status in MigrationRun.ACTIVE_STATUSES:
            active.append(name)
        elif str(link_id) in window.refused or (run is not None and run.created_at >= window.opened_at):
            stopped.append(name)  # tried this night: the next night asks again
        else:
            todo.append(link_id)
    size = window.wave_size
    ordered = [names.get(i, f"link {i}") for i in window.agency_link_ids]
    return WindowPlan(
        window=window,
        waves=[ordered[i : i + size] for i in range(0, len(ordered), size)],
        done=done,
        active=active,
        stopped=stopped,
        next_wave=[names.get(i, f"link {i}") for i in todo[:size]],
        next_ids=todo[:size],
        ended=now >= window.stop_at,
    )


def bulk_windows_open_plans(*, now: datetime | None = None) -> list[WindowPlan]:
    """The plans of windows whose night is on or that still have runs to finish, newest first."""
    now = now or timezone.now()
    active = MigrationRun.objects.filter(status__in=MigrationRun.ACTIVE_STATUSES).values("bulk_request")
    windows = (
        BulkWindow.objects.filter(stop_at__gt=now) | BulkWindow.objects.filter(bulk_request__in=active)
    ).distinct()
    return [bulk_window_plan(window=window, now=now) for window in windows.order_by("-created_at")]
