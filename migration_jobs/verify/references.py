"""References: no row of the agency in the unified database points at a parent that does not exist,
or at a parent of another agency.

The foreign keys themselves prevent this, unless they were bypassed (session_replication_role =
replica, a restore, a constraint added NOT VALID) — which is what this check is for. It reads
every foreign key of the unified schema, multi-column ones included, and follows MATCH SIMPLE
semantics: a reference with a NULL column is not checked. A key between two tenant tables that
does not carry agency_id itself (a database without sql/unified/0053's tenant keys) is checked
as if it did: its parent must belong to the row's agency.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from migration_jobs.etl.catalog import Catalog
from migration_jobs.etl.connections import fetch_row
from migration_jobs.verify.outcome import SAMPLE_SIZE, AgencyScope, CheckOutcome, ids, status_of


@dataclass(frozen=True)
class ForeignKey:
    name: str
    table: str
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]


def foreign_keys_read(connection: psycopg.Connection) -> dict[str, list[ForeignKey]]:
    """Every foreign key between tables of `public`, by child table."""
    rows = connection.execute(
        """
        SELECT k.conname, c.relname, r.relname,
               ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(n, o)
                     JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.o),
               ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY u(n, o)
                     JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.o)
        FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
        JOIN pg_class r ON r.oid = k.confrelid
        WHERE k.contype = 'f'
        ORDER BY c.relname, k.conname
        """
    ).fetchall()
    keys: dict[str, list[ForeignKey]] = {}
    for name, table, parent, columns, parent_columns in rows:
        keys.setdefault(table, []).append(ForeignKey(name, table, tuple(columns), parent, tuple(parent_columns)))
    return keys


def _orphans_query(key: ForeignKey, scope_condition: sql.Composable, *, select: sql.Composable) -> sql.Composed:
    not_null = sql.SQL(" AND ").join(sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(c)) for c in key.columns)
    matches = sql.SQL(" AND ").join(
        sql.SQL("p.{} = c.{}").format(sql.Identifier(p), sql.Identifier(c))
        for c, p in zip(key.columns, key.parent_columns, strict=True)
    )
    return sql.SQL(
        "SELECT {select} FROM {child} c WHERE {scope} AND {not_null}"
        " AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {matches})"
    ).format(
        select=select,
        child=sql.Identifier(key.table),
        scope=scope_condition,
        not_null=not_null,
        parent=sql.Identifier(key.parent),
        matches=matches,
    )


def tenant_scoped(key: ForeignKey, catalog: Catalog) -> ForeignKey:
    """The key as a tenant key: (column, agency_id) -> (id, agency_id) where both tables have agency_id."""
    scoped = (
        "agency_id" not in key.columns
        and key.parent_columns == ("id",)
        and "agency_id" in catalog.column_names(key.table)
        and key.parent in catalog.columns
        and "agency_id" in catalog.column_names(key.parent)
    )
    if not scoped:
        return key
    return ForeignKey(key.name, key.table, (*key.columns, "agency_id"), key.parent, (*key.parent_columns, "agency_id"))


def _orphan_counts(keys: list[ForeignKey], scope_condition: sql.Composable) -> sql.Composed:
    """One pass over the agency's rows of a table, whatever its number of keys: the orphans per key,
    each parent joined once (a key names a unique key of its parent, so a row meets at most one
    parent row, and a met parent's key columns are not NULL)."""
    joins, counts = [], []
    for number, key in enumerate(keys):
        parent = sql.Identifier(f"p{number}")
        matches = sql.SQL(" AND ").join(
            sql.SQL("{}.{} = c.{}").format(parent, sql.Identifier(p), sql.Identifier(c))
            for c, p in zip(key.columns, key.parent_columns, strict=True)
        )
        joins.append(sql.SQL("LEFT JOIN {} {} ON {}").format(sql.Identifier(key.parent), parent, matches))
        not_null = sql.SQL(" AND ").join(sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(c)) for c in key.columns)
        counts.append(
            sql.SQL("count(*) FILTER (WHERE {} AND {}.{} IS NULL)").format(
                not_null, parent, sql.Identifier(key.parent_columns[0])
            )
        )
    return sql.SQL("SELECT {} FROM {} c {} WHERE {}").format(
        sql.SQL(", ").join(counts), sql.Identifier(keys[0].table), sql.SQL(" ").join(joins), scope_condition
    )


def references_check(
    table: str, keys: list[ForeignKey], *, scope: AgencyScope, target: psycopg.Connection, target_catalog: Catalog
) -> CheckOutcome:
    """One unified table: the agency's rows whose parent is missing, per foreign key. Every key is
    counted in one pass over the agency's rows; only a key with orphans is read again, for its sample."""
    column = "agency_id" if "agency_id" in target_catalog.column_names(table) else "id"
    in_agency = sql.SQL("c.{} = {}").format(sql.Identifier(column), sql.Literal(scope.target_agency_id))
    scoped = [tenant_scoped(k, target_catalog) for k in keys]
    totals = fetch_row(target.execute(_orphan_counts(scoped, in_agency))) if scoped else ()
    broken = {}
    for key, total in zip(scoped, totals, strict=True):
        if not total:
            continue
        sample = target.execute(
            _orphans_query(key, in_agency, select=sql.SQL("c.id"))
            + sql.SQL(" ORDER BY c.id LIMIT {}").format(sql.Literal(SAMPLE_SIZE))
        ).fetchall()
        broken[key.name] = {
            "columns": list(key.columns),
            "parent": key.parent,
            "orphans": total,
            "sample_ids": ids(row[0] for row in sample),
        }
    orphans = sum(entry["orphans"] for entry in broken.values())
    return CheckOutcome(
        "references",
        status_of(orphans == 0),
        table,
        expected=f"0 orphaned references ({len(keys)} foreign keys)",
        actual=f"{orphans} rows reference a missing parent or another agency's" if orphans else "0 orphaned references",
        details={"foreign_keys": [k.name for k in keys], **({"orphaned": broken} if broken else {})},
    )
