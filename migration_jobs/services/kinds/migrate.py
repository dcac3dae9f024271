"""The migrate kind: copy an agency's RevOS rows to the unified database, or catch up on what changed.

The first run reads every row; later ones read only what RevOS's change capture recorded since
(etl/catch_up.py). A run can be paused, cancelled and resumed from its checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections, router, transaction

from migration_jobs.etl.catch_up import CapturedMigration
from migration_jobs.etl.engine import Control, Progress
from migration_jobs.etl.parallel import parallelism
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.refusals import RunRefused
from migration_jobs.run_kinds import Button, RunKind, run_kind_register
from migration_jobs.selectors.agency_links import agency_linked
from migration_jobs.services.agency_links import LinkError, client_links_check
from migration_jobs.services.runs import BulkOutcome, migration_run_request, runs_request_bulk
from migration_jobs.services.throttle import HealthThrottle, health_throttle


def agency_migration(*, link: AgencyLink, **options: Any) -> CapturedMigration:
    """The migration of this agency's rows as staff linked it (its unified agency, whether that
    existed, their explicit client matches), in the configured batches; `options` add to them."""
    return CapturedMigration(
        source_agency_id=link.revos_agency_id,
        target_agency_id=agency_linked(link=link).unified_agency_id,
        link_existing=link.kind == AgencyLink.Kind.EXISTING,
        batch_size=settings.MIGRATION_BATCH_SIZE,
        set_based_checks=settings.MIGRATION_SET_BASED_FK_CHECKS,
        # Staff's explicit client matches: RevOS client id -> unified client id.
        client_links=client_links_of(link),
        **options,
    )


def client_links_of(link: AgencyLink) -> dict[str, str]:
    """Staff's explicit client matches, RevOS client id -> unified client id: the plan and the
    migration reuse by them alike."""
    return {str(c.revos_client_id): str(c.unified_client_id) for c in link.client_links.all()}


def linked_agency_check(link: AgencyLink) -> None:
    """A migration or a plan needs the agency's confirmed link and client matches that hold."""
    if not link.is_confirmed:
        raise RunRefused(f"{link.name} has no confirmed link to a unified agency; confirm it first.")
    try:
        client_links_check(link=link)
    except LinkError as error:
        raise RunRefused(str(error)) from None


def migration_runs_request_bulk(*, links: Iterable[AgencyLink], actor: User | None) -> BulkOutcome:
    """Queue a migration of each agency under one bulk request id; skip (saying why) those refused.

    The runs carry the id so that the auto-stop (services/bulk.py) can judge them together.
    """
    return runs_request_bulk(
        links=links,
        request=lambda link, bulk: migration_run_request(link=link, kind=MIGRATE.value, actor=actor, bulk_request=bulk),
    )


def _migrate(run: MigrationRun, mark_running: Callable[[], None]) -> tuple[dict[str, Any], str]:
    with health_throttle(run_id=run.pk) as throttle:
        migration = agency_migration(
            link=run.agency_link,
            writers=parallelism(settings.MIGRATION_WRITERS),
            split_rows=settings.MIGRATION_SPLIT_ROWS,
            on_progress=lambda progress: _record_progress(run.pk, progress, throttle=throttle),
            on_locked=mark_running,
            full=run.full_reread,
            register_wait_seconds=settings.CAPTURE_REGISTER_WAIT_SECONDS,
        )
        report = migration.run().as_dict()
    if not migration.used_capture:
        return report, ""
    return report, f"Caught up from the RevOS change capture: {migration.changed_rows} changed rows."


def _record_progress(run_id: int, progress: Progress, *, throttle: HealthThrottle | None = None) -> Control:
    # Every table being written, so staff see all the writers at work.
    in_flight = ", ".join(progress.in_flight or (progress.table,))
    database = router.db_for_write(MigrationRun)
    with transaction.atomic(using=database):
        # Progress only informs: a crash may lose the last figures, which the next batch rewrites,
        # so this commit does not wait for the disk while every writer waits for its answer.
        with connections[database].cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
        MigrationRun.objects.filter(pk=run_id).update(
            current_table=in_flight[: MigrationRun._meta.get_field("current_table").max_length],
            tables_done=progress.tables_done,
            tables_total=progress.tables_total,
            rows_done=progress.rows_done,
            rows_total=progress.rows_total,
            rows_per_second=round(progress.rows_per_second, 1),
            failed_batch=None,
        )
        control = _requested_control(run_id)
    if control is Control.CONTINUE and throttle is not None:
        control = throttle.wait_until_healthy(requested=lambda: _requested_control(run_id))
    return control


def _requested_control(run_id: int) -> Control:
    control = MigrationRun.objects.filter(pk=run_id).values_list("control", flat=True).get()
    return {"pause": Control.PAUSE, "cancel": Control.CANCEL}.get(control, Control.CONTINUE)


MIGRATE = run_kind_register(
    RunKind(
        value=MigrationRun.Kind.MIGRATE,
        label=MigrationRun.Kind.MIGRATE.label,
        work=_migrate,
        permission="migration_jobs.start_migrationrun",
        button=Button(done="{label} of {name} queued (run {pk})."),
        writes=True,
        changes_data=True,
        verified_after=True,
        cancellable=True,
        pausable=True,
        loads=True,
        when_cut_over="a migration or catch-up would overwrite the apps' writes there with RevOS's stale rows",
        request_check=linked_agency_check,
    )
)
