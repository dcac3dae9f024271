"""The seed's Phase 0 findings as repeatable checks, read from pg_catalog of one database.

`schema_audit_run` only reads (in a READ ONLY transaction). Every finding carries SQL that would
fix it; staff read it in the admin or the `audit_schema` report, and nothing here executes it.
Where a rule is one of Supabase's database linter (splinter) lints, it carries that lint's name.

Three audit targets over two connections. AudienceOS *becomes* the unified database, so
`audience` and `unified` both read the `unified` alias:

- `revos`: the RevOS source. Planned 30 tables (the seed's estimate). Plural names are RevOS's
  own convention, so the singular-name rule does not apply.
- `audience`: the AudienceOS tables of the unified database, i.e. what AudienceOS's own
  expectations cover: tables whose `app_context` defaults to anything but 'revos' (before Phase 1
  no table has the column, so all of them), outside the control plane's `controlplane` schema.
  Planned 19 tables (the seed's estimate).
- `unified`: every table of the unified database, planned as the tables sql/unified/ creates.
  After Phase 1 it must come out with no error or warning.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections, transaction

from migration_jobs.etl.connections import Cursor, fetch_value
from migration_jobs.models.audit import SchemaAuditRun, SchemaFinding
from migration_jobs.refusals import RunRefused
from migration_jobs.services.run_control import RunJob, run_enqueue_once
from migration_jobs.services.schema import schema_files
from migration_jobs.tenancy import TABLES

Severity = SchemaFinding.Severity

DEFAULT_CONTAMINATION_TABLES = ("outfit_history", "swatches", "swipe_cartridges")
DEFAULT_EXPOSED_SCHEMAS = ("public",)
ANON_ROLE = "anon"
AUDIT_QUEUE = SchemaAuditRun.QUEUE

# Schemas that belong to PostgreSQL or to Supabase itself (splinter's own exclusion list).
SYSTEM_SCHEMAS = (
    "information_schema", "pg_catalog", "pg_toast", "auth", "storage", "realtime", "extensions",
    "graphql", "graphql_public", "supabase_functions", "supabase_migrations", "vault", "pgsodium",
    "pgsodium_masks", "net", "cron", "pgbouncer", "pgtle", "pgmq", "repack", "tiger", "topology",
    "_timescaledb_internal", "_timescaledb_cache", "_timescaledb_catalog", "_timescaledb_config",
)  # fmt: skip

# Singular words that end in "s"; anything ending in "ss", "us" or "is" is treated as singular too.
SINGULAR_WORDS_ENDING_IN_S = frozenset(
    {"news", "series", "species", "alias", "canvas", "gas", "lens", "plus", "bus", "axis", "atlas"}
)

SEVERITY_ORDER: dict[str, int] = {Severity.ERROR: 0, Severity.WARN: 1, Severity.INFO: 2}


@dataclass(frozen=True)
class Finding:
    """One problem (or, at severity info, one fact) about one table or schema."""

    rule: str
    severity: str
    schema: str
    table: str
    detail: str
    suggested_fix: str = ""


@dataclass(frozen=True)
class TableInfo:
    schema: str
    name: str
    qualified: str  # quoted by PostgreSQL itself, safe to paste into SQL
    rls_enabled: bool
    policies: tuple[str, ...]
    anon_can_select: bool
    app_context: str | None


@dataclass(frozen=True)
class AuditTarget:
    """What one `--database` choice reads and what it expects to find there."""

    alias: str
    label: str
    singular_names: bool
    planned_tables: Callable[[], set[str] | int]
    includes: Callable[[TableInfo], bool] = lambda table: True


def _unified_planned_tables() -> set[str]:
    """The public tables sql/unified/ leaves behind: every CREATE TABLE minus every DROP TABLE."""
    identifier = r'(?:public\.)?"?([a-z_][a-z0-9_]*)"?'
    create = re.compile(rf"^\s*CREATE TABLE (?:IF NOT EXISTS )?{identifier}\s*\(", re.I | re.M)
    drop = re.compile(rf"^\s*DROP TABLE (?:IF EXISTS )?{identifier}", re.I | re.M)
    planned: set[str] = set()
    for schema_file in schema_files(database="unified"):
        sql = schema_file.sql
        planned |= set(create.findall(sql))
        planned -= set(drop.findall(sql))
    return planned


def _audienceos_table(table: TableInfo) -> bool:
    return table.schema != "controlplane" and table.app_context != "revos"


AUDIT_TARGETS = {
    "revos": AuditTarget("revos", "RevOS source", singular_names=False, planned_tables=lambda: 30),
    "audience": AuditTarget(
        "unified", "AudienceOS baseline", singular_names=True, planned_tables=lambda: 19, includes=_audienceos_table
    ),
    "unified": AuditTarget("unified", "Unified", singular_names=True, planned_tables=_unified_planned_tables),
}


@dataclass
class AuditContext:
    target: AuditTarget
    tables: list[TableInfo]
    cursor: Cursor
    _row_counts: dict[str, int] = field(default_factory=dict)

    def row_count(self, table: TableInfo) -> int:
        if table.qualified not in self._row_counts:
            self.cursor.execute(f"SELECT count(*) FROM {table.qualified}")
            self._row_counts[table.qualified] = int(fetch_value(self.cursor))
        return self._row_counts[table.qualified]

    def referenced_by(self, table: TableInfo) -> list[str]:
        """Other tables whose foreign keys point at `table` (a DROP must wait for them)."""
        self.cursor.execute(
            "SELECT DISTINCT k.conrelid::regclass::text FROM pg_constraint k "
            "WHERE k.contype = 'f' AND k.confrelid = %s::regclass AND k.conrelid <> k.confrelid ORDER BY 1",
            [table.qualified],
        )
        return [row[0] for row in self.cursor.fetchall()]

    def drop_sql(self, table: TableInfo) -> str:
        referencing = self.referenced_by(table)
        note = (
            f"-- first drop (or repoint) what references this table: {', '.join(referencing)}\n" if referencing else ""
        )
        return f"{note}DROP TABLE {table.qualified};"

    def quote_ident(self, name: str) -> str:
        self.cursor.execute("SELECT quote_ident(%s)", [name])
        quoted: str = fetch_value(self.cursor)
        return quoted


TABLES_SQL = """
SELECT n.nspname, c.relname, format('%%I.%%I', n.nspname, c.relname), c.relrowsecurity,
       array(SELECT p.polname::text FROM pg_policy p WHERE p.polrelid = c.oid ORDER BY p.polname),
       {anon_can_select},
       (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
        JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
        WHERE d.adrelid = c.oid AND a.attname = 'app_context')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND NOT c.relispartition
  AND n.nspname <> ALL (%s) AND n.nspname NOT LIKE 'pg\\_%%'
  -- tables owned by an extension are the extension's business
  AND NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.objid = c.oid AND dep.deptype = 'e')
ORDER BY n.nspname, c.relname
"""
ANON_CAN_SELECT_SQL = "has_schema_privilege(%s, n.oid, 'USAGE') AND has_table_privilege(%s, c.oid, 'SELECT')"


def _tables(cursor: Cursor) -> list[TableInfo]:
    cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)", [ANON_ROLE])
    # has_table_privilege() raises on a role that does not exist; plain PostgreSQL may have no anon.
    if fetch_value(cursor):
        cursor.execute(
            TABLES_SQL.format(anon_can_select=ANON_CAN_SELECT_SQL), [ANON_ROLE, ANON_ROLE, list(SYSTEM_SCHEMAS)]
        )
    else:
        cursor.execute(TABLES_SQL.format(anon_can_select="false"), [list(SYSTEM_SCHEMAS)])
    return [
        TableInfo(schema, name, qualified, rls, tuple(policies), anon, _quoted_literal(default))
        for schema, name, qualified, rls, policies, anon, default in cursor.fetchall()
    ]


def _quoted_literal(expression: str | None) -> str | None:
    """'revos' from a column default such as `'revos'::character varying`."""
    match = re.match(r"^'([^']*)'", expression or "")
    return match[1] if match else None


# --- inflection: just enough English for table names --------------------------------------


def _singular_candidates(name: str) -> list[str]:
    """Singular forms `name` may be the plural of (last word only), most likely first; [] if singular."""
    head, _, word = name.rpartition("_")
    prefix = f"{head}_" if head else ""
    if word in SINGULAR_WORDS_ENDING_IN_S or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return []
    candidates = []
    if word.endswith("ies") and len(word) > 4:
        candidates.append(word[:-3] + "y")
    if word.endswith(("sses", "xes", "ches", "shes", "zes")):
        candidates.append(word[:-2])
    candidates.append(word[:-1])
    return [prefix + candidate for candidate in candidates]


# --- rules ---------------------------------------------------------------------------------


def _enable_rls(table: TableInfo) -> str:
    return f"ALTER TABLE {table.qualified} ENABLE ROW LEVEL SECURITY;"


def _table_counts(ctx: AuditContext) -> Iterable[Finding]:
    """The seed's "planned vs actual": tables per schema, against the plan for `public`."""
    by_schema: dict[str, list[str]] = {}
    for table in ctx.tables:
        by_schema.setdefault(table.schema, []).append(table.name)
    planned = ctx.target.planned_tables()
    for schema, names in sorted(by_schema.items()):
        detail = f"{ctx.target.label}: {len(names)} table(s) in schema {schema}."
        if schema == "public":
            detail = f"{detail} {_against_plan(set(names), planned)}"
        yield Finding("table_count", Severity.INFO, schema, "", detail)


def _against_plan(actual: set[str], planned: set[str] | int) -> str:
    if isinstance(planned, int):
        difference = len(actual) - planned
        return f"Planned {planned}; {abs(difference)} {'more' if difference >= 0 else 'fewer'} than planned."
    extra, missing = sorted(actual - planned), sorted(planned - actual)
    note = f"Planned {len(planned)} (sql/unified/)."
    if extra:
        note += f" Not planned: {', '.join(extra)}."
    if missing:
        note += f" Missing: {', '.join(missing)}."
    return note if extra or missing else f"{note} Exactly as planned."


def _rls_disabled_in_public(ctx: AuditContext) -> Iterable[Finding]:
    """splinter 0013: a table the API exposes, with RLS off, is open to every API role's grants."""
    exposed = set(getattr(settings, "SCHEMA_AUDIT_EXPOSED_SCHEMAS", DEFAULT_EXPOSED_SCHEMAS))
    for table in ctx.tables:
        if table.schema in exposed and not table.rls_enabled:
            detail = f"Table {table.qualified} is in an API-exposed schema but RLS is not enabled."
            yield Finding(
                "rls_disabled_in_public", Severity.ERROR, table.schema, table.name, detail, _enable_rls(table)
            )


def _policy_exists_rls_disabled(ctx: AuditContext) -> Iterable[Finding]:
    """splinter 0007: policies that exist but do nothing, because RLS is off."""
    for table in ctx.tables:
        if table.policies and not table.rls_enabled:
            detail = (
                f"Table {table.qualified} has RLS policies but RLS is not enabled, so none of them applies. "
                f"Policies: {', '.join(table.policies)}."
            )
            yield Finding(
                "policy_exists_rls_disabled", Severity.ERROR, table.schema, table.name, detail, _enable_rls(table)
            )


def _anon_readable_without_policy(ctx: AuditContext) -> Iterable[Finding]:
    """anon holds SELECT and RLS is off: no policy is consulted, every row is readable with the anon key.

    (RLS on with no policy is deny-all, so it is not reported.)
    """
    for table in ctx.tables:
        if table.anon_can_select and not table.rls_enabled:
            detail = (
                f"Role {ANON_ROLE} can SELECT {table.qualified} and RLS is off: every row is readable "
                "with the public anon key, whatever policies say."
            )
            revoke = f"REVOKE ALL ON TABLE {table.qualified} FROM {ANON_ROLE};"
            fix = f"{_enable_rls(table)}\n-- or, if the API must never read it:\n{revoke}"
            yield Finding("anon_readable_without_policy", Severity.ERROR, table.schema, table.name, detail, fix)


def _contamination_tables(ctx: AuditContext) -> Iterable[Finding]:
    """Tables that belong to another project (the seed found ABBY's in RevOS)."""
    names = set(getattr(settings, "SCHEMA_AUDIT_CONTAMINATION_TABLES", DEFAULT_CONTAMINATION_TABLES))
    for table in ctx.tables:
        if table.name in names:
            rows = ctx.row_count(table)
            detail = f"Table {table.qualified} belongs to another project ({rows} row(s)); nothing here uses it."
            fix = ctx.drop_sql(table)
            yield Finding("contamination_table", Severity.WARN, table.schema, table.name, detail, fix)


def _singular_plural_pairs(ctx: AuditContext) -> list[tuple[TableInfo, TableInfo]]:
    by_name = {(table.schema, table.name): table for table in ctx.tables}
    pairs = []
    for table in ctx.tables:
        for candidate in _singular_candidates(table.name):
            singular = by_name.get((table.schema, candidate))
            if singular is not None:
                pairs.append((singular, table))
                break
    return pairs


def _duplicate_singular_plural(ctx: AuditContext) -> Iterable[Finding]:
    """One entity, two tables (chat_message / chat_messages): say which holds the rows, drop the other.

    Where the convention is singular the singular table stays whatever the rows say (an empty
    canonical table must not be dropped for a stray copy); in RevOS the live one stays.
    """
    for singular, plural in _singular_plural_pairs(ctx):
        rows = {singular: ctx.row_count(singular), plural: ctx.row_count(plural)}
        live = max(rows, key=lambda table: rows[table]) if rows[singular] != rows[plural] else None
        if ctx.target.singular_names:
            keep, drop = singular, plural
        else:
            keep = live or plural
            drop = singular if keep is plural else plural
        counts = f"{singular.name}: {rows[singular]} row(s), {plural.name}: {rows[plural]} row(s)"
        verdict = f"{live.name} is live" if live else "neither is live" if not rows[singular] else "both hold rows"
        detail = f"Singular/plural duplicate in schema {singular.schema}: {counts}; {verdict}; keep {keep.name}."
        fix = ctx.drop_sql(drop)
        if rows[drop]:
            fix = f"-- {drop.name} holds {rows[drop]} row(s): move them into {keep.name} first.\n{fix}"
        yield Finding("duplicate_singular_plural", Severity.WARN, drop.schema, drop.name, detail, fix)


def _plural_table_names(ctx: AuditContext) -> Iterable[Finding]:
    """The unified convention is singular (AudienceOS's, the seed's decision)."""
    if not ctx.target.singular_names:
        return
    paired = {plural for _, plural in _singular_plural_pairs(ctx)}
    for table in ctx.tables:
        candidates = _singular_candidates(table.name)
        if not candidates or table in paired:
            continue  # a pair is reported (with a better fix) by duplicate_singular_plural
        singular = candidates[0]
        detail = f"Table {table.qualified} has a plural name; the unified convention is singular ({singular})."
        fix = f"ALTER TABLE {table.qualified} RENAME TO {ctx.quote_ident(singular)};"
        yield Finding("plural_table_name", Severity.WARN, table.schema, table.name, detail, fix)


def _backup_tables_without_rls(ctx: AuditContext) -> Iterable[Finding]:
    """Backups hold copies of tenant rows without the tenant's protection (the seed's two in RevOS)."""
    for table in ctx.tables:
        if "backup" in table.name and not table.rls_enabled:
            rows = ctx.row_count(table)
            detail = f"Backup table {table.qualified} ({rows} row(s)) has RLS off."
            yield Finding(
                "backup_table_without_rls", Severity.ERROR, table.schema, table.name, detail, _enable_rls(table)
            )


# --- Supabase linter (splinter) rules for policies, keys, indexes and functions ----------------
# Each follows the lint of the same name (github.com/supabase/splinter, lints/00NN_<name>.sql);
# where this differs, the rule's docstring says how and why.

AUTH_CALL = re.compile(r"(auth)\.(uid|jwt|role|email)\(\)")
AUTH_CALL_WRAPPED = re.compile(r"select\s+(auth)\.(uid|jwt|role|email)\(\)")
ALWAYS_TRUE = ("true", "(true)", "1=1", "(1=1)")
ACTIONS: dict[str, tuple[str, ...]] = {"r": ("SELECT",), "a": ("INSERT",), "w": ("UPDATE",), "d": ("DELETE",)}
ACTIONS["*"] = ACTIONS["r"] + ACTIONS["a"] + ACTIONS["w"] + ACTIONS["d"]


@dataclass(frozen=True)
class PolicyInfo:
    table: TableInfo
    name: str
    permissive: bool
    command: str  # pg_policy.polcmd: r, a, w, d or *
    roles: tuple[str, ...]  # ("public",) for every role
    qual: str | None
    with_check: str | None


def _policies(ctx: AuditContext) -> list[PolicyInfo]:
    by_name = {table.qualified: table for table in ctx.tables}
    ctx.cursor.execute(
        "SELECT format('%I.%I', n.nspname, c.relname), p.polname, p.polpermissive, p.polcmd::text,"
        " CASE WHEN p.polroles = '{0}' THEN ARRAY['public'] ELSE"
        " ARRAY(SELECT r.rolname::text FROM pg_roles r WHERE r.oid = ANY (p.polroles) ORDER BY 1) END,"
        " pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)"
        " FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " ORDER BY 1, 2"
    )
    return [
        PolicyInfo(by_name[qualified], name, permissive, command, tuple(roles), qual, check)
        for qualified, name, permissive, command, roles, qual, check in ctx.cursor.fetchall()
        if qualified in by_name
    ]


def _initplan(expression: str | None) -> bool:
    """Does the expression call auth.<function>() per row (not wrapped in a SELECT)? As splinter."""
    return bool(expression and AUTH_CALL.search(expression) and not AUTH_CALL_WRAPPED.search(expression.lower()))


def _wrap_auth_calls(expression: str) -> str:
    return re.sub(r"(?<!select )\bauth\.(uid|jwt|role|email)\(\)", r"(select auth.\1())", expression)


def _auth_rls_initplan(ctx: AuditContext) -> Iterable[Finding]:
    """splinter 0003: a policy that calls auth.jwt() per row instead of once per statement."""
    for policy in _policies(ctx):
        table = policy.table
        if not table.rls_enabled or not (_initplan(policy.qual) or _initplan(policy.with_check)):
            continue
        detail = (
            f"Policy {policy.name} on {table.qualified} re-evaluates auth.<function>() for each row; "
            "wrapped in (select auth.<function>()) it runs once per statement."
        )
        clauses = [f"USING ({_wrap_auth_calls(policy.qual)})"] if policy.qual else []
        if policy.with_check:
            clauses.append(f"WITH CHECK ({_wrap_auth_calls(policy.with_check)})")
        fix = f"ALTER POLICY {ctx.quote_ident(policy.name)} ON {table.qualified} {' '.join(clauses)};"
        yield Finding("auth_rls_initplan", Severity.WARN, table.schema, table.name, detail, fix)


def _policy_roles(ctx: AuditContext, policy: PolicyInfo) -> set[str]:
    """The roles a policy binds, as splinter counts them: `public` is every role RLS applies to."""
    if policy.roles != ("public",):
        return set(policy.roles)
    ctx.cursor.execute(
        "SELECT rolname FROM pg_roles WHERE NOT rolbypassrls AND rolname NOT LIKE 'pg\\_%%'"
        " AND rolname NOT LIKE 'supabase%%admin'"
    )
    return {row[0] for row in ctx.cursor.fetchall()}


def _multiple_permissive_policies(ctx: AuditContext) -> Iterable[Finding]:
    """splinter 0006: two permissive policies for one role and action are both evaluated (ORed) per row."""
    overlaps: dict[tuple[TableInfo, str, str], list[PolicyInfo]] = {}
    for policy in _policies(ctx):
        if policy.permissive:
            for role in _policy_roles(ctx, policy):
                for action in ACTIONS[policy.command]:
                    overlaps.setdefault((policy.table, role, action), []).append(policy)
    by_table: dict[TableInfo, dict[tuple[str, ...], list[str]]] = {}
    for (table, role, action), policies in overlaps.items():
        if len(policies) > 1:
            by_table.setdefault(table, {}).setdefault(tuple(p.name for p in policies), []).append(f"{role} {action}")
    for table, groups in by_table.items():
        for names, uses in groups.items():
            detail = (
                f"Table {table.qualified} has permissive policies {', '.join(names)} for the same role and "
                f"action ({', '.join(sorted(uses)[:6])}{', ...' if len(uses) > 6 else ''}): each is evaluated for "
                "every row. Merge them into one policy (their conditions ORed)."
            )
            fix = "\n".join(f"DROP POLICY {ctx.quote_ident(name)} ON {table.qualified};" for name in names[1:])
            note = f"-- first fold the dropped policies' conditions into {names[0]}: ALTER POLICY ... USING (a OR b)"
            fix = f"{note}\n{fix}"
            yield Finding("multiple_permissive_policies", Severity.WARN, table.schema, table.name, detail, fix)


def _normalized(expression: str | None) -> str:
    return re.sub(r"\s+", "", (expression or "").lower())


def _tenant_predicate(table: TableInfo) -> str:
    key = TABLES[table.name].tenant_key if table.name in TABLES else "agency_id"
    return (
        f"{key} = ((select auth.jwt()) ->> 'agency_id')::uuid"
        " AND app_context IN ('both', (select auth.jwt()) ->> 'app_context')"
    )


def _rls_policy_always_true(ctx: AuditContext) -> Iterable[Finding]:
    """splinter 0024: a permissive policy for the API roles whose USING or WITH CHECK lets every row through."""
    for policy in _policies(ctx):
        api_facing = policy.roles == ("public",) or {"anon", "authenticated"} & set(policy.roles)
        if not (policy.table.rls_enabled and policy.permissive and api_facing):
            continue
        qual, check = _normalized(policy.qual), _normalized(policy.with_check)
        using_true = policy.command in ("w", "d", "*") and (qual in ALWAYS_TRUE or policy.qual is None)
        check_true = (
            check in ALWAYS_TRUE
            or (policy.with_check is None and policy.command == "a")
            or (policy.with_check is None and policy.command in ("w", "*") and qual in ALWAYS_TRUE)
        )
        if not (using_true or check_true):
            continue
        table = policy.table
        which = " and ".join(c for c, bad in (("USING", using_true), ("WITH CHECK", check_true)) if bad)
        detail = f"Policy {policy.name} on {table.qualified} lets every row through ({which} always true)."
        predicate = _tenant_predicate(table)
        using = "" if policy.command == "a" else f" USING ({predicate})"  # an INSERT policy has no USING
        fix = f"ALTER POLICY {ctx.quote_ident(policy.name)} ON {table.qualified}{using} WITH CHECK ({predicate});"
        yield Finding("rls_policy_always_true", Severity.WARN, table.schema, table.name, detail, fix)


def _unindexed_foreign_keys(ctx: AuditContext) -> Iterable[Finding]:
    """splinter 0001: a foreign key no index covers, so deleting a parent scans the child.

    splinter wants an index on exactly the key's columns; here an index whose leading columns
    are the key's (in any order) covers it, as it does for PostgreSQL's lookup. Info, as in
    splinter: a slow delete, not a hole.
    """
    tables = {table.qualified: table for table in ctx.tables}
    ctx.cursor.execute(
        "SELECT format('%I.%I', n.nspname, c.relname), k.conname,"
        " ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(n, o)"
        "       JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.o)"
        " FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE k.contype = 'f' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = k.conrelid"
        "   AND i.indisvalid AND i.indnkeyatts >= cardinality(k.conkey)"
        "   AND (i.indkey::int2[])[0:cardinality(k.conkey) - 1] @> k.conkey"
        "   AND (i.indkey::int2[])[0:cardinality(k.conkey) - 1] <@ k.conkey)"
        " ORDER BY 1, 2"
    )
    for qualified, name, columns in ctx.cursor.fetchall():
        table = tables.get(qualified)
        if table is None:
            continue
        detail = (
            f"Foreign key {name} on {table.qualified} ({', '.join(columns)}) has no index leading with its columns."
        )
        index = ctx.quote_ident(f"{table.name}_{'_'.join(columns)}_idx"[:63])
        column_list = ", ".join(ctx.quote_ident(c) for c in columns)
        fix = f"CREATE INDEX CONCURRENTLY {index} ON {table.qualified} ({column_list});"
        yield Finding("unindexed_foreign_keys", Severity.INFO, table.schema, table.name, detail, fix)


def _duplicate_index(ctx: AuditContext) -> Iterable[Finding]:
    """splinter 0009: identical indexes cost every write twice and serve no read better."""
    tables = {table.qualified: table for table in ctx.tables}
    # Indexes backing a constraint sort first: they are the ones to keep (they cannot be dropped alone).
    ctx.cursor.execute(
        "SELECT format('%%I.%%I', n.nspname, t.relname),"
        " array_agg(i.indexrelid::regclass::text ORDER BY k.oid IS NULL, ic.relname)"
        " FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid"
        " JOIN pg_namespace n ON n.oid = t.relnamespace"
        " LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid"
        " WHERE n.nspname <> ALL (%s)"
        " GROUP BY n.nspname, t.relname, replace(pg_get_indexdef(i.indexrelid), quote_ident(ic.relname), '')"
        " HAVING count(*) > 1",
        [list(SYSTEM_SCHEMAS)],
    )
    for qualified, indexes in ctx.cursor.fetchall():
        table = tables.get(qualified)
        if table is None:
            continue
        detail = f"Table {table.qualified} has identical indexes {', '.join(indexes)}; keep {indexes[0]}."
        fix = "\n".join(f"DROP INDEX CONCURRENTLY {index};" for index in indexes[1:])
        yield Finding("duplicate_index", Severity.WARN, table.schema, table.name, detail, fix)


def _function_search_path_mutable(ctx: AuditContext) -> Iterable[Finding]:
    """splinter 0011: the project's own functions (not PostgreSQL's, Supabase's or an extension's)
    must pin search_path, or a caller's search_path decides which tables and functions they use."""
    ctx.cursor.execute(
        "SELECT n.nspname, p.proname, format('%%I.%%I(%%s)', n.nspname, p.proname,"
        "   pg_get_function_identity_arguments(p.oid))"
        " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname <> ALL (%s) AND n.nspname NOT LIKE 'pg\\_%%'"
        " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')"
        " AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{}')) c WHERE c LIKE 'search\\_path=%%')"
        " ORDER BY 1, 3",
        [list(SYSTEM_SCHEMAS)],
    )
    for schema, name, signature in ctx.cursor.fetchall():
        detail = f"Function {signature} has a role-mutable search_path."
        fix = f"ALTER FUNCTION {signature} SET search_path = '';\n-- then qualify every table and function it names"
        yield Finding("function_search_path_mutable", Severity.WARN, schema, name, detail, fix)


RULES = (
    _table_counts,
    _rls_disabled_in_public,
    _policy_exists_rls_disabled,
    _anon_readable_without_policy,
    _contamination_tables,
    _duplicate_singular_plural,
    _plural_table_names,
    _backup_tables_without_rls,
    _auth_rls_initplan,
    _multiple_permissive_policies,
    _rls_policy_always_true,
    _unindexed_foreign_keys,
    _duplicate_index,
    _function_search_path_mutable,
)


def schema_audit_run(*, database: str) -> list[Finding]:
    """Audit one target (`revos`, `audience` or `unified`); errors first, then warnings, then info."""
    target = AUDIT_TARGETS[database]
    with transaction.atomic(using=target.alias), connections[target.alias].cursor() as cursor:
        cursor.execute("SET TRANSACTION READ ONLY")
        # Never queue behind a migration's DDL: fail the audit instead.
        cursor.execute("SET LOCAL lock_timeout = '5s'")
        tables = [table for table in _tables(cursor) if target.includes(table)]
        ctx = AuditContext(target=target, tables=tables, cursor=cursor)
        findings = [finding for rule in RULES for finding in rule(ctx)]
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.schema, f.table, f.rule))


# --- runs: queued from the admin, executed by the RQ worker ----------------------------------


class AuditQueueUnavailable(RunRefused):
    """Redis could not take the job; the run is marked failed and says so."""


AUDIT_JOB = RunJob(
    queue=AUDIT_QUEUE,
    function="migration_jobs.jobs_audit.run_schema_audit",
    failure="Could not queue the audit: Redis (the job queue) is unreachable: {error}.",
)


def schema_audit_start(*, database: str, requested_by: User | None = None) -> SchemaAuditRun:
    """Record a run and queue its job once the run is committed (the worker must find the row)."""
    if database not in AUDIT_TARGETS:
        raise ValueError(f"database must be one of {', '.join(AUDIT_TARGETS)}, not {database!r}")
    run = SchemaAuditRun.objects.create(
        database=database, requested_by=requested_by, job_id=SchemaAuditRun.new_job_id()
    )
    run_enqueue_once(run=run, job=AUDIT_JOB)
    run.refresh_from_db()
    if run.status == SchemaAuditRun.Status.FAILED:
        raise AuditQueueUnavailable(run.error)
    return run


def schema_audit_execute(*, run: SchemaAuditRun) -> None:
    """Run a queued audit and keep its findings; a failure is recorded on the run and re-raised."""
    if not run.start():
        return
    try:
        findings = schema_audit_run(database=run.database)
    except Exception as error:
        run.fail(f"{type(error).__name__}: {error}")
        raise
    SchemaFinding.objects.bulk_create(
        SchemaFinding(run=run, **{name: getattr(finding, name) for name in FINDING_FIELDS}) for finding in findings
    )
    run.finish_with_counts()


FINDING_FIELDS = ("rule", "severity", "schema", "table", "detail", "suggested_fix")
