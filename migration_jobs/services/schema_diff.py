"""Does a live database match what sql/ says it should be? (`manage.py schema_diff`)

sql/<database>/ is applied to a scratch database (services/schema_scratch.py), and both catalogs
are read as facts: tables with their RLS flags, columns with type, nullability and default,
constraints, indexes, policies and table grants. Every fact present on one side only, or with
another value, is a difference. Only the schemas sql/ creates tables in are compared, so
Supabase's own schemas (auth, storage, ...) on a live project are not drift; table owners are
left out of the grants (they differ between environments and RLS does not bind them anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from migration_jobs.etl.connections import connect
from migration_jobs.services.schema import schema_files
from migration_jobs.services.schema_scratch import scratch_apply, scratch_database

# kind -> query returning (schema, object name, value) rows for the schemas in %(schemas)s.
FACT_QUERIES = {
    "table": """
        SELECT n.nspname, c.relname,
               concat_ws(' ', CASE WHEN c.relrowsecurity THEN 'rls on' ELSE 'rls off' END,
                         CASE WHEN c.relforcerowsecurity THEN 'forced' END)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY (%(schemas)s)""",
    "column": """
        SELECT n.nspname, c.relname || '.' || a.attname,
               concat_ws(' ', format_type(a.atttypid, a.atttypmod), CASE WHEN a.attnotnull THEN 'not null' END,
                         'default ' || pg_get_expr(d.adbin, d.adrelid))
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND n.nspname = ANY (%(schemas)s)""",
    "constraint": """
        SELECT n.nspname, c.relname || '.' || k.conname,
               pg_get_constraintdef(k.oid) || CASE WHEN k.convalidated THEN '' ELSE ' (not validated)' END
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY (%(schemas)s)""",
    "index": """
        SELECT n.nspname, t.relname || '.' || i.relname,
               pg_get_indexdef(x.indexrelid) || CASE WHEN x.indisvalid THEN '' ELSE ' (INVALID)' END
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = ANY (%(schemas)s)""",
    "policy": """
        SELECT n.nspname, c.relname || '.' || p.polname,
               concat_ws(' ', CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END,
                         'for ' || CASE p.polcmd WHEN 'r' THEN 'select' WHEN 'a' THEN 'insert' WHEN 'w' THEN 'update'
                                      WHEN 'd' THEN 'delete' ELSE 'all' END,
                         'to ' || CASE WHEN p.polroles = '{0}' THEN 'public' ELSE
                                 (SELECT string_agg(r.rolname, ', ' ORDER BY r.rolname) FROM pg_roles r
                                  WHERE r.oid = ANY (p.polroles)) END,
                         'using (' || pg_get_expr(p.polqual, p.polrelid) || ')',
                         'with check (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')')
        FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY (%(schemas)s)""",
    "grant": """
        SELECT n.nspname,
               c.relname || ' to ' || CASE WHEN g.grantee = 0 THEN 'public' ELSE g.grantee::regrole::text END,
               string_agg(g.privilege_type, ', ' ORDER BY g.privilege_type)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) g
        WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY (%(schemas)s) AND g.grantee <> c.relowner
        GROUP BY 1, 2""",
}


@dataclass(frozen=True)
class Difference:
    kind: str  # table, column, constraint, index, policy or grant
    name: str  # schema-qualified
    expected: str | None  # what sql/ says; None: sql/ does not have it
    actual: str | None  # what the database has; None: it lacks it

    def __str__(self) -> str:
        if self.actual is None:
            return f"missing    {self.kind} {self.name}: sql/ has {self.expected}"
        if self.expected is None:
            return f"unexpected {self.kind} {self.name}: the database has {self.actual}, sql/ does not"
        return f"differs    {self.kind} {self.name}: sql/ has {self.expected}; the database has {self.actual}"


def _facts(connection: psycopg.Connection, schemas: list[str]) -> dict[tuple[str, str], str]:
    facts = {}
    for kind, query in FACT_QUERIES.items():
        for schema, name, value in connection.execute(query, {"schemas": schemas}).fetchall():
            facts[(kind, f"{schema}.{name}")] = value
    return facts


def _table_schemas(connection: psycopg.Connection) -> list[str]:
    rows = connection.execute(
        "SELECT DISTINCT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1"
    ).fetchall()
    return [row[0] for row in rows]


def schema_diff(*, database: str) -> list[Difference]:
    """Every difference between the live `database` and sql/<database>/ applied from scratch."""
    with connect(database, autocommit=True, purpose="schema-diff") as live:
        live.read_only = True
        with scratch_database(database=database) as scratch:
            scratch_apply(scratch, schema_files(database=database))
            schemas = _table_schemas(scratch)
            expected = _facts(scratch, schemas)
        actual = _facts(live, schemas)
    return [
        Difference(kind, name, expected.get((kind, name)), actual.get((kind, name)))
        for kind, name in sorted(set(expected) | set(actual), key=lambda key: (key[1], key[0]))
        if expected.get((kind, name)) != actual.get((kind, name))
    ]
