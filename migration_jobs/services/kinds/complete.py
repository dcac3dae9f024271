"""The complete kind: end a cut-over agency's move for good, recorded as a run.

No switch back after it. The reverse capture stops, RevOS keeps the agency fenced (read-only)
and forgets its captured changes; a fenced agency's writes are refused before anything is
recorded, so nothing is captured for it any more. It runs in the request, not in a worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import User

from migration_jobs.etl import capture
from migration_jobs.etl.connections import connect
from migration_jobs.etl.engine import agency_lock
from migration_jobs.etl.reverse_capture import reverse_capture_stop
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.refusals import RunRefused, reason_required
from migration_jobs.run_kinds import Button, RunKind, run_kind_register
from migration_jobs.selectors.agency_links import agency_linked
from migration_jobs.selectors.agency_state import agency_complete_refusal
from migration_jobs.services.runs import migration_run_execute, migration_run_request


def agency_complete(*, link: AgencyLink, reason: str, actor: User | None) -> MigrationRun:
    """End the agency's move for good (recorded as a run); RunRefused says why not."""
    reason = reason_required(reason, "Completing a move")
    if refusal := agency_complete_refusal(link=link):
        raise RunRefused(refusal + ".")
    run = migration_run_request(link=link, kind=COMPLETE.value, actor=actor, enqueue=False, reason=reason)
    return migration_run_execute(run_id=run.pk)


def _complete(run: MigrationRun, mark_running: Callable[[], None]) -> dict[str, Any]:
    link = run.agency_link
    with connect("unified", purpose="complete") as unified, agency_lock(unified, link.revos_agency_id):
        mark_running()
        if refusal := agency_complete_refusal(link=link):
            raise RunRefused(refusal)
        agency = agency_linked(link=link)  # cut over, so linked: the refusal above says so
        reverse_capture_stop(source_agency_id=agency.revos_agency_id, unified_agency_id=agency.unified_agency_id)
        with connect("revos", purpose="complete") as revos:
            forgotten = capture.changes_forget(revos, agency_id=link.revos_agency_id)
    return {"revos_changes_forgotten": forgotten, "revos": "read-only for this agency", "reverse_capture": "stopped"}


COMPLETE = run_kind_register(
    RunKind(
        value=MigrationRun.Kind.COMPLETE,
        label=MigrationRun.Kind.COMPLETE.label,
        work=_complete,
        permission="migration_jobs.complete_migrationrun",
        button=Button(
            done="{name}'s move is complete (run {pk}): RevOS stays read-only for it; no switching back.",
            reasoned=True,
            may_not="complete agencies' moves",
        ),
        request=lambda link, actor, reason: agency_complete(link=link, reason=reason, actor=actor),
        completes=True,
        when_cut_over=None,  # what a cut-over agency is for; its own refusal says the rest
    )
)
