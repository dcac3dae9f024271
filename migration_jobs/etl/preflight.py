"""Every row the unified schema would refuse, found before the run (pgloader's reject file, DMS's
premigration assessment).

The plan streams each mapped table of the agency, transformed exactly as the run will transform it
(the same `source_query`), into a temporary table on the unified database, parents first, and asks
of the staged rows what the unified table's constraints will ask of them at insert time: NOT NULL,
CHECK, varchar lengths, foreign keys (to a unified row or to a row this run will write) and unique
keys (within the agency's rows, and against other unified rows where the row is not reused). The
temporary tables go with the transaction, which is rolled back: nothing is written.

The constraints are read from the live catalog, so a constraint added to sql/unified/ is checked
without a change here. A run that meets a refused row still stops with the row named.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from migration_jobs.etl.catalog import catalog_read
from migration_jobs.etl.connections import connect
from migration_jobs.etl.plan import TablePlan, migration_plan_build, unmapped_source_tables
from migration_jobs.mapping import NOT_MIGRATED, Identity

logger = logging.getLogger(__name__)
# Rows listed per plan; the total is always counted.
MAX_LISTED = 1000


@dataclass(frozen=True)
class RefusedRow:
    """One source row the unified schema would refuse, and why."""

    table: str  # the RevOS table
    source_id: str
    constraint: str
    reason: str
    value: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class _Check:
    constraint: str
    reason: str
    query: sql.Composable  # selects (id, value) of the refused staged rows


def agency_preflight(*, source_agency_id: UUID, target_agency_id: UUID, link_existing: bool) -> dict[str, Any]:
    """The plan's second half: table order, refused rows, tables left behind and tables nobody mapped."""
    with connect("revos", purpose="plan-read") as source, connect("unified", purpose="plan-check") as target:
        source.read_only = True
        source_catalog = catalog_read(source)
        plans = migration_plan_build(source=source_catalog, target=catalog_read(target))
        refused: list[RefusedRow] = []
        staged: dict[str, list[str]] = {}
        for index, plan in enumerate(plans):
            stage = f"preflight_{index}"
            _stage(source, target, plan, stage, source_agency_id=source_agency_id, target_agency_id=target_agency_id)
            staged.setdefault(plan.target, []).append(stage)
            reused_by_key = plan.entry.identity is not None and (
                plan.entry.identity is not Identity.AGENCY_LINK or link_existing
            )
            for check in _checks(target, plan, stage, staged, existing_rows_conflict=not reused_by_key):
                refused += _refused(target, plan, check)
        target.rollback()
    return {
        "order": [plan.source for plan in plans],
        "refused": [row.as_dict() for row in refused[:MAX_LISTED]],
        "refused_total": len(refused),
        "not_migrated": dict(NOT_MIGRATED),
        "unmapped": unmapped_source_tables(source_catalog),
    }


def _stage(
    source: psycopg.Connection,
    target: psycopg.Connection,
    plan: TablePlan,
    stage: str,
    *,
    source_agency_id: UUID,
    target_agency_id: UUID,
) -> None:
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(sql_type))
        for column, sql_type in zip(plan.target_columns, plan.sql_types, strict=True)
    )
    target.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(sql.Identifier(stage), columns))
    query = plan.source_query(source_agency_id=source_agency_id, target_agency_id=target_agency_id)
    with (
        source.cursor().copy(sql.SQL("COPY ({}) TO STDOUT").format(query)) as rows,
        target.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(stage))) as writer,
    ):
        for data in rows:
            writer.write(data)
    target.execute(sql.SQL("CREATE INDEX ON {} (id)").format(sql.Identifier(stage)))


def _refused(target: psycopg.Connection, plan: TablePlan, check: _Check) -> list[RefusedRow]:
    try:
        with target.transaction():  # a savepoint: a check that cannot run here is skipped, not fatal
            rows = target.execute(sql.SQL("{} LIMIT {}").format(check.query, MAX_LISTED + 1)).fetchall()
    except psycopg.Error as error:
        logger.warning("plan: could not check %s of %s: %s", check.constraint, plan.target, error)
        return []
    return [RefusedRow(plan.source, str(row_id), check.constraint, check.reason, value or "") for row_id, value in rows]


def _checks(
    target: psycopg.Connection,
    plan: TablePlan,
    stage: str,
    staged: dict[str, list[str]],
    *,
    existing_rows_conflict: bool,
) -> Iterator[_Check]:
    table = plan.target_table.as_string(target)
    yield from _not_null_checks(target, plan, table, stage)
    yield from _length_checks(target, plan, table, stage)
    yield from _check_constraints(target, plan, table, stage)
    yield from _foreign_key_checks(target, plan, table, stage, staged)
    yield from _unique_checks(target, plan, table, stage, existing_rows_conflict=existing_rows_conflict)


def _staged_columns(plan: TablePlan, columns: list[str]) -> bool:
    return all(column in plan.target_columns for column in columns)


def _not_null_checks(target: psycopg.Connection, plan: TablePlan, table: str, stage: str) -> Iterator[_Check]:
    rows = target.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
        " AND NOT attisdropped AND attnotnull ORDER BY attnum",
        [table],
    ).fetchall()
    for (column,) in rows:
        if column in plan.target_columns:
            yield _Check(
                f"{plan.target}.{column} NOT NULL",
                f"{column} is empty; the unified column requires a value",
                sql.SQL("SELECT id, NULL::text FROM {} WHERE {} IS NULL ORDER BY id").format(
                    sql.Identifier(stage), sql.Identifier(column)
                ),
            )


def _length_checks(target: psycopg.Connection, plan: TablePlan, table: str, stage: str) -> Iterator[_Check]:
    rows = target.execute(
        "SELECT attname, atttypmod - 4 FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
        " AND NOT attisdropped AND atttypid IN ('varchar'::regtype, 'bpchar'::regtype) AND atttypmod > 4"
        " ORDER BY attnum",
        [table],
    ).fetchall()
    for column, limit in rows:
        if column in plan.target_columns:
            yield _Check(
                f"{plan.target}.{column} varchar({limit})",
                f"{column} is longer than {limit} characters",
                sql.SQL(
                    "SELECT id, left({col}::text, 80) FROM {stage} WHERE char_length({col}) > {limit} ORDER BY id"
                ).format(col=sql.Identifier(column), stage=sql.Identifier(stage), limit=sql.Literal(limit)),
            )


def _check_constraints(target: psycopg.Connection, plan: TablePlan, table: str, stage: str) -> Iterator[_Check]:
    rows = target.execute(
        "SELECT conname, pg_get_expr(conbin, conrelid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype = 'c' ORDER BY conname",
        [table],
    ).fetchall()
    for name, expression in rows:
        words = set(re.findall(r"[a-z_][a-z0-9_]*", expression))
        shown = [c for c in plan.target_columns if c in words]
        value = sql.SQL("concat_ws(', ', {})").format(
            sql.SQL(", ").join(sql.SQL("{} || '=' || {}").format(sql.Literal(c), sql.Identifier(c)) for c in shown)
            or sql.SQL("NULL")
        )
        yield _Check(
            name,
            f"fails CHECK {_readable(expression)}",
            # IS FALSE: a CHECK that evaluates to NULL passes, as PostgreSQL has it.
            sql.SQL("SELECT id, {} FROM {} WHERE ({}) IS FALSE ORDER BY id").format(
                value, sql.Identifier(stage), sql.SQL(expression)
            ),
        )


def _readable(expression: str) -> str:
    """The CHECK as staff read it: `((status)::text = ANY ((ARRAY['new'::character varying])::text[]))`
    becomes `status = ANY (ARRAY['new'])`."""
    text = re.sub(r"::(character varying|text|integer|numeric)(\[\])?", "", expression)
    text = re.sub(r"\((\w+)\)", r"\1", text)
    text = text.replace("((ARRAY", "(ARRAY").replace("]))", "])")
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    return text


def _foreign_key_checks(
    target: psycopg.Connection, plan: TablePlan, table: str, stage: str, staged: dict[str, list[str]]
) -> Iterator[_Check]:
    rows = target.execute(
        "SELECT c.conname, c.confrelid::regclass::text,"
        " CASE WHEN pn.nspname = 'public' THEN p.relname ELSE pn.nspname || '.' || p.relname END,"
        " array(SELECT attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i)"
        "       JOIN pg_attribute ON attrelid = c.conrelid AND attnum = k.n ORDER BY k.i),"
        " array(SELECT attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i)"
        "       JOIN pg_attribute ON attrelid = c.confrelid AND attnum = k.n ORDER BY k.i)"
        " FROM pg_constraint c JOIN pg_class p ON p.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace"
        " WHERE c.conrelid = %s::regclass AND c.contype = 'f' ORDER BY c.conname",
        [table],
    ).fetchall()
    for name, parent, parent_name, columns, parent_columns in rows:
        if not _staged_columns(plan, columns):
            continue
        present = sql.SQL(" AND ").join(sql.SQL("s.{} IS NOT NULL").format(sql.Identifier(c)) for c in columns)
        matches = sql.SQL(" AND ").join(
            sql.SQL("p.{} = s.{}").format(sql.Identifier(pc), sql.Identifier(c))
            for c, pc in zip(columns, parent_columns, strict=True)
        )
        parents = [sql.SQL(parent)] + [sql.Identifier(s) for s in staged.get(parent_name, [])]
        missing = sql.SQL(" AND ").join(
            sql.SQL("NOT EXISTS (SELECT 1 FROM {} p WHERE {})").format(p, matches) for p in parents
        )
        value = sql.SQL("concat_ws(', ', {})").format(
            sql.SQL(", ").join(sql.SQL("s.{}::text").format(sql.Identifier(c)) for c in columns)
        )
        yield _Check(
            name,
            f"{', '.join(columns)} points at a {parent_name} row that neither exists nor comes with this agency",
            sql.SQL("SELECT s.id, {} FROM {} s WHERE {} AND {} ORDER BY s.id").format(
                value, sql.Identifier(stage), present, missing
            ),
        )


def _unique_checks(
    target: psycopg.Connection, plan: TablePlan, table: str, stage: str, *, existing_rows_conflict: bool
) -> Iterator[_Check]:
    rows = target.execute(
        "SELECT i.indexrelid::regclass::text,"
        " array(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) k),"
        " pg_get_expr(i.indpred, i.indrelid)"
        " FROM pg_index i WHERE i.indrelid = %s::regclass AND i.indisunique AND NOT i.indisprimary ORDER BY 1",
        [table],
    ).fetchall()
    for name, keys, predicate in rows:

        def keyed(relation: sql.Composable, keys: list[str] = keys, predicate: str | None = predicate) -> sql.Composed:
            """(id, the key as text) of the rows the index covers, its key complete."""
            return sql.SQL("SELECT id, ROW({})::text AS key FROM {} WHERE {}{}").format(
                sql.SQL(", ").join(sql.SQL(k) for k in keys),
                relation,
                sql.SQL(" AND ").join(sql.SQL("({}) IS NOT NULL").format(sql.SQL(k)) for k in keys),
                sql.SQL(" AND ({})").format(sql.SQL(predicate)) if predicate else sql.SQL(""),
            )

        yield _Check(
            name,
            f"({', '.join(keys)}) is repeated among this agency's rows",
            sql.SQL(
                "SELECT id, key FROM (SELECT id, key, count(*) OVER (PARTITION BY key) AS n FROM ({}) k) d"
                " WHERE n > 1 ORDER BY id"
            ).format(keyed(sql.Identifier(stage))),
        )
        if existing_rows_conflict:
            yield _Check(
                name,
                f"({', '.join(keys)}) is already taken by another unified row",
                sql.SQL(
                    "SELECT s.id, s.key FROM ({}) s"
                    " WHERE EXISTS (SELECT 1 FROM ({}) t WHERE t.key = s.key AND t.id <> s.id) ORDER BY s.id"
                ).format(keyed(sql.Identifier(stage)), keyed(sql.SQL(table))),
            )
