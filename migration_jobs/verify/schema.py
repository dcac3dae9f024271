"""Schema checks of the whole unified database, recorded with every verification.

Every public table has RLS on and at least one policy; no policy sits on a table whose RLS is off
(it would look like protection and be none); every column a policy filters on is indexed; and the
Django models describe the SQL (migration_jobs.verify.model_drift).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import psycopg

from migration_jobs.verify.outcome import CheckOutcome, status_of

# A column of the policy's own table, in the stored expression tree (subqueries are varlevelsup > 0).
POLICY_VAR = re.compile(r"\{VAR :varno 1 :varattno (\d+) .*?:varlevelsup 0\b")


def _tables(connection: psycopg.Connection) -> list[tuple[str, bool, int]]:
    return connection.execute(
        """
        SELECT c.relname, c.relrowsecurity, (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
        WHERE c.relkind IN ('r', 'p') ORDER BY 1
        """
    ).fetchall()


def rls_enabled_check(connection: psycopg.Connection) -> CheckOutcome:
    tables = _tables(connection)
    rls_off = [t for t, rls, _ in tables if not rls]
    no_policy = [t for t, _, policies in tables if not policies]
    return CheckOutcome(
        "schema.rls_enabled",
        status_of(not rls_off and not no_policy),
        ", ".join(sorted(set(rls_off + no_policy)))[:100],
        expected=f"RLS on and at least one policy on each of {len(tables)} tables",
        actual=f"RLS off: {rls_off or 'none'}; no policy: {no_policy or 'none'}",
        details={"rls_off": rls_off, "no_policy": no_policy} if rls_off or no_policy else {},
    )


def policy_without_rls_check(connection: psycopg.Connection) -> CheckOutcome:
    idle = [t for t, rls, policies in _tables(connection) if policies and not rls]
    return CheckOutcome(
        "schema.no_policy_on_rls_off_table",
        status_of(not idle),
        ", ".join(idle)[:100],
        expected="no policy on a table with RLS off",
        actual=f"policies that enforce nothing (RLS off) on: {idle}" if idle else "none",
        details={"tables": idle} if idle else {},
    )


def _policy_columns(connection: psycopg.Connection) -> dict[tuple[str, str], set[str]]:
    """(table, policy) -> the table's columns its USING and WITH CHECK expressions read."""
    rows = connection.execute(
        """
        SELECT c.relname, p.polname, coalesce(p.polqual::text, '') || coalesce(p.polwithcheck::text, ''),
               ARRAY(SELECT a.attnum::int || ':' || a.attname FROM pg_attribute a
                     WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
        FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
        ORDER BY 1, 2
        """
    ).fetchall()
    found = {}
    for table, policy, tree, attributes in rows:
        names = dict(entry.split(":", 1) for entry in attributes)
        found[(table, policy)] = {names[number] for number in POLICY_VAR.findall(tree) if number in names}
    return found


def _indexes(connection: psycopg.Connection) -> dict[str, list[list[str]]]:
    """Each public table's indexes as their key columns, in order (expression keys left out)."""
    rows = connection.execute(
        """
        SELECT c.relname, ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY u(n, o)
                                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.n
                                WHERE u.o <= i.indnkeyatts ORDER BY u.o)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
        WHERE i.indkey[0] <> 0
        """
    ).fetchall()
    indexes: dict[str, list[list[str]]] = {}
    for table, columns in rows:
        indexes.setdefault(table, []).append(list(columns))
    return indexes


def policy_columns_indexed_check(connection: psycopg.Connection) -> CheckOutcome:
    """Each policy column is served by an index that the policy's own columns lead.

    agency_id (the tenant key) must lead an index; app_context may follow it, as in
    (agency_id, app_context). An index led by a column the policy does not filter on is no help.
    """
    indexes = _indexes(connection)
    unindexed = []
    policies = _policy_columns(connection)
    for (table, policy), columns in policies.items():
        for column in sorted(columns):
            if column == "agency_id":  # the tenant key: every policy check starts from it
                served = any(index[0] == column for index in indexes.get(table, []))
            else:
                served = any(column in index and index[0] in columns for index in indexes.get(table, []))
            if not served:
                unindexed.append(f"{table}.{column} ({policy})")
    return CheckOutcome(
        "schema.policy_columns_indexed",
        status_of(not unindexed),
        ", ".join(sorted({u.split(".")[0] for u in unindexed}))[:100],
        expected=f"every column the {len(policies)} policies filter on is indexed",
        actual=f"not indexed: {unindexed}" if unindexed else "all indexed",
        details={"unindexed": unindexed} if unindexed else {},
    )


def models_match_sql_check(drift: Callable[[], list[str]]) -> CheckOutcome:
    problems = drift()
    return CheckOutcome(
        "schema.models_match_sql",
        status_of(not problems),
        "",
        expected="the unified models describe sql/unified exactly",
        actual=f"{len(problems)} differences" if problems else "no differences",
        details={"differences": problems} if problems else {},
    )


# Check name -> check, over the unified database's catalog.
SQL_CHECKS = {
    "schema.rls_enabled": rls_enabled_check,
    "schema.no_policy_on_rls_off_table": policy_without_rls_check,
    "schema.policy_columns_indexed": policy_columns_indexed_check,
}
