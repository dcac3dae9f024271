"""The practical limit: the engine's own SELECTs piped byte for byte from RevOS into the unified server.

For every table the migration moves, `COPY (<the engine's SELECT>) TO STDOUT` on RevOS feeds
`COPY ... FROM STDIN` of a scratch copy of its unified table, one table after another on one
connection per side, as the engine does. Same rows, same columns, same server-side expressions
and ORDER BY; nothing in Python looks at a row. The scratch tables are `LIKE <unified table>
INCLUDING ALL`: columns, NOT NULL, CHECK, defaults, primary key and every index of the target, but
no foreign keys, triggers or row-level security (LIKE copies none of them).

With `foreign_keys=True` the scratch tables also get the target's foreign keys (to each other, or
to the real table for a parent outside the set), checked row by row as they are for the
migration: the limit for loading into the unified tables as they stand.
"""

from __future__ import annotations

import time
from uuid import UUID

import psycopg
from psycopg import sql

from benchmarks.workload import database_checkpoint
from migration_jobs.etl.catalog import catalog_read, table_identifier
from migration_jobs.etl.connections import connect
from migration_jobs.etl.plan import TablePlan, migration_plan_build

SCHEMA = "bench_copy"


def _scratch_tables_create(target: psycopg.Connection, targets: list[str], *, foreign_keys: bool) -> None:
    target.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    target.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
    for table in targets:
        target.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                sql.Identifier(SCHEMA, table), table_identifier(table)
            )
        )
    if foreign_keys:
        references = catalog_read(target).foreign_keys
        for table in targets:
            for column, parent in references.get(table, {}).items():
                # Every unified foreign key references its parent's id (sql/unified).
                target.execute(
                    sql.SQL("ALTER TABLE {} ADD FOREIGN KEY ({}) REFERENCES {} (id)").format(
                        sql.Identifier(SCHEMA, table),
                        sql.Identifier(column),
                        sql.Identifier(SCHEMA if parent in targets else "public", parent),
                    )
                )
    target.commit()


def _table_copy(source: psycopg.Connection, target: psycopg.Connection, plan: TablePlan, agency_id: UUID) -> tuple:
    """Pipe one table; returns (rows, bytes)."""
    query = plan.source_query(source_agency_id=agency_id, target_agency_id=agency_id)
    columns = sql.SQL(", ").join(map(sql.Identifier, plan.target_columns))
    size = 0
    with (
        source.cursor() as reader,
        reader.copy(sql.SQL("COPY ({}) TO STDOUT").format(query)) as copy_out,
        target.cursor() as writer,
    ):
        with writer.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(SCHEMA, plan.target), columns)) as w:
            for data in copy_out:
                size += len(data)
                w.write(data)
        rows = writer.rowcount
    target.commit()
    return rows, size


def baseline_measure(*, agency_id: UUID, foreign_keys: bool = False) -> dict:
    """Time the COPY pipeline for the agency (a new unified agency keeps its RevOS id)."""
    with connect("revos", purpose="benchmark-baseline") as source, connect("unified", purpose="benchmark") as target:
        plans = migration_plan_build(source=catalog_read(source), target=catalog_read(target))
        source.rollback()
        _scratch_tables_create(target, list(dict.fromkeys(p.target for p in plans)), foreign_keys=foreign_keys)
        source.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        source.read_only = True
        database_checkpoint()
        rows = size = 0
        started = time.monotonic()
        for plan in plans:
            table_rows, table_bytes = _table_copy(source, target, plan, agency_id)
            rows, size = rows + table_rows, size + table_bytes
        seconds = time.monotonic() - started
        source.rollback()
        target.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(SCHEMA)))
        target.commit()
    return {
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds, 1),
        "megabytes": round(size / 1e6, 1),
        "tables": len(plans),
        "target": "LIKE <unified table> INCLUDING ALL: primary key, indexes, CHECK, NOT NULL; "
        + ("the target's foreign keys; no triggers, RLS" if foreign_keys else "no FKs, triggers, RLS"),
    }
