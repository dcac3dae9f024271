"""The apps' own triggers on the unified tables (Supabase's `handle_new_user` on auth.users, ...):
the plan lists them, and a migration's copies do not fire them, so it makes no extra rows."""

from __future__ import annotations

import uuid

import pytest
from django.db import connections
from django.urls import reverse

from migration_jobs.etl.catalog import catalog_read
from migration_jobs.etl.connections import connect
from migration_jobs.models import MigrationRun
from tests.conftest import agency_checksums
from tests.test_migration import clean_run_checksums, migrate, revos, shared_agency  # noqa: F401 (a fixture)

Status = MigrationRun.Status

# What a Supabase app keeps: a profile row for each new account, and a trigger on a public table.
# They record what fires them in a schema of their own, so any row they make is counted.
APP_TRIGGERS_SQL = [
    "CREATE SCHEMA app_probe",
    "CREATE TABLE app_probe.fired (n bigserial PRIMARY KEY, table_name text, row_id uuid, op text)",
    """CREATE FUNCTION app_probe.handle_new_user() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
       AS $$ BEGIN INSERT INTO app_probe.fired (table_name, row_id, op) VALUES (TG_TABLE_NAME, NEW.id, TG_OP);
       RETURN NEW; END $$""",
    "CREATE TRIGGER on_auth_user_created AFTER INSERT OR UPDATE ON auth.users"
    " FOR EACH ROW EXECUTE FUNCTION app_probe.handle_new_user()",
    "CREATE TRIGGER lead_touched AFTER INSERT OR UPDATE ON public.lead"
    " FOR EACH ROW EXECUTE FUNCTION app_probe.handle_new_user()",
]


def unified(statement: str, params=()):
    with connections["unified"].cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else None


@pytest.fixture
def app_triggers(shared_agency):  # noqa: F811 (the fixture imported above)
    """The shared demo agency, with the triggers installed once a reference run took its checksums."""
    yield shared_agency
    with connect("unified", autocommit=True) as connection:
        connection.execute("DROP TRIGGER IF EXISTS on_auth_user_created ON auth.users")
        connection.execute("DROP TRIGGER IF EXISTS lead_touched ON public.lead")
        connection.execute("DROP SCHEMA IF EXISTS app_probe CASCADE")


def triggers_install() -> None:
    with connect("unified") as connection:
        for statement in APP_TRIGGERS_SQL:
            connection.execute(statement)
        connection.commit()


def fired() -> list[tuple]:
    return unified("SELECT table_name, op FROM app_probe.fired ORDER BY n")


def test_the_apps_triggers_fire_for_the_apps_writes(app_triggers):
    """The probe works: an app's own insert fires it (so an empty `fired` below means the copy did not)."""
    triggers_install()
    account = uuid.uuid4()
    unified("INSERT INTO auth.users (id, email) VALUES (%s, %s)", [account, f"{account}@example.com"])
    assert fired() == [("users", "INSERT")]


def test_a_migration_with_the_apps_triggers_writes_exactly_the_rows_it_writes_without_them(app_triggers):
    link = app_triggers
    reference = clean_run_checksums(link)
    triggers_install()
    run = migrate(link)
    assert run.status == Status.SUCCEEDED, run.error
    assert agency_checksums(link.unified_agency_id) == reference
    assert fired() == []
    # Upserts of rows written before (a changed account, a new lead of a table already copied) too.
    account = revos(
        "SELECT a.id FROM auth.users a JOIN users u ON u.id = a.id WHERE u.agency_id = %s ORDER BY a.id LIMIT 1",
        [link.revos_agency_id],
    )[0][0]
    revos("UPDATE auth.users SET raw_user_meta_data = '{\"probe\": 1}' WHERE id = %s", [account])
    campaign = revos("SELECT id FROM campaigns WHERE agency_id = %s LIMIT 1", [link.revos_agency_id])[0][0]
    new_lead = uuid.uuid4()
    revos(
        "INSERT INTO leads (id, agency_id, campaign_id, name, status) VALUES (%s, %s, %s, 'Newcomer', 'new')",
        [new_lead, link.revos_agency_id, campaign],
    )
    run = migrate(link)
    assert run.status == Status.SUCCEEDED, run.error
    assert unified("SELECT raw_user_meta_data ->> 'probe' FROM auth.users WHERE id = %s", [account]) == [("1",)]
    assert unified("SELECT count(*) FROM lead WHERE id = %s", [new_lead]) == [(1,)]
    assert fired() == []


def test_the_plan_lists_the_apps_triggers_and_what_the_migration_does_with_them(app_triggers, settings, admin_client):
    triggers_install()
    run = migrate(app_triggers, kind=MigrationRun.Kind.PLAN)
    assert run.status == Status.SUCCEEDED, run.error
    page = admin_client.get(reverse("admin:migration_jobs_agencylink_change", args=[app_triggers.pk])).content.decode()
    assert "The apps' own triggers on the target tables: 2" in page
    assert "on_auth_user_created" in page and "app_probe.handle_new_user" in page
    listed = {(t["table"], t["trigger"]): t for t in run.report["app_triggers"]}
    assert set(listed) == {("auth.users", "on_auth_user_created"), ("lead", "lead_touched")}
    handle_new_user = listed[("auth.users", "on_auth_user_created")]
    assert handle_new_user["function"] == "app_probe.handle_new_user"
    assert handle_new_user["events"] == "AFTER INSERT OR UPDATE"
    assert handle_new_user["handling"].startswith("off for the copy's inserts and updates")
    assert not handle_new_user["fires"]
    # Where the copy keeps the row triggers, the plan says the apps' triggers fire.
    settings.MIGRATION_SET_BASED_FK_CHECKS = False
    run = migrate(app_triggers, kind=MigrationRun.Kind.PLAN)
    assert all(t["fires"] and t["handling"].startswith("FIRES") for t in run.report["app_triggers"])


def test_an_always_enabled_app_trigger_keeps_its_table_on_the_row_triggers(tenant_db):
    """Replica mode cannot silence an ENABLE ALWAYS trigger, so such a table is not copied in it."""
    with connect("unified") as connection:  # DDL is transactional: the rollback leaves nothing behind
        for statement in APP_TRIGGERS_SQL:
            connection.execute(statement)
        quiet = catalog_read(connection)
        connection.execute("ALTER TABLE public.lead ENABLE ALWAYS TRIGGER lead_touched")
        loud = catalog_read(connection)
        connection.rollback()
    assert {"auth.users", "lead"} <= quiet.set_checkable
    assert "lead" not in loud.set_checkable and "auth.users" in loud.set_checkable
    assert [t.enabled for t in loud.app_triggers["lead"]] == ["A"]
