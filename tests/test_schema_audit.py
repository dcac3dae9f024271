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
from tests.conftest import run_worker

pytestmark = pytest.mark.django_db(databases=["default", "unified", "revos"], transaction=True)

PROBLEM_SEVERITIES = {SchemaFinding.Severity.ERROR, SchemaFinding.Severity.WARN}


def found(findings: list[Finding], rule: str) -> dict[str, Finding]:
    return {f"{f.schema}.{f.table}": f for f in findings if f.rule == rule}


def problems(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity in PROBLEM_SEVERITIES]


def execute(database: str, sql: str, params=None) -> None:
    with connections[database].cursor() as cursor:
        cursor.execute(sql, params)


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
    detail = found(schema_audit_run(database="audience"), "table_count")["public."].detail
    assert detail.startswith("AudienceOS baseline: 22 table(s) in schema public. Planned 19")


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
    assert "user_app_rls" in user.detail
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
    env = dict(os.environ)
    for alias, variable in (
        ("default", "DATABASE_URL"),
        ("unified", "UNIFIED_DATABASE_URL"),
        ("revos", "REVOS_DATABASE_URL"),
    ):
        config = connections[alias].settings_dict
        env[variable] = f"postgres://{config['USER']}@{config['HOST']}:{config['PORT']}/{config['NAME']}"
    command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "audit_schema", "--database", database]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_command_exits_non_zero_on_error_findings_and_prints_the_fix(phase0):
    result = audit_schema_command("revos")
    assert result.returncode == 1, result.stderr
    assert "ERROR  backup_table_without_rls  public.backup_dm_sequences" in result.stdout
    assert "| ALTER TABLE public.backup_dm_sequences ENABLE ROW LEVEL SECURITY;" in result.stdout
    assert "4 finding(s) of error severity" in result.stderr


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
    assert (run.error_count, run.warn_count, run.info_count) == (4, 5, 2)
    stored = set(run.findings.values_list("rule", "table"))
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
