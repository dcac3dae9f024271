"""Counts: per RevOS table, the rows the mapping selects against the unified rows that stand for them.

A source row is accounted for when the id map names its unified row and that row exists: in the
agency, for a row the migration inserted; anywhere, for a row AudienceOS already had and the
migration reused (a user found by email may belong to another agency). Other unified rows of the
agency are AudienceOS's own and are not counted.
"""

from __future__ import annotations

from concurrent.futures import Executor

import psycopg
from psycopg import sql

from migration_jobs.etl import id_map
from migration_jobs.etl.catalog import Catalog
from migration_jobs.etl.connections import fetch_row
from migration_jobs.etl.plan import TablePlan
from migration_jobs.verify.outcome import SAMPLE_SIZE, AgencyScope, CheckOutcome, ids, status_of
from migration_jobs.verify.pool import both_sides

ID_CHUNK = 5000  # source ids probed in the target per query, after a rollback


def _in_agency(plan: TablePlan, scope: AgencyScope) -> sql.Composed:
    return sql.SQL("{} = {}").format(plan.target_agency("t"), sql.Literal(scope.target_agency_id))


def counts_check(
    plan: TablePlan,
    *,
    scope: AgencyScope,
    source: psycopg.Connection,
    target: psycopg.Connection,
    target_catalog: Catalog,
    source_side: Executor | None = None,
) -> CheckOutcome:
    """One source table: every row the mapping selects has its unified row.

    With `source_side`, RevOS counts there while the unified database counts in this thread.
    """
    if not scope.migrated:
        return _absent_check(plan, scope=scope, source=source, target=target)
    in_agency = _in_agency(plan, scope)
    joined = id_map.mapped_join(plan.target, agency_id=scope.source_agency_id, source_table=plan.source)
    mapped_query = sql.SQL(
        "SELECT count(*), count(*) FILTER (WHERE t.id IS NOT NULL AND (NOT m.inserted OR {in_agency})),"
        " count(*) FILTER (WHERE NOT m.inserted) {joined}"
    ).format(in_agency=in_agency, joined=joined)
    (expected,), (mapped, found, reused) = both_sides(
        source_side,
        lambda: fetch_row(source.execute(plan.count_query(source_agency_id=scope.source_agency_id))),
        lambda: fetch_row(target.execute(mapped_query)),
    )
    lost = []
    if found < mapped:  # only then is there a mapped row to name
        lost = target.execute(
            sql.SQL(
                "SELECT m.target_id, CASE WHEN t.id IS NULL THEN 'missing' ELSE 'in another agency' END {joined}"
                " AND (t.id IS NULL OR (m.inserted AND NOT {in_agency})) ORDER BY m.target_id LIMIT {limit}"
            ).format(joined=joined, in_agency=in_agency, limit=sql.Literal(SAMPLE_SIZE))
        ).fetchall()
    details = {"target_table": plan.target, "reused": reused}
    if lost:
        details["sample_ids"] = {
            state: ids(i for i, s in lost if s == state) for state in ("missing", "in another agency")
        }
    if expected != found:
        details["see_also"] = "the content check names source rows that have no unified row"
    return CheckOutcome(
        "counts",
        status_of(expected == found),
        plan.source,
        expected=f"{expected} rows",
        actual=f"{found} rows in {plan.target} ({reused} reused)",
        details=details,
    )


def _absent_check(
    plan: TablePlan, *, scope: AgencyScope, source: psycopg.Connection, target: psycopg.Connection
) -> CheckOutcome:
    """Not migrated (or rolled back): no id map row, and no unified row carries a source row's id."""
    with target.cursor() as cursor:
        mapped = id_map.table_mapped_count(cursor, agency_id=scope.source_agency_id, source_table=plan.source)
    present, sample = 0, list[str]()
    with source.cursor(name=f"verify_ids_{plan.source.replace('.', '_')}") as cursor:
        cursor.execute(plan.source_ids_query(source_agency_id=scope.source_agency_id))
        while chunk := [row[0] for row in cursor.fetchmany(ID_CHUNK)]:
            found = target.execute(
                sql.SQL("SELECT id FROM {} WHERE id = ANY(%s) ORDER BY id").format(plan.target_table),
                [chunk],
            ).fetchall()
            present += len(found)
            sample += ids(row[0] for row in found[: SAMPLE_SIZE - len(sample)])
    details = {"target_table": plan.target, "migrated": False, "id_map_rows": mapped}
    if sample:
        details["sample_ids"] = {"still_in_target": sample}
    return CheckOutcome(
        "counts",
        status_of(mapped == 0 and present == 0),
        plan.source,
        expected="0 rows (the agency is not migrated: rolled back, or never run)",
        actual=f"{present} rows of {plan.target} carry a source id; {mapped} id map rows",
        details=details,
    )
