"""Verification of a migrated agency, against real PostgreSQL and Redis.

A small agency exists in both apps (AudienceOS clients, gemini chat, training cartridges; RevOS
users, clients, chat and HGC sessions, brand and style cartridges, posts, comments, leads). It is
migrated with the real engine, verified clean, and then each fault is injected into the unified
database to see the right check turn red, naming the right ids.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from io import StringIO

import pytest
from django.contrib.admin.sites import site
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections, transaction
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from migration_jobs.admin.verification import verify_selected_agencies
from migration_jobs.etl.connections import connect
from migration_jobs.etl.engine import AgencyMigration, agency_rollback
from migration_jobs.models import AgencyLink, MigrationRun, VerificationRun
from migration_jobs.refusals import RunRefused
from migration_jobs.services import run_control as run_control_module
from migration_jobs.services.runs import migration_run_request
from migration_jobs.services.verification import (
    VerificationRefused,
    verification_run_execute,
    verification_run_request,
)
from migration_jobs.verify import content as content_module
from migration_jobs.verify import counts as counts_module
from migration_jobs.verify.pool import both_sides
from tests.conftest import run_worker

CASES = (
    "isolation.case1_audienceos_client_visible_from_revos",
    "isolation.case2_revos_lead_hidden_from_audienceos",
    "isolation.case3_chat_ai_provider_per_app",
    "isolation.case4_cartridges_per_app_context",
    "isolation.case5_shared_sessions_survive_app_switch",
)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


@dataclass
class Agency:
    """The ids a test needs of the seeded agency."""

    revos_id: uuid.UUID = field(default_factory=new_id)
    unified_id: uuid.UUID = field(default_factory=new_id)
    other_unified_id: uuid.UUID = field(default_factory=new_id)
    other_revos_id: uuid.UUID = field(default_factory=new_id)
    linkedin_account: uuid.UUID = field(default_factory=new_id)
    posts: list[uuid.UUID] = field(default_factory=lambda: [new_id() for _ in range(2)])
    comments: list[uuid.UUID] = field(default_factory=lambda: [new_id() for _ in range(3)])
    leads: list[uuid.UUID] = field(default_factory=lambda: [new_id() for _ in range(3)])
    ben: uuid.UUID | None = None  # the RevOS-only person
    link: AgencyLink | None = None


def execute(alias: str, statement: str, params=None) -> list[tuple]:
    with connections[alias].cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def insert_account(alias: str, user_id: uuid.UUID, email: str) -> None:
    """A Supabase Auth account with a password, as each app's sign-up makes them."""
    execute(
        alias,
        "INSERT INTO auth.users (id, aud, role, email, encrypted_password, email_confirmed_at, raw_app_meta_data)"
        " VALUES (%s, 'authenticated', 'authenticated', %s, %s, now(), '{\"provider\": \"email\"}')",
        [user_id, email, "$2a$04$" + "x" * 53],
    )


def seed_audienceos(a: Agency) -> dict[str, uuid.UUID]:
    """AudienceOS already has the agency, two users, two clients, a gemini chat and a training cartridge."""
    ids = {name: new_id() for name in ("ada", "grace", "acme", "beacon", "session", "message", "voice", "other_client")}
    for agency_id, name in ((a.unified_id, "Northwind Media"), (a.other_unified_id, "Other Agency")):
        execute(
            "unified",
            "INSERT INTO agency (id, name, slug, domain) VALUES (%s, %s, %s, %s)",
            [agency_id, name, f"{name.lower().replace(' ', '-')}-{str(agency_id)[:8]}", f"{str(agency_id)[:8]}.test"],
        )
    execute(
        "unified",
        'INSERT INTO "user" (id, agency_id, email, first_name) VALUES (%s, %s, %s, %s), (%s, %s, %s, %s)',
        [
            ids["ada"],
            a.unified_id,
            "ada@northwind.test",
            "Ada",
            ids["grace"],
            a.unified_id,
            "grace@northwind.test",
            "Grace",
        ],
    )
    insert_account("unified", ids["ada"], "ada@northwind.test")
    insert_account("unified", ids["grace"], "grace@northwind.test")
    execute(
        "unified",
        "INSERT INTO client (id, agency_id, name, stage) VALUES (%s, %s, %s, 'live'), (%s, %s, %s, 'onboarding'),"
        " (%s, %s, %s, 'live')",
        [
            ids["acme"], a.unified_id, "Acme Logistics",
            ids["beacon"], a.unified_id, "Beacon Health",
            ids["other_client"], a.other_unified_id, "Zenith Travel",
        ],
    )  # fmt: skip
    execute(
        "unified",
        "INSERT INTO chat_session (id, agency_id, user_id, client_id, title) VALUES (%s, %s, %s, %s, 'Q3 plan')",
        [ids["session"], a.unified_id, ids["grace"], ids["beacon"]],
    )
    execute(
        "unified",
        "INSERT INTO chat_message (id, agency_id, session_id, role, content, ai_provider)"
        " VALUES (%s, %s, %s, 'assistant', 'Here is the plan', 'gemini')",
        [ids["message"], a.unified_id, ids["session"]],
    )
    execute(
        "unified",
        "INSERT INTO cartridge (id, agency_id, user_id, name, type, app_context, config)"
        " VALUES (%s, %s, %s, 'House voice', 'voice', 'audience', '{\"tone\": \"warm\"}')",
        [ids["voice"], a.unified_id, ids["grace"]],
    )
    return ids


def seed_revos(a: Agency) -> None:
    """The same firm in RevOS (one user and one client AudienceOS already has) and an unrelated agency."""
    users, clients = [new_id(), new_id()], [new_id(), new_id()]
    chat, hgc, campaign, magnet = new_id(), new_id(), new_id(), new_id()
    rows = [
        ("agencies (id, name, domain, plan)", [(a.revos_id, "Northwind Media", "northwind.test", "pro")]),
        (
            "users (id, agency_id, email, full_name)",
            [(users[0], a.revos_id, "ADA@northwind.test", "Ada Lovelace"), (users[1], a.revos_id, "ben@x.test", "Ben")],
        ),
        (
            "clients (id, agency_id, name, website, status)",
            [
                (clients[0], a.revos_id, "  ACME logistics", "acme.test", "active"),
                (clients[1], a.revos_id, "Cobalt Dental", None, "paused"),
            ],
        ),
        (
            "chat_sessions (id, agency_id, user_id, client_id, title)",
            [(chat, a.revos_id, users[0], clients[0], "Hooks")],
        ),
        (
            "chat_messages (id, session_id, role, content)",
            [(new_id(), chat, "user", "Write a hook"), (new_id(), chat, "assistant", "Stop scrolling.")],
        ),
        ("hgc_sessions (id, agency_id, user_id, title, metadata)", [(hgc, a.revos_id, users[1], "HGC", '{"k": 1}')]),
        (
            "hgc_messages (id, session_id, role, content, tool_calls)",
            [(new_id(), hgc, "user", "Plan a week", None), (new_id(), hgc, "assistant", "Done", '[{"tool": "cal"}]')],
        ),
        (
            "brand_cartridges (id, agency_id, user_id, name, company_name, industry, tone)",
            [(new_id(), a.revos_id, users[0], "Brand", "Northwind", "media", "bold")],
        ),
        (
            "style_cartridges (id, agency_id, user_id, name, writing_style, examples)",
            [(new_id(), a.revos_id, users[1], "Style", "short lines", '["one", "two"]')],
        ),
        (
            "linkedin_accounts (id, agency_id, user_id, profile_url, display_name)",
            [(a.linkedin_account, a.revos_id, users[1], "https://linkedin.test/ben", "Ben")],
        ),
        (
            "campaigns (id, agency_id, client_id, name, trigger_word)",
            [(campaign, a.revos_id, clients[0], "Q3", "GUIDE")],
        ),
        (
            "posts (id, agency_id, linkedin_account_id, campaign_id, content, status)",
            [(p, a.revos_id, a.linkedin_account, campaign, f"Post {i}", "published") for i, p in enumerate(a.posts)],
        ),
        (
            "comments (id, post_id, author_name, content)",
            [(c, a.posts[i % 2], f"Reader {i}", "Interested") for i, c in enumerate(a.comments)],
        ),
        ("lead_magnets (id, agency_id, campaign_id, title)", [(magnet, a.revos_id, campaign, "The guide")]),
        (
            "leads (id, agency_id, campaign_id, lead_magnet_id, name, email, status)",
            [
                (lead, a.revos_id, campaign, magnet, f"Lead {i}", f"l{i}@x.test", "new")
                for i, lead in enumerate(a.leads)
            ],
        ),
        ("agencies (id, name, domain, plan)", [(a.other_revos_id, "Unrelated Outreach", "unrelated.test", "starter")]),
        ("leads (id, agency_id, name, status)", [(new_id(), a.other_revos_id, "Not ours", "new")]),
    ]
    for table, values in rows:
        placeholders = ", ".join(["%s"] * len(values[0]))
        with connections["revos"].cursor() as cursor:
            cursor.executemany(f"INSERT INTO {table} VALUES ({placeholders})", values)
    insert_account("revos", users[0], "ADA@northwind.test")
    insert_account("revos", users[1], "ben@x.test")
    a.ben = users[1]


def migrate(a: Agency) -> None:
    AgencyMigration(source_agency_id=a.revos_id, target_agency_id=a.unified_id, link_existing=True, batch_size=2).run()


@pytest.fixture
def agency(tenant_db) -> Agency:
    """The agency seeded in both apps, its link confirmed as the same agency, not yet migrated."""
    a = Agency()
    seed_audienceos(a)
    seed_revos(a)
    a.link = AgencyLink.objects.create(
        revos_agency_id=a.revos_id,
        name="Northwind Media",
        suggested_kind=AgencyLink.Kind.EXISTING,
        kind=AgencyLink.Kind.EXISTING,
        unified_agency_id=a.unified_id,
        confirmed_at=timezone.now(),
    )
    return a


@pytest.fixture
def migrated(agency) -> Agency:
    migrate(agency)
    return agency


def verify(a: Agency) -> VerificationRun:
    run = verification_run_request(link=a.link, actor=None, enqueue=False)
    return verification_run_execute(verification_run_id=run.pk)


def failing(run: VerificationRun) -> dict[tuple[str, str], dict]:
    return {(r.check_name, r.table_name): r.details for r in run.results.exclude(status="pass")}


def families(run: VerificationRun) -> set[str]:
    return {name.split(".")[0] for name, _ in failing(run)}


@pytest.fixture
def restore_schema():
    """Undo schema faults (RLS off, a loosened policy) so later tests see the schema from sql/."""
    undo: list[str] = []
    yield undo
    for statement in reversed(undo):
        execute("unified", statement)


# --- a clean migration ------------------------------------------------------------------------


def test_migration_through_workers_is_verified_and_passes_every_check(agency, rq_queues):
    run = migration_run_request(link=agency.link, kind=MigrationRun.Kind.MIGRATE, actor=None)
    run_worker("migrations")
    run.refresh_from_db()
    assert run.status == MigrationRun.Status.SUCCEEDED, run.error

    verification = VerificationRun.objects.get(agency_link=agency.link)
    assert verification.migration_run == run
    assert verification.status == VerificationRun.Status.QUEUED and verification.job_id
    run_worker("verification")
    verification.refresh_from_db()

    assert failing(verification) == {}
    assert (verification.status, verification.verdict) == ("finished", "pass")
    assert verification.started_at <= verification.finished_at
    names = Counter(r.check_name for r in verification.results.all())
    assert names["counts"] == names["content"] == len(agency_tables()) > 40
    assert names["references"] > 40
    for name in (*CASES, "auth", "isolation.other_agency_sees_nothing", "isolation.anon_sees_nothing"):
        assert names[name] == 1, name
    for name in ("rls_enabled", "no_policy_on_rls_off_table", "policy_columns_indexed", "models_match_sql"):
        assert names[f"schema.{name}"] == 1, name
    # The fixture has data for every case: none of them passed by being not applicable.
    cases = verification.results.filter(check_name__in=CASES)
    assert [r.check_name for r in cases if r.details.get("not_applicable")] == []
    leads = verification.results.get(check_name="counts", table_name="leads")
    assert (leads.expected, leads.actual) == ("3 rows", "3 rows in lead (0 reused)")
    users = verification.results.get(check_name="content", table_name="users")
    assert users.details["source_rows"] == 1  # Ada is AudienceOS's own user, reused: not compared


def agency_tables() -> list[str]:
    from migration_jobs.mapping import TABLE_MAPS

    return [m.source for m in TABLE_MAPS]


def test_verification_writes_nothing_to_either_database(migrated):
    before = {alias: database_checksums(alias) for alias in ("unified", "revos")}
    run = verify(migrated)
    assert run.verdict == "pass", failing(run)
    assert {alias: database_checksums(alias) for alias in ("unified", "revos")} == before


def database_checksums(alias: str) -> dict[str, str]:
    """Rows and an md5 of every table of the public and controlplane schemas."""
    tables = execute(
        alias,
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables"
        " WHERE schemaname IN ('public', 'controlplane') ORDER BY 1",
    )
    digest = "SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} t"
    return {table: execute(alias, digest.format(table))[0][0] for (table,) in tables}


# --- each fault turns the right check red, naming the ids -------------------------------------


def test_a_migrated_person_without_an_account_fails_the_auth_check_naming_them(migrated):
    execute("unified", "DELETE FROM auth.users WHERE id = %s", [migrated.ben])
    run = verify(migrated)
    problems = failing(run)
    assert set(problems) == {("auth", "auth.users"), ("counts", "auth.users"), ("content", "auth.users")}
    assert problems[("auth", "auth.users")]["problems"] == {"no account with the person's id": [str(migrated.ben)]}


def test_a_hook_that_loses_the_session_fails_case5(migrated, restore_schema):
    original = execute("unified", "SELECT pg_get_functiondef('public.custom_access_token_hook(jsonb)'::regprocedure)")
    execute(
        "unified",
        "CREATE OR REPLACE FUNCTION public.custom_access_token_hook(event jsonb) RETURNS jsonb LANGUAGE sql"
        " SECURITY DEFINER SET search_path = '' AS $$ SELECT jsonb_set(event, '{claims}', (event -> 'claims')"
        " || jsonb_build_object('session_id', gen_random_uuid(), 'app_context', coalesce((SELECT c.app_context"
        " FROM private.app_choice c WHERE c.user_id = (event ->> 'user_id')::uuid), 'revos'), 'agency_id',"
        " (SELECT u.agency_id FROM public.\"user\" u WHERE u.id = (event ->> 'user_id')::uuid))) $$",
    )
    restore_schema.append(original[0][0])
    run = verify(migrated)
    problems = failing(run)
    assert set(problems) == {("isolation.case5_shared_sessions_survive_app_switch", "chat_session")}
    tokens = problems[("isolation.case5_shared_sessions_survive_app_switch", "chat_session")]["tokens"]
    assert tokens["revos"]["session_id"] != tokens["audience"]["session_id"]


def test_deleted_target_row_fails_counts_and_content_naming_it(migrated):
    gone = migrated.comments[0]
    execute("unified", "DELETE FROM comment WHERE id = %s", [gone])
    run = verify(migrated)
    assert run.verdict == "fail"
    problems = failing(run)
    assert set(problems) == {("counts", "comments"), ("content", "comments")}
    assert problems[("counts", "comments")]["sample_ids"]["missing"] == [str(gone)]
    content = problems[("content", "comments")]
    assert content["sample_ids"] == {"missing": [str(gone)], "extra": [], "differing": []}
    assert (content["missing_in_target"], content["extra_in_target"], content["differing"]) == (1, 0, 0)
    counts = run.results.get(check_name="counts", table_name="comments")
    assert (counts.expected, counts.actual) == ("3 rows", "2 rows in comment (0 reused)")


def test_changed_value_fails_only_content_naming_row_and_column(migrated):
    changed = migrated.leads[1]
    execute("unified", "UPDATE lead SET name = 'Someone else' WHERE id = %s", [changed])
    run = verify(migrated)
    problems = failing(run)
    assert set(problems) == {("content", "leads")}
    assert problems[("content", "leads")]["sample_ids"]["differing"] == [str(changed)]
    assert problems[("content", "leads")]["differing_columns"] == {str(changed): ["name"]}


def test_orphaned_comment_fails_only_references_naming_it(migrated):
    post, orphan = new_id(), new_id()
    execute(
        "unified",
        "INSERT INTO post (id, agency_id, linkedin_account_id, content) VALUES (%s, %s, %s, 'AudienceOS post')",
        [post, migrated.unified_id, migrated.linkedin_account],
    )
    execute(
        "unified",
        "INSERT INTO comment (id, agency_id, post_id, content) VALUES (%s, %s, %s, 'on a post about to vanish')",
        [orphan, migrated.unified_id, post],
    )
    with transaction.atomic(using="unified"):
        execute("unified", "SET LOCAL session_replication_role = replica")  # foreign keys not enforced
        execute("unified", "DELETE FROM post WHERE id = %s", [post])
    run = verify(migrated)
    problems = failing(run)
    assert set(problems) == {("references", "comment")}
    assert problems[("references", "comment")]["orphaned"] == {
        "comment_post_id_fkey": {
            "columns": ["post_id", "agency_id"],
            "parent": "post",
            "orphans": 1,
            "sample_ids": [str(orphan)],
        }
    }


def test_reference_to_another_agencys_parent_fails_references_naming_it(migrated):
    # Only with the foreign keys bypassed: the tenant key (post_id, agency_id) refuses it otherwise.
    other_post, stray = new_id(), new_id()
    execute(
        "unified",
        "INSERT INTO linkedin_account (id, agency_id, profile_url) VALUES (%s, %s, 'https://li/x')",
        [other_post, migrated.other_unified_id],
    )
    execute(
        "unified",
        "INSERT INTO post (id, agency_id, linkedin_account_id, content) VALUES (%s, %s, %s, 'B post')",
        [other_post, migrated.other_unified_id, other_post],
    )
    with transaction.atomic(using="unified"):
        execute("unified", "SET LOCAL session_replication_role = replica")
        execute(
            "unified",
            "INSERT INTO comment (id, agency_id, post_id, content) VALUES (%s, %s, %s, 'on B post')",
            [stray, migrated.unified_id, other_post],
        )
    problems = failing(verify(migrated))
    assert ("references", "comment") in problems
    assert problems[("references", "comment")]["orphaned"]["comment_post_id_fkey"]["sample_ids"] == [str(stray)]


def test_rls_disabled_on_one_table_fails_schema_and_isolation_for_that_table(migrated, restore_schema):
    execute("unified", "ALTER TABLE lead DISABLE ROW LEVEL SECURITY")
    restore_schema.append("ALTER TABLE lead ENABLE ROW LEVEL SECURITY")
    run = verify(migrated)
    problems = failing(run)
    assert families(run) == {"schema", "isolation"}
    assert {table for _, table in problems} == {"lead"}
    assert problems[("schema.rls_enabled", "lead")] == {"rls_off": ["lead"], "no_policy": []}
    assert ("schema.no_policy_on_rls_off_table", "lead") in problems
    leaked = problems[("isolation.anon_sees_nothing", "lead")]["visible"]["lead"]
    assert set(map(str, migrated.leads)) <= set(leaked)
    assert ("isolation.case2_revos_lead_hidden_from_audienceos", "lead") in problems


def test_policy_using_true_fails_only_isolation_naming_the_rows(migrated, restore_schema):
    original = execute(
        "unified",
        "SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polname = 'lead_tenant'",
    )[0][0]
    execute("unified", "ALTER POLICY lead_tenant ON lead USING (true)")
    restore_schema.append(f"ALTER POLICY lead_tenant ON lead USING ({original})")
    run = verify(migrated)
    problems = failing(run)
    assert set(problems) == {
        ("isolation.case2_revos_lead_hidden_from_audienceos", "lead"),
        ("isolation.case5_shared_sessions_survive_app_switch", "lead"),
        ("isolation.other_agency_sees_nothing", "lead"),
    }, "the policy binds authenticated only: anon still sees nothing"
    switched = problems[("isolation.case5_shared_sessions_survive_app_switch", "lead")]["wrong"]["audience"]["lead"]
    assert switched == {"expected": {}, "seen": {"revos": 3}}, "RevOS leads seen with the audience token"
    seen_by_others = problems[("isolation.other_agency_sees_nothing", "lead")]["visible"]["lead"]
    assert {entry["app_context"] for entry in seen_by_others} == {"revos", "audience"}
    assert all(set(entry["ids"]) == set(map(str, migrated.leads)) for entry in seen_by_others)


def test_case5_reads_one_row_per_app_context_where_the_policy_reads_nothing_else(migrated):
    run = verify(migrated)
    case5 = run.results.get(check_name="isolation.case5_shared_sessions_survive_app_switch")
    assert case5.status == "pass"
    assert case5.details["tables_counted_under_each_token"] == []
    assert case5.details["tables_decided_by_one_row_per_app_context"] > 10


def test_a_policy_reading_another_column_is_counted_under_each_token_and_fails_case5(migrated, restore_schema):
    # Hides one lead of three: one row per app_context would not tell, so lead is counted again.
    hidden = migrated.leads[0]
    original = execute(
        "unified",
        "SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polname = 'lead_tenant'",
    )[0][0]
    execute("unified", f"ALTER POLICY lead_tenant ON lead USING (({original}) AND id <> '{hidden}'::uuid)")
    restore_schema.append(f"ALTER POLICY lead_tenant ON lead USING ({original})")
    problems = failing(verify(migrated))
    case5 = problems[("isolation.case5_shared_sessions_survive_app_switch", "lead")]
    assert case5["tables_counted_under_each_token"] == ["lead"]
    assert case5["wrong"] == {"revos": {"lead": {"expected": {"revos": 3}, "seen": {"revos": 2}}}}
    assert ("isolation.case2_revos_lead_hidden_from_audienceos", "lead") in problems


def test_row_moved_to_another_agency_fails_counts_content_and_isolation_naming_it(migrated):
    moved = migrated.leads[2]
    # The tenant keys refuse the move (its campaign stays in this agency): bypass them, as a restore would.
    with transaction.atomic(using="unified"):
        execute("unified", "SET LOCAL session_replication_role = replica")
        execute("unified", "UPDATE lead SET agency_id = %s WHERE id = %s", [migrated.other_unified_id, moved])
    run = verify(migrated)
    problems = failing(run)
    # references checks this agency's rows, and none of them points at the moved lead.
    assert set(problems) == {
        ("counts", "leads"),
        ("content", "leads"),
        ("isolation.other_agency_sees_nothing", "lead"),
    }
    assert problems[("counts", "leads")]["sample_ids"]["in another agency"] == [str(moved)]
    assert problems[("content", "leads")]["differing_columns"] == {str(moved): ["agency_id"]}
    assert problems[("isolation.other_agency_sees_nothing", "lead")]["visible"]["lead"] == [
        {"agency_id": str(migrated.other_unified_id), "app_context": "revos", "ids": [str(moved)]}
    ]


def test_a_check_that_cannot_run_is_an_error_and_the_others_still_run(migrated, restore_schema):
    execute("unified", "REVOKE SELECT ON lead FROM authenticated")
    restore_schema.append("GRANT SELECT ON lead TO authenticated")
    run = verify(migrated)
    assert (run.status, run.verdict) == ("finished", "error")
    errored = run.results.get(status="error")
    assert errored.check_name == "isolation.case2_revos_lead_hidden_from_audienceos"
    assert "permission denied for table lead" in errored.actual
    assert "1 checks could not run" in run.error
    assert run.results.filter(check_name="schema.models_match_sql", status="pass").exists()


# --- content: narrowing down among many rows --------------------------------------------------


def test_content_bisection_names_the_differing_ids_among_many_without_fetching_the_table(agency, monkeypatch):
    campaign = execute("revos", "SELECT id FROM campaigns WHERE agency_id = %s", [agency.revos_id])[0][0]
    execute(
        "revos",
        "INSERT INTO leads (id, agency_id, campaign_id, name, status)"
        " SELECT gen_random_uuid(), %s, %s, 'Bulk ' || n, 'new' FROM generate_series(1, 5000) n",
        [agency.revos_id, campaign],
    )
    AgencyMigration(
        source_agency_id=agency.revos_id, target_agency_id=agency.unified_id, link_existing=True, batch_size=2000
    ).run()
    leads = [
        row[0]
        for row in execute("unified", "SELECT id FROM lead WHERE agency_id = %s ORDER BY id", [agency.unified_id])
    ]
    deleted, changed = leads[100], leads[4000]
    execute("unified", "DELETE FROM lead WHERE id = %s", [deleted])
    execute("unified", "UPDATE lead SET status = 'lost' WHERE id = %s", [changed])

    fetched = []
    original_rows = content_module._rows

    def counting_rows(side, low, high):
        rows = original_rows(side, low, high)
        fetched.append(len(rows))
        return rows

    monkeypatch.setattr(content_module, "_rows", counting_rows)
    run = verify(agency)
    details = failing(run)[("content", "leads")]
    assert details["sample_ids"] == {"missing": [str(deleted)], "extra": [], "differing": [str(changed)]}
    assert details["differing_columns"] == {str(changed): ["status"]}
    assert details["source_rows"] == 5003
    # Only the two small ranges around the differences were fetched row by row, never the table.
    assert sum(fetched) <= 4 * content_module.LEAF_ROWS, fetched


# --- after a rollback ---------------------------------------------------------------------------


def test_rolled_back_agency_verifies_that_nothing_of_it_remains(migrated):
    agency_rollback(source_agency_id=migrated.revos_id, unified_agency_id=migrated.unified_id)
    run = verify(migrated)
    assert run.verdict == "pass", failing(run)
    leads = run.results.get(check_name="counts", table_name="leads")
    assert leads.expected.startswith("0 rows")
    # The leftover of a rollback that missed a row is named.
    execute(
        "unified",
        "INSERT INTO lead (id, agency_id, name) VALUES (%s, %s, 'left behind')",
        [migrated.leads[0], migrated.unified_id],
    )
    run = verify(migrated)
    assert set(failing(run)) == {("counts", "leads")}
    assert failing(run)[("counts", "leads")]["sample_ids"] == {"still_in_target": [str(migrated.leads[0])]}


# --- requests and the command ------------------------------------------------------------------


def test_verify_agency_sync_prints_every_check_and_exits_zero_on_pass(migrated):
    out = StringIO()
    call_command("verify_agency", str(migrated.revos_id), "--sync", stdout=out)
    text = out.getvalue()
    assert "of Northwind Media: pass" in text
    assert "  isolation   7 pass" in text and "  counts      45 pass" in text and "  auth        1 pass" in text
    assert "expected" not in text  # passing checks are tallied, not listed (-v 2 lists them)
    assert VerificationRun.objects.get().verdict == "pass"


def test_verify_agency_sync_exits_one_naming_the_failure(migrated):
    execute("unified", "DELETE FROM comment WHERE id = %s", [migrated.comments[1]])
    out = StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("verify_agency", str(migrated.unified_id), "--sync", stdout=out)
    assert refused.value.returncode == 1
    assert "  counts      1 fail, 44 pass" in out.getvalue()
    assert "fail  counts comments: expected 3 rows; found 2 rows in comment (0 reused)" in out.getvalue()
    assert str(migrated.comments[1]) in out.getvalue()


@pytest.mark.parametrize(
    ("argument", "message"),
    [("not-a-uuid", "'not-a-uuid' is not an agency id"), (str(uuid.UUID(int=7)), "No RevOS agency")],
)
def test_verify_agency_refuses_unknown_and_malformed_ids(agency, rq_queues, argument, message):
    with pytest.raises(CommandError, match=message) as refused:
        call_command("verify_agency", argument)
    assert refused.value.returncode == 2
    assert not VerificationRun.objects.exists() and rq_queues["verification"].count == 0


def test_verify_agency_queues_a_job_that_a_worker_runs(migrated, rq_queues):
    out = StringIO()
    call_command("verify_agency", str(migrated.revos_id), stdout=out)
    run = VerificationRun.objects.get()
    assert f"verification {run.pk} of Northwind Media queued (job {run.job_id})" in out.getvalue()
    assert rq_queues["verification"].job_ids == [run.job_id]
    call_command("verify_agency", str(migrated.revos_id), stdout=StringIO())  # a second request finds the first
    assert VerificationRun.objects.count() == 1 and rq_queues["verification"].count == 1
    run_worker("verification")
    run.refresh_from_db()
    assert run.verdict == "pass"


def test_unconfirmed_link_or_a_migration_in_progress_is_refused(agency, rq_queues):
    unconfirmed = AgencyLink.objects.create(
        revos_agency_id=agency.other_revos_id, name="Unrelated", suggested_kind="new"
    )
    with pytest.raises(VerificationRefused, match="no confirmed link"):
        verification_run_request(link=unconfirmed, actor=None)
    run = migration_run_request(link=agency.link, kind=MigrationRun.Kind.MIGRATE, actor=None)
    with pytest.raises(VerificationRefused, match=f"migrate run queued \\(run {run.pk}\\)"):
        verification_run_request(link=agency.link, actor=None)
    assert not VerificationRun.objects.exists()


def test_redis_down_refuses_with_a_clear_message_and_records_nothing(agency):
    dead = {name: {"URL": "redis://127.0.0.1:1/0"} for name in ("migrations", "verification", "audit")}
    with override_settings(RQ_QUEUES=dead), pytest.raises(VerificationRefused, match=r"Redis .* cannot be reached"):
        verification_run_request(link=agency.link, actor=None)
    assert not VerificationRun.objects.exists()


# --- the admin ------------------------------------------------------------------------------------


def test_admin_lists_verifications_filters_by_verdict_and_failed_check_and_shows_results(migrated, admin_client):
    passed = verify(migrated)
    execute("unified", "DELETE FROM comment WHERE id = %s", [migrated.comments[2]])
    failed = verify(migrated)
    changelist = reverse("admin:migration_jobs_verificationrun_changelist")

    page = admin_client.get(changelist).content.decode()
    assert "Northwind Media" in page and "verdict-pass" in page and "verdict-fail" in page
    assert pks(admin_client.get(changelist, {"verdict": "fail"})) == [failed.pk]
    assert pks(admin_client.get(changelist, {"failed_check": "counts"})) == [failed.pk]
    assert pks(admin_client.get(changelist, {"failed_check": "isolation"})) == []

    detail = admin_client.get(reverse("admin:migration_jobs_verificationrun_change", args=[failed.pk]))
    html = detail.content.decode()
    assert detail.status_code == 200
    assert "check-fail" in html and "check-pass" in html
    assert str(migrated.comments[2]) in html  # named in the folded details
    matrix = detail.context["matrix"]
    assert matrix.columns == ("counts", "content", "references")
    failing = [any(c and not c.passed for c in row) for _, row in matrix.rows]
    assert failing[0] and failing == sorted(failing, reverse=True), "tables with a failure come first"
    assert "comments" in [table for (table, _), bad in zip(matrix.rows, failing, strict=True) if bad]
    assert {f.result.check_name for f in matrix.failures} >= {"counts"}
    assert html.index('id="verification-failures"') < html.index('id="verification-matrix"')
    assert "<pre" not in html  # no JSON column pushing the page sideways
    assert passed.pk != failed.pk


def pks(response) -> list[int]:
    return sorted(obj.pk for obj in response.context["cl"].result_list)


def test_admin_action_queues_verifications_and_says_which_were_skipped(
    migrated, admin_user, rf, rq_queues, monkeypatch
):
    unconfirmed = AgencyLink.objects.create(
        revos_agency_id=migrated.other_revos_id, name="Unrelated", suggested_kind="new"
    )
    request = rf.post("/")
    request.user = admin_user
    sent = []
    modeladmin = site._registry[AgencyLink]
    # The registered admin is shared by every test: patch it for this one only.
    monkeypatch.setattr(modeladmin, "message_user", lambda request, message, level=None: sent.append((level, message)))
    verify_selected_agencies(modeladmin, request, AgencyLink.objects.filter(pk__in=[migrated.link.pk, unconfirmed.pk]))
    run = VerificationRun.objects.get()
    assert run.agency_link == migrated.link and rq_queues["verification"].job_ids == [run.job_id]
    text = " ".join(message for _, message in sent)
    assert "Verification queued for 1 agency: Northwind Media" in text
    assert "Unrelated: Unrelated has no confirmed link" in text


# --- at-least-once delivery -----------------------------------------------------------------------


def test_a_redelivered_verification_starts_over_and_a_finished_one_is_left_alone(migrated):
    run = verify(migrated)
    results = run.results.count()
    finished_at = run.finished_at
    assert verification_run_execute(verification_run_id=run.pk).finished_at == finished_at  # nothing redone
    # The worker died mid-run: RQ delivers again; the partial results are replaced, not added to.
    VerificationRun.objects.filter(pk=run.pk).update(status=VerificationRun.Status.RUNNING)
    run = verification_run_execute(verification_run_id=run.pk)
    assert (run.verdict, run.results.count()) == ("pass", results)


def test_a_verification_that_finds_a_migration_running_records_why_and_checks_nothing(migrated):
    queued = verification_run_request(link=migrated.link, actor=None, enqueue=False)
    migration = MigrationRun.objects.create(
        agency_link=migrated.link, revos_agency_id=migrated.revos_id, status=MigrationRun.Status.RUNNING
    )
    run = verification_run_execute(verification_run_id=queued.pk)
    assert (run.status, run.verdict) == ("error", "error")
    assert run.error == f"Run {migration.pk} is migrating this agency; verify after it ends."
    assert not run.results.exists()


def test_a_queued_verification_whose_job_vanished_is_closed_and_replaced(migrated, rq_queues):
    first = verification_run_request(link=migrated.link, actor=None)
    rq_queues["verification"].empty()
    second = verification_run_request(link=migrated.link, actor=None)
    first.refresh_from_db()
    assert second.pk != first.pk and rq_queues["verification"].job_ids == [second.job_id]
    assert (first.status, first.error) == ("error", "Its job is no longer in the queue; nothing was checked.")


def overlapping_requests(monkeypatch, request):
    """Call request() twice, the second time while the first sits between its commit and its enqueue.

    RQ redelivery makes such overlapping requests for one agency routine. Returns the first's
    result and the second's result (or the exception it raised).
    """
    enqueue, committed, second_started = run_control_module._enqueue, threading.Event(), threading.Event()

    def slow_enqueue(run, job):
        committed.set()
        second_started.wait(timeout=10)
        time.sleep(0.5)  # the second request is now waiting on the agency's request lock
        enqueue(run, job)

    monkeypatch.setattr(run_control_module, "_enqueue", slow_enqueue)
    outcome = {}

    def first_request():
        try:
            outcome["first"] = request()
        finally:
            connections.close_all()

    thread = threading.Thread(target=first_request)
    thread.start()
    assert committed.wait(timeout=10)
    second_started.set()
    try:
        second = request()
    except Exception as error:
        second = error
    thread.join(timeout=30)
    outcome["first"].refresh_from_db()
    return outcome["first"], second


def test_a_verification_requested_while_another_is_being_enqueued_joins_it(migrated, rq_queues, monkeypatch):
    first, second = overlapping_requests(monkeypatch, lambda: verification_run_request(link=migrated.link, actor=None))
    assert second.pk == first.pk and first.status == VerificationRun.Status.QUEUED, first.error
    assert rq_queues["verification"].job_ids == [first.job_id]


def test_a_migration_requested_while_another_is_being_enqueued_is_refused_and_fails_nothing(
    agency, rq_queues, monkeypatch
):
    first, second = overlapping_requests(
        monkeypatch,
        lambda: migration_run_request(link=agency.link, kind=MigrationRun.Kind.MIGRATE, actor=None),
    )
    assert isinstance(second, RunRefused) and "already has a run queued" in str(second)
    assert first.status == MigrationRun.Status.QUEUED, first.error
    assert rq_queues["migrations"].job_ids == [first.job_id]


def test_agency_page_helper_shows_the_latest_verdict_and_its_age(migrated):
    from migration_jobs.admin.verification import latest_verification

    assert latest_verification(migrated.link) == "never verified"
    run = verify(migrated)
    html = latest_verification(migrated.link)
    assert f"/verificationrun/{run.pk}/change/" in html and "verdict-pass" in html and "ago" in html


def test_rollback_through_workers_is_verified_as_leaving_nothing_behind(migrated, rq_queues):
    rollback = migration_run_request(link=migrated.link, kind=MigrationRun.Kind.ROLLBACK, actor=None)
    run_worker("migrations", "verification")
    rollback.refresh_from_db()
    assert rollback.status == MigrationRun.Status.SUCCEEDED, rollback.error
    verification = VerificationRun.objects.get(migration_run=rollback)
    assert verification.verdict == "pass", failing(verification)
    assert verification.results.get(check_name="counts", table_name="leads").details["migrated"] is False
    assert verification.results.get(check_name="content").details["not_applicable"]


# --- checks side by side ------------------------------------------------------------------------


def results_of(run: VerificationRun) -> list[tuple]:
    return [(r.check_name, r.table_name, r.status, r.expected, r.actual, r.details) for r in run.results.order_by("pk")]


def plant_faults(a: Agency) -> None:
    """A missing row, a changed value and a row moved to another agency, in three tables."""
    execute("unified", "DELETE FROM comment WHERE id = %s", [a.comments[0]])
    execute("unified", "UPDATE lead SET name = 'Someone else' WHERE id = %s", [a.leads[1]])
    with transaction.atomic(using="unified"):  # past the tenant keys, as a restore would
        execute("unified", "SET LOCAL session_replication_role = replica")
        execute("unified", "UPDATE lead SET agency_id = %s WHERE id = %s", [a.other_unified_id, a.leads[2]])


def test_parallel_verification_records_exactly_the_serial_results_on_planted_faults(migrated, settings):
    plant_faults(migrated)
    settings.VERIFICATION_WORKERS = 1
    serial = verify(migrated)
    settings.VERIFICATION_WORKERS = 4
    parallel = verify(migrated)
    assert serial.verdict == parallel.verdict == "fail"
    assert {("counts", "comments"), ("content", "leads"), ("counts", "leads")} <= set(failing(serial))
    assert results_of(parallel) == results_of(serial)


def test_every_worker_reads_the_snapshot_taken_when_the_verification_started(migrated, settings, monkeypatch):
    settings.VERIFICATION_WORKERS = 3
    original = counts_module.counts_check
    deleted = []

    def delete_a_comment_first(plan, **kwargs):
        # Committed while the checks are under way, on a connection of its own.
        if not deleted:
            with connect("unified", purpose="test") as connection:
                connection.execute("DELETE FROM comment WHERE id = %s", [migrated.comments[0]])
            deleted.append(migrated.comments[0])
        return original(plan, **kwargs)

    monkeypatch.setattr(counts_module, "counts_check", delete_a_comment_first)
    assert verify(migrated).verdict == "pass", "no worker saw the row deleted after the snapshot"
    assert deleted
    monkeypatch.setattr(counts_module, "counts_check", original)
    assert set(failing(verify(migrated))) == {("counts", "comments"), ("content", "comments")}


def test_a_data_check_that_breaks_its_transaction_is_an_error_and_its_worker_goes_on(migrated, settings, monkeypatch):
    settings.VERIFICATION_WORKERS = 1  # every check after the broken one runs on the same connections
    original = counts_module.counts_check

    def broken_on_leads(plan, *, target, **kwargs):
        if plan.source == "leads":
            target.execute("SELECT 1 / 0")
        return original(plan, target=target, **kwargs)

    monkeypatch.setattr(counts_module, "counts_check", broken_on_leads)
    run = verify(migrated)
    assert (run.status, run.verdict) == ("finished", "error")
    errored = run.results.get(status="error")
    assert (errored.check_name, errored.table_name) == ("counts", "leads")
    assert "division by zero" in errored.actual
    assert not run.results.filter(status="fail").exists()
    assert run.results.filter(check_name="content", table_name="leads", status="pass").exists()


def test_both_sides_of_a_check_run_at_the_same_time(tenant_db):
    started = threading.Event()
    with (
        ThreadPoolExecutor(max_workers=1) as source_side,
        connect("revos", purpose="test") as source,
        connect("unified", purpose="test") as target,
    ):

        def on_source():
            # Waits for the unified query to have begun: run one after the other, this would time out.
            return started.wait(timeout=30), source.execute("SELECT current_database()").fetchone()[0]

        def on_target():
            started.set()
            return target.execute("SELECT current_database()").fetchone()[0]

        (overlapped, source_name), target_name = both_sides(source_side, on_source, on_target)
    assert overlapped
    assert (source_name, target_name) == (
        connections["revos"].settings_dict["NAME"],
        connections["unified"].settings_dict["NAME"],
    )


def test_a_side_that_raises_is_raised_after_the_other_side_has_finished():
    other_done = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as source_side:

        def on_source():
            time.sleep(0.2)
            other_done.set()

        def on_target():
            raise ValueError("the unified side failed")

        with pytest.raises(ValueError, match="unified side failed"):
            both_sides(source_side, on_source, on_target)
        assert other_done.is_set()
