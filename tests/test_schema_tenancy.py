"""Table categories are data: every unified table is declared once, and the schema files refuse to
run (plan included) on a database with a table the declaration does not know or one without its
tenant key, before changing anything. The plan also says what each pending file will lock."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from migration_jobs import tenancy
from migration_jobs.services.schema import SchemaError, schema_apply, schema_plan
from migration_jobs.services.schema_scratch import schema_lock_plan
from migration_jobs.tenancy import TABLES, Category, TenantTable

pytestmark = pytest.mark.django_db(databases=["default", "unified"], transaction=True)


def execute(statement: str, params=None) -> list[tuple]:
    with connections["unified"].cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def test_every_unified_table_is_declared_and_its_app_context_default_is_its_category():
    rows = execute(
        "SELECT c.relname, (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a"
        " ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE d.adrelid = c.oid AND a.attname = 'app_context')"
        " FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"
    )
    assert rows
    for table, default in rows:
        assert table in TABLES, f"{table} is not declared in migration_jobs/tenancy.py"
        assert default == f"'{TABLES[table].category.app_context}'::character varying", table


@pytest.fixture
def last_version_pending():
    """0055 (the last tenant-key file) is recorded as not applied, so a refusal is seen to apply nothing."""
    version, name, checksum = execute(
        "DELETE FROM controlplane.schema_version WHERE version = '0055' RETURNING version, name, checksum"
    )[0]
    yield version
    execute(
        "INSERT INTO controlplane.schema_version (version, name, checksum) VALUES (%s, %s, %s)"
        " ON CONFLICT (version) DO NOTHING",
        [version, name, checksum],
    )


def test_an_undeclared_table_stops_the_plan_and_the_apply_naming_it(last_version_pending):
    execute("CREATE TABLE public.client_note (id uuid PRIMARY KEY, agency_id uuid, body text)")
    try:
        with pytest.raises(CommandError) as refusal:
            call_command("apply_unified_schema", "--plan")
        assert "table client_note is not declared: add it to TABLES in migration_jobs/tenancy.py" in str(refusal.value)
        assert "shared, audience or revos" in str(refusal.value)
        with pytest.raises(SchemaError, match="client_note is not declared"):
            schema_apply(database="unified")
        assert execute("SELECT 1 FROM controlplane.schema_version WHERE version = %s", [last_version_pending]) == []
    finally:
        execute("DROP TABLE public.client_note")


def test_a_table_without_its_tenant_key_stops_the_plan(last_version_pending, monkeypatch):
    monkeypatch.setattr(tenancy, "TABLES", {**TABLES, "client_note": TenantTable(Category.AUDIENCE)})
    execute("CREATE TABLE public.client_note (id uuid PRIMARY KEY, client_id uuid, body text)")
    try:
        with pytest.raises(SchemaError) as refusal:
            schema_plan(database="unified")
        message = str(refusal.value)
        assert message.startswith("Nothing was applied")
        assert (
            "table client_note has no tenant key column agency_id: add agency_id uuid REFERENCES agency(id)" in message
        )
    finally:
        execute("DROP TABLE public.client_note")


def test_the_declaration_is_silent_about_tables_the_files_will_create():
    # A fresh database has no tables yet; a declared table the database lacks is not a problem.
    assert tenancy.tenancy_problems({}) == []
    assert tenancy.tenancy_problems({"lead": ["id", "agency_id"]}) == []
    assert tenancy.tenancy_problems({"agency": ["id", "name"]}) == []


def test_the_plan_says_what_each_pending_file_locks(last_version_pending, capsys):
    locks = {entry.schema_file.version: entry for entry in schema_lock_plan(database="unified")}
    assert list(locks) == [last_version_pending]
    entry = locks[last_version_pending]
    # 0055 drops the single-column reference indexes concurrently.
    assert "ShareUpdateExclusiveLock on" in entry.lines()[0]
    assert "lead," in entry.lines()[0] and "each while its statement runs" in entry.lines()[0]
    call_command("apply_unified_schema", "--plan")
    out = capsys.readouterr().out
    assert "pending  0055_drop_single_column_reference_indexes.sql" in out
    assert "locks: ShareUpdateExclusiveLock on" in out


def test_lock_plan_of_the_tenant_foreign_keys_names_the_modes_and_tables():
    """Replayed from 0052 on: adding the keys blocks writes only, validating blocks nothing."""
    recorded = execute(
        "DELETE FROM controlplane.schema_version WHERE version BETWEEN '0052' AND '0055'"
        " RETURNING version, name, checksum"
    )
    try:
        locks = {entry.schema_file.version: entry for entry in schema_lock_plan(database="unified")}
    finally:
        for row in recorded:
            execute("INSERT INTO controlplane.schema_version (version, name, checksum) VALUES (%s, %s, %s)", row)
    assert set(locks["0053"].locks) == {"ShareRowExclusiveLock"}
    assert "lead" in locks["0053"].locks["ShareRowExclusiveLock"]
    assert "ShareRowExclusiveLock on ad_performance" in locks["0053"].lines()[0]
    assert "(writes wait, reads go on), until the file commits" in locks["0053"].lines()[0]
    # Validation, then the old keys' drop: the strongest lock each table sees is the drop's.
    assert set(locks["0054"].locks) == {"AccessExclusiveLock"}
    assert {"lead", "campaign"} <= set(locks["0054"].locks["AccessExclusiveLock"])
    assert set(locks["0055"].locks) == {"ShareUpdateExclusiveLock"}
