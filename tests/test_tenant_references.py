"""A hostile tenant cannot point its rows at another tenant's rows, through any foreign key.

Generated from the catalog, not from a list: every foreign key between two tables that carry
agency_id is probed as agency A (role `authenticated`, A's real JWT claims) against a parent row
of agency B, by INSERT, by UPDATE, and by re-pointing an existing row with INSERT ... ON CONFLICT
DO UPDATE; and once more as `service_role`, which RLS does not bind. Each probe has a control (the
same statement at A's own parent) that must succeed, so a refusal proves the foreign key refused
B's parent and not something else. Rows are built generically from the columns, their defaults
and their CHECK constraints.
"""

from __future__ import annotations

import datetime
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql

from migration_jobs.etl.connections import connect
from migration_jobs.tenancy import TABLES

pytestmark = pytest.mark.django_db(databases=["default", "unified"], transaction=True)


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    required: bool  # NOT NULL without a default
    check_literal: str | None  # a value the column's own CHECK accepts


@dataclass(frozen=True)
class Reference:
    table: str
    column: str
    parent: str  # qualified, as regclass prints it


@dataclass
class Catalog:
    columns: dict[str, list[Column]]  # qualified table -> columns
    references: list[Reference]

    def has_agency(self, table: str) -> bool:
        return any(c.name == "agency_id" for c in self.columns.get(table, []))


def catalog_read(connection: psycopg.Connection) -> Catalog:
    columns: dict[str, list[Column]] = {}
    for table, name, sql_type, required, check in connection.execute(
        """
        SELECT c.oid::regclass::text, a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull AND NOT a.atthasdef AND a.attidentity = '',
               (SELECT substring(pg_get_constraintdef(k.oid) FROM '''([^'']*)''') FROM pg_constraint k
                WHERE k.conrelid = c.oid AND k.contype = 'c' AND k.conkey = ARRAY[a.attnum] LIMIT 1)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'controlplane')
          AND n.nspname NOT LIKE 'pg\\_%'
        ORDER BY 1, a.attnum
        """
    ):
        columns.setdefault(table, []).append(Column(name, sql_type, required, check))
    references = [
        Reference(table, column, parent)
        for table, column, parent in connection.execute(
            """
            SELECT k.conrelid::regclass::text, a.attname, k.confrelid::regclass::text
            FROM pg_constraint k JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
            WHERE k.contype = 'f' AND a.attname <> 'agency_id'
            ORDER BY 1, 2
            """
        )
    ]
    return Catalog(columns, references)


def plain_value(column: Column):
    """A value of the column's type (and CHECK) that no unique constraint will have seen."""
    if column.check_literal is not None:
        return column.check_literal
    token = uuid.uuid4().hex
    kind = column.sql_type
    if kind == "uuid":
        return uuid.uuid4()
    if kind.startswith(("character varying", "text", "character")):
        length = re.search(r"\((\d+)\)", kind)
        return f"t{token}@example.com"[: int(length[1]) if length else None]
    if kind.startswith(("integer", "bigint", "smallint", "numeric", "double", "real")):
        return 0
    if kind == "boolean":
        return True
    if kind == "date":
        return datetime.date(2026, 1, 1)
    if kind.startswith("timestamp"):
        return datetime.datetime.now(datetime.UTC)
    if kind in ("jsonb", "json"):
        return json.dumps({})
    raise AssertionError(f"no generic value for a {kind} column ({column.name}); teach plain_value")


@dataclass
class Rows:
    """Builds valid rows of any table for one agency, creating the parents they need once each."""

    connection: psycopg.Connection
    catalog: Catalog
    agency_ids: dict[str, uuid.UUID] = field(default_factory=dict)
    parents: dict[tuple[str, str], uuid.UUID] = field(default_factory=dict)  # (table, agency) -> row id

    def agency(self, label: str) -> uuid.UUID:
        if label not in self.agency_ids:
            self.agency_ids[label] = self.insert("agency", self.values("agency", label))
        return self.agency_ids[label]

    def values(self, table: str, label: str, **overrides) -> dict:
        """A new row of `table` for agency `label`: its references point at that agency's parents."""
        row = {"id": uuid.uuid4()}
        if self.catalog.has_agency(table):
            row["agency_id"] = self.agency(label)
        for column in self.catalog.columns[table]:
            if column.name in row or column.name in overrides:
                continue
            reference = self.reference(table, column.name)
            if reference is not None and reference.parent != table:
                row[column.name] = self.parent(reference.parent, label)
            elif column.name == "app_context":
                row[column.name] = app_context_of(table)
            elif column.required:
                row[column.name] = plain_value(column)
        return {**row, **overrides}

    def reference(self, table: str, column: str) -> Reference | None:
        return next((r for r in self.catalog.references if r.table == table and r.column == column), None)

    def parent(self, table: str, label: str) -> uuid.UUID:
        if table == "agency":
            return self.agency(label)
        if (table, label) not in self.parents:
            self.parents[(table, label)] = self.insert(table, self.values(table, label))
        return self.parents[(table, label)]

    def insert(self, table: str, row: dict, *, on_conflict: str = "") -> uuid.UUID:
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}){}").format(
            sql.SQL(table),  # regclass text: quoted where needed already
            sql.SQL(", ").join(map(sql.Identifier, row)),
            sql.SQL(", ").join(sql.Placeholder() * len(row)),
            sql.SQL(on_conflict),
        )
        self.connection.execute(statement, list(row.values()))
        return row["id"]


def app_context_of(table: str) -> str:
    declared = TABLES.get(table.strip('"').removeprefix("public."))
    return declared.category.app_context if declared else "both"


def claims(agency_id: uuid.UUID, table: str) -> str:
    context = app_context_of(table)
    return json.dumps(
        {
            "role": "authenticated",
            "aud": "authenticated",
            "sub": str(uuid.uuid4()),
            "agency_id": str(agency_id),
            "app_context": "revos" if context == "both" else context,
        }
    )


def attempt(connection: psycopg.Connection, action: Callable[[], object]) -> str:
    """'ok', 'refused by foreign key' or the error, with the action undone either way."""
    try:
        with connection.transaction():
            result = action()
            if isinstance(result, int) and result != 1:
                return f"touched {result} rows"
            raise _Undo
    except _Undo:
        return "ok"
    except psycopg.errors.ForeignKeyViolation:
        return "refused by foreign key"
    except psycopg.Error as error:
        return f"{type(error).__name__}: {error}".splitlines()[0]


class _Undo(Exception):
    pass


def probe(rows: Rows, reference: Reference, role: str) -> list[str]:
    """What A, acting as `role`, achieves against B's parent through this reference."""
    connection, table, column = rows.connection, reference.table, reference.column
    own_parent, foreign_parent = rows.parent(reference.parent, "A"), rows.parent(reference.parent, "B")
    existing = rows.insert(table, rows.values(table, "A"))
    connection.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
    connection.execute("SELECT set_config('request.jwt.claims', %s, true)", [claims(rows.agency("A"), table)])
    update = sql.SQL("UPDATE {} SET {} = %s WHERE id = %s").format(sql.SQL(table), sql.Identifier(column))
    repoint = sql.SQL(" ON CONFLICT (id) DO UPDATE SET {} = EXCLUDED.{}").format(
        sql.Identifier(column), sql.Identifier(column)
    )

    def by_upsert(parent):
        row = rows.values(table, "A", id=existing, **{column: parent})
        return lambda: rows.insert(table, row, on_conflict=repoint.as_string(connection))

    probes = {
        "insert": lambda parent: lambda: rows.insert(table, rows.values(table, "A", **{column: parent})),
        "update": lambda parent: lambda: connection.execute(update, [parent, existing]).rowcount,
        "re-point by upsert": by_upsert,
    }
    failures = []
    for name, make in probes.items():
        control = attempt(connection, make(own_parent))
        hostile = attempt(connection, make(foreign_parent))
        if control != "ok" or hostile != "refused by foreign key":
            failures.append(f"{table}.{column} as {role}, {name}: own parent {control}; B's parent {hostile}")
    return failures


def test_no_role_can_point_a_row_at_another_agencys_parent_through_any_foreign_key(tenant_db):
    with connect("unified") as connection:
        catalog = catalog_read(connection)
        tenant_references = [
            r for r in catalog.references if catalog.has_agency(r.table) and catalog.has_agency(r.parent)
        ]
        failures = []
        for reference in tenant_references:
            for role in ("authenticated", "service_role"):
                try:  # one transaction per probe, rolled back: no row and no SET LOCAL ROLE survives it
                    failures += probe(Rows(connection, catalog), reference, role)
                finally:
                    connection.rollback()
    # Every foreign key of sql/unified between tenant tables (agency_id itself aside) was probed.
    assert len(tenant_references) >= 55, [f"{r.table}.{r.column}" for r in tenant_references]
    assert failures == []


def test_a_single_column_foreign_key_lets_the_probe_through(tenant_db):
    """The probe can fail: with lead.campaign_id back to a plain key, A's lead takes B's campaign."""
    with connect("unified") as connection:
        connection.execute(
            "ALTER TABLE lead DROP CONSTRAINT lead_campaign_id_fkey,"
            " ADD CONSTRAINT lead_campaign_id_fkey FOREIGN KEY (campaign_id) REFERENCES campaign (id)"
        )
        try:
            catalog = catalog_read(connection)
            reference = next(r for r in catalog.references if (r.table, r.column) == ("lead", "campaign_id"))
            failures = probe(Rows(connection, catalog), reference, "authenticated")
        finally:
            connection.rollback()
    assert failures == [
        f"lead.campaign_id as authenticated, {name}: own parent ok; B's parent ok"
        for name in ("insert", "update", "re-point by upsert")
    ]
