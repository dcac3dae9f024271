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
    verify/delta.py)."""
    name = "isolation.case5_shared_sessions_survive_app_switch"
    with connect("unified", purpose="verification-app-switch") as connection:
        # One snapshot for the stored counts and what each token sees: the isolation checks run
        # beside the data checks, while the database may change, and a difference must be the policy's.
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        try:
            person = _switching_person(connection, scope)
            if person is None:
                return not_applicable(name, "auth.users", "the agency has no person with an account to sign in")
            stored = _visible_by_app_context(connection, scope, catalog, skip, rows)
            session = uuid.uuid5(uuid.NAMESPACE_URL, f"controlplane-verification-switch:{person}")
            tokens, seen = {}, {}
            for app in APPS:
                tokens[app] = _token_in(connection, person, session, app)
                with acting_as(connection, tokens[app]):
                    seen[app] = _visible_by_app_context(connection, scope, catalog, skip, rows)
        finally:
            connection.rollback()  # the switches are part of the proof, not of the data
    expected = {app: _for_app(stored, app) for app in APPS}
    same_session = len({(t.get("session_id"), t.get("sub"), t.get("agency_id")) for t in tokens.values()}) == 1
    contexts = {app: tokens[app].get("app_context") for app in APPS}
    wrong = {app: _differences(expected[app], seen[app]) for app in APPS if seen[app] != expected[app]}
    shared = sum(n for counts in stored.values() for context, n in counts.items() if context == "both")
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


def _visible_by_app_context(
    connection: psycopg.Connection,
    scope: AgencyScope,
    catalog: Catalog,
    skip: frozenset[str] = frozenset(),
    rows: Mapping[str, frozenset[uuid.UUID]] | None = None,
) -> AppCounts:
    """Per public table `authenticated` may read: rows of the agency by app_context, as the current
    role sees them (a table it may not read shows nothing, which the sweeps report); of a table in
    `rows`, only those rows."""
    counts: AppCounts = {}
    for table, key in _tenant_tables(connection, catalog):
        if "app_context" not in catalog.column_names(table) or table in skip:
            continue
        only = rows.get(table) if rows is not None else None
        found = connection.execute(
            sql.SQL("SELECT app_context, count(*) FROM {} WHERE {} = %s AND {} GROUP BY 1").format(
                sql.Identifier(table),
                sql.Identifier(key),
                sql.SQL("TRUE") if only is None else sql.SQL("id = ANY({})").format(sql.Literal(sorted(only))),
            ),
            [scope.target_agency_id],
        ).fetchall()
        if found:
            counts[table] = dict(found)
    return counts


def _for_app(stored: AppCounts, app: str) -> AppCounts:
    visible = {t: {c: n for c, n in counts.items() if c in ("both", app)} for t, counts in stored.items()}
    return {t: counts for t, counts in visible.items() if counts}


def _differences(expected: AppCounts, seen: AppCounts) -> dict[str, dict[str, dict[str, int]]]:
    return {
        table: {"expected": expected.get(table, {}), "seen": seen.get(table, {})}
        for table in sorted(set(expected) | set(seen))
        if expected.get(table, {}) != seen.get(table, {})
    }
