"""seed_demo and the demo-data services, against the real RevOS and unified test databases."""

from __future__ import annotations

import re

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from migration_jobs.demo.demo import (
    DM_DIRECTIONS,
    LEAD_STATUSES,
    DemoDataError,
    demo_agency_seed,
    demo_data_seed,
    demo_name_normalize,
    demo_table_names,
)
from migration_jobs.services.database_marks import database_mark, database_mark_read
from tests.conftest import truncate_tenant_tables

pytestmark = pytest.mark.django_db(databases=["default", "unified", "revos"], transaction=True)

BACKUP_TABLES = ("backup_dm_sequences", "campaigns_trigger_word_backup")
LEGAL_SUFFIX = re.compile(r"\s+(inc|llc|ltd|gmbh)$")


def fetch(database: str, query: str, params=()) -> list[tuple]:
    with connections[database].cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def public_tables(database: str) -> list[str]:
    return [row[0] for row in fetch(database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]


def tenant_tables(database: str) -> list[str]:
    """The public tables and Supabase Auth's accounts ("auth.users"), which the demo fills too."""
    return [*public_tables(database), "auth.users", "auth.identities"]


def quoted(table: str) -> str:
    return ".".join(f'"{part}"' for part in table.split("."))


def checksums() -> dict[str, str | None]:
    """An md5 of every row of every tenant table, in id order."""
    sums = {}
    for database in ("revos", "unified"):
        for table in tenant_tables(database):
            query = f"SELECT md5(string_agg(t::text, '' ORDER BY t.id)) FROM {quoted(table)} t"
            sums[f"{database}.{table}"] = fetch(database, query)[0][0]
    return sums


def row_counts(database: str) -> dict[str, int]:
    return {table: fetch(database, f"SELECT count(*) FROM {quoted(table)}")[0][0] for table in tenant_tables(database)}


def foreign_keys(database: str) -> list[tuple[str, str, str]]:
    """(child table, child column, parent table) for every single-column foreign key in public."""
    return fetch(
        database,
        """
        SELECT cl.relname, a.attname, parent.relname
        FROM pg_constraint k
        JOIN pg_class cl ON cl.oid = k.conrelid
        JOIN pg_class parent ON parent.oid = k.confrelid
        JOIN pg_namespace n ON n.oid = cl.relnamespace AND n.nspname = 'public'
        JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum = k.conkey[1]
        WHERE k.contype = 'f'
        """,
    )


def agency_path(database: str, table: str, alias: str, keys: list[tuple[str, str, str]]) -> tuple[str, str]:
    """SQL joins and the expression that give a row of `table` its agency, walking NOT NULL parents."""
    columns = {row[0] for row in fetch(database, "SELECT column_name FROM information_schema.columns "
                                       "WHERE table_schema = 'public' AND table_name = %s", [table])}  # fmt: skip
    if table in ("agencies", "agency"):
        return "", f"{alias}.id"
    if "agency_id" in columns:
        return "", f"{alias}.agency_id"
    not_null = {row[0] for row in fetch(database, "SELECT column_name FROM information_schema.columns "
                                        "WHERE table_schema = 'public' AND table_name = %s AND is_nullable = 'NO'",
                                        [table])}  # fmt: skip
    _, column, parent = next(key for key in keys if key[0] == table and key[1] in not_null)
    joins, expression = agency_path(database, parent, f"{alias}_p", keys)
    return f' JOIN "{parent}" {alias}_p ON {alias}_p.id = {alias}.{column}' + joins, expression


@pytest.fixture
def seeded(tenant_db):
    return demo_data_seed(agencies=4, scale=1, seed=7)


def test_same_seed_gives_identical_content_and_another_seed_differs(tenant_db):
    demo_data_seed(agencies=3, scale=0.5, seed=11)
    first = checksums()
    truncate_tenant_tables()
    demo_data_seed(agencies=3, scale=0.5, seed=11)
    assert checksums() == first

    truncate_tenant_tables()
    demo_data_seed(agencies=3, scale=0.5, seed=12)
    other = checksums()
    filled = [table for table, value in first.items() if value is not None]
    assert len(filled) == len(demo_table_names()["revos"]) + len(demo_table_names()["unified"])
    assert all(other[table] != first[table] for table in filled)


def test_every_seeded_table_is_filled_and_summary_matches_the_database(seeded):
    for database, tables in demo_table_names().items():
        counts = row_counts(database)
        for table in tables:
            assert counts[table] > 0, f"{database}.{table} is empty"
            assert counts[table] == seeded.rows[f"{database}.{table}"]
    assert seeded.total == sum(seeded.rows.values())


def test_about_half_the_agencies_exist_in_both_apps_with_the_same_domain(seeded):
    kinds = [agency.kind for agency in seeded.agencies]
    assert kinds.count("both") == 2 and kinds.count("revos") == 2 and kinds.count("audience") == 2
    revos = dict(fetch("revos", "SELECT id, domain FROM agencies"))
    unified = {row[0]: row[1:] for row in fetch("unified", "SELECT id, domain, slug FROM agency")}
    assert len(revos) == 4 and len(unified) == 4
    for agency in seeded.agencies:
        if agency.kind == "both":
            assert revos[agency.revos_id] == unified[agency.unified_id][0]
            assert strip_legal(agency.revos_name) == strip_legal(agency.unified_name)
    assert len({slug for _, slug in unified.values()}) == len(unified)


def strip_legal(name: str) -> str:
    return LEGAL_SUFFIX.sub("", demo_name_normalize(name))


def test_names_of_twins_differ_in_spelling_somewhere_across_seeds(tenant_db):
    differing = 0
    for seed in range(1, 6):
        summary = demo_data_seed(agencies=4, scale=0.2, seed=seed)
        twins = [a for a in summary.agencies if a.kind == "both"]
        differing += sum(a.revos_name != a.unified_name for a in twins)
    assert differing > 0


def test_some_users_share_emails_across_apps_some_in_another_case(seeded):
    revos = fetch("revos", "SELECT agency_id, email FROM users")
    unified = fetch("unified", 'SELECT agency_id, email FROM "user"')
    twin_of = {a.revos_id: a.unified_id for a in seeded.agencies if a.kind == "both"}
    unified_emails = {(agency, email.lower()): email for agency, email in unified}
    shared = [
        (email, unified_emails[twin_of[agency], email.lower()])
        for agency, email in revos
        if agency in twin_of and (twin_of[agency], email.lower()) in unified_emails
    ]
    assert shared, "no RevOS user shares an email with an AudienceOS user"
    assert any(revos_email != aos_email for revos_email, aos_email in shared)
    assert any(revos_email == aos_email for revos_email, aos_email in shared)
    assert len({email.lower() for _, email in revos}) == len(revos)
    assert len({email.lower() for _, email in unified}) == len(unified)


def test_some_clients_share_normalized_names_across_apps(seeded):
    twin_of = {a.revos_id: a.unified_id for a in seeded.agencies if a.kind == "both"}
    aos = {
        (agency, demo_name_normalize(name)) for agency, name in fetch("unified", "SELECT agency_id, name FROM client")
    }
    pairs = [
        name
        for agency, name in fetch("revos", "SELECT agency_id, name FROM clients")
        if agency in twin_of and (twin_of[agency], demo_name_normalize(name)) in aos
    ]
    assert len(pairs) >= 2
    raw_aos = {name for (name,) in fetch("unified", "SELECT name FROM client")}
    assert any(name not in raw_aos for name in pairs), "every shared client is spelled identically"


@pytest.mark.parametrize("database", ["revos", "unified"])
def test_every_reference_points_at_a_row_of_the_same_agency(seeded, database):
    keys = foreign_keys(database)
    assert len(keys) > 20
    for child, column, parent in keys:
        child_joins, child_agency = agency_path(database, child, "c", keys)
        parent_joins, parent_agency = agency_path(database, parent, "p", keys)
        query = (
            f'SELECT count(*) FROM "{child}" c{child_joins} LEFT JOIN "{parent}" p ON p.id = c.{column}'
            f"{parent_joins} WHERE c.{column} IS NOT NULL AND ({parent_agency} IS DISTINCT FROM {child_agency})"
        )
        assert fetch(database, query)[0][0] == 0, f"{child}.{column} crosses agencies"


def test_backup_tables_hold_orphans_and_foreign_key_columns_hold_some_nulls(seeded):
    orphan_sequences = fetch(
        "revos",
        "SELECT count(*) FROM backup_dm_sequences b "
        "WHERE NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.id = b.campaign_id) "
        "OR NOT EXISTS (SELECT 1 FROM agencies a WHERE a.id = b.agency_id)",
    )[0][0]
    orphan_words = fetch(
        "revos",
        "SELECT count(*) FROM campaigns_trigger_word_backup b "
        "WHERE NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.id = b.campaign_id)",
    )[0][0]
    assert orphan_sequences >= 4 and orphan_words >= 4
    for table, column in [("leads", "email"), ("posts", "campaign_id"), ("chat_sessions", "client_id")]:
        assert fetch("revos", f"SELECT count(*) FROM {table} WHERE {column} IS NULL")[0][0] > 0


def test_default_demo_stays_within_what_the_unified_schema_accepts(seeded):
    statuses = {row[0] for row in fetch("revos", "SELECT DISTINCT status FROM leads")}
    directions = {row[0] for row in fetch("revos", "SELECT DISTINCT direction FROM dm_messages")}
    assert statuses <= set(LEAD_STATUSES) and directions == set(DM_DIRECTIONS)
    assert fetch("unified", "SELECT DISTINCT ai_provider FROM chat_message") == [("gemini",)]
    assert fetch("unified", "SELECT DISTINCT app_context FROM cartridge") == [("audience",)]
    assert {row[0] for row in fetch("unified", "SELECT DISTINCT type FROM cartridge")} >= {"training", "voice", "style"}


def test_scale_multiplies_row_counts(tenant_db):
    small = demo_data_seed(agencies=1, scale=1, seed=3).rows
    truncate_tenant_tables()
    large = demo_data_seed(agencies=1, scale=4, seed=3).rows
    for table in ("revos.posts", "revos.comments", "revos.leads", "revos.dm_messages", "revos.users"):
        assert large[table] == 4 * small[table]
    assert large["revos.agencies"] == small["revos.agencies"] == 1
    assert 3.5 < sum(large.values()) / sum(small.values()) <= 4


def test_demo_agency_seed_adds_exactly_one_revos_agency(seeded):
    before_revos, before_unified = row_counts("revos"), row_counts("unified")
    agency_id = demo_agency_seed(scale=2, seed=99, name="Bench Agency")
    after = row_counts("revos")
    assert after["agencies"] == before_revos["agencies"] + 1
    assert fetch("revos", "SELECT name FROM agencies WHERE id = %s", [agency_id]) == [("Bench Agency",)]
    assert fetch("revos", "SELECT count(*) FROM posts WHERE agency_id = %s", [agency_id])[0][0] == 60
    assert row_counts("unified") == before_unified
    assert 1800 < sum(after.values()) - sum(before_revos.values()) < 2400
    with pytest.raises(DemoDataError, match="already holds"):
        demo_agency_seed(scale=2, seed=99, name="Bench Agency")


def test_rerun_of_the_same_seed_is_refused_unless_reset(seeded, capsys):
    before = checksums()
    with pytest.raises(CommandError, match="--reset"):
        call_command("seed_demo", agencies=4, scale=1, seed=7)
    assert checksums() == before
    call_command("seed_demo", agencies=4, scale=1, seed=7, reset=True)
    assert checksums() == before
    assert "Seeded" in capsys.readouterr().out


def test_another_seed_adds_agencies_beside_existing_demo_data(seeded):
    demo_data_seed(agencies=4, scale=0.2, seed=8)
    assert row_counts("revos")["agencies"] == 8
    slugs = fetch("unified", "SELECT slug FROM agency")
    assert len(slugs) == len(set(slugs)) == 8


def test_bad_arguments_are_refused_with_a_message(tenant_db):
    with pytest.raises(CommandError, match="--scale must be greater than 0"):
        call_command("seed_demo", agencies=1, scale=0, seed=1)
    with pytest.raises(CommandError, match="--agencies must be at least 1"):
        call_command("seed_demo", agencies=0, scale=1, seed=1)


def test_with_phase0_problems_plants_them_in_both_databases(tenant_db):
    from migration_jobs.demo.phase0 import phase0_problems_clear

    try:
        call_command("seed_demo", agencies=1, scale=0.2, seed=5, with_phase0_problems=True)
        assert "swatches" in public_tables("revos")
    finally:
        for database in ("revos", "unified"):
            phase0_problems_clear(database=database)


# --- only demo and test databases ---------------------------------------------------------------


@pytest.fixture
def unmarked_production_like(tenant_db):
    """The unified database as production is: AudienceOS tenant rows, no demo/test mark."""
    with connections["unified"].cursor() as cursor:
        cursor.execute("DELETE FROM controlplane.database_mark")
        cursor.execute("INSERT INTO agency (name, slug) VALUES ('Live customer', 'live-customer')")
    yield
    truncate_tenant_tables()
    database_mark(database="unified", purpose="test", reason="built by the test suite")


@pytest.mark.parametrize(
    "options",
    [{"reset": True}, {"with_phase0_problems": True}, {}],
    ids=["--reset", "--with-phase0-problems", "plain seed"],
)
def test_demo_commands_refuse_an_unmarked_database_with_tenant_rows(unmarked_production_like, options):
    before = checksums()
    with pytest.raises(
        CommandError, match=r"Refusing .*the unified database \(test_unified\w*\): it holds tenant rows"
    ):
        call_command("seed_demo", "--agencies", "1", **options)
    assert checksums() == before
    assert fetch("unified", "SELECT relrowsecurity FROM pg_class WHERE relname = 'agency'") == [(True,)]
    assert database_mark_read(database="unified") is None


def test_seeding_an_empty_unmarked_database_marks_it_as_a_demo_one(tenant_db):
    with connections["revos"].cursor() as cursor:
        cursor.execute("DELETE FROM controlplane.database_mark")
    try:
        demo_data_seed(agencies=1, scale=0.2, seed=3)
        assert database_mark_read(database="revos") == "demo"
        call_command("seed_demo", "--agencies", "1", "--scale", "0.2", "--seed", "3", "--reset")  # now allowed
    finally:
        with connections["revos"].cursor() as cursor:
            cursor.execute("DELETE FROM controlplane.database_mark")
        database_mark(database="revos", purpose="test", reason="built by the test suite")


def test_the_production_profile_refuses_demo_commands_unless_allowed(tenant_db, settings):
    settings.DEBUG, settings.DEMO_COMMANDS_ALLOWED = False, False
    with pytest.raises(CommandError, match=r"DEBUG is off .* DEMO_COMMANDS_ALLOWED=true"):
        call_command("seed_demo", "--agencies", "1", "--reset")
    assert row_counts("revos")["agencies"] == 0
    settings.DEMO_COMMANDS_ALLOWED = True
    call_command("seed_demo", "--agencies", "1", "--scale", "0.2", "--reset")
    assert row_counts("revos")["agencies"] == 1
