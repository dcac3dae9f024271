"""The schema audit finds each of the seed's Phase 0 problems, planted in the real test databases, under
the right rule and table; the databases as the checked-in SQL leaves them come out clean."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.test import override_settings
from django.urls import reverse

from migration_jobs.demo.phase0 import phase0_problems_clear, phase0_problems_plant
from migration_jobs.models import SchemaAuditRun, SchemaFinding
from migration_jobs.services.schema_audit import Finding, schema_audit_run, schema_audit_start
from tests.conftest import database_url, run_worker

pytestmark = pytest.mark.django_db(databases=["default", "unified", "revos"], transaction=True)

PROBLEM_SEVERITIES = {SchemaFinding.Severity.ERROR, SchemaFinding.Severity.WARN}


def found(findings: list[Finding], rule: str) -> dict[str, Finding]:
    return {f"{f.schema}.{f.table}": f for f in findings if f.rule == rule}


def problems(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity in PROBLEM_SEVERITIES]


def execute(database: str, sql: str, params=None) -> None:
    with connections[database].cursor() as cursor:
        cursor.execute(sql, params)


def anon_readable_without_rls(database: str) -> list[str]:
    """Public tables with RLS off that anon may read. None of the planted ones by default; on
    Supabase (the role mode) the default privileges give anon every new table, so each planted table
    with RLS off is also an anon_readable_without_policy error."""
    with connections[database].cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
            " AND NOT relrowsecurity AND has_table_privilege('anon', oid, 'SELECT') ORDER BY 1"
        )
        return [row[0] for row in cursor.fetchall()]


@contextmanager
def planted(database: str, create_sql: str, drop_sql: str):
    """A problem made for one test, removed afterwards so no other test's truncation sees it."""
    execute(database, create_sql)
    try:
        yield
    finally:
        execute(database, drop_sql)


@pytest.fixture
def phase0(tenant_db):
    """Both databases as they were before Phase 0; the seed's cleanup runs afterwards."""
    for database in ("revos", "unified"):
        phase0_problems_plant(database=database)
    yield
    for database in ("revos", "unified"):
        phase0_problems_clear(database=database)


@pytest.fixture
def live_plural_chat(tenant_db):
    """RevOS's live chat tables hold rows, as in the seed (chat_messages 18, chat_sessions 213)."""
    execute(
        "revos",
        """
        WITH a AS (INSERT INTO agencies (name) VALUES ('Acme') RETURNING id),
             s AS (INSERT INTO chat_sessions (agency_id) SELECT id FROM a RETURNING id)
        INSERT INTO chat_messages (session_id, role, content)
        SELECT s.id, 'user', 'hello ' || n FROM s, generate_series(1, 3) AS n
        """,
    )


# --- clean databases --------------------------------------------------------------------------


def test_unified_database_after_phase1_comes_out_clean(tenant_db):
    for database in ("unified", "audience"):
        assert problems(schema_audit_run(database=database)) == []
    counts = found(schema_audit_run(database="unified"), "table_count")
    assert "Exactly as planned" in counts["public."].detail


def test_revos_source_after_phase0_has_no_problems_and_reports_planned_vs_actual(tenant_db):
    findings = schema_audit_run(database="revos")
    assert problems(findings) == []
    assert "Planned 30; 14 more than planned" in found(findings, "table_count")["public."].detail


def test_audienceos_is_measured_against_its_own_19_planned_tables(tenant_db):
    # The 26+ the seed found once it looked (RBAC and the audit trail, sql/unified/0050).
    detail = found(schema_audit_run(database="audience"), "table_count")["public."].detail
    assert detail.startswith("AudienceOS baseline: 26 table(s) in schema public. Planned 19")


# --- each Phase 0 problem, planted ------------------------------------------------------------


def test_backup_tables_with_rls_off_are_found_in_revos(phase0):
    findings = schema_audit_run(database="revos")
    backups = {"public.backup_dm_sequences", "public.campaigns_trigger_word_backup"}
    assert set(found(findings, "backup_table_without_rls")) == backups
    assert set(found(findings, "rls_disabled_in_public")) == backups
    fix = found(findings, "backup_table_without_rls")["public.backup_dm_sequences"].suggested_fix
    assert fix == "ALTER TABLE public.backup_dm_sequences ENABLE ROW LEVEL SECURITY;"
    assert all(f.severity == SchemaFinding.Severity.ERROR for f in found(findings, "rls_disabled_in_public").values())


def test_abby_contamination_tables_are_found_with_their_row_counts(phase0):
    contamination = found(schema_audit_run(database="revos"), "contamination_table")
    assert set(contamination) == {"public.outfit_history", "public.swatches", "public.swipe_cartridges"}
    assert "(3 row(s))" in contamination["public.outfit_history"].detail
    assert contamination["public.swatches"].suggested_fix == "DROP TABLE public.swatches;"


@override_settings(SCHEMA_AUDIT_CONTAMINATION_TABLES=["swatches"])
def test_the_contamination_list_is_a_setting(phase0):
    assert set(found(schema_audit_run(database="revos"), "contamination_table")) == {"public.swatches"}


def test_singular_plural_duplicates_name_the_live_table_and_drop_the_empty_one(phase0, live_plural_chat):
    duplicates = found(schema_audit_run(database="revos"), "duplicate_singular_plural")
    assert set(duplicates) == {"public.chat_message", "public.chat_session"}
    message = duplicates["public.chat_message"]
    assert "chat_message: 0 row(s), chat_messages: 3 row(s); chat_messages is live" in message.detail
    assert message.suggested_fix == "DROP TABLE public.chat_message;"
    assert duplicates["public.chat_session"].suggested_fix == (
        "-- first drop (or repoint) what references this table: chat_message\nDROP TABLE public.chat_session;"
    )
    assert "chat_session: 0 row(s), chat_sessions: 1 row(s)" in duplicates["public.chat_session"].detail


def test_in_the_unified_database_a_plural_copy_never_outranks_the_singular_table(tenant_db):
    create = "CREATE TABLE public.comments (id int); INSERT INTO public.comments VALUES (1), (2)"
    with planted("unified", create, "DROP TABLE public.comments"):
        duplicates = found(schema_audit_run(database="unified"), "duplicate_singular_plural")
    finding = duplicates["public.comments"]
    assert "comments is live; keep comment" in finding.detail
    assert finding.suggested_fix == (
        "-- comments holds 2 row(s): move them into comment first.\nDROP TABLE public.comments;"
    )


def test_audienceos_user_with_policies_but_rls_off_and_unrestricted_permission_are_found(phase0):
    findings = schema_audit_run(database="audience")
    both = {"public.user", "public.permission"}
    assert set(found(findings, "policy_exists_rls_disabled")) == both
    assert set(found(findings, "rls_disabled_in_public")) == both
    assert set(found(findings, "anon_readable_without_policy")) == both
    user = found(findings, "policy_exists_rls_disabled")["public.user"]
    assert "user_tenant" in user.detail
    assert user.suggested_fix == 'ALTER TABLE public."user" ENABLE ROW LEVEL SECURITY;'


def test_a_table_anon_can_read_outside_public_is_found_without_the_public_only_lint(tenant_db):
    create = (
        "CREATE SCHEMA reporting; GRANT USAGE ON SCHEMA reporting TO anon; "
        "CREATE TABLE reporting.daily (id int); GRANT SELECT ON reporting.daily TO anon"
    )
    with planted("unified", create, "DROP SCHEMA reporting CASCADE"):
        findings = schema_audit_run(database="unified")
    assert set(found(findings, "anon_readable_without_policy")) == {"reporting.daily"}
    assert found(findings, "rls_disabled_in_public") == {}


def test_plural_names_break_the_unified_singular_convention(tenant_db):
    with planted("unified", "CREATE TABLE public.invoices (id int)", "DROP TABLE public.invoices"):
        findings = schema_audit_run(database="unified")
    plural = found(findings, "plural_table_name")
    assert set(plural) == {"public.invoices"}
    assert plural["public.invoices"].suggested_fix == "ALTER TABLE public.invoices RENAME TO invoice;"
    assert plural["public.invoices"].severity == SchemaFinding.Severity.WARN


def test_audience_leaves_out_revos_tables_that_unified_reports(tenant_db):
    with planted(
        "unified", "ALTER TABLE lead DISABLE ROW LEVEL SECURITY", "ALTER TABLE lead ENABLE ROW LEVEL SECURITY"
    ):
        unified = found(schema_audit_run(database="unified"), "policy_exists_rls_disabled")
        audience = found(schema_audit_run(database="audience"), "policy_exists_rls_disabled")
    assert set(unified) == {"public.lead"}
    assert audience == {}


def test_the_suggested_fixes_applied_by_hand_leave_both_databases_clean(phase0, live_plural_chat):
    targets = {"revos": "revos", "audience": "unified"}
    for database, alias in targets.items():
        fixes = [f.suggested_fix for f in problems(schema_audit_run(database=database))]
        assert fixes
        for fix in dict.fromkeys(fixes):  # in the order the report shows them, each once
            execute(alias, fix.split("\n-- or")[0])  # the first remedy where there are two
        assert problems(schema_audit_run(database=database)) == []


def test_planting_twice_changes_nothing(phase0):
    phase0_problems_plant(database="revos")
    assert (
        "(3 row(s))" in found(schema_audit_run(database="revos"), "contamination_table")["public.outfit_history"].detail
    )


# --- the command --------------------------------------------------------------------------------


def audit_schema_command(database: str) -> subprocess.CompletedProcess:
    """manage.py audit_schema in a real process, pointed at this session's test databases."""
    # database_url() keeps a unix-socket server's socket folder (the embedded default) as ?host=.
    env = {
        **os.environ,
        "DATABASE_URL": database_url("default"),
        "UNIFIED_DATABASE_URL": database_url("unified"),
        "REVOS_DATABASE_URL": database_url("revos"),
    }
    command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "audit_schema", "--database", database]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_command_exits_non_zero_on_error_findings_and_prints_the_fix(phase0):
    result = audit_schema_command("revos")
    assert result.returncode == 1, result.stderr
    assert "ERROR  backup_table_without_rls  public.backup_dm_sequences" in result.stdout
    assert "| ALTER TABLE public.backup_dm_sequences ENABLE ROW LEVEL SECURITY;" in result.stdout
    exposed = anon_readable_without_rls("revos")
    for table in exposed:
        assert f"ERROR  anon_readable_without_policy  public.{table}" in result.stdout
    assert f"{4 + len(exposed)} finding(s) of error severity" in result.stderr


def test_command_exits_zero_on_a_clean_database(tenant_db):
    for database in ("unified", "audience"):
        result = audit_schema_command(database)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 error(s), 0 warning(s)" in result.stdout


# --- the job ------------------------------------------------------------------------------------


def test_audit_job_on_a_real_worker_stores_the_findings(phase0, rq_queues):
    run = schema_audit_start(database="revos")
    assert rq_queues["audit"].job_ids == [run.job_id]
    run_worker("audit")
    run.refresh_from_db()
    assert run.status == SchemaAuditRun.Status.FINISHED
    # Info: two table counts and the leftover chat_message's unindexed session_id key.
    assert (run.error_count, run.warn_count, run.info_count) == (4 + len(anon_readable_without_rls("revos")), 5, 3)
    stored = set(run.findings.values_list("rule", "table"))
    assert ("unindexed_foreign_keys", "chat_message") in stored
    assert ("backup_table_without_rls", "backup_dm_sequences") in stored
    assert ("contamination_table", "outfit_history") in stored


def test_a_failing_audit_marks_its_run_failed(tenant_db, rq_queues):
    run = SchemaAuditRun.objects.create(database="nowhere", job_id=SchemaAuditRun.new_job_id())
    rq_queues["audit"].enqueue("migration_jobs.jobs_audit.run_schema_audit", run.pk, job_id=run.job_id)
    run_worker("audit")
    run.refresh_from_db()
    assert run.status == SchemaAuditRun.Status.FAILED
    assert "nowhere" in run.error


# --- the admin ----------------------------------------------------------------------------------


@pytest.fixture
def staff(tenant_db, client):
    user = User.objects.create_user("ops", password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_schemaauditrun", "run_schemaauditrun"]))
    client.force_login(user)
    return user


def test_run_audit_button_queues_an_audit_of_the_chosen_database(staff, client, rq_queues):
    changelist = client.get(reverse("admin:migration_jobs_schemaauditrun_changelist"))
    assert b"Run audit: AudienceOS baseline" in changelist.content
    response = client.post(reverse("admin:migration_jobs_schemaauditrun_run"), {"database": "audience"})
    run = SchemaAuditRun.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("admin:migration_jobs_schemaauditrun_change", args=[run.pk])
    assert (run.database, run.requested_by) == ("audience", staff)
    assert rq_queues["audit"].job_ids == [run.job_id]


def test_run_audit_needs_its_own_permission_and_a_post(staff, client, rq_queues):
    assert client.get(reverse("admin:migration_jobs_schemaauditrun_run")).status_code == 405
    staff.user_permissions.remove(Permission.objects.get(codename="run_schemaauditrun"))
    changelist = client.get(reverse("admin:migration_jobs_schemaauditrun_changelist"))
    assert b"Run audit" not in changelist.content
    response = client.post(reverse("admin:migration_jobs_schemaauditrun_run"), {"database": "revos"})
    assert response.status_code == 403
    assert not SchemaAuditRun.objects.exists()


def test_redis_down_gives_a_clear_message_not_a_500(staff, client):
    dead_redis = {**settings.RQ_QUEUES, "audit": {"URL": "redis://127.0.0.1:1/0"}}
    with override_settings(RQ_QUEUES=dead_redis):
        response = client.post(reverse("admin:migration_jobs_schemaauditrun_run"), {"database": "revos"}, follow=True)
    assert response.status_code == 200
    assert "Redis (the job queue) is unreachable" in response.content.decode()
    assert SchemaAuditRun.objects.get().status == SchemaAuditRun.Status.FAILED


def test_run_page_shows_findings_coloured_by_severity_with_the_fix_sql(phase0, staff, client, rq_queues):
    run = schema_audit_start(database="audience")
    run_worker("audit")
    page = client.get(reverse("admin:migration_jobs_schemaauditrun_change", args=[run.pk])).content.decode()
    assert "policy_exists_rls_disabled" in page
    assert "<pre" in page and "ALTER TABLE public.&quot;user&quot; ENABLE ROW LEVEL SECURITY;" in page
    assert "background:#ba2121" in page
    assert "Run this audit again" in page


# --- Supabase linter rules: each finds its planted problem, and its fix SQL removes it -----------


@pytest.fixture
def plant_table(tenant_db):
    """A tenant-shaped table with RLS on and no policy, dropped afterwards."""
    execute(
        "unified",
        "CREATE TABLE plant (id uuid PRIMARY KEY, agency_id uuid NOT NULL, app_context varchar(20) NOT NULL,"
        " parent_id uuid REFERENCES plant (id)); ALTER TABLE plant ENABLE ROW LEVEL SECURITY;"
        " CREATE INDEX plant_agency_app_idx ON plant (agency_id, app_context);"
        " CREATE INDEX plant_parent_idx ON plant (parent_id)",
    )
    yield "public.plant"
    execute("unified", "DROP TABLE IF EXISTS plant")


def findings_of(rule: str, database: str = "unified") -> dict[str, Finding]:
    return found(schema_audit_run(database=database), rule)


def test_shipped_schema_passes_every_supabase_linter_rule(tenant_db):
    rules = {
        "auth_rls_initplan",
        "multiple_permissive_policies",
        "rls_policy_always_true",
        "unindexed_foreign_keys",
        "duplicate_index",
        "function_search_path_mutable",
    }
    for database in ("unified", "audience", "revos"):
        assert [f for f in schema_audit_run(database=database) if f.rule in rules] == []


def test_auth_rls_initplan_finds_a_per_row_jwt_call_and_its_fix_wraps_it(plant_table):
    # The policy exactly as sql/unified/0007 wrote it before 0051.
    execute(
        "unified",
        "CREATE POLICY plant_per_row ON plant FOR ALL TO authenticated USING (agency_id = (auth.jwt() ->> "
        "'agency_id')::uuid AND (app_context = 'both' OR app_context = (auth.jwt() ->> 'app_context')))",
    )
    finding = findings_of("auth_rls_initplan")[plant_table]
    assert finding.severity == "warn" and "plant_per_row" in finding.detail
    assert finding.suggested_fix.startswith("ALTER POLICY plant_per_row ON public.plant USING (")
    assert finding.suggested_fix.count("(select auth.jwt())") == 2
    execute("unified", finding.suggested_fix)
    assert plant_table not in findings_of("auth_rls_initplan")


def test_multiple_permissive_policies_for_one_role_and_action_are_found(plant_table):
    execute(
        "unified",
        "CREATE POLICY plant_tenant ON plant FOR ALL TO authenticated USING (agency_id = (SELECT auth.jwt() ->> "
        "'agency_id')::uuid); CREATE POLICY plant_extra ON plant FOR SELECT TO authenticated USING (false)",
    )
    finding = findings_of("multiple_permissive_policies")[plant_table]
    assert "plant_extra, plant_tenant" in finding.detail and "authenticated SELECT" in finding.detail
    assert "authenticated INSERT" not in finding.detail, "only the overlapping action"
    execute("unified", finding.suggested_fix.splitlines()[-1])
    assert plant_table not in findings_of("multiple_permissive_policies")


def test_rls_policy_always_true_is_found_and_its_fix_scopes_by_tenant(plant_table):
    execute("unified", "CREATE POLICY plant_open ON plant FOR UPDATE TO authenticated USING (true)")
    finding = findings_of("rls_policy_always_true")[plant_table]
    assert "USING and WITH CHECK always true" in finding.detail
    assert "agency_id = ((select auth.jwt()) ->> 'agency_id')::uuid" in finding.suggested_fix
    execute("unified", finding.suggested_fix)
    assert plant_table not in findings_of("rls_policy_always_true")
    assert plant_table not in findings_of("auth_rls_initplan"), "the fix is itself initplan-safe"


def test_a_select_policy_open_to_all_is_not_reported_as_always_true(plant_table):
    # splinter leaves USING (true) for SELECT alone: public read access is often deliberate.
    execute("unified", "CREATE POLICY plant_read ON plant FOR SELECT TO authenticated USING (true)")
    assert plant_table not in findings_of("rls_policy_always_true")


def test_unindexed_foreign_key_is_found_and_its_fix_indexes_it(plant_table):
    execute("unified", "DROP INDEX plant_parent_idx; CREATE INDEX plant_parent_later_idx ON plant (id, parent_id)")
    finding = findings_of("unindexed_foreign_keys")[plant_table]
    assert "plant_parent_id_fkey" in finding.detail
    assert finding.suggested_fix == "CREATE INDEX CONCURRENTLY plant_parent_id_idx ON public.plant (parent_id);"
    execute("unified", finding.suggested_fix)
    assert plant_table not in findings_of("unindexed_foreign_keys")


def test_a_tenant_key_led_by_either_column_counts_as_indexed(tenant_db):
    # lead_campaign_id_fkey is (campaign_id, agency_id), indexed as (campaign_id, agency_id) by 0052.
    execute("unified", "DROP INDEX lead_campaign_id_agency_idx")
    try:
        assert "public.lead" in findings_of("unindexed_foreign_keys")
        execute("unified", "CREATE INDEX lead_campaign_id_agency_idx ON lead (agency_id, campaign_id)")
        assert "public.lead" not in findings_of("unindexed_foreign_keys")
    finally:
        execute("unified", "DROP INDEX IF EXISTS lead_campaign_id_agency_idx")
        execute("unified", "CREATE INDEX lead_campaign_id_agency_idx ON lead (campaign_id, agency_id)")


def test_duplicate_index_is_found_and_its_fix_keeps_one(tenant_db):
    with planted(
        "unified", "CREATE INDEX lead_dup_idx ON lead (agency_id, app_context)", "DROP INDEX IF EXISTS lead_dup_idx"
    ):
        finding = findings_of("duplicate_index")["public.lead"]
        assert "keep lead_agency_app_idx" in finding.detail
        assert finding.suggested_fix == "DROP INDEX CONCURRENTLY lead_dup_idx;"
        execute("unified", finding.suggested_fix)
        assert "public.lead" not in findings_of("duplicate_index")


def test_a_duplicate_of_a_constraint_index_keeps_the_constraint_one(tenant_db):
    with planted(
        "unified", "CREATE UNIQUE INDEX a_lead_pkey_copy ON lead (id)", "DROP INDEX IF EXISTS a_lead_pkey_copy"
    ):
        finding = findings_of("duplicate_index")["public.lead"]
        assert finding.suggested_fix == "DROP INDEX CONCURRENTLY a_lead_pkey_copy;"


def test_function_with_mutable_search_path_is_found_and_its_fix_pins_it(tenant_db):
    with planted(
        "unified",
        "CREATE FUNCTION public.lead_total(agency uuid) RETURNS bigint LANGUAGE sql"
        " AS 'SELECT count(*) FROM public.lead WHERE agency_id = agency'",
        "DROP FUNCTION IF EXISTS public.lead_total(uuid)",
    ):
        finding = findings_of("function_search_path_mutable")["public.lead_total"]
        assert finding.detail == "Function public.lead_total(agency uuid) has a role-mutable search_path."
        execute("unified", finding.suggested_fix.splitlines()[0])
        assert "public.lead_total" not in findings_of("function_search_path_mutable")
