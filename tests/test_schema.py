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


def test_auth_jwt_reads_the_request_claims_and_is_null_without_them():
    with connections["unified"].cursor() as cursor:
        cursor.execute("SELECT auth.jwt()")
        assert cursor.fetchone()[0] is None
        cursor.execute("SELECT set_config('request.jwt.claims', '{\"agency_id\": \"x\"}', true)")
        cursor.execute("SELECT auth.jwt() ->> 'agency_id'")
        assert cursor.fetchone()[0] == "x"
