"""schema_diff finds every kind of drift between a live database and sql/, and is silent without it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connections

from migration_jobs.etl import capture
from migration_jobs.etl.connections import connect
from migration_jobs.etl.reverse_capture import unified_captured_tables
from migration_jobs.services.schema_diff import schema_diff
from tests.conftest import worker_environment

pytestmark = pytest.mark.django_db(databases=["default", "unified", "revos"], transaction=True)


def execute(database: str, statement: str) -> None:
    with connections[database].cursor() as cursor:
        cursor.execute(statement)


def test_the_databases_sql_built_match_sql():
    assert schema_diff(database="unified") == []
    assert schema_diff(database="revos") == []


DRIFTS = [
    pytest.param(
        "CREATE TABLE public.lead_score (id uuid PRIMARY KEY)",
        "DROP TABLE public.lead_score",
        "unexpected table public.lead_score: the database has rls off, sql/ does not",
        id="table",
    ),
    pytest.param(
        "ALTER TABLE lead ALTER COLUMN name TYPE varchar(250)",
        "ALTER TABLE lead ALTER COLUMN name TYPE varchar(200)",
        "differs    column public.lead.name: sql/ has character varying(200); the database has character varying(250)",
        id="column type",
    ),
    pytest.param(
        "ALTER TABLE lead ALTER COLUMN name SET NOT NULL",
        "ALTER TABLE lead ALTER COLUMN name DROP NOT NULL",
        "differs    column public.lead.name: sql/ has character varying(200); the database has character varying(200)"
        " not null",
        id="column nullability",
    ),
    pytest.param(
        "ALTER TABLE lead DROP CONSTRAINT lead_campaign_id_fkey,"
        " ADD CONSTRAINT lead_campaign_id_fkey FOREIGN KEY (campaign_id) REFERENCES campaign (id)",
        "ALTER TABLE lead DROP CONSTRAINT lead_campaign_id_fkey, ADD CONSTRAINT lead_campaign_id_fkey"
        " FOREIGN KEY (campaign_id, agency_id) REFERENCES campaign (id, agency_id)",
        "differs    constraint public.lead.lead_campaign_id_fkey: sql/ has FOREIGN KEY (campaign_id, agency_id)"
        " REFERENCES campaign(id, agency_id); the database has FOREIGN KEY (campaign_id) REFERENCES campaign(id)",
        id="constraint",
    ),
    pytest.param(
        "DROP INDEX lead_campaign_id_agency_idx",
        "CREATE INDEX lead_campaign_id_agency_idx ON lead (campaign_id, agency_id)",
        "missing    index public.lead.lead_campaign_id_agency_idx: sql/ has CREATE INDEX lead_campaign_id_agency_idx"
        " ON public.lead USING btree (campaign_id, agency_id)",
        id="index",
    ),
    pytest.param(
        "ALTER POLICY lead_tenant ON lead TO authenticated, anon",
        "ALTER POLICY lead_tenant ON lead TO authenticated",
        "differs    policy public.lead.lead_tenant: sql/ has permissive for all to authenticated using",
        id="policy",
    ),
    pytest.param(
        "ALTER TABLE lead DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE lead ENABLE ROW LEVEL SECURITY",
        "differs    table public.lead: sql/ has rls on; the database has rls off",
        id="rls flag",
    ),
    pytest.param(
        "REVOKE DELETE ON lead FROM authenticated",
        "GRANT DELETE ON lead TO authenticated",
        # Default privileges may add more (on Supabase the API roles get all of them).
        "differs    grant public.lead to authenticated: sql/ has DELETE, INSERT, ",
        id="grant",
    ),
]


@pytest.mark.parametrize(("drift", "undo", "reported"), DRIFTS)
def test_each_kind_of_drift_is_reported(drift, undo, reported):
    execute("unified", drift)
    try:
        differences = [str(d) for d in schema_diff(database="unified")]
    finally:
        execute("unified", undo)
    assert [d for d in differences if d.startswith(reported)] == differences[:1], differences
    if differences[0].startswith("unexpected table"):
        # A new table also brings its column, primary key and index, and the grants the project's
        # default privileges give (on Supabase, the API roles'); every other drift is one line.
        kinds = [d.split()[1] for d in differences if d.split()[2].startswith("public.lead_score")]
        assert len(kinds) == len(differences) and set(kinds) == {"table", "column", "constraint", "index"} | (
            {"grant"} if len(differences) > 4 else set()
        ), differences
    else:
        assert len(differences) == 1, differences
    assert schema_diff(database="unified") == [], "the drift was undone"


def query(database: str, statement: str, params=()) -> list[tuple]:
    with connections[database].cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall()


def test_a_changed_function_body_is_reported():
    hook = "public.custom_access_token_hook(jsonb)"
    [(original,)] = query("unified", "SELECT pg_get_functiondef(%s::regprocedure)", [hook])
    changed = original.replace("'audience'", "'revos'")
    assert changed != original
    execute("unified", changed)
    try:
        differences = [str(d) for d in schema_diff(database="unified")]
    finally:
        execute("unified", original)
    assert len(differences) == 1, differences
    assert differences[0].startswith("differs    function public.custom_access_token_hook(jsonb): sql/ has CREATE")
    assert "'revos'" in differences[0].split("the database has", 1)[1]
    assert schema_diff(database="unified") == [], "the function was restored"


def test_a_disabled_trigger_is_reported():
    [(table,)] = query(
        "unified", "SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname = 'app_context_guard' LIMIT 1"
    )
    execute("unified", f"ALTER TABLE {table} DISABLE TRIGGER app_context_guard")
    try:
        [disabled] = schema_diff(database="unified")
    finally:
        execute("unified", f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER app_context_guard")
    assert (disabled.kind, disabled.name) == ("trigger", f"public.{table}.app_context_guard")
    assert disabled.expected.endswith(" (enabled always)") and disabled.actual.endswith(" (disabled)")
    assert disabled.expected.removesuffix(" (enabled always)") == disabled.actual.removesuffix(" (disabled)")
    assert schema_diff(database="unified") == [], "the trigger was enabled again"


def test_the_capture_triggers_are_expected_once_attached_and_a_dropped_or_disabled_one_is_reported():
    tables = unified_captured_tables()
    with connect("unified", purpose="test") as connection:
        capture.capture_triggers_install(connection, tables=tables)
    try:
        assert schema_diff(database="unified") == [], "every capture trigger as etl/capture.py makes it"
        execute("unified", "ALTER TABLE lead DISABLE TRIGGER controlplane_capture_delete")
        execute("unified", "DROP TRIGGER controlplane_capture ON auth.users")
        differences = [str(d) for d in schema_diff(database="unified")]
    finally:
        with connect("unified", purpose="test") as connection:
            capture.capture_triggers_remove(connection, tables=tables)
    assert len(differences) == 2, differences
    assert differences[0].startswith("missing    trigger auth.users.controlplane_capture: sql/ has CREATE TRIGGER")
    assert differences[1].startswith("differs    trigger public.lead.controlplane_capture_delete: ")
    assert "(enabled always); the database has " in differences[1] and differences[1].endswith("(disabled)")
    assert schema_diff(database="unified") == [], "without capture triggers none is expected"


def test_views_and_types_are_compared():
    execute("unified", "CREATE TYPE public.lead_grade AS ENUM ('a', 'b')")
    execute("unified", "CREATE VIEW public.lead_names AS SELECT id, name FROM lead")
    try:
        added = [str(d) for d in schema_diff(database="unified")]
    finally:
        execute("unified", "DROP VIEW public.lead_names")
        execute("unified", "DROP TYPE public.lead_grade")
    assert "unexpected type public.lead_grade: the database has enum ('a', 'b'), sql/ does not" in added
    view = [d for d in added if d.startswith("unexpected view public.lead_names: the database has view:")]
    assert len(view) == 1 and "FROM lead" in view[0], added
    # Anything else is the view's grants (default privileges, on Supabase).
    others = [d for d in added if d not in view and not d.startswith("unexpected type public.lead_grade:")]
    assert all(d.startswith("unexpected grant public.lead_names to ") for d in others), added


def schema_diff_command(database: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "schema_diff", "--database", database]
    return subprocess.run(command, env=worker_environment(), capture_output=True, text=True, timeout=120, check=False)


def test_command_exits_1_and_prints_each_difference_then_0_once_repaired():
    execute("revos", "ALTER TABLE leads ADD COLUMN score integer")
    try:
        result = schema_diff_command("revos")
    finally:
        execute("revos", "ALTER TABLE leads DROP COLUMN score")
    assert result.returncode == 1, result.stderr
    assert "unexpected column public.leads.score: the database has integer, sql/ does not" in result.stdout
    assert "revos: 1 difference(s) from sql/revos/." in result.stderr
    repaired = schema_diff_command("revos")
    assert (repaired.returncode, repaired.stdout.strip()) == (0, "revos: matches sql/revos/."), repaired.stderr


def test_command_exits_2_when_it_cannot_compare():
    result = subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "schema_diff", "--database", "unified"],
        env=worker_environment(UNIFIED_DATABASE_URL="postgres://postgres@127.0.0.1:1/nowhere"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "nowhere" in result.stderr and "Traceback" not in result.stderr
