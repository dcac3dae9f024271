"""Isolation: what the apps' API roles actually see, probed the way Supabase's PostgREST runs a request.

Each probe is one read-only transaction on the unified database: `SET LOCAL ROLE authenticated`
(or `anon`), the JWT claims in `request.jwt.claims` via set_config(..., true), the queries, then
ROLLBACK. Expectations are read first as the connecting (owner) role, which RLS does not filter.

The seed's five test cases (the fifth with a real person's tokens from the access-token hook),
then two sweeps over every table: another agency's claims (an unrelated agency, and any agency
holding a row this agency's migration inserted) see none of this agency's rows; `anon` with no
claims sees nothing at all. A case the agency has no data for passes as "not applicable", saying so.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.abc import Params

from migration_jobs.etl import id_map
from migration_jobs.etl.catalog import Catalog
from migration_jobs.etl.connections import fetch_row, fetch_value
from migration_jobs.mapping import TABLE_MAPS
from migration_jobs.verify.auth import Claims, app_switch_proof, rows_decide
from migration_jobs.verify.outcome import SAMPLE_SIZE, AgencyScope, CheckOutcome, ids, not_applicable, status_of

REVOS, AUDIENCE = "revos", "audience"
APPS = (REVOS, AUDIENCE)
CASE1_PROBED = 500  # AudienceOS clients probed, at most


def claims_for(agency_id: uuid.UUID, app: str) -> Claims:
    """Claims as the apps' Supabase JWTs carry them; `sub` is a fixed probe identity, not a real user."""
    return {
        "aud": "authenticated",
        "role": "authenticated",
        "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"controlplane-verification:{agency_id}")),
        "agency_id": str(agency_id),
        "app_context": app,
    }


@dataclass
class Probe:
    """A unified connection (read only, not autocommit) and the agency under verification."""

    connection: psycopg.Connection
    scope: AgencyScope
    catalog: Catalog
    skip: frozenset[str] = frozenset()  # tables the sweeps leave out (proven unchanged: verify/delta.py)
    keep: frozenset[str] = frozenset()  # tables swept anyway (they held moved rows before)
    # Table -> the only rows a case reads of it (written since the check before the fence, which
    # read the rest: verify/delta.py); None reads every row.
    rows: Mapping[str, frozenset[uuid.UUID]] | None = None

    @property
    def agency(self) -> sql.Literal:
        return sql.Literal(self.scope.target_agency_id)

    def owner(self, query: str | sql.SQL | sql.Composed, params: Params | None = None) -> list[tuple[Any, ...]]:
        """Rows as the connecting role sees them (RLS does not apply to the owner)."""
        try:
            return self.connection.execute(query, params).fetchall()
        finally:
            self.connection.rollback()

    @contextmanager
    def acting(self, role: str, claims: Claims | None) -> Iterator[psycopg.Connection]:
        """One transaction as `role` with these JWT claims (none: as an anonymous request)."""
        connection = self.connection
        connection.rollback()
        try:
            connection.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
            connection.execute(
                "SELECT set_config('request.jwt.claims', %s, true)", [json.dumps(claims) if claims else ""]
            )
            yield connection
        finally:
            connection.rollback()

    def as_app(self, app: str, agency_id: uuid.UUID | None = None) -> AbstractContextManager[psycopg.Connection]:
        return self.acting("authenticated", claims_for(agency_id or self.scope.target_agency_id, app))

    def not_migrated(self, table: str, alias: str = "t") -> sql.Composed:
        """The row was not inserted by this agency's migration: AudienceOS created it."""
        return id_map.not_inserted_by(
            agency_id=self.scope.source_agency_id,
            source_tables=[entry.source for entry in TABLE_MAPS if entry.target == table],
            alias=alias,
        )

    def written(self, table: str, alias: str | None = None) -> sql.Composable:
        """The rows of `table` the case reads: those of `rows` when it narrows the case, else every row."""
        if self.rows is None or table not in self.rows:
            return sql.SQL("TRUE")
        column = sql.Identifier(alias, "id") if alias else sql.Identifier("id")
        return sql.SQL("{} = ANY({})").format(column, sql.Literal(sorted(self.rows[table])))

    def narrowed(self, *tables: str) -> dict[str, dict[str, int]]:
        """What an outcome says of the rows it read, when `rows` narrowed them."""
        read = {t: len(self.rows[t]) for t in tables if self.rows is not None and t in self.rows}
        return {"rows_read_written_since_the_check_before_the_fence": read} if read else {}

    def nothing_to_check(self, name: str, table: str, reason: str) -> CheckOutcome:
        """A case with no rows to read passes, saying why (of the rows written since, when narrowed)."""
        if self.rows is not None and table in self.rows:
            reason = f"{reason} among the rows written since the check before the fence"
        return not_applicable(name, table, reason)

    def tenant_key(self, table: str) -> sql.Identifier:
        return sql.Identifier("agency_id" if "agency_id" in self.catalog.column_names(table) else "id")


# --- the seed's five cases -------------------------------------------------------------------


def case1_audienceos_client_visible_from_revos(probe: Probe) -> CheckOutcome:
    name = "isolation.case1_audienceos_client_visible_from_revos"
    clients = [
        row[0]
        for row in probe.owner(
            sql.SQL(
                "SELECT t.id FROM client t WHERE t.agency_id = {} AND t.app_context = 'both' AND {} AND {}"
                " ORDER BY t.id LIMIT {}"
            ).format(
                probe.agency, probe.not_migrated("client"), probe.written("client", "t"), sql.Literal(CASE1_PROBED)
            )
        )
    ]
    if not clients:
        return probe.nothing_to_check(name, "client", "the agency has no shared client created in AudienceOS")
    with probe.as_app(REVOS) as connection:
        visible = {row[0] for row in connection.execute("SELECT id FROM client WHERE id = ANY(%s)", [clients])}
    hidden = [c for c in clients if c not in visible]
    return CheckOutcome(
        name,
        status_of(not hidden),
        "client",
        expected=f"{len(clients)} AudienceOS clients ('both') visible with RevOS claims",
        actual=f"{len(visible)} visible",
        details={
            **probe.narrowed("client"),
            "claims": claims_for(probe.scope.target_agency_id, REVOS),
            "probed_ids": ids(clients[:SAMPLE_SIZE]),
            **({"hidden_ids": ids(hidden[:SAMPLE_SIZE])} if hidden else {}),
        },
    )


def case2_revos_lead_hidden_from_audienceos(probe: Probe) -> CheckOutcome:
    name = "isolation.case2_revos_lead_hidden_from_audienceos"
    in_agency = sql.SQL("agency_id = {} AND app_context = 'revos' AND {}").format(probe.agency, probe.written("lead"))
    total = probe.owner(sql.SQL("SELECT count(*) FROM lead WHERE {}").format(in_agency))[0][0]
    if not total:
        return probe.nothing_to_check(name, "lead", "the agency has no RevOS leads")
    with probe.as_app(AUDIENCE) as connection:
        leaked = [
            row[0]
            for row in connection.execute(
                sql.SQL("SELECT id FROM lead WHERE app_context = 'revos' AND {} ORDER BY id LIMIT {}").format(
                    probe.written("lead"), sql.Literal(SAMPLE_SIZE)
                )
            )
        ]
    with probe.as_app(REVOS) as connection:
        seen = fetch_value(connection.execute(sql.SQL("SELECT count(*) FROM lead WHERE {}").format(in_agency)))
    return CheckOutcome(
        name,
        status_of(not leaked and seen == total),
        "lead",
        expected=f"AudienceOS claims: 0 RevOS leads; RevOS claims: all {total}",
        actual=f"AudienceOS claims: {len(leaked)}{'+' if len(leaked) == SAMPLE_SIZE else ''}; RevOS claims: {seen}",
        details={**probe.narrowed("lead"), **({"visible_to_audienceos_ids": ids(leaked)} if leaked else {})},
    )


def _grouped(rows: list[tuple[Any, ...]]) -> dict[str, int]:
    return {"/".join(key): count for *key, count in rows}


def case3_chat_ai_provider_per_app(probe: Probe) -> CheckOutcome:
    name = "isolation.case3_chat_ai_provider_per_app"
    by_context_sql = sql.SQL(
        "SELECT app_context, count(*) FROM chat_session WHERE agency_id = {} AND {} GROUP BY 1"
    ).format(probe.agency, probe.written("chat_session"))
    sessions = _grouped(probe.owner(by_context_sql))
    # Narrowed to the rows written since the check before the fence, messages may have been written
    # without their session: they are checked all the same.
    if not sessions and (probe.rows is None or "chat_message" not in probe.rows):
        return probe.nothing_to_check(name, "chat_session", "the agency has no chat sessions")
    migrated = sql.SQL("NOT ({})").format(probe.not_migrated("chat_message"))
    wrong = {}
    for origin, condition, provider in (
        ("migrated_from_revos", migrated, "agentkit"),
        ("audienceos", probe.not_migrated("chat_message"), "gemini"),
    ):
        rows = probe.owner(
            sql.SQL(
                "SELECT t.id, t.ai_provider IS DISTINCT FROM {provider} FROM chat_message t"
                " WHERE t.agency_id = {agency} AND {condition} AND {written}"
                " ORDER BY (t.ai_provider IS DISTINCT FROM {provider}) DESC, t.id LIMIT {limit}"
            ).format(
                provider=sql.Literal(provider),
                agency=probe.agency,
                condition=condition,
                written=probe.written("chat_message", "t"),
                limit=sql.Literal(SAMPLE_SIZE),
            )
        )
        bad = [row_id for row_id, is_wrong in rows if is_wrong]
        if bad:
            wrong[origin] = {"expected_ai_provider": provider, "sample_ids": ids(bad)}
    visible = {}
    for app in APPS:
        with probe.as_app(app) as connection:
            visible[app] = _grouped(connection.execute(by_context_sql).fetchall())
    expected = {app: {c: n for c, n in sessions.items() if c in ("both", app)} for app in APPS}
    return CheckOutcome(
        name,
        status_of(not wrong and visible == expected),
        "chat_message",
        expected=f"migrated messages agentkit, AudienceOS messages gemini; sessions visible per app: {expected}",
        actual=f"wrong ai_provider: {sorted(wrong) or 'none'}; sessions visible per app: {visible}",
        details={
            **probe.narrowed("chat_session", "chat_message"),
            "sessions_by_app_context": sessions,
            **({"wrong_ai_provider": wrong} if wrong else {}),
        },
    )


def case4_cartridges_per_app_context(probe: Probe) -> CheckOutcome:
    name = "isolation.case4_cartridges_per_app_context"
    query = sql.SQL(
        "SELECT app_context, type, count(*) FROM cartridge WHERE agency_id = {} AND {} GROUP BY 1, 2 ORDER BY 1, 2"
    ).format(probe.agency, probe.written("cartridge"))
    stored = _grouped(probe.owner(query))
    if not stored:
        return probe.nothing_to_check(name, "cartridge", "the agency has no cartridges")
    visible, expected = {}, {}
    for app in APPS:
        with probe.as_app(app) as connection:
            visible[app] = _grouped(connection.execute(query).fetchall())
        expected[app] = {key: n for key, n in stored.items() if key.split("/")[0] in ("both", app)}
    return CheckOutcome(
        name,
        status_of(visible == expected),
        "cartridge",
        expected=f"app_context/type visible per app: {expected}",
        actual=f"{visible}",
        details={**probe.narrowed("cartridge"), "stored": stored},
    )


def case5_shared_sessions_survive_app_switch(probe: Probe) -> CheckOutcome:
    """Proven with a real person's tokens and switch_app (verify.auth.app_switch_proof)."""
    return app_switch_proof(scope=probe.scope, catalog=probe.catalog, skip=probe.skip - probe.keep, rows=probe.rows)


# Check name -> probe: the seed's five cases (the sweeps over every table are SWEEPS, below).
CASES = {
    f"isolation.{case.__name__}": case
    for case in (
        case1_audienceos_client_visible_from_revos,
        case2_revos_lead_hidden_from_audienceos,
        case3_chat_ai_provider_per_app,
        case4_cartridges_per_app_context,
        case5_shared_sessions_survive_app_switch,
    )
}


# --- sweeps over every table -----------------------------------------------------------------


def _readable_tables(probe: Probe, role: str, keep: frozenset[str] = frozenset()) -> list[str]:
    """Public tables the role may SELECT from; a denied table shows nothing, which is isolation too.
    Those in `probe.skip` are left out, unless in `keep`."""
    rows = probe.owner(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'"
        " WHERE c.relkind IN ('r', 'p') AND has_table_privilege(%s, c.oid, 'SELECT') ORDER BY 1",
        [role],
    )
    return [row[0] for row in rows if row[0] not in probe.skip or row[0] in keep | probe.keep]


def _moved_rows(probe: Probe) -> dict[str, dict[str, list[uuid.UUID]]]:
    """Rows this agency's migration inserted that now belong to another agency: table -> agency -> ids."""
    if probe.skip:  # only where rows changed, or moved ones were found before (verify/delta.py)
        pairs = [(e.source, e.target) for e in TABLE_MAPS if e.target not in probe.skip or e.target in probe.keep]
    else:
        pairs = probe.owner(id_map.agency_inserted_tables(), [probe.scope.source_agency_id])
    moved: dict[str, dict[str, list[uuid.UUID]]] = {}
    for source_table, table in pairs:
        if "agency_id" not in probe.catalog.column_names(table):
            continue
        rows = probe.owner(
            id_map.moved_rows(table, limit=SAMPLE_SIZE),
            [probe.scope.source_agency_id, source_table, probe.scope.target_agency_id],
        )
        for agency_id, row_id in rows:
            moved.setdefault(table, {}).setdefault(str(agency_id), []).append(row_id)
    return moved


def _unrelated_agency(probe: Probe) -> uuid.UUID:
    """Another agency of the unified database, or (if there is none) an id no agency has."""
    rows = probe.owner(sql.SQL("SELECT id FROM agency WHERE id <> {} ORDER BY id LIMIT 1").format(probe.agency))
    return rows[0][0] if rows else uuid.uuid5(uuid.NAMESPACE_URL, f"controlplane-verification-other:{probe.agency}")


def other_agency_sees_nothing(probe: Probe) -> CheckOutcome:
    """Claims of other agencies, for both apps, see no row of this agency in any table."""
    moved = _moved_rows(probe)
    # A moved row belongs to another agency now, whose writes nothing records: its table is swept.
    tables = _readable_tables(probe, "authenticated", keep=frozenset(moved))
    others = sorted({str(_unrelated_agency(probe))} | {a for per_table in moved.values() for a in per_table})
    leaks: dict[str, list[dict[str, Any]]] = {}
    for other in others:
        for app in APPS:
            with probe.as_app(app, uuid.UUID(other)) as connection:
                for table in tables:
                    found = connection.execute(
                        sql.SQL("SELECT id FROM {} WHERE {} = {} ORDER BY id LIMIT {}").format(
                            sql.Identifier(table), probe.tenant_key(table), probe.agency, sql.Literal(SAMPLE_SIZE)
                        )
                    ).fetchall()
                    moved_here = moved.get(table, {}).get(other)
                    if moved_here:
                        found += connection.execute(
                            sql.SQL("SELECT id FROM {} WHERE id = ANY(%s)").format(sql.Identifier(table)), [moved_here]
                        ).fetchall()
                    if found:
                        leaks.setdefault(table, []).append(
                            {"agency_id": other, "app_context": app, "ids": ids(row[0] for row in found)}
                        )
    return CheckOutcome(
        "isolation.other_agency_sees_nothing",
        status_of(not leaks),
        ", ".join(sorted(leaks))[:100],
        expected=f"0 rows of this agency visible to {len(others)} other agencies' claims, in {len(tables)} tables",
        actual=f"rows visible in {len(leaks)} tables" if leaks else "0 rows visible",
        details={"other_agencies": others, "moved_tables": sorted(moved), **({"visible": leaks} if leaks else {})},
    )


def anon_sees_nothing(probe: Probe) -> CheckOutcome:
    """The anonymous role, without claims, sees no row of any table (any agency's)."""
    tables = _readable_tables(probe, "anon")
    leaks = {}
    with probe.acting("anon", None) as connection:
        for table in tables:
            found = connection.execute(
                sql.SQL("SELECT id FROM {} ORDER BY id LIMIT {}").format(
                    sql.Identifier(table), sql.Literal(SAMPLE_SIZE)
                )
            ).fetchall()
            if found:
                leaks[table] = ids(row[0] for row in found)
    return CheckOutcome(
        "isolation.anon_sees_nothing",
        status_of(not leaks),
        ", ".join(sorted(leaks))[:100],
        expected=f"0 rows visible to anon in {len(tables)} readable tables",
        actual=f"rows visible in {len(leaks)} tables" if leaks else "0 rows visible",
        details={"visible": leaks} if leaks else {},
    )


SWEEPS = {f"isolation.{sweep.__name__}": sweep for sweep in (other_agency_sees_nothing, anon_sees_nothing)}


# --- what a case reads -------------------------------------------------------------------------

# Case -> the unified tables whose rows its verdict depends on; None: rows no capture records
# (case 5 signs a person in: auth tables, which GoTrue writes and nothing captures).
CASE_TABLES: dict[str, frozenset[str] | None] = {
    "isolation.case1_audienceos_client_visible_from_revos": frozenset({"client"}),
    "isolation.case2_revos_lead_hidden_from_audienceos": frozenset({"lead"}),
    "isolation.case3_chat_ai_provider_per_app": frozenset({"chat_session", "chat_message"}),
    "isolation.case4_cartridges_per_app_context": frozenset({"cartridge"}),
    "isolation.case5_shared_sessions_survive_app_switch": None,
}


@dataclass(frozen=True)
class Only:
    """The isolation cases to run, the tables the sweeps leave out, and the rows the cases read."""

    cases: frozenset[str]
    skip: frozenset[str]
    keep: frozenset[str]
    # Table -> the rows written since the check before the fence: a case reads only these of a
    # table it reads (verify/delta.py says when that proves what reading every row would); None: every row.
    rows: Mapping[str, frozenset[uuid.UUID]] | None = None
    whole: frozenset[str] = frozenset()  # cases that read every row anyway (they did not pass before)

    def rows_for(self, case: str) -> Mapping[str, frozenset[uuid.UUID]] | None:
        return None if case in self.whole else self.rows


def isolation_only(
    *,
    unchanged: frozenset[str],
    again: frozenset[str],
    moved: frozenset[str],
    rows: Mapping[str, frozenset[uuid.UUID]] | None = None,
) -> Only:
    """The cases that read a table not in `unchanged` (or rows nothing records), those named in
    `again`, and the sweeps over every table but the `unchanged` ones, those in `moved` (where rows
    moved to another agency were found before) included. With `rows`, the cases read only those
    rows of the tables it names, except the cases in `again`, which read every row."""
    cases = {name for name, tables in CASE_TABLES.items() if tables is None or not tables <= unchanged}
    return Only(frozenset(cases | set(SWEEPS) | again), unchanged, moved, rows, again)


def policies_row_local(connection: psycopg.Connection) -> bool:
    """Does every policy decide on its own row and the request's claims alone (verify.auth.rows_decide)?
    Then, with the same rules and claims, a row nobody wrote is visible exactly as it was."""
    try:
        return rows_decide(connection)
    finally:
        connection.rollback()


def policies_fingerprint(connection: psycopg.Connection) -> str:
    """A digest of what decides visibility apart from the rows: the policies, each table's RLS flags
    and grants, the roles' memberships and the functions outside the system schemas (auth.jwt(),
    the policies' helpers). Equal digests: the isolation cases see the same rules."""
    row = fetch_row(
        connection.execute(
            """
        SELECT md5(concat_ws('|',
            (SELECT string_agg(concat_ws(',', p.polrelid::regclass::text, p.polname, p.polcmd, p.polpermissive,
                    p.polroles::text, pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)),
                    ';' ORDER BY p.polrelid::regclass::text, p.polname) FROM pg_policy p),
            (SELECT string_agg(concat_ws(',', c.oid::regclass::text, c.relrowsecurity, c.relforcerowsecurity,
                    c.relacl::text), ';' ORDER BY c.oid::regclass::text)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p', 'v') AND n.nspname NOT IN ('pg_catalog', 'information_schema')),
            (SELECT string_agg(concat_ws(',', m.roleid, m.member), ';' ORDER BY m.roleid, m.member)
               FROM pg_auth_members m),
            (SELECT string_agg(concat_ws(',', f.oid::regprocedure::text, md5(f.prosrc), f.prosecdef,
                    f.proconfig::text, f.proacl::text), ';' ORDER BY f.oid::regprocedure::text)
               FROM pg_proc f JOIN pg_namespace n ON n.oid = f.pronamespace
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema'))))
        """
        )
    )
    connection.rollback()
    fingerprint: str = row[0]
    return fingerprint
