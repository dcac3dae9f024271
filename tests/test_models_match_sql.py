"""The unmanaged models describe sql/unified/ exactly: drift on either side fails the suite."""

import pytest
from django.db import connections, transaction

from migration_jobs.models.unified import Client, Post
from migration_jobs.verify.model_drift import unified_model_drift, unified_models

pytestmark = pytest.mark.django_db(databases=["default", "unified"])


def public_tables() -> set[str]:
    with connections["unified"].cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        return {row[0] for row in cursor.fetchall()}


def test_every_public_table_has_exactly_one_model_and_every_model_a_table():
    tables = [model._meta.db_table for model in unified_models()]
    assert len(tables) == len(set(tables)), "two models share a table"
    assert set(tables) == public_tables()


def test_every_model_matches_its_table_column_by_column():
    assert unified_model_drift() == []


def test_unified_models_are_unmanaged():
    assert [m.__name__ for m in unified_models() if m._meta.managed] == []


@pytest.mark.parametrize(
    ("ddl", "reported"),
    [
        ("ALTER TABLE lead ADD COLUMN score integer", "lead.score has no field on Lead"),
        ("ALTER TABLE client DROP COLUMN website", "Client.website (client.website): no such column"),
        ("ALTER TABLE client ALTER COLUMN name TYPE varchar(250)", "Client.name (client.name): max_length 200"),
        ("ALTER TABLE campaign ALTER COLUMN trigger_word TYPE text", "CharField is character varying, SQL: text"),
        ("ALTER TABLE kpi_snapshot ALTER COLUMN value TYPE numeric(16, 4)", "numeric(14, 2), SQL: numeric(16, 4)"),
        ("ALTER TABLE post ALTER COLUMN published_at SET NOT NULL", "null=True, SQL: NOT NULL"),
        ("ALTER TABLE agency ALTER COLUMN domain SET NOT NULL", "Agency.domain (agency.domain): null=True"),
        ("ALTER TABLE ad_performance ALTER COLUMN clicks TYPE integer", "BigIntegerField is bigint, SQL: integer"),
        ("CREATE TABLE lead_score (id uuid PRIMARY KEY)", "table lead_score has no model"),
        ("ALTER TABLE memory RENAME TO ai_memory", "Memory: table memory does not exist"),
        (
            "ALTER TABLE chat_message DROP CONSTRAINT chat_message_session_id_fkey",
            "ChatMessage.session (chat_message.session_id): ForeignKey to chat_session, SQL: None",
        ),
        (
            "ALTER TABLE dm_delivery DROP CONSTRAINT dm_delivery_pkey",
            "DmDelivery: primary key id, SQL: None",
        ),
    ],
)
def test_sql_that_drifts_from_the_models_is_reported(ddl, reported):
    with transaction.atomic(using="unified"):
        with connections["unified"].cursor() as cursor:
            cursor.execute(ddl)
        problems = unified_model_drift()
        transaction.set_rollback(True, using="unified")
    assert any(reported in problem for problem in problems), problems
    assert unified_model_drift() == [], "the schema change was not rolled back"


def test_models_that_drift_from_the_sql_are_reported(monkeypatch):
    monkeypatch.setattr(Client._meta.get_field("name"), "max_length", 100)
    monkeypatch.setattr(Post._meta.get_field("content"), "null", True)
    problems = unified_model_drift()
    assert "Client.name (client.name): max_length 100, SQL: 200" in problems
    assert "Post.content (post.content): null=True, SQL: NOT NULL" in problems
