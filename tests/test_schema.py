"""The versioned SQL files apply once, record their checksums and refuse edited history."""

import pytest
from django.db import connections

from migration_jobs.services import schema
from migration_jobs.services.schema import SchemaError, schema_apply, schema_plan

pytestmark = pytest.mark.django_db(databases=["default", "unified", "revos"])


def test_fresh_test_databases_have_every_version_applied():
    for database in ("unified", "revos"):
        plan = schema_plan(database=database)
        assert plan.pending == []
        assert [f.version for f in plan.applied] == [f.version for f in schema.schema_files(database=database)]


def test_applying_again_applies_nothing():
    assert schema_apply(database="unified") == []


def test_an_applied_file_that_changed_is_refused(tmp_path, monkeypatch):
    edited = tmp_path / "unified"
    edited.mkdir()
    for schema_file in schema.schema_files(database="unified"):
        (edited / schema_file.path.name).write_text(schema_file.sql)
    (edited / "0003_revos_tables.sql").write_text("-- edited after it was applied\n")
    monkeypatch.setitem(schema.SCHEMA_DIRECTORIES, "unified", edited)
    with pytest.raises(SchemaError, match=r"0003_revos_tables\.sql was changed after it was applied"):
        schema_plan(database="unified")


def test_a_database_that_applied_an_amended_file_before_its_amendment_is_accepted():
    """0001 and 0040 were amended in place (services/schema.py AMENDED): a database that ran their
    old text goes on; any other text recorded for them is still refused."""
    old_0040 = next(iter(schema.AMENDED[("unified", "0040")]))
    with connections["unified"].cursor() as cursor:
        cursor.execute("SELECT checksum FROM controlplane.schema_version WHERE version = '0040'")
        current = cursor.fetchone()[0]
        try:
            cursor.execute("UPDATE controlplane.schema_version SET checksum = %s WHERE version = '0040'", [old_0040])
            assert schema_plan(database="unified").pending == []
            cursor.execute("UPDATE controlplane.schema_version SET checksum = 'other' WHERE version = '0040'")
            with pytest.raises(SchemaError, match=r"0040_supabase_auth\.sql was changed after it was applied"):
                schema_plan(database="unified")
        finally:
            cursor.execute("UPDATE controlplane.schema_version SET checksum = %s WHERE version = '0040'", [current])


def test_auth_jwt_reads_the_request_claims_and_is_null_without_them():
    with connections["unified"].cursor() as cursor:
        cursor.execute("SELECT auth.jwt()")
        assert cursor.fetchone()[0] is None
        cursor.execute("SELECT set_config('request.jwt.claims', '{\"agency_id\": \"x\"}', true)")
        cursor.execute("SELECT auth.jwt() ->> 'agency_id'")
        assert cursor.fetchone()[0] == "x"
