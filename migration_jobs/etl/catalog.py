"""What the engine needs to know of a live schema: columns, their types, and foreign keys."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter

import psycopg
from psycopg import sql

from migration_jobs.etl.capture import GUARD_TRIGGER as MIGRATED_ROWS_GUARD
from migration_jobs.etl.capture import TRIGGER_NAMES as CAPTURE_TRIGGERS
from migration_jobs.mapping import QUALIFIED_TABLES

# sql/unified/0061_app_context_guard.sql: refuses the apps' changes of app_context. It fires on
# updates only, so a first load's set-wise checks may run beside it.
APP_CONTEXT_GUARD = "app_context_guard"

# A tenant foreign key (sql/unified/0053): (reference, agency_id) -> parent (id, agency_id). For
# ordering, remapping and the set-based checks it is the reference column's key, which also
# binds the agency.
TENANT_KEY_SQL = """(cardinality(k.conkey) = 2
    AND (SELECT attname FROM pg_attribute WHERE attrelid = k.conrelid AND attnum = k.conkey[2]) = 'agency_id'
    AND (SELECT attname FROM pg_attribute WHERE attrelid = k.confrelid AND attnum = k.confkey[1]) = 'id'
    AND (SELECT attname FROM pg_attribute WHERE attrelid = k.confrelid AND attnum = k.confkey[2]) = 'agency_id')"""


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # as format_type() prints it, e.g. "character varying(200)"
    base_type: str  # without length or precision, e.g. "character varying"
    nullable: bool
    has_default: bool
    generated: bool = False  # GENERATED ALWAYS AS (...) STORED: computed, never written


@dataclass(frozen=True)
class AppTrigger:
    """A trigger of the apps' own on a table (not a foreign key's, not the control plane's), such as
    Supabase's `handle_new_user` on auth.users, which inserts a profile row for each new account."""

    table: str
    name: str
    function: str
    events: str  # "AFTER INSERT", "BEFORE INSERT OR UPDATE", ...
    enabled: str  # pg_trigger.tgenabled: O (origin sessions), A (always), R (replica only), D (disabled)

    @property
    def off_in_copy(self) -> bool:
        """Does a session with session_replication_role = replica (the copy's) leave it unfired?"""
        return self.enabled in ("O", "D")


@dataclass(frozen=True)
class Catalog:
    columns: dict[str, tuple[Column, ...]]  # table -> columns in ordinal order
    foreign_keys: dict[str, dict[str, str]]  # table -> {column: referenced table}
    # Tables whose only triggers are foreign keys to the id of a parent in the same schema (single
    # column, or tenant keys): one set-based check per batch can stand in for the row triggers.
    set_checkable: frozenset[str] = frozenset()
    # table -> reference columns whose key is a tenant key (the parent must be of the row's agency)
    tenant_references: dict[str, frozenset[str]] = field(default_factory=dict)
    app_triggers: dict[str, tuple[AppTrigger, ...]] = field(default_factory=dict)  # table -> its apps' triggers

    def column_names(self, table: str) -> list[str]:
        return [c.name for c in self.columns[table]]


def table_identifier(name: str) -> sql.Identifier:
    """The SQL name of a catalog table: "lead" is public.lead, "auth.users" is schema-qualified."""
    return sql.Identifier(*name.split(".", 1))


# A table's catalog name: bare in `schema`, "schema.table" for the tables named in `also`.
_NAME = "CASE WHEN {n}.nspname = %(schema)s THEN {c}.relname ELSE {n}.nspname || '.' || {c}.relname END"
_WANTED = "({n}.nspname = %(schema)s OR {n}.nspname || '.' || {c}.relname = ANY(%(also)s))"


def catalog_read(
    connection: psycopg.Connection, *, schema: str = "public", also: Iterable[str] = QUALIFIED_TABLES
) -> Catalog:
    """Read the tables of `schema`, and the schema-qualified tables in `also` (Supabase's auth.users
    and auth.identities, which the mapping moves too), with their columns and (single-column or
    tenant) foreign keys."""
    # The control plane's own triggers do not make a table unfit for the set-wise checks: the
    # capture's record writes of agencies moving out of this database (a first load writes one
    # moving in), and the guards never fire for a first load (updates only; the apps' roles only).
    params = {
        "schema": schema,
        "also": list(also),
        "own_triggers": [*CAPTURE_TRIGGERS, APP_CONTEXT_GUARD, MIGRATED_ROWS_GUARD],
    }
    columns: dict[str, list[Column]] = {}
    rows = connection.execute(
        f"""
        SELECT {_NAME.format(n="n", c="c")}, a.attname, format_type(a.atttypid, a.atttypmod),
               format_type(a.atttypid, NULL), NOT a.attnotnull, a.atthasdef, a.attgenerated <> ''
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid AND c.relkind IN ('r', 'p')
        JOIN pg_namespace n ON n.oid = c.relnamespace AND {_WANTED.format(n="n", c="c")}
        WHERE a.attnum > 0 AND NOT a.attisdropped
        ORDER BY 1, a.attnum
        """,
        params,
    ).fetchall()
    for table, name, sql_type, base_type, nullable, has_default, generated in rows:
        columns.setdefault(table, []).append(Column(name, sql_type, base_type, nullable, has_default, generated))
    foreign_keys: dict[str, dict[str, str]] = {}
    tenant_references: dict[str, set[str]] = {}
    for table, column, referenced, tenant in connection.execute(
        f"""
        SELECT {_NAME.format(n="n", c="c")}, a.attname, {_NAME.format(n="rn", c="r")}, {TENANT_KEY_SQL}
        FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace AND {_WANTED.format(n="n", c="c")}
        JOIN pg_class r ON r.oid = k.confrelid
        JOIN pg_namespace rn ON rn.oid = r.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.conkey[1]
        WHERE k.contype = 'f' AND (cardinality(k.conkey) = 1 OR {TENANT_KEY_SQL})
        """,
        params,
    ).fetchall():
        foreign_keys.setdefault(table, {})[column] = referenced
        if tenant:
            tenant_references.setdefault(table, set()).add(column)
    app_triggers: dict[str, list[AppTrigger]] = {}
    for table, *trigger in connection.execute(
        f"""
        SELECT {_NAME.format(n="n", c="c")}, t.tgname, t.tgfoid::regproc::text,
               CASE WHEN t.tgtype & 2 <> 0 THEN 'BEFORE' WHEN t.tgtype & 64 <> 0 THEN 'INSTEAD OF' ELSE 'AFTER' END
               || ' ' || concat_ws(' OR ', CASE WHEN t.tgtype & 4 <> 0 THEN 'INSERT' END,
                   CASE WHEN t.tgtype & 16 <> 0 THEN 'UPDATE' END, CASE WHEN t.tgtype & 8 <> 0 THEN 'DELETE' END,
                   CASE WHEN t.tgtype & 32 <> 0 THEN 'TRUNCATE' END),
               t.tgenabled::text
        FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace AND {_WANTED.format(n="n", c="c")}
        WHERE NOT t.tgisinternal AND t.tgname <> ALL(%(own_triggers)s)
        ORDER BY 1, 2
        """,
        params,
    ).fetchall():
        app_triggers.setdefault(table, []).append(AppTrigger(table, *trigger))
    # The apps' triggers a replica-mode session leaves unfired do not keep a table from the set-wise
    # checks: the copy runs in that mode (etl/engine.py), so they stay quiet for it. One that fires
    # there (ENABLE ALWAYS or REPLICA) would fire for the copy too: such a table keeps the row triggers.
    unchecked = {
        table for table, triggers in app_triggers.items() if not all(trigger.off_in_copy for trigger in triggers)
    } | {
        table
        for (table,) in connection.execute(
            f"""
            SELECT {_NAME.format(n="n", c="c")} FROM pg_constraint k
            JOIN pg_class c ON c.oid = k.conrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace AND {_WANTED.format(n="n", c="c")}
            JOIN pg_class rc ON rc.oid = k.confrelid
            JOIN pg_attribute r ON r.attrelid = k.confrelid AND r.attnum = k.confkey[1]
            WHERE k.contype = 'f'
              AND ((cardinality(k.conkey) > 1 AND NOT {TENANT_KEY_SQL})
                   OR r.attname <> 'id' OR rc.relnamespace <> c.relnamespace)
            """,
            params,
        ).fetchall()
    }
    return Catalog(
        {t: tuple(cols) for t, cols in columns.items()},
        foreign_keys,
        frozenset(t for t in columns if t not in unchecked),
        {table: frozenset(names) for table, names in tenant_references.items()},
        {table: tuple(triggers) for table, triggers in app_triggers.items()},
    )


def dependency_order(tables: list[str], foreign_keys: dict[str, dict[str, str]]) -> list[str]:
    """Parents before children, by foreign key; a table's references to itself are ignored.

    A self-reference within one batch is safe (PostgreSQL checks foreign keys at the end of the
    INSERT statement); ties keep the order they were given in.
    """
    wanted = set(tables)
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for table in tables:
        parents = {p for p in foreign_keys.get(table, {}).values() if p in wanted and p != table}
        sorter.add(table, *sorted(parents, key=tables.index))
    try:
        sorter.prepare()
    except CycleError as error:
        raise ValueError(f"Foreign keys form a cycle, no safe order exists: {error.args[1]}") from error
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=tables.index)
        order.extend(ready)
        sorter.done(*ready)
    return order
