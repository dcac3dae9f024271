"""The rollback kind: delete exactly the rows the agency's runs inserted in the unified database,
in one transaction (etl/engine.py agency_rollback)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from migration_jobs.etl import id_map
from migration_jobs.etl.connections import connect
from migration_jobs.etl.engine import agency_rollback
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.refusals import RunRefused
from migration_jobs.run_kinds import Button, RunKind, run_kind_register, run_kind_values
from migration_jobs.selectors.agency_links import agency_linked
from migration_jobs.services.runs import migration_run_tally_record


def _something_to_roll_back(link: AgencyLink) -> None:
    """A rollback deletes the rows the agency's runs inserted; with none, it would only record a
    rollback (and make the agency read "rolled back") for an agency nothing happened to."""
    if not link.is_confirmed and not link.runs.filter(kind__in=run_kind_values(loads=True)).exists():
        raise RunRefused(f"{link.name} was never linked or migrated; there is nothing to roll back.")
    with connect("unified", autocommit=True, purpose="preflight") as connection, connection.cursor() as cursor:
        inserted = id_map.agency_inserted_count(cursor, agency_id=link.revos_agency_id)
    if not inserted:
        raise RunRefused(f"No row of {link.name} was inserted by its runs; there is nothing to roll back.")


def _rollback(run: MigrationRun, mark_running: Callable[[], None]) -> dict[str, Any]:
    agency = agency_linked(link=run.agency_link)
    # Rows to delete in all, for its progress: while it runs, no other run of the agency inserts any.
    with connect("unified", autocommit=True, purpose="rollback-count") as connection, connection.cursor() as cursor:
        inserted = id_map.agency_inserted_count(cursor, agency_id=agency.revos_agency_id)
    report = agency_rollback(
        source_agency_id=agency.revos_agency_id,
        unified_agency_id=agency.unified_agency_id,
        on_locked=mark_running,
        # Table by table as it deletes: one transaction, so the rows are gone for others only at its commit.
        on_tally=lambda tally: migration_run_tally_record(run_id=run.pk, tally=tally, rows_total=inserted),
    ).as_dict()
    deleted = sum(table["deleted"] for table in report.values())
    MigrationRun.objects.filter(pk=run.pk).update(rows_done=deleted, rows_total=deleted)
    return report


ROLLBACK = run_kind_register(
    RunKind(
        value=MigrationRun.Kind.ROLLBACK,
        label=MigrationRun.Kind.ROLLBACK.label,
        work=_rollback,
        permission="migration_jobs.rollback_migrationrun",
        button=Button(done="{label} of {name} queued (run {pk})."),
        writes=True,
        changes_data=True,
        verified_after=True,
        loads=False,
        working="deleting the rows this agency's runs inserted, in one transaction",
        tallies="deleted",
        when_cut_over="a rollback would delete its rows from the database the apps now use",
        queue_check=_something_to_roll_back,
    )
)
