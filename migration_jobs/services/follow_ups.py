"""What follows a migration run that ended: the bulk auto-stop and, after a change of data, a verification.

The job (and `migrate_agency --sync`) wraps the execution in `migration_run_follow_ups`; the run's
own bookkeeping does not know which other work follows it, so migration, bulk and verification
never import one another in a loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from migration_jobs.log import run_log_fields
from migration_jobs.models import MigrationRun
from migration_jobs.run_kinds import run_kind_get
from migration_jobs.services.bulk import bulk_auto_stop_after
from migration_jobs.services.verification import verification_run_request

logger = logging.getLogger(__name__)


@contextmanager
def migration_run_follow_ups(*, run_id: int) -> Iterator[None]:
    """Around one execution of a run: once it has ended it (even by raising), apply what follows.

    A redelivered job of a run that had already ended does nothing here, as it does nothing else.
    """
    was_active = MigrationRun.objects.filter(pk=run_id, status__in=MigrationRun.ACTIVE_STATUSES).exists()
    try:
        yield
    finally:
        if was_active:
            run = MigrationRun.objects.select_related("agency_link", "requested_by").get(pk=run_id)
            bulk_auto_stop_after(run=run)
            if run.status == MigrationRun.Status.SUCCEEDED:
                _verify_after(run)


def _verify_after(run: MigrationRun) -> None:
    """A run that changed data (a migration, a rollback, a switch back) is verified straight away.

    Not a cutover: it verified its own changes, and the unified database is the source of truth now."""
    if not run_kind_get(run.kind).verified_after:
        return
    try:
        verification_run_request(link=run.agency_link, migration_run=run, actor=run.requested_by)
    except Exception:  # the migration stands; staff can press Verify
        logger.exception("could not queue the verification after run %s", run.pk, extra=run_log_fields(run))
