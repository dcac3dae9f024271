"""A full re-read: a migration that reads every row of the agency from RevOS again.

A catch-up reads only the rows RevOS's change capture recorded; a row edited or deleted in the
unified database behind the tool's back is not among them, so only a full re-read (which rewrites
every row from RevOS) repairs it, and the verification it is followed by says so. The agency page,
its failed verification's next action and `migrate_agency --full` all ask for one here, and
migration_run_request refuses it in the same words whoever asks (a cut-over agency, a run already
active, an unconfirmed link).
"""

from __future__ import annotations

from django.contrib.auth.models import User

from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.refusals import reason_required
from migration_jobs.services.kinds.migrate import MIGRATE
from migration_jobs.services.runs import migration_run_request


def migration_full_reread_request(
    *, link: AgencyLink, reason: str | None, actor: User | None, enqueue: bool = True
) -> MigrationRun:
    """Queue a full re-read of one agency with staff's reason, or raise RunRefused saying why not.

    A person asking (`actor`) must give a reason, kept on the run; a command may leave it out.
    """
    if actor is not None:
        reason = reason_required(reason, "A full re-read", kept_with="the run")
    return migration_run_request(
        link=link,
        kind=MIGRATE.value,
        actor=actor,
        enqueue=enqueue,
        full_reread=True,
        reason=(reason or "").strip(),
    )
