"""Nights: a bulk migrate or cutover in waves, inside a window, resumed the next night where it stopped.

A window (models.BulkWindow) holds the agencies in order, a wave size and the night's end. The
first wave is queued when it opens; `bulk_window_advance` (every reconciler pass, and the
`bulk_night --wait` loop) queues the next wave once none of the window's runs is queued or running.
No run of the window starts at or after the night's end (the gate in services/capacity.py, the
last point before a run writes, pauses it instead). Once the night has ended, advancing pauses the
window's queued runs and asks its running migrations to pause at their next batch boundary; a
running cutover finishes (its write downtime is seconds, and stopping it half-way would only lift
its fence again). `bulk_window_reopen` gives the window another night: its agencies not done yet
(paused by the night's end, refused, failed) are asked again, wave by wave.

The waves are the plan staff read; the concurrency cap (MIGRATION_MAX_CONCURRENT_AGENCIES) and the
health throttle still decide how many of a wave write at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import User
from django.utils import timezone

from migration_jobs.models import AgencyLink, BulkWindow, MigrationRun
from migration_jobs.refusals import RunRefused
from migration_jobs.run_kinds import run_kind_get
from migration_jobs.selectors.windows import bulk_window_plan
from migration_jobs.services.kinds.cutover import cutover_run_request
from migration_jobs.services.kinds.migrate import MIGRATE
from migration_jobs.services.run_control import migration_run_control
from migration_jobs.services.runs import migration_run_request
from migration_jobs.services.window_gate import window_ended_note

Status = MigrationRun.Status


def bulk_window_open(
    *,
    links: Iterable[AgencyLink],
    kind: str,
    wave_size: int,
    stop_at: datetime,
    actor: User | None,
    reason: str = "",
    now: datetime | None = None,
) -> BulkWindow:
    """Plan the agencies in waves for a night ending at `stop_at` and queue the first wave;
    RunRefused says what is wrong with the request."""
    now = now or timezone.now()
    links = list(links)
    if kind not in BulkWindow.Kind.values:
        raise RunRefused(f"Unknown bulk kind {kind!r}; choose migrate or cutover.")
    if wave_size < 1:
        raise RunRefused(f"A wave of {wave_size} agencies is empty; give --wave-size 1 or more.")
    if stop_at <= now:
        raise RunRefused(f"The window's end {stop_at:%Y-%m-%d %H:%M} UTC has passed; give a later --stop-at.")
    if not links:
        raise RunRefused("No agencies selected.")
    if kind == BulkWindow.Kind.CUTOVER and not reason.strip():
        raise RunRefused("A cutover needs a reason (kept with each run and the unified_db change).")
    window = BulkWindow.objects.create(
        bulk_request=uuid.uuid4(),
        kind=kind,
        agency_link_ids=[link.pk for link in links],
        wave_size=wave_size,
        stop_at=stop_at,
        reason=reason.strip(),
        requested_by=actor if getattr(actor, "pk", None) else None,
        opened_at=now,
    )
    bulk_window_advance(window=window, now=now)
    return window


def bulk_window_reopen(*, window: BulkWindow, stop_at: datetime, now: datetime | None = None) -> BulkWindow:
    """Another night for the window: its agencies not done yet are asked again, in waves, until `stop_at`."""
    now = now or timezone.now()
    if stop_at <= now:
        raise RunRefused(f"The window's end {stop_at:%Y-%m-%d %H:%M} UTC has passed; give a later --stop-at.")
    if bulk_window_plan(window=window, now=now).active:
        raise RunRefused("The window still has runs queued or running; wait for them before the next night.")
    window.stop_at, window.nights, window.refused, window.opened_at = stop_at, window.nights + 1, {}, now
    window.save(update_fields=["stop_at", "nights", "refused", "opened_at"])
    bulk_window_advance(window=window, now=now)
    return window


def bulk_window_advance(*, window: BulkWindow, now: datetime | None = None) -> list[str]:
    """Queue the window's next wave, or stop it when its night has ended; one line per thing done."""
    now = now or timezone.now()
    if now >= window.stop_at:
        return _window_stop(window)
    plan = bulk_window_plan(window=window, now=now)
    if plan.active or plan.finished:
        return []
    done = []
    links = AgencyLink.objects.in_bulk(plan.next_ids)
    for link_id in plan.next_ids:
        link = links[link_id]
        try:
            run = _request(window, link)
        except RunRefused as refusal:
            window.refused[str(link_id)] = str(refusal)
            done.append(f"{link.name}: refused: {refusal}")
        else:
            done.append(f"{link.name}: queued run {run.pk}")
    window.save(update_fields=["refused"])
    return done


def bulk_windows_advance(*, now: datetime | None = None) -> list[str]:
    """Advance every window whose night is on, or has ended with runs still to stop (the reconciler's part)."""
    now = now or timezone.now()
    actions = []
    active = MigrationRun.objects.filter(status__in=MigrationRun.ACTIVE_STATUSES).values("bulk_request")
    windows = BulkWindow.objects.filter(stop_at__gt=now) | BulkWindow.objects.filter(bulk_request__in=active)
    for window in windows.distinct():
        actions += [f"{window}: {line}" for line in bulk_window_advance(window=window, now=now)]
    return actions


def _request(window: BulkWindow, link: AgencyLink) -> MigrationRun:
    actor = window.requested_by
    if window.kind == BulkWindow.Kind.CUTOVER:
        return cutover_run_request(link=link, reason=window.reason, actor=actor, bulk_request=window.bulk_request)
    return migration_run_request(link=link, kind=MIGRATE.value, actor=actor, bulk_request=window.bulk_request)


def _window_stop(window: BulkWindow) -> list[str]:
    """The night has ended: queued runs paused, running migrations asked to pause at a batch boundary."""
    lines = []
    note = window_ended_note(window)
    runs = MigrationRun.objects.filter(bulk_request=window.bulk_request, status__in=MigrationRun.ACTIVE_STATUSES)
    for run in runs.select_related("agency_link"):
        if run.status == Status.RUNNING and not run_kind_get(run.kind).pausable:
            continue  # a cutover finishes: stopping it half-way would only lift its fence again
        if run.status == Status.RUNNING and run.control:
            continue  # asked already
        try:
            migration_run_control(run=run, control=MigrationRun.Control.PAUSE, actor=None)
        except RunRefused:  # it finished meanwhile
            continue
        MigrationRun.objects.filter(pk=run.pk, status=Status.PAUSED).update(status_note=note)
        lines.append(f"{run.agency_link.name}: run {run.pk} {'paused' if run.status == Status.PAUSED else 'pausing'}")
    return lines


def stop_at_parse(text: str, *, now: datetime | None = None) -> datetime:
    """A window's end from "HH:MM" (the next such time, UTC) or an ISO date and time; RunRefused if neither."""
    now = now or timezone.now()
    text = text.strip()
    try:
        clock = datetime.strptime(text, "%H:%M").time()
    except ValueError:
        clock = None
    if clock is not None:
        stop_at = now.replace(hour=clock.hour, minute=clock.minute, second=0, microsecond=0)
        return stop_at if stop_at > now else stop_at + timedelta(days=1)
    try:
        stop_at = datetime.fromisoformat(text)
    except ValueError:
        raise RunRefused(f"{text!r} is not a time; give HH:MM (UTC) or an ISO date and time.") from None
    return stop_at if stop_at.tzinfo else stop_at.replace(tzinfo=UTC)
