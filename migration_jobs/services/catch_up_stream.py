"""The continuous catch-up: every migrated, not yet cut over agency kept within seconds of RevOS.

As Vitess's VReplication streams a MoveTables workflow until its traffic is switched, a pass
(`manage.py catch_up_stream`, every CATCH_UP_STREAM_INTERVAL seconds beside the worker) catches up
each agency that RevOS captures and does not fence and that has writes not yet applied, from the
capture only (never a first load or a full read), so that its cutover starts from seconds of
backlog. After each catch-up the pass prunes the capture (etl/capture_prune.py): the agency's
applied RevOS records, and for a cut-over agency the repeats in its reverse capture, so neither
grows with weeks of traffic.

An agency is left alone, with the reason, whenever staff could not start a catch-up of it
themselves: not confirmed, a run queued or running (a cutover or switch back above all), cut over
(`agency_kind_refusal`), RevOS fenced for it. The checks and the work are done holding the
agency's request lock, so no run can be requested in between (a request made meanwhile waits for
the catch-up, a few seconds), and the work holds the agency's lock, which every run takes: a
cutover or switch back never shares an agency with the stream, and never meets its lock.

While the unified database is strained (services/throttle.py's signals) a pass catches nobody up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from uuid import UUID

import psycopg
from django.db.models import Q

from migration_jobs.etl.capture_prune import capture_backlogs, capture_prune
from migration_jobs.etl.catch_up import CaptureOnly, catch_up_rounds
from migration_jobs.etl.connections import DatabaseUnreachable, connect
from migration_jobs.etl.engine import AgencyBusy, agency_lock
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.refusals import RunRefused
from migration_jobs.selectors.agency_state import agency_cut_over, agency_kind_refusal, agency_revos_read_only
from migration_jobs.selectors.capture import agency_capture_needed_since
from migration_jobs.services.kinds.migrate import MIGRATE, agency_migration
from migration_jobs.services.request_lock import agency_request_lock
from migration_jobs.services.throttle import unified_health_problems

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Streamed:
    """One agency's catch-up and prune in a pass."""

    link: AgencyLink
    changed_rows: int  # rows the catch-up brought level (0 for a cut-over agency: none is made)
    pruned: int  # RevOS records deleted
    folded: int  # reverse-capture (unified) records deleted
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.link.name}: {self.changed_rows} changed rows applied, {self.pruned} RevOS and {self.folded}"
            f" unified capture records pruned in {self.seconds:.2f} s"
        )


@dataclass
class StreamPass:
    """What one pass did, whom it left alone and why, and what did not answer."""

    streamed: list[Streamed] = field(default_factory=list)
    skipped: list[tuple[AgencyLink, str]] = field(default_factory=list)
    throttled: list[str] = field(default_factory=list)  # the unified database's health problems
    unreachable: list[str] = field(default_factory=list)


def agency_stream_refusal(*, link: AgencyLink) -> str | None:
    """Why the continuous catch-up leaves this agency alone now, or None: the refusals staff meet."""
    if not link.is_confirmed:
        return f"{link.name} has no confirmed link to a unified agency"
    active = link.runs.filter(status__in=MigrationRun.ACTIVE_STATUSES).first()
    if active:
        return f"{link.name} already has a run {active.get_status_display().lower()} (run {active.pk})"
    if refusal := agency_kind_refusal(link=link, kind=MIGRATE.value):
        return refusal
    if agency_revos_read_only(link=link):
        return f"RevOS refuses {link.name}'s writes (a run holds its fence)"
    return None


def agency_catch_up_stream(*, link: AgencyLink) -> Streamed:
    """Catch the agency up from the capture and prune what it applied; RunRefused says why not."""
    started = time.monotonic()
    with agency_request_lock(link):
        if refusal := agency_stream_refusal(link=link):
            raise RunRefused(refusal)
        with connect("unified", purpose="catch-up-stream") as unified, _locked(unified, link):
            try:
                applied = catch_up_rounds(
                    migration=lambda: agency_migration(link=link, capture_only=True),
                    target=unified,
                    pending_rows=0,
                    rounds=1,
                )
            except CaptureOnly as only:
                raise RunRefused(f"{link.name}: {only}") from None
            pruned = _revos_prune(link)
    return Streamed(link, sum(applied), pruned, 0, time.monotonic() - started)


def agency_reverse_capture_prune(*, link: AgencyLink) -> Streamed:
    """Fold the repeats of a cut-over agency's reverse capture (never during a switch back)."""
    started = time.monotonic()
    with agency_request_lock(link):
        active = link.runs.filter(status__in=MigrationRun.ACTIVE_STATUSES).first()
        if active:
            raise RunRefused(f"{link.name} already has a run {active.get_status_display().lower()} (run {active.pk})")
        if link.unified_agency_id is None:  # never linked: no agency of it in the unified database
            raise RunRefused(f"{link.name} has no unified agency")
        with connect("unified", purpose="catch-up-stream") as unified, _locked(unified, link):
            folded = capture_prune(unified, agency_id=link.unified_agency_id, keep_since=None, applied_only=False)
    return Streamed(link, 0, 0, folded, time.monotonic() - started)


@contextmanager
def _locked(unified: psycopg.Connection, link: AgencyLink) -> Iterator[None]:
    """The agency's lock on `unified`, or RunRefused (a run's worker holds it: leave it be)."""
    with ExitStack() as stack:
        try:
            stack.enter_context(agency_lock(unified, link.revos_agency_id))
        except AgencyBusy:
            raise RunRefused(f"a run of {link.name} holds its lock") from None
        yield


def _revos_prune(link: AgencyLink) -> int:
    with connect("revos", purpose="catch-up-stream") as revos:
        return capture_prune(revos, agency_id=link.revos_agency_id, keep_since=agency_capture_needed_since(link=link))


def catch_up_stream_pass() -> StreamPass:
    """One pass over every captured agency (see the module docstring). Raises only when the
    control plane's own database does not answer."""
    report = StreamPass()
    try:
        with connect("unified", purpose="catch-up-stream") as unified:
            report.throttled = unified_health_problems(connection=unified)
        revos_captured, unified_captured = _captured()
    except (DatabaseUnreachable, psycopg.OperationalError) as error:
        report.unreachable.append(str(error).splitlines()[0])
        return report
    for link, cut_over in _links(revos_captured, unified_captured):
        if not cut_over and report.throttled:
            report.skipped.append((link, "the unified database is strained: " + "; ".join(report.throttled)))
            continue
        try:
            done = agency_reverse_capture_prune(link=link) if cut_over else agency_catch_up_stream(link=link)
        except RunRefused as refusal:
            report.skipped.append((link, str(refusal)))
        except (DatabaseUnreachable, psycopg.OperationalError) as error:  # the rest, next pass
            report.unreachable.append(str(error).splitlines()[0])
            return report
        else:
            report.streamed.append(done)
    return report


def _captured() -> tuple[set[UUID], set[UUID]]:
    """RevOS agencies captured, not fenced, with writes to apply; unified agencies whose reverse capture runs."""
    with connect("revos", purpose="catch-up-stream") as revos:
        # Nothing written since the last catch-up: nothing to apply, and its prune ran then.
        revos_captured = {
            agency
            for agency, backlog in capture_backlogs(revos).items()
            if not backlog.fenced and backlog.pending_records
        }
    with connect("unified", purpose="catch-up-stream") as unified:
        unified_captured = set(capture_backlogs(unified))
    return revos_captured, unified_captured


def _links(revos_captured: set[UUID], unified_captured: set[UUID]) -> Iterator[tuple[AgencyLink, bool]]:
    """(link, cut over?) for each agency a pass looks at, in a fixed order."""
    condition = Q(revos_agency_id__in=revos_captured) | Q(unified_agency_id__in=unified_captured)
    for link in AgencyLink.objects.filter(condition).order_by("pk"):
        cut_over = agency_cut_over(link=link) is not None
        if cut_over and link.unified_agency_id in unified_captured:
            yield link, True
        elif not cut_over and link.revos_agency_id in revos_captured:
            yield link, False
