"""Does a live database match what sql/ says it should be? (`manage.py schema_diff`)

sql/<database>/ is applied to a scratch database (services/schema_scratch.py), and both catalogs
are read as facts: tables with their RLS flags, columns with type, nullability and default,
constraints, indexes, policies, table and routine grants, functions with their whole definition
(body, security, search_path), triggers with whether and when each fires, views and types. Every
fact present on one side only, or with another value, is a difference.

What is compared: the schemas sql/ creates anything in. `auth` is Supabase Auth's (GoTrue owns its
tables and functions; sql/ only stands in for them where they are missing), so there only the
triggers are compared: those are the project's (the change capture on the accounts). Supabase's
other schemas (storage, realtime, ...) are not drift. Owners are left out of the grants (they
differ between environments and RLS does not bind them anyway).

Two things sql/ does not create are part of what a database should be:
- the project's default privileges (on Supabase the API roles get every privilege on what
  `postgres` creates in public): the live database's are given to the scratch one before sql/ runs
  (services/schema_scratch.py), so a table is expected to carry them;
- the capture triggers, which etl/capture.py attaches to every captured table when the first agency
  is captured: once the live database has any (or an agency is captured), each is expected there,
  enabled ALWAYS, exactly as etl/capture.py makes it, so a dropped or disabled one is drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from migration_jobs.etl import capture
from migration_jobs.etl.connections import connect, fetch_value
from migration_jobs.etl.reverse_capture import unified_captured_tables
from migration_jobs.services.schema import schema_files
from migration_jobs.services.schema_scratch import default_privileges_copy, scratch_apply, scratch_database

# Supabase's own schemas that sql/ adds to (see the module docstring): only these kinds are compared.
PLATFORM_SCHEMAS = {"auth": {"trigger"}}
CAPTURED_TABLES = {"revos": capture.revos_captured_tables, "unified": unified_captured_tables}

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
        WHERE c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname = ANY (%(schemas)s) AND g.grantee <> c.relowner
        GROUP BY 1, 2""",
    # Functions and procedures as pg_get_functiondef prints them: arguments, result, language,
    # volatility, SECURITY DEFINER, SET search_path and the body. Extensions' own are theirs.
    "function": """
        SELECT n.nspname, p.oid::regprocedure::text, pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prokind IN ('f', 'p') AND n.nspname = ANY (%(schemas)s)
          AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid
                          AND e.deptype = 'e')""",
    # A NULL ACL is the default one (EXECUTE for PUBLIC), which acldefault spells out.
    "routine grant": """
        SELECT n.nspname,
               p.oid::regprocedure::text || ' to '
                   || CASE WHEN g.grantee = 0 THEN 'public' ELSE g.grantee::regrole::text END,
               string_agg(g.privilege_type, ', ' ORDER BY g.privilege_type)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
             aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) g
        WHERE p.prokind IN ('f', 'p') AND n.nspname = ANY (%(schemas)s) AND g.grantee <> p.proowner
          AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid
                          AND e.deptype = 'e')
        GROUP BY 1, 2""",
    # Foreign keys' internal triggers are the constraints' (compared above).
    "trigger": """
        SELECT n.nspname, c.relname || '.' || t.tgname,
               pg_get_triggerdef(t.oid) || CASE t.tgenabled WHEN 'O' THEN ' (enabled)' WHEN 'D' THEN ' (disabled)'
                   WHEN 'R' THEN ' (enabled in replica sessions only)' ELSE ' (enabled always)' END
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT t.tgisinternal AND n.nspname = ANY (%(schemas)s)""",
    "view": """
        SELECT n.nspname, c.relname,
               CASE c.relkind WHEN 'm' THEN 'materialized view: ' ELSE 'view: ' END || pg_get_viewdef(c.oid, true)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('v', 'm') AND n.nspname = ANY (%(schemas)s)""",
    # Enums with their labels in order, domains with their base type and checks, composite types
    # with their attributes, ranges with their subtype (not tables' row types, not arrays).
    "type": """
        SELECT n.nspname, t.typname,
               CASE t.typtype
                   WHEN 'e' THEN 'enum (' || (SELECT string_agg(quote_literal(e.enumlabel), ', '
                                                                ORDER BY e.enumsortorder)
                                              FROM pg_enum e WHERE e.enumtypid = t.oid) || ')'
                   WHEN 'd' THEN concat_ws(' ', 'domain over ' || format_type(t.typbasetype, t.typtypmod),
                                           CASE WHEN t.typnotnull THEN 'not null' END, 'default ' || t.typdefault,
                                           (SELECT string_agg(pg_get_constraintdef(k.oid), ' ' ORDER BY k.conname)
                                            FROM pg_constraint k WHERE k.contypid = t.oid))
                   WHEN 'c' THEN 'composite (' || (SELECT string_agg(a.attname || ' '
                                                                     || format_type(a.atttypid, a.atttypmod), ', '
                                                                     ORDER BY a.attnum)
                                                   FROM pg_attribute a WHERE a.attrelid = t.typrelid
                                                   AND a.attnum > 0 AND NOT a.attisdropped) || ')'
                   ELSE 'range of ' || (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r
                                        WHERE r.rngtypid = t.oid)
               END
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typtype IN ('e', 'd', 'c', 'r') AND n.nspname = ANY (%(schemas)s)
          AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
          AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_type'::regclass AND e.objid = t.oid
                          AND e.deptype = 'e')""",
}


@dataclass(frozen=True)
class Difference:
    kind: str  # a key of FACT_QUERIES: table, column, ..., function, trigger, view, type
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
        compared = [s for s in schemas if s not in PLATFORM_SCHEMAS or kind in PLATFORM_SCHEMAS[s]]
        for schema, name, value in connection.execute(query, {"schemas": compared}).fetchall():
            facts[(kind, f"{schema}.{name}")] = value
    return facts


def _schemas(connection: psycopg.Connection) -> list[str]:
    """The schemas the scratch database has: those sql/ created (and public)."""
    rows = connection.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND nspname NOT LIKE 'pg\\_%' ORDER BY 1"
    ).fetchall()
    return [row[0] for row in rows]


def _capture_in_use(live: psycopg.Connection) -> bool:
    """Has etl/capture.py attached its triggers here (or registered an agency, which relies on them)?"""
    attached: bool = fetch_value(
        live.execute("SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = ANY (%s))", [list(capture.TRIGGER_NAMES)])
    )
    if attached or fetch_value(live.execute("SELECT to_regclass('controlplane.capture_agency')")) is None:
        return attached
    registered: bool = fetch_value(live.execute("SELECT EXISTS (SELECT 1 FROM controlplane.capture_agency)"))
    return registered


def schema_diff(*, database: str) -> list[Difference]:
    """Every difference between the live `database` and sql/<database>/ applied from scratch."""
    with connect(database, autocommit=True, purpose="schema-diff") as live:
        live.read_only = True
        with scratch_database(database=database) as scratch:
            default_privileges_copy(source=live, target=scratch)
            scratch_apply(scratch, schema_files(database=database))
            if _capture_in_use(live):
                capture.capture_triggers_install(scratch, tables=CAPTURED_TABLES[database]())
            schemas = _schemas(scratch)
            expected = _facts(scratch, schemas)
        actual = _facts(live, schemas)
    return [
        Difference(kind, name, expected.get((kind, name)), actual.get((kind, name)))
        for kind, name in sorted(set(expected) | set(actual), key=lambda key: (key[1], key[0]))
        if expected.get((kind, name)) != actual.get((kind, name))
    ]
