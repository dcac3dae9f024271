"""Every path a write can take past the capture and the fence: cascades, replica-mode sessions,
other triggers, triggers dropped or disabled, tables nobody mapped.

Real RevOS and unified test databases and real RQ workers, as in tests/test_cutover.py (whose
fixtures and helpers these tests share). Which cascading keys RevOS has is read from its catalog,
not listed here: every ON DELETE CASCADE and SET NULL key the schema declares is exercised.
"""

# ruff: noqa: F811  (the fixture `agencies` is imported from test_cutover; tests take it by name)
from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, InternalError

from migration_jobs.etl import capture
from migration_jobs.etl.connections import connect
from migration_jobs.etl.reverse_capture import unified_captured_tables
from migration_jobs.models import MigrationRun
from migration_jobs.services.runs import migration_run_request
from tests.conftest import childless_leads, database_url, run_worker
from tests.test_cutover import (  # noqa: F401
    FENCE_ERROR,
    agencies,
    cut_over,
    migrate,
    revos,
    revos_write_error,
    verified,
)

Status, Kind = MigrationRun.Status, MigrationRun.Kind


def cascading_keys() -> list[tuple[str, str, str, str]]:
    """(child table, column, parent table, 'CASCADE' or 'SET NULL') of every such RevOS key."""
    return [
        tuple(row)
        for row in revos(
            "SELECT c.relname, a.attname, p.relname, CASE k.confdeltype WHEN 'c' THEN 'CASCADE' ELSE 'SET NULL' END"
            " FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.conkey[1]"
            " WHERE k.contype = 'f' AND k.confdeltype IN ('c', 'n') ORDER BY 1, 2"
        )
    ]


def verification_passes(link) -> None:
    from migration_jobs.models import VerificationRun

    verified(link)
    verification = VerificationRun.objects.filter(agency_link=link).order_by("-pk").first()
    failed = [str(result) for result in verification.results.exclude(status="pass")]
    assert verification.verdict == VerificationRun.Verdict.PASS, failed


# --- cascades ------------------------------------------------------------------------------------


def test_the_demo_revos_schema_has_cascading_and_set_null_keys_two_levels_deep(tenant_db):
    keys = cascading_keys()
    assert {rule for *_, rule in keys} == {"CASCADE", "SET NULL"}
    cascades = {(child, parent) for child, _, parent, rule in keys if rule == "CASCADE"}
    # A chain: a parent whose cascading child is itself the parent of a cascading child.
    assert any((grandchild, child) in cascades for child, parent in cascades for grandchild, _ in cascades)


def test_every_cascading_delete_is_captured_and_the_catch_up_brings_unified_level(agencies):
    link, _ = agencies
    agency = link.revos_agency_id
    keys = cascading_keys()
    others_before = revos("SELECT count(*) FROM controlplane.change_log WHERE agency_id <> %s", [agency])[0][0]
    changed: dict[str, set] = {}  # child table -> its rows a cascade deleted or set to NULL
    for parent in sorted({parent for _, _, parent, _ in keys}):
        children = [(child, column) for child, column, key_parent, _ in keys if key_parent == parent]
        for victim in sorted(agency_rows(parent, agency)):
            referencing = {
                child: {row[0] for row in revos(f"SELECT id FROM {child} WHERE {column} = %s", [victim])}
                for child, column in children
            }
            if not any(referencing.values()):
                continue
            try:  # a key that neither cascades nor sets NULL may hold this row: try the next one
                revos(f"DELETE FROM {parent} WHERE id = %s", [victim])
            except IntegrityError:
                continue
            for child, ids in referencing.items():
                changed.setdefault(child, set()).update(ids)
            break
    cascaded = {child for child, ids in changed.items() if ids}
    # One level (pods -> members), a cascade then SET NULL (posts -> comments -> processed comments).
    assert {"comments", "pod_members", "skill_executions", "processed_comments"} <= cascaded, changed
    recorded = revos("SELECT table_name, row_id FROM controlplane.change_log WHERE agency_id = %s", [agency])
    for child, ids in changed.items():
        assert ids <= {row for table, row in recorded if table == child}, f"{child}: a cascade went unrecorded"
    assert revos("SELECT count(*) FROM controlplane.change_log WHERE agency_id <> %s", [agency])[0][0] == others_before
    migrate(link)
    verification_passes(link)


def agency_rows(table: str, agency) -> set:
    """Ids of the agency's rows of a RevOS table, through the capture's path to its agency."""
    agency_path = next(t.agency_path for t in capture.revos_captured_tables() if t.name == table)
    joins, column, alias = [], agency_path[0], "t"
    for hop, (parent, parent_column) in enumerate(zip(agency_path[1::2], agency_path[2::2], strict=True)):
        joins.append(f"JOIN {parent} p{hop} ON p{hop}.id = {alias}.{column}")
        alias, column = f"p{hop}", parent_column
    rows = revos(f"SELECT t.id FROM {table} t {' '.join(joins)} WHERE {alias}.{column} = %s", [agency])
    return {row[0] for row in rows}


# --- sessions and triggers that would go around the capture ------------------------------------


def fence(link) -> None:
    with connect("revos") as control:
        capture.fence_set(
            control, agency_id=link.revos_agency_id, owner="test", message=f'Agency "{link.name}" {FENCE_ERROR}'
        )


def test_a_replica_mode_session_is_recorded_and_fenced(agencies):
    link, other = agencies
    lead = sorted(agency_rows("leads", link.revos_agency_id))[0]
    with psycopg.connect(database_url("revos"), autocommit=True) as session:
        session.execute("SET session_replication_role = replica")
        session.execute("UPDATE leads SET name = 'replica write' WHERE id = %s", [lead])
        assert revos("SELECT op FROM controlplane.change_log WHERE row_id = %s", [lead]) == [("U",)]
        fence(link)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match=FENCE_ERROR):
            session.execute("UPDATE leads SET name = 'past the fence' WHERE id = %s", [lead])
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match=FENCE_ERROR):
            session.execute("DELETE FROM leads WHERE id = %s", [lead])
        other_lead = sorted(agency_rows("leads", other.revos_agency_id))[0]
        session.execute("UPDATE leads SET name = 'other agency' WHERE id = %s", [other_lead])
    assert revos("SELECT name FROM leads WHERE id = %s", [lead]) == [("replica write",)]


def test_a_before_trigger_that_runs_after_the_capture_cannot_move_a_row_past_the_fence(agencies):
    link, other = agencies
    fence(link)
    # Named to sort after the capture's triggers; moves every new lead into the fenced agency.
    revos(
        "CREATE FUNCTION zz_move() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$ BEGIN NEW.agency_id := '{link.revos_agency_id}'; RETURN NEW; END $$"
    )
    revos("CREATE TRIGGER zz_move BEFORE INSERT OR UPDATE ON leads FOR EACH ROW EXECUTE FUNCTION zz_move()")
    try:
        with pytest.raises(InternalError, match=FENCE_ERROR):  # Django's name for read_only_sql_transaction
            revos("INSERT INTO leads (agency_id, name) VALUES (%s, 'sneaked in')", [other.revos_agency_id])
        assert revos("SELECT count(*) FROM leads WHERE name = 'sneaked in'") == [(0,)]
    finally:
        revos("DROP TRIGGER zz_move ON leads")
        revos("DROP FUNCTION zz_move()")


@pytest.mark.parametrize(
    ("breakage", "problem"),
    [
        ("ALTER TABLE comments DISABLE TRIGGER controlplane_capture", "controlplane_capture is disabled"),
        ("DROP TRIGGER controlplane_capture_delete ON comments", "controlplane_capture_delete is missing"),
        # ENABLE (not ALWAYS): a replica-mode session would write unrecorded.
        (
            "ALTER TABLE comments ENABLE TRIGGER controlplane_capture",
            "controlplane_capture does not fire in replica-mode sessions",
        ),
    ],
)
def test_a_dropped_or_disabled_capture_trigger_stops_verification_cutover_and_catch_up(agencies, breakage, problem):
    link, _ = agencies
    verification_passes(link)
    revos(breakage)  # after the verification passed: the cutover's own preflight sees it
    cutover = cut_over(link)
    assert cutover.status == Status.FAILED and f"comments: {problem}" in cutover.error, cutover.error
    assert revos_write_error(link.revos_agency_id) is None, "refused before the fence"
    verification = verified(link).verifications.order_by("-pk").first()
    failed = verification.results.get(check_name="capture.triggers_in_place")
    assert failed.status == "fail" and f"RevOS comments: {problem}" in failed.actual
    catch_up = migration_run_request(link=link, kind=Kind.MIGRATE, actor=None)
    run_worker("migrations")
    catch_up.refresh_from_db()
    assert catch_up.status == Status.FAILED and f"comments: {problem}" in catch_up.error, catch_up.error
    assert "migrate_agency --full" in catch_up.error
    # A full read re-installs the triggers, and the agency's next catch-up reads the capture again.
    migrate(link, full_reread=True)
    with connect("revos") as control:
        assert capture.capture_triggers_problems(control, tables=capture.revos_captured_tables()) == {}
    assert migrate(link).status_note.startswith("Caught up from the RevOS change capture")
    verification_passes(link)


def test_the_unified_side_checks_its_triggers_too(agencies):
    link, _ = agencies
    with connect("unified") as connection:
        # As after a cutover: the agency's unified writes are captured, for a switch back.
        capture.capture_register(
            connection,
            agency_id=link.unified_agency_id,
            agency_name=link.name,
            tables=unified_captured_tables(),
            wait_seconds=10,
        )
        connection.execute("ALTER TABLE lead DISABLE TRIGGER controlplane_capture")
        connection.commit()
        with pytest.raises(capture.CaptureBroken, match="lead: controlplane_capture is disabled"):
            capture.capture_triggers_verify(connection, tables=unified_captured_tables(), database="unified")
        with pytest.raises(capture.CaptureBroken):  # nothing repairs it silently while an agency relies on it
            capture.capture_triggers_install(connection, tables=unified_captured_tables())
        capture.capture_triggers_install(connection, tables=unified_captured_tables(), repair=True)
        assert capture.capture_triggers_problems(connection, tables=unified_captured_tables()) == {}


def test_a_revos_table_nobody_mapped_stops_the_migration(agencies):
    link, _ = agencies
    revos("CREATE TABLE outreach_notes (id uuid PRIMARY KEY, agency_id uuid REFERENCES agencies (id))")
    try:
        run = migration_run_request(link=link, kind=Kind.MIGRATE, actor=None)
        run_worker("migrations")
        run.refresh_from_db()
        assert run.status == Status.FAILED and "outreach_notes" in run.error, run.error
        assert "NOT_MIGRATED" in run.error
    finally:
        revos("DROP TABLE outreach_notes")


# --- the unified copy ----------------------------------------------------------------------------


def test_every_unified_table_with_app_context_guards_it_always(tenant_db):
    with connect("unified") as connection:
        tables = connection.execute(
            "SELECT c.relname, t.tgenabled FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'app_context' AND NOT a.attisdropped"
            " LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname = 'app_context_guard'"
            " WHERE n.nspname = 'public' AND c.relkind = 'r'"
        ).fetchall()
    assert len(tables) > 30 and all(enabled == "A" for _, enabled in tables), tables


def test_an_app_cannot_change_a_shared_rows_app_context_but_the_control_plane_can(agencies):
    link, _ = agencies
    with connect("unified") as connection:
        client = connection.execute(
            "SELECT id FROM client WHERE agency_id = %s AND app_context = 'both' LIMIT 1", [link.unified_agency_id]
        ).fetchone()[0]
        connection.commit()
        for app in ("audience", "revos"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cannot be changed by the apps"):
                as_app(connection, link.unified_agency_id, app, "UPDATE client SET app_context = %s WHERE id = %s",
                       [app, client])  # fmt: skip
            # Any other column of the shared row stays the apps' to change.
            as_app(connection, link.unified_agency_id, app, "UPDATE client SET name = name WHERE id = %s", [client])
        connection.commit()
    # Staff can, through the control plane: with a reason, recorded where both apps read it.
    out = io.StringIO()
    call_command("set_app_context", "client", str(client), "revos", "--reason", "RevOS only", "--by", "ops", stdout=out)
    assert "app_context both -> revos" in out.getvalue()
    with connect("unified") as connection:
        assert connection.execute("SELECT app_context FROM client WHERE id = %s", [client]).fetchone() == ("revos",)
        audit = connection.execute(
            "SELECT details FROM audit_log WHERE entity_table = 'client' AND entity_id = %s", [client]
        ).fetchone()[0]
    assert audit == {"from": "both", "to": "revos", "reason": "RevOS only", "by": "ops"}
    refusals = {
        ("nosuchtable", str(client), "both"): "no table 'nosuchtable' with an app_context column",
        ("client", str(client), "everyone"): "app_context must be one of",
        ("client", "not-a-uuid", "both"): "is not a row id",
        ("client", str(uuid.uuid4()), "both"): "client has no row",
    }
    for args, said in refusals.items():
        with pytest.raises(CommandError, match=said):
            call_command("set_app_context", *args, "--reason", "x")
    with pytest.raises(CommandError, match="needs a reason"):
        call_command("set_app_context", "client", str(client), "both", "--reason", " ")
    # A row that came from RevOS, while RevOS holds the agency's data: the next catch-up would undo it.
    with connect("unified") as connection:
        migrated = connection.execute(
            "SELECT target_id FROM controlplane.id_map WHERE agency_id = %s AND target_table = 'lead' AND inserted"
            " LIMIT 1",
            [link.revos_agency_id],
        ).fetchone()[0]
    with pytest.raises(CommandError, match="the next catch-up would set its app_context back"):
        call_command("set_app_context", "lead", str(migrated), "both", "--reason", "x")


def as_app(connection: psycopg.Connection, agency_id, app: str, statement: str, params: list) -> None:
    """One statement of an app on the unified database: role authenticated, the agency's JWT."""
    with connection.transaction():
        connection.execute("SET LOCAL ROLE authenticated")
        connection.execute(
            "SELECT set_config('request.jwt.claims', %s, true)",
            [json.dumps({"agency_id": str(agency_id), "app_context": app, "role": "authenticated"})],
        )
        connection.execute(statement, params)


def test_the_reverse_capture_runs_the_same_functions_as_the_revos_capture():
    from django.conf import settings

    root = Path(settings.BASE_DIR) / "sql"
    pairs = [("revos/0002_change_capture.sql", "unified/0030_reverse_capture.sql")]
    pairs.append(("revos/0003_capture_final_values.sql", "unified/0032_reverse_capture_final_values.sql"))
    pairs.append(("revos/0031_capture_fast_path.sql", "unified/0063_reverse_capture_fast_path.sql"))
    for revos_file, unified_file in pairs:
        # Alike but for the line that names the other file.
        revos_lines = [line for line in (root / revos_file).read_text().splitlines() if ".sql is this file" not in line]
        unified_lines = [
            line for line in (root / unified_file).read_text().splitlines() if ".sql is this file" not in line
        ]
        assert revos_lines == unified_lines, (revos_file, unified_file)


@pytest.fixture
def merged(tenant_db, rq_queues):
    """An agency merged into its AudienceOS self, migrated (RevOS holds its truth), and its unified id."""
    from migration_jobs.demo.demo import demo_data_seed
    from migration_jobs.models import AgencyLink
    from migration_jobs.models.flags import FeatureFlag
    from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync

    FeatureFlag.objects.update_or_create(
        name="unified_db", defaults={"requires_verification": True, "enabled_globally": False, "rollout_percentage": 0}
    )
    demo_data_seed(agencies=3, scale=1, seed=5)
    agency_links_sync()
    link = AgencyLink.objects.filter(suggested_kind=AgencyLink.Kind.EXISTING).order_by("name").first()
    link = agency_link_confirm(
        link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None
    )
    migrate(link)
    return link


def test_the_unified_copies_are_read_only_for_the_apps_until_the_cutover(merged, client, settings):
    link, agency = merged, merged.unified_agency_id
    settings.FLAGS_API_TOKEN = "token"
    answer = client.get(f"/api/flags/{link.revos_agency_id}/", HTTP_AUTHORIZATION="Bearer token").json()
    assert answer["unified_copy_read_only"] is True and answer["revos_read_only"] is False
    # A lead nothing references: deleting one with children fails their foreign key before the guard.
    childless = childless_leads(agency, count=10_000)
    with connect("unified") as connection:
        migrated_lead, migrated_client = (
            connection.execute(
                "SELECT target_id FROM controlplane.id_map WHERE agency_id = %s AND target_table = %s AND inserted"
                " AND (target_table <> 'lead' OR target_id = ANY(%s)) ORDER BY target_id LIMIT 1",
                [link.revos_agency_id, table, childless],
            ).fetchone()[0]
            for table in ("lead", "client")
        )
        reused_client = connection.execute(
            "SELECT target_id FROM controlplane.id_map WHERE agency_id = %s AND target_table = 'client'"
            " AND NOT inserted LIMIT 1",
            [link.revos_agency_id],
        ).fetchone()
        connection.commit()
        refused = {
            "update of a migrated lead": ("UPDATE lead SET name = 'x' WHERE id = %s", [migrated_lead]),
            "delete of a migrated lead": ("DELETE FROM lead WHERE id = %s", [migrated_lead]),
            "update of a migrated client": ("UPDATE client SET name = name WHERE id = %s", [migrated_client]),
            "a new RevOS-only row": ("INSERT INTO lead (agency_id, name) VALUES (%s, 'new')", [agency]),
            # An app's own SECURITY DEFINER function writes as its owner, for the app's role.
            "an app function's update": ("SELECT public.test_lead_rename(%s)", [migrated_lead]),
        }
        connection.execute(
            "CREATE OR REPLACE FUNCTION public.test_lead_rename(lead_id uuid) RETURNS void LANGUAGE sql"
            " SECURITY DEFINER SET search_path = pg_catalog"
            " AS $$ UPDATE public.lead SET name = 'renamed' WHERE id = lead_id $$"
        )
        connection.execute("GRANT EXECUTE ON FUNCTION public.test_lead_rename(uuid) TO authenticated")
        connection.commit()
        # The guard's own trigger decides, until the reverse capture's triggers are on the table (a
        # cutover installs them): then their function does, in the same call (sql/unified/0066).
        tables = unified_captured_tables()
        found_installed = capture.TRIGGER in capture_trigger_names(connection, table="lead")
        capture.capture_triggers_remove(connection, tables=tables)  # an earlier test's cutover installs them
        for guard_trigger_enabled in (True, False):
            if not guard_trigger_enabled:
                capture.capture_triggers_install(connection, tables=tables)
            assert guard_triggers_enabled(connection) == {
                "lead": guard_trigger_enabled,
                "client": guard_trigger_enabled,
            }
            for statement, params in refused.values():
                with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="lives in RevOS until its cutover"):
                    as_app(connection, agency, "revos", statement, params)
                connection.rollback()
            # AudienceOS's own rows of the agency, and its new shared rows, stay the apps' to write.
            if reused_client:
                as_app(
                    connection, agency, "audience", "UPDATE client SET name = name WHERE id = %s", [reused_client[0]]
                )
            as_app(
                connection,
                agency,
                "audience",
                "INSERT INTO client (agency_id, name) VALUES (%s, 'New client')",
                [agency],
            )
            # The control plane writes through (a catch-up brings these rows level).
            connection.execute("UPDATE lead SET name = name WHERE id = %s", [migrated_lead])
            connection.commit()
        connection.execute("DROP FUNCTION public.test_lead_rename(uuid)")
        connection.commit()
        if not found_installed:  # as the other tests found the database
            capture.capture_triggers_remove(connection, tables=tables)
            assert guard_triggers_enabled(connection) == {"lead": True, "client": True}


def capture_trigger_names(connection: psycopg.Connection, *, table: str) -> set[str]:
    rows = connection.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass", [table]).fetchall()
    connection.commit()
    return {row[0] for row in rows}


def guard_triggers_enabled(connection: psycopg.Connection) -> dict[str, bool]:
    rows = connection.execute(
        "SELECT tgrelid::regclass::text, tgenabled = 'A' FROM pg_trigger"
        " WHERE tgname = %s AND tgrelid IN ('lead'::regclass, 'client'::regclass)",
        [capture.GUARD_TRIGGER],
    ).fetchall()
    connection.commit()
    return dict(rows)


LOOK_ALIKES = """
CREATE SCHEMA lookalike;
CREATE FUNCTION lookalike.current_setting(a text) RETURNS text LANGUAGE sql AS $$ SELECT 'postgres' $$;
CREATE FUNCTION lookalike.to_jsonb(a anyelement) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
"""
LOOK_ALIKE_OPERATORS = [  # each answers false
    ("=", "text", "text"),
    ("=", "uuid", "uuid"),
    ("=", "jsonb", "jsonb"),
    ("=", "text[]", "text[]"),
    ("=", "name", "text"),
    ("=", "name", "name"),
    ("<>", "text", "text"),
    ("~~", "text", "text"),
]


def test_a_caller_s_look_alike_operators_do_not_stand_in_for_the_unified_trigger_s(merged):
    """The unified trigger function runs as its owner (sql/unified/0066): a caller whose search_path
    starts with a schema of operators and functions named like the ones it uses is guarded, recorded
    and fenced all the same (its own search_path holds; without it, the function would have to name
    every operator OPERATOR(pg_catalog.x), and this test catches one left unqualified)."""
    link, agency = merged, merged.unified_agency_id
    with connect("unified") as connection:
        capture.capture_triggers_install(connection, tables=unified_captured_tables())
        connection.execute(LOOK_ALIKES)
        for number, (operator, left, right) in enumerate(LOOK_ALIKE_OPERATORS):
            connection.execute(
                f"CREATE FUNCTION lookalike.no_{number}(a {left}, b {right}) RETURNS boolean LANGUAGE sql"
                " AS 'SELECT false'"
            )
            connection.execute(
                f"CREATE OPERATOR lookalike.{operator} (LEFTARG = {left}, RIGHTARG = {right},"
                f" FUNCTION = lookalike.no_{number})"
            )
        connection.execute("GRANT USAGE ON SCHEMA lookalike TO authenticated")
        migrated_lead = connection.execute(
            "SELECT target_id FROM controlplane.id_map WHERE agency_id = %s AND target_table = 'lead' AND inserted"
            " AND target_id = ANY(%s) LIMIT 1",
            [link.revos_agency_id, childless_leads(agency, count=10_000)],
        ).fetchone()[0]
        connection.commit()

        def as_app_looking_alike(statement: str, params: list) -> None:
            with connection.transaction():
                connection.execute("SET LOCAL search_path = lookalike, pg_catalog, public")
                # The look-alikes are what an unqualified name finds here: the test can fail.
                assert connection.execute("SELECT 'a' = 'a', current_setting('role')").fetchone() == (False, "postgres")
                as_app(connection, agency, "revos", statement, params)

        rename = "UPDATE public.lead SET name = 'renamed' WHERE id OPERATOR(pg_catalog.=) %s"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="lives in RevOS until its cutover"):
            as_app_looking_alike(rename, [migrated_lead])
        connection.rollback()
        # Cut over (no guard, captured): the write is recorded; fenced: refused.
        connection.execute("DELETE FROM controlplane.agency_guard WHERE agency_id = %s", [agency])
        connection.execute(
            "INSERT INTO controlplane.capture_agency (agency_id, agency_name) VALUES (%s, 'look-alikes')", [agency]
        )
        connection.commit()
        as_app_looking_alike(rename, [migrated_lead])
        assert connection.execute(
            "SELECT count(*) FROM controlplane.change_log WHERE agency_id = %s AND row_id = %s AND table_name = 'lead'",
            [agency, migrated_lead],
        ).fetchone() == (1,)
        capture.fence_set(connection, agency_id=agency, owner="test", message="fenced for the look-alike test")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="fenced for the look-alike test"):
            as_app_looking_alike(rename, [migrated_lead])
        connection.rollback()
        connection.execute("DROP SCHEMA lookalike CASCADE")
        capture.capture_remove(connection, agency_id=agency)
        connection.commit()


def test_a_rollback_takes_the_guard_with_the_copy(merged, client, settings):
    link, agency = merged, merged.unified_agency_id
    new_lead = ("INSERT INTO lead (agency_id, name) VALUES (%s, 'after the rollback')", [agency])
    with connect("unified") as connection:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="lives in RevOS until its cutover"):
            as_app(connection, agency, "revos", *new_lead)
        connection.rollback()
    rollback = migration_run_request(link=link, kind=Kind.ROLLBACK, actor=None)
    run_worker("migrations")
    rollback.refresh_from_db()
    assert rollback.status == Status.SUCCEEDED, rollback.error
    settings.FLAGS_API_TOKEN = "token"
    answer = client.get(f"/api/flags/{link.revos_agency_id}/", HTTP_AUTHORIZATION="Bearer token").json()
    assert answer["unified_copy_read_only"] is False
    with connect("unified") as connection:
        as_app(connection, agency, "revos", *new_lead)  # nothing of RevOS's is here to protect any more
        assert connection.execute(
            "SELECT count(*) FROM controlplane.agency_guard WHERE agency_id = %s", [agency]
        ).fetchone() == (0,)


def test_staff_set_which_app_sees_a_row_from_its_admin_page_with_a_reason(merged):
    from django.contrib.auth.models import Permission
    from django.urls import reverse

    from tests.test_admin_permissions import staff

    link, agency = merged, merged.unified_agency_id
    with connect("unified") as connection:
        migrated_lead = connection.execute(
            "SELECT target_id FROM controlplane.id_map WHERE agency_id = %s AND target_table = 'lead' AND inserted"
            " LIMIT 1",
            [link.revos_agency_id],
        ).fetchone()[0]
        own_client = connection.execute(
            "INSERT INTO client (agency_id, name, app_context) VALUES (%s, 'AudienceOS client', 'audience')"
            " RETURNING id",
            [agency],
        ).fetchone()[0]
        connection.commit()

    def app_context(table: str, row) -> str:
        with connect("unified") as connection:
            return connection.execute(f"SELECT app_context FROM {table} WHERE id = %s", [row]).fetchone()[0]

    page, button = (
        reverse(f"admin:migration_jobs_client_{name}", args=[own_client]) for name in ("change", "app_context")
    )
    viewer, _ = staff(permissions=Permission.objects.filter(codename="view_client"))
    assert "set-app-context" not in viewer.get(page).content.decode()
    refused = viewer.post(button, {"app_context": "both", "reason": "shared"}, follow=True).content.decode()
    assert "You may not change which app sees a row." in refused and app_context("client", own_client) == "audience"

    deciders = Permission.objects.filter(codename__in=("view_client", "view_lead", "set_app_context"))
    decider, decider_user = staff(permissions=deciders)
    assert 'id="set-app-context"' in decider.get(page).content.decode()
    assert decider.get(button).status_code == 405  # a button's URL, not a page
    blank = decider.post(button, {"app_context": "both", "reason": "  "}, follow=True).content.decode()
    assert "Refused:" in blank and app_context("client", own_client) == "audience"
    done = decider.post(button, {"app_context": "both", "reason": "both teams work it"}, follow=True)
    assert "app_context audience -&gt; both" in done.content.decode() and app_context("client", own_client) == "both"
    with connect("unified") as connection:
        assert connection.execute(
            "SELECT details->>'reason', details->>'by' FROM audit_log WHERE entity_id = %s", [own_client]
        ).fetchone() == ("both teams work it", decider_user.username)
    # A row RevOS still holds the truth of: the service refuses, the admin says why.
    lead_button = reverse("admin:migration_jobs_lead_app_context", args=[migrated_lead])
    held = decider.post(lead_button, {"app_context": "audience", "reason": "x"}, follow=True).content.decode()
    assert "came from RevOS" in held and app_context("lead", migrated_lead) != "audience"
