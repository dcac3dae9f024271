"""Auth: every migrated person can sign in to the unified project, and the tokens they get isolate them.

Tokens are made the way Supabase Auth makes them: the claims GoTrue builds from the auth.users row
(`access_token_event`), passed to `public.custom_access_token_hook` as supabase_auth_admin, which
is the role GoTrue calls it as. What the apps then see is probed as `authenticated` with exactly
those claims in `request.jwt.claims`, as PostgREST runs a request.

The app switch (seed case 5) is proven end to end in one transaction that is rolled back: a token
for session S in revos, `switch_app('audience')` as that user, a refreshed token for S, and what
each token sees. Nothing of it is kept.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from migration_jobs.etl.catalog import Catalog
from migration_jobs.etl.connections import connect, fetch_value
from migration_jobs.etl.id_map import ID_MAP
from migration_jobs.verify.outcome import SAMPLE_SIZE, AgencyScope, CheckOutcome, ids, not_applicable, status_of

CLAIMS_SAMPLE = 3  # people whose hook claims are probed per agency
APPS = ("revos", "audience")
# JSON as GoTrue and the access-token hook speak it.
Event = dict[str, Any]
Claims = dict[str, Any]
# Table -> app_context -> rows.
AppCounts = dict[str, dict[str, int]]


# --- tokens as Supabase Auth issues them ------------------------------------------------------


def access_token_event(connection: psycopg.Connection, *, user_id: uuid.UUID, session_id: uuid.UUID) -> Event:
    """The hook's input for a password sign-in (or refresh) of `user_id` in session `session_id`:
    {"user_id", "claims", "authentication_method"}, the claims as GoTrue builds them from auth.users."""
    row = connection.execute(
        "SELECT aud, role, email, phone, raw_app_meta_data, raw_user_meta_data, is_anonymous"
        " FROM auth.users WHERE id = %s",
        [user_id],
    ).fetchone()
    if row is None:
        raise LookupError(f"no account {user_id} in auth.users")
    aud, role, email, phone, app_metadata, user_metadata, anonymous = row
    now = int(time.time())
    claims = {
        "iss": "https://unified.supabase.co/auth/v1",
        "aud": aud or "authenticated",
        "exp": now + 3600,
        "iat": now,
        "sub": str(user_id),
        "email": email or "",
        "phone": phone or "",
        "app_metadata": app_metadata or {},
        "user_metadata": user_metadata or {},
        "role": role or "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now}],
        "session_id": str(session_id),
        "is_anonymous": bool(anonymous),
    }
    return {"user_id": str(user_id), "claims": claims, "authentication_method": "password"}


def hook_claims(connection: psycopg.Connection, event: Event) -> Claims:
    """The claims the access-token hook returns for `event`, called as supabase_auth_admin.

    Runs inside the caller's transaction and leaves its role as it found it.
    """
    connection.execute("SET LOCAL ROLE supabase_auth_admin")
    try:
        output = fetch_value(connection.execute("SELECT public.custom_access_token_hook(%s)", [Jsonb(event)]))
    finally:
        _reset_role(connection)
    claims: Claims = output["claims"]
    return claims


@contextmanager
def acting_as(connection: psycopg.Connection, claims: Claims | None, role: str = "authenticated") -> Iterator[None]:
    """Run as the API role with these JWT claims (as PostgREST does), inside the caller's transaction."""
    connection.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
    connection.execute("SELECT set_config('request.jwt.claims', %s, true)", [json.dumps(claims) if claims else ""])
    try:
        yield
    finally:
        _reset_role(connection)


def _reset_role(connection: psycopg.Connection) -> None:
    """Back to the connecting role and no claims; a failed transaction is left to its rollback."""
    if connection.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:
        connection.execute("SET LOCAL ROLE NONE")
        connection.execute("SELECT set_config('request.jwt.claims', '', true)")


# --- the auth check ---------------------------------------------------------------------------


def auth_check(*, scope: AgencyScope, source: psycopg.Connection, catalog: Catalog) -> CheckOutcome:
    """Every RevOS person of the agency who had an account has exactly one unified account, which is
    their public.user row in the agency; the hook's claims for a sample of them isolate the agency."""
    name = "auth"
    if not scope.migrated:
        return not_applicable(
            name, "auth.users", "the agency is not migrated; the counts check proves no account is left"
        )
    people = source.execute(
        "SELECT u.id FROM users u JOIN auth.users a ON a.id = u.id WHERE u.agency_id = %s ORDER BY u.id",
        [scope.source_agency_id],
    ).fetchall()
    if not people:
        return not_applicable(name, "auth.users", "no RevOS person of the agency had an account")
    with connect("unified", purpose="verification-auth") as target:
        target.read_only = True
        try:
            problems, unified_ids = _account_problems(target, scope, [row[0] for row in people])
            claims, leaks = _claims_probes(target, scope, catalog, unified_ids[:CLAIMS_SAMPLE])
        finally:
            target.rollback()
    details = {"people": len(people), "claims_sample": claims}
    if problems:
        details["problems"] = {kind: ids(values[:SAMPLE_SIZE]) for kind, values in problems.items()}
    if leaks:
        details["claims_problems"] = leaks
    return CheckOutcome(
        name,
        status_of(not problems and not leaks),
        "auth.users",
        expected=f"{len(people)} people with one account each, their public.user in the agency; "
        f"hook claims of {min(len(people), CLAIMS_SAMPLE)} isolate the agency",
        actual=f"{sum(len(v) for v in problems.values())} account problems, {len(leaks)} claims problems",
        details=details,
    )


def _account_problems(
    target: psycopg.Connection, scope: AgencyScope, revos_people: list[uuid.UUID]
) -> tuple[dict[str, list[uuid.UUID]], list[uuid.UUID]]:
    """Problems by kind (RevOS person ids), and the unified ids of the people found."""
    rows = target.execute(
        sql.SQL(
            # Accounts per email counted in one pass over auth.users, not once per person: that grew
            # with the square of the agency's people (76 of a 1M-row agency's 77 verification seconds).
            "SELECT s.id, p.id, p.agency_id, coalesce(e.accounts, 0),"
            " EXISTS (SELECT 1 FROM auth.users a WHERE a.id = p.id)"
            " FROM unnest(%s::uuid[]) AS s(id)"
            " LEFT JOIN {id_map} m ON m.source_table = 'users' AND m.source_id = s.id AND m.agency_id = %s"
            ' LEFT JOIN public."user" p ON p.id = coalesce(m.target_id, s.id)'
            " LEFT JOIN (SELECT lower(a.email) AS email, count(*) AS accounts FROM auth.users a GROUP BY 1) e"
            " ON e.email = lower(p.email) ORDER BY s.id"
        ).format(id_map=ID_MAP),
        [revos_people, scope.source_agency_id],
    ).fetchall()
    problems: dict[str, list[uuid.UUID]] = {}
    found = []
    for revos_id, person, agency, accounts, has_own in rows:
        kind = None
        if person is None:
            kind = "no public.user row"
        elif agency != scope.target_agency_id:
            kind = "public.user row in another agency"
        elif not has_own:
            kind = "no account with the person's id"
        elif accounts != 1:
            kind = "not exactly one account with the email"
        if kind:
            problems.setdefault(kind, []).append(revos_id)
        else:
            found.append(person)
    return problems, found


def _claims_probes(
    target: psycopg.Connection, scope: AgencyScope, catalog: Catalog, people: list[uuid.UUID]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The hook's claims for each person, and what is wrong with what they see."""
    tables = _tenant_tables(target, catalog)
    sample: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    for person in people:
        session = uuid.uuid5(uuid.NAMESPACE_URL, f"controlplane-verification-session:{person}")
        claims = hook_claims(target, access_token_event(target, user_id=person, session_id=session))
        sample.append({key: claims.get(key) for key in ("sub", "agency_id", "app_context", "session_id")})
        if claims.get("agency_id") != str(scope.target_agency_id) or claims.get("app_context") not in APPS:
            problems.append({"person": str(person), "claims": sample[-1], "problem": "claims name another agency"})
            continue
        with acting_as(target, claims):
            own = fetch_value(target.execute("SELECT count(*) FROM agency WHERE id = %s", [scope.target_agency_id]))
            foreign = [table for table, key in tables if _sees_other_agency(target, table, key, scope)]
        if own != 1 or foreign:
            problems.append({"person": str(person), "own_agency_visible": own == 1, "other_agency_rows_in": foreign})
    return sample, problems


def _tenant_tables(connection: psycopg.Connection, catalog: Catalog) -> list[tuple[str, str]]:
    """(table, tenant key) of the public tables `authenticated` may read."""
    readable = {
        row[0]
        for row in connection.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'"
            " WHERE c.relkind IN ('r', 'p') AND has_table_privilege('authenticated', c.oid, 'SELECT')"
        )
    }
    return [
        (table, "agency_id" if "agency_id" in catalog.column_names(table) else "id")
        for table in sorted(readable)
        if table in catalog.columns
    ]


def _sees_other_agency(connection: psycopg.Connection, table: str, key: str, scope: AgencyScope) -> bool:
    """Is any row of another agency visible? `key <> X` written as `key < X` or `key > X`: the same
    rows, but beside the policy's `key = <the claims' agency>` the index sees two ranges that cannot
    meet and reads nothing, where `<>` filtered every row of the agency, per table and person."""
    other = sql.SQL("SELECT EXISTS (SELECT 1 FROM {table} WHERE {key} {op} %(agency)s)")
    table_key = {"table": sql.Identifier(table), "key": sql.Identifier(key)}
    seen: bool = fetch_value(
        connection.execute(
            sql.SQL("SELECT ({}) OR ({})").format(
                other.format(op=sql.SQL("<"), **table_key), other.format(op=sql.SQL(">"), **table_key)
            ),
            {"agency": scope.target_agency_id},
        )
    )
    return seen


# --- what decides a row's visibility --------------------------------------------------------

# Functions a policy may call and still decide on the row alone: they read the request's claims.
CLAIMS_FUNCTIONS = ("auth.jwt()", "auth.uid()", "auth.role()")


def rows_decide(connection: psycopg.Connection) -> bool:
    """Does every policy decide on its own row and the request's claims alone (it refers to no
    other table and calls no function but CLAIMS_FUNCTIONS and the built-in ones)? Read inside the
    caller's transaction, which it leaves open."""
    decided: bool = fetch_value(
        connection.execute(
            """
            SELECT NOT EXISTS (
                SELECT 1 FROM pg_depend d JOIN pg_policy p ON d.classid = 'pg_policy'::regclass AND d.objid = p.oid
                 WHERE (d.refclassid = 'pg_class'::regclass AND d.refobjid <> p.polrelid)
                    OR (d.refclassid = 'pg_proc'::regclass
                        AND d.refobjid <> ALL(ARRAY(SELECT to_regprocedure(f) FROM unnest(%s::text[]) f
                                                  WHERE to_regprocedure(f) IS NOT NULL))))
            """,
            [list(CLAIMS_FUNCTIONS)],
        )
    )
    return decided


# --- seed case 5: the app toggle keeps the session --------------------------------------------


def app_switch_proof(
    *,
    scope: AgencyScope,
    catalog: Catalog,
    skip: frozenset[str] = frozenset(),
    rows: Mapping[str, frozenset[uuid.UUID]] | None = None,
) -> CheckOutcome:
    """A token for session S in revos, switch_app('audience'), a refreshed token for S in audience:
    the same session and person, shared rows visible with both tokens, app-only rows with their app's.

    Tables in `skip` are not counted, and of the tables in `rows` only those rows (the cutover's
    check inside its fence: the other rows and the rules are as they were when counted before,
    verify/delta.py).

    The agency's rows are counted once, by app_context, as the owner. Where a table's policies
    decide on the tenant key and app_context alone (`_decided_by_context`), every row of one
    app_context is visible to a token exactly when any one of them is, so each token reads one row
    per app_context; the other tables are counted again under each token."""
    name = "isolation.case5_shared_sessions_survive_app_switch"
    with connect("unified", purpose="verification-app-switch") as connection:
        # One snapshot for the stored counts and what each token sees: the isolation checks run
        # beside the data checks, while the database may change, and a difference must be the policy's.
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        try:
            person = _switching_person(connection, scope)
            if person is None:
                return not_applicable(name, "auth.users", "the agency has no person with an account to sign in")
            tables = _switch_tables(connection, catalog, skip)
            stored = _stored_by_app_context(connection, scope, tables, rows)
            counted = sorted(table for table, _ in tables if table not in _decided_by_context(connection, tables))
            session = uuid.uuid5(uuid.NAMESPACE_URL, f"controlplane-verification-switch:{person}")
            tokens, seen = {}, {}
            for app in APPS:
                tokens[app] = _token_in(connection, person, session, app)
                with acting_as(connection, tokens[app]):
                    seen[app] = _seen_by_app_context(connection, scope, tables, rows, stored, frozenset(counted))
        finally:
            connection.rollback()  # the switches are part of the proof, not of the data
    counts = {table: {c: n for c, (n, _) in groups.items()} for table, groups in stored.items()}
    expected = {app: _for_app(counts, app) for app in APPS}
    same_session = len({(t.get("session_id"), t.get("sub"), t.get("agency_id")) for t in tokens.values()}) == 1
    contexts = {app: tokens[app].get("app_context") for app in APPS}
    wrong = {app: _differences(expected[app], seen[app]) for app in APPS if seen[app] != expected[app]}
    shared = sum(n for groups in counts.values() for context, n in groups.items() if context == "both")
    return CheckOutcome(
        name,
        status_of(same_session and contexts == {app: app for app in APPS} and not wrong),
        ", ".join(sorted({table for tables in wrong.values() for table in tables}))[:100] or "chat_session",
        expected=f"one session {session} switching revos -> audience; {shared} shared rows visible in both apps, "
        "app-only rows only in their app",
        actual=f"session kept: {same_session}; app_context {contexts['revos']} -> {contexts['audience']}; "
        f"seen wrong in: {sorted(wrong) or 'neither app'}",
        details={
            "person": str(person),
            "tokens": {
                app: {k: tokens[app].get(k) for k in ("sub", "session_id", "agency_id", "app_context")} for app in APPS
            },
            "tables_decided_by_one_row_per_app_context": len(tables) - len(counted),
            "tables_counted_under_each_token": counted,
            **({"wrong": wrong} if wrong else {}),
        },
    )


def _switching_person(connection: psycopg.Connection, scope: AgencyScope) -> uuid.UUID | None:
    """A person of the agency with an account, preferably one the migration brought from RevOS."""
    row = connection.execute(
        sql.SQL(
            'SELECT u.id FROM public."user" u JOIN auth.users a ON a.id = u.id WHERE u.agency_id = %s'
            " ORDER BY EXISTS (SELECT 1 FROM {} m WHERE m.source_table = 'users' AND m.source_id = u.id"
            " AND m.inserted) DESC, u.id LIMIT 1"
        ).format(ID_MAP),
        [scope.target_agency_id],
    ).fetchone()
    return row[0] if row else None


def _token_in(connection: psycopg.Connection, person: uuid.UUID, session: uuid.UUID, app: str) -> Claims:
    """The token a refresh of `session` gives once the person is in `app`, switching there if needed."""
    claims = hook_claims(connection, access_token_event(connection, user_id=person, session_id=session))
    if claims.get("app_context") != app:
        with acting_as(connection, claims):
            connection.execute("SELECT public.switch_app(%s)", [app])
        claims = hook_claims(connection, access_token_event(connection, user_id=person, session_id=session))
    return claims


def _switch_tables(connection: psycopg.Connection, catalog: Catalog, skip: frozenset[str]) -> list[tuple[str, str]]:
    """(table, tenant key) of the public tables `authenticated` may read that have an app_context,
    but those in `skip` (a table it may not read shows nothing, which the sweeps report)."""
    return [
        (table, key)
        for table, key in _tenant_tables(connection, catalog)
        if "app_context" in catalog.column_names(table) and table not in skip
    ]


def _only(table: str, rows: Mapping[str, frozenset[uuid.UUID]] | None) -> sql.Composable:
    """Of a table in `rows`, only those rows; else every row."""
    only = rows.get(table) if rows is not None else None
    return sql.SQL("TRUE") if only is None else sql.SQL("id = ANY({})").format(sql.Literal(sorted(only)))


def _stored_by_app_context(
    connection: psycopg.Connection,
    scope: AgencyScope,
    tables: list[tuple[str, str]],
    rows: Mapping[str, frozenset[uuid.UUID]] | None,
) -> dict[str, dict[str, tuple[int, uuid.UUID | None]]]:
    """Table -> app_context -> (the agency's rows, one of them), as the owner sees them: one pass
    over the agency's (tenant key, app_context) index entries per table, and one row per app_context."""
    stored = {}
    for table, key in tables:
        found = connection.execute(
            sql.SQL(
                "SELECT g.app_context, g.n, (SELECT t.id FROM {table} t WHERE t.{key} = %(agency)s"
                " AND t.app_context = g.app_context AND {only} LIMIT 1)"
                " FROM (SELECT app_context, count(*) AS n FROM {table} WHERE {key} = %(agency)s AND {only}"
                " GROUP BY 1) g"
            ).format(table=sql.Identifier(table), key=sql.Identifier(key), only=_only(table, rows)),
            {"agency": scope.target_agency_id},
        ).fetchall()
        if found:
            stored[table] = {context: (n, one) for context, n, one in found}
    return stored


def _decided_by_context(connection: psycopg.Connection, tables: list[tuple[str, str]]) -> frozenset[str]:
    """The tables where a row's visibility is decided by its tenant key and app_context alone: every
    policy is row local (rows_decide: no other table, no function but the claims')
    and refers to no column of its table but those two, nor to the whole row. With the same claims
    and snapshot, two rows of one agency and app_context are then both visible or both hidden.
    Built-in functions leave no trace in pg_depend: a policy calling random() is not caught here."""
    row_local = rows_decide(connection)
    if not row_local:
        return frozenset()
    # A column a policy refers to is a dependency on (its table, the column's number); the whole
    # row, on (its table, 0) beside the policy's own automatic one.
    other_columns = connection.execute(
        """
        SELECT DISTINCT c.relname FROM pg_policy p
          JOIN pg_class c ON c.oid = p.polrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
          JOIN pg_depend d ON d.classid = 'pg_policy'::regclass AND d.objid = p.oid
               AND d.refclassid = 'pg_class'::regclass AND d.refobjid = p.polrelid AND d.deptype <> 'a'
          LEFT JOIN pg_attribute a ON a.attrelid = p.polrelid AND a.attnum = d.refobjsubid
          JOIN unnest(%s::text[], %s::text[]) AS k(relname, tenant_key) ON k.relname = c.relname
         WHERE a.attname IS NULL OR a.attname NOT IN ('app_context', k.tenant_key)
        """,
        [[table for table, _ in tables], [key for _, key in tables]],
    ).fetchall()
    return frozenset(table for table, _ in tables) - {row[0] for row in other_columns}


def _seen_by_app_context(
    connection: psycopg.Connection,
    scope: AgencyScope,
    tables: list[tuple[str, str]],
    rows: Mapping[str, frozenset[uuid.UUID]] | None,
    stored: dict[str, dict[str, tuple[int, uuid.UUID | None]]],
    counted: frozenset[str],
) -> dict[str, dict[str, int]]:
    """Table -> app_context -> the agency's rows the current role sees. A table in `counted` is
    counted; of any other, an app_context counts all its stored rows when its one row is visible."""
    seen: dict[str, dict[str, int]] = {}
    for table, key in tables:
        groups = stored.get(table, {})
        if table in counted or any(one is None for _, one in groups.values()):
            found = connection.execute(
                sql.SQL("SELECT app_context, count(*) FROM {} WHERE {} = %s AND {} GROUP BY 1").format(
                    sql.Identifier(table), sql.Identifier(key), _only(table, rows)
                ),
                [scope.target_agency_id],
            ).fetchall()
        elif groups:
            visible = connection.execute(
                sql.SQL("SELECT app_context FROM {} WHERE id = ANY(%s)").format(sql.Identifier(table)),
                [[one for _, one in groups.values()]],
            ).fetchall()
            found = [(context, groups[context][0]) for (context,) in visible]
        else:
            found = []  # no row of the agency to see: nothing the owner could not see either
        if found:
            seen[table] = dict(found)
    return seen


def _for_app(stored: AppCounts, app: str) -> AppCounts:
    visible = {t: {c: n for c, n in counts.items() if c in ("both", app)} for t, counts in stored.items()}
    return {t: counts for t, counts in visible.items() if counts}


def _differences(expected: AppCounts, seen: AppCounts) -> dict[str, dict[str, dict[str, int]]]:
    return {
        table: {"expected": expected.get(table, {}), "seen": seen.get(table, {})}
        for table in sorted(set(expected) | set(seen))
        if expected.get(table, {}) != seen.get(table, {})
    }
