"""An agency's timeline, counters and next actions: the page, the run page and the command agree.

A failed cutover stays in the timeline after its retry; a verification failed by an edit in the
unified database names the full re-read that repairs it, and the page alone carries it out; the
services refuse a full re-read of a cut-over agency in the same words for the page and the command.
"""

from __future__ import annotations

import inspect
import io
import re
import uuid

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from migration_jobs.demo.demo import demo_data_seed
from migration_jobs.etl.engine import AgencyMigration
from migration_jobs.etl.tally import TableTally
from migration_jobs.models import AgencyLink, MigrationRun, VerificationRun
from migration_jobs.models.flags import FeatureFlag
from migration_jobs.refusals import RunRefused
from migration_jobs.selectors import AGENCY_STATES, agency_migrated_rows
from migration_jobs.selectors.agency_page import agency_cockpit_read
from migration_jobs.selectors.plan import plan_latest, plan_rows_planned
from migration_jobs.selectors.timeline import (
    LINK_REFUSED,
    agency_next_action,
    agency_timeline,
    run_counters,
    run_kind_shape,
    run_next_action,
    run_summary,
    run_tables_progress,
)
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
from migration_jobs.services.full_reread import migration_full_reread_request
from migration_jobs.services.kinds.cutover import cutover_run_request
from migration_jobs.services.runs import migration_run_request, migration_run_tally_record
from migration_jobs.services.verification import verification_run_request
from tests.conftest import database_url, run_worker

Status, Kind = MigrationRun.Status, MigrationRun.Kind


@pytest.fixture
def link(tenant_db, rq_queues, settings) -> AgencyLink:
    """One demo agency, confirmed, migrated from the command line and verified."""
    settings.CUTOVER_DRAIN_TIMEOUT_SECONDS = 5
    FeatureFlag.objects.update_or_create(
        name="unified_db", defaults={"requires_verification": True, "enabled_globally": False, "rollout_percentage": 0}
    )
    demo_data_seed(agencies=2, scale=1, seed=5)
    agency_links_sync()
    link = AgencyLink.objects.order_by("name").first()
    link = agency_link_confirm(
        link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None
    )
    call_command("migrate_agency", str(link.revos_agency_id), "--sync", stdout=io.StringIO())
    run_worker("verification")
    return link


@pytest.fixture
def ops(tenant_db) -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def cockpit_url(link: AgencyLink) -> str:
    return reverse("admin:migration_jobs_agencylink_change", args=[link.pk])


def timeline_command(link: AgencyLink) -> str:
    out = io.StringIO()
    call_command("agency_timeline", str(link.revos_agency_id), stdout=out)
    return out.getvalue()


def test_every_run_kind_has_a_shape():
    # A kind missing from the table would show its outcome only: no steps, no rows, no retry button.
    for kind in Kind.values:
        assert run_kind_shape(kind).retry, kind


def test_a_failed_cutover_stays_in_the_timeline_after_its_retry_and_the_command_says_the_same(link, ops, settings):
    settings.CUTOVER_DRAIN_TIMEOUT_SECONDS = 0.5
    with psycopg.connect(database_url("revos"), application_name="slow-app") as app:
        app.execute("UPDATE leads SET name = 'w3' WHERE agency_id = %s", [link.revos_agency_id])  # left open
        failed = cutover_run_request(link=link, reason="first try", actor=None)
        run_worker("migrations")
        app.rollback()
    failed.refresh_from_db()
    assert failed.status == Status.FAILED and "slow-app" in failed.error

    cockpit = agency_cockpit_read(link=link)
    assert cockpit.next_action.action == "cutover" and "Retry" in cockpit.next_action.text
    page = ops.get(cockpit_url(link)).content.decode()
    assert 'id="next-action-button"' in page and "Retry the cutover" in page
    assert 'id="run-step-failed"' in page  # the drain step stands out, its detail beside it
    assert "0 / 0" not in page and "Total</th><th>0 tables" not in page  # no row counters for a switch

    settings.CUTOVER_DRAIN_TIMEOUT_SECONDS = 5
    retried = cutover_run_request(link=link, reason="second try", actor=None)
    run_worker("migrations")
    retried.refresh_from_db()
    assert retried.status == Status.SUCCEEDED, retried.error

    entries = {(e.model, e.pk): e for e in agency_timeline(link=link).entries}
    assert entries[("migrationrun", failed.pk)].outcome == "Failed"
    assert entries[("migrationrun", retried.pk)].outcome == "Succeeded"
    assert entries[("migrationrun", retried.pk)].write_downtime_seconds is not None
    first_migration = MigrationRun.objects.filter(agency_link=link, kind=Kind.MIGRATE).earliest()
    assert entries[("migrationrun", first_migration.pk)].who == "command"
    verification = VerificationRun.objects.filter(agency_link=link).earliest()
    assert entries[("verificationrun", verification.pk)].who == f"after run #{first_migration.pk}"

    page = ops.get(cockpit_url(link)).content.decode()
    assert f'data-run="{failed.pk}" data-outcome="Failed"' in page
    assert f'data-run="{retried.pk}" data-outcome="Succeeded"' in page
    printed = timeline_command(link)
    cockpit = agency_cockpit_read(link=link)
    assert f"{link.name} ({link.revos_agency_id}): cut over" in printed
    assert f"Next: {cockpit.next_action.text}" in printed
    assert f"Cut over #{failed.pk}" in printed and f"Cut over #{retried.pk}" in printed
    failed_line = next(line for line in printed.splitlines() if f"Cut over #{failed.pk}" in line)
    assert "Failed" in failed_line and "command" in failed_line

    # Cut over, the agency refuses a full re-read alike from the page, the service and the command.
    with pytest.raises(RunRefused) as refused:
        migration_full_reread_request(link=link, reason="why not", actor=None)
    assert "was cut over" in str(refused.value)
    with pytest.raises(CommandError) as command_refused:
        call_command("migrate_agency", str(link.revos_agency_id), "--full", stdout=io.StringIO())
    assert str(command_refused.value) == str(refused.value)
    url = reverse("admin:migration_jobs_agencylink_full_reread", args=[link.pk])
    response = ops.post(url, {"reason": "x"}, follow=True)
    assert [str(m) for m in response.context["messages"]] == [f"Full re-read refused: {refused.value}"]
    assert MigrationRun.objects.filter(agency_link=link, full_reread=True).count() == 0


def test_a_verification_failed_by_a_unified_side_edit_is_repaired_from_the_page_alone(link, ops):
    with connections["unified"].cursor() as cursor:
        cursor.execute(
            "DELETE FROM email_queue WHERE id = (SELECT target_id FROM controlplane.id_map WHERE agency_id = %s"
            " AND target_table = 'email_queue' AND inserted ORDER BY target_id LIMIT 1)",
            [link.revos_agency_id],
        )
    verification_run_request(link=link, actor=None)
    run_worker("verification")
    cockpit = agency_cockpit_read(link=link)
    assert cockpit.verification.verdict == VerificationRun.Verdict.FAIL
    assert cockpit.next_action.action == "fullreread" and "full re-read" in cockpit.next_action.text
    page = ops.get(cockpit_url(link)).content.decode()
    assert 'href="#fullreread-form"' in page and 'id="fullreread-form"' in page

    url = reverse("admin:migration_jobs_agencylink_full_reread", args=[link.pk])
    blank = ops.post(url, {"reason": "   "}, follow=True)
    assert [str(m) for m in blank.context["messages"]] == [
        "Full re-read refused: A full re-read needs a reason; it is kept with the run."
    ]
    queued = ops.post(url, {"reason": "an email was deleted in the unified database"}, follow=True)
    assert any("Full re-read of" in str(m) for m in queued.context["messages"])
    run_worker("migrations", "verification")

    run = MigrationRun.objects.filter(agency_link=link, full_reread=True).get()
    assert run.status == Status.SUCCEEDED, run.error
    assert run.reason == "an email was deleted in the unified database"
    cockpit = agency_cockpit_read(link=link)
    assert cockpit.verification.verdict == VerificationRun.Verdict.PASS and cockpit.state == "verified"
    assert any(e.kind == "Migrate (full re-read)" and e.pk == run.pk for e in cockpit.timeline.entries)


def test_counters_agree_on_a_succeeded_run_and_the_run_page_shows_what_its_kind_means(link, ops):
    run = MigrationRun.objects.filter(agency_link=link, kind=Kind.MIGRATE).get()
    # As a run whose last progress report came before its last tables (one with no rows sends none).
    MigrationRun.objects.filter(pk=run.pk).update(tables_done=run.tables_total - 1, rows_done=run.rows_total - 7)
    run.refresh_from_db()
    counters = run_counters(run=run)
    assert (counters.percent, counters.tables_done, counters.rows_done) == (100, run.tables_total, run.rows_total)
    page = ops.get(cockpit_url(link)).content.decode()
    assert f"{run.tables_total} / {run.tables_total}</span> done" in page
    assert f"{run.rows_total:,} / {run.rows_total:,}" in page

    MigrationRun.objects.filter(pk=run.pk).update(status=Status.PAUSED)
    run.refresh_from_db()
    paused = run_counters(run=run)  # a paused run says how far it got, no more
    assert (paused.rows_done, paused.tables_done) == (run.rows_total - 7, run.tables_total - 1)
    assert paused.percent < 100
    assert run_next_action(run=run).action == "migrate"

    plan = migration_run_request(link=link, kind=Kind.PLAN, actor=None)
    run_worker("migrations")
    page = ops.get(reverse("admin:migration_jobs_migrationrun_change", args=[plan.pk])).content.decode()
    assert 'id="run-summary"' in page and "Control:" not in page and "Full reread" not in page
    summary = dict(run_summary(run=MigrationRun.objects.get(pk=plan.pk)))
    assert "Rows" not in summary and "Rows counted" in summary  # a plan copies nothing; it counts
    changelist = ops.get(reverse("admin:migration_jobs_migrationrun_changelist")).content.decode()
    assert changelist.count("<progress") == 2  # the migration's bar and the plan's, tables counted


def test_a_rollback_and_a_plan_report_progress_table_by_table_on_the_page_the_json_and_the_command(link, ops):
    inserted = agency_migrated_rows(link=link)
    rollback = migration_run_request(link=link, kind=Kind.ROLLBACK, actor=None)
    # As its worker reports it two tables in (what the engine hands etl/tally.py), before its commit.
    tally = TableTally(tables=["comments", "posts", "leads"]).end("comments", 12).end("posts", 30).begin("leads")
    migration_run_tally_record(run_id=rollback.pk, tally=tally, rows_total=inserted)
    progress = ops.get(reverse("admin:migration_jobs_agencylink_progress", args=[link.pk])).json()
    assert (progress["rows_done"], progress["rows_total"], progress["tables_done"], progress["tables_total"]) == (
        42,
        inserted,
        2,
        3,
    )
    assert progress["table"] == "leads" and progress["percent"] == int(100 * 42 / inserted)
    assert [(t["name"], t["rows_done"]) for t in progress["tables_progress"]] == [("posts", 30), ("comments", 12)]
    page = ops.get(cockpit_url(link)).content.decode()
    assert f'<span id="run-rows" class="numeric">42 / {inserted:,}</span> rows deleted' in page
    assert 'tables: <span id="run-tables">2 / 3</span> deleted · now <span id="run-table">leads</span>' in page
    assert "Progress of Roll back" in timeline_command(link) and "now leads" in timeline_command(link)

    run_worker("migrations")
    rollback.refresh_from_db()
    assert rollback.status == Status.SUCCEEDED, rollback.error
    deleted = {table: outcome["deleted"] for table, outcome in rollback.report.items()}
    assert dict(rollback.table_rows) == deleted and len(rollback.table_rows) == rollback.tables_total == len(deleted)
    assert sum(rows for _, rows in rollback.table_rows) == rollback.rows_done == rollback.rows_total == inserted > 0
    assert agency_migrated_rows(link=link) == 0
    assert dict(run_summary(run=rollback))["Rows deleted"] == f"{inserted:,} / {inserted:,} (100 %)"
    assert f"100 % · {inserted:,} / {inserted:,} rows deleted · tables {len(deleted)} / {len(deleted)} deleted" in (
        timeline_command(link)
    )

    plan = migration_run_request(link=link, kind=Kind.PLAN, actor=None)
    run_worker("migrations")
    plan.refresh_from_db()
    counted = {table: outcome["source_rows"] for table, outcome in plan.report["tables"].items()}
    assert dict(plan.table_rows) == counted and plan.rows_done == sum(counted.values()) > 0
    assert [table for table, _ in plan.table_rows] == plan.report["order"], "in the order the plan takes them"
    run_page = ops.get(reverse("admin:migration_jobs_migrationrun_change", args=[plan.pk])).content.decode()
    assert f"{sum(counted.values()):,} (100 %)" in run_page


def test_a_failure_under_a_link_that_no_longer_holds_offers_re_link_refused_alike_by_page_and_command(link, ops):
    other = AgencyLink.objects.exclude(pk=link.pk).get()
    # Linked to an AudienceOS agency that is gone (deleted behind the tool's back, or a typo of an id).
    gone = uuid.uuid4()
    AgencyLink.objects.filter(pk=other.pk).update(kind="existing", unified_agency_id=gone, confirmed_at=timezone.now())
    other.refresh_from_db()
    failed = migration_run_request(link=other, kind=Kind.MIGRATE, actor=None)
    run_worker("migrations")
    failed.refresh_from_db()
    assert failed.status == Status.FAILED, "nothing can be written under an agency that does not exist"
    cockpit = agency_cockpit_read(link=other)
    assert cockpit.next_action.action == "relink"
    assert f"Migrate #{failed.pk} failed, and the link no longer holds" in cockpit.next_action.text
    assert f"({gone}) no longer exists" in cockpit.next_action.text and cockpit.relink_refusal == ""
    page = ops.get(cockpit_url(other)).content.decode()
    assert 'data-action="relink"' in page and 'id="next-action-button" href="#link-status"' in page
    out = timeline_command(other)
    assert f"Next: {cockpit.next_action.text}" in out
    assert f"Re-link: manage.py link_agency {other.revos_agency_id} --existing UNIFIED_ID (or --new)" in out
    # The button leads to the link form, the existing flow: confirmed to the agency that exists, the failure
    # is a plain failed migration again, to resume.
    token = ops.get(cockpit_url(other)).cookies.get("csrftoken")
    confirm = reverse("admin:migration_jobs_agencylink_confirm", args=[other.pk])
    data = {"kind": "existing", "unified_agency_id": str(other.suggested_agency_id)}
    response = ops.post(confirm, {**data, "csrfmiddlewaretoken": token.value if token else ""}, follow=True)
    assert [str(m) for m in response.context["messages"]][-1].startswith("Link confirmed")
    other.refresh_from_db()
    assert other.unified_agency_id == other.suggested_agency_id
    assert agency_cockpit_read(link=other).next_action.action == "migrate"

    # An agency with rows migrated under the link that no longer holds: re-linking waits for a rollback,
    # and the page's button and the command refuse it in the same words.
    AgencyLink.objects.filter(pk=link.pk).update(kind="existing", unified_agency_id=gone)
    link.refresh_from_db()
    verification_run_request(link=link, actor=None)
    run_worker("verification")
    cockpit = agency_cockpit_read(link=link)
    assert cockpit.state == "migrated" and cockpit.next_action.action == "relink", cockpit.next_action.text
    refusal = f"{link.name} has migrated rows under its current link; roll it back first."
    assert cockpit.relink_refusal == refusal
    page = ops.get(cockpit_url(link)).content.decode()
    assert f'<span class="why refused" id="relink-reason">Not now: {refusal}</span>' in page
    assert f"Re-link refused now: {refusal}" in timeline_command(link)
    with pytest.raises(CommandError, match=re.escape(refusal)):
        call_command("link_agency", str(link.revos_agency_id), "--new", stdout=io.StringIO())


def test_a_row_refused_as_another_agencys_names_re_link_in_the_engines_own_words():
    refused = MigrationRun(kind=Kind.MIGRATE, status=Status.FAILED, failed_table="users", failed_batch=0)
    refused.error = (
        "users: source row 1 was refused (batch 0): it is user 2 of unified agency 3 (same email), and rows may"
        f" reference their own agency's user rows only: {LINK_REFUSED} 3, or move that user first"
    )
    assert run_next_action(run=refused).action == "relink"
    assert LINK_REFUSED in inspect.getsource(AgencyMigration._refuse_other_agencies_rows), "the words it looks for"
    refused.error = "leads: source row 1 was refused (batch 0): violates check constraint lead_email_check"
    assert run_next_action(run=refused).action == "migrate"  # a row to fix in RevOS, then Resume


@pytest.fixture
def linked(tenant_db, rq_queues) -> AgencyLink:
    FeatureFlag.objects.update_or_create(
        name="unified_db", defaults={"requires_verification": True, "enabled_globally": False, "rollout_percentage": 0}
    )
    demo_data_seed(agencies=2, scale=2, seed=5)
    agency_links_sync()
    link = AgencyLink.objects.order_by("name").first()
    return agency_link_confirm(
        link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None
    )


def test_a_running_migration_shows_rows_done_of_rows_planned_per_table_in_flight(linked, settings):
    settings.MIGRATION_BATCH_SIZE = 5
    migration_run_request(link=linked, kind=Kind.PLAN, actor=None)
    run_worker("migrations")
    run = migration_run_request(link=linked, kind=Kind.MIGRATE, actor=None)
    MigrationRun.objects.filter(pk=run.pk).update(control=MigrationRun.Control.PAUSE)  # stops after a batch
    run_worker("migrations")
    run.refresh_from_db()
    assert run.status == Status.PAUSED and run.current_table, run.error
    run.status = Status.RUNNING  # as the page reads it between two batches (in memory: no worker holds it)
    with connections["unified"].cursor() as cursor:
        cursor.execute(
            "SELECT source_table, rows_done FROM controlplane.checkpoint WHERE agency_id = %s",
            [linked.revos_agency_id],
        )
        checkpoints = dict(cursor.fetchall())
    plan = plan_latest(link=linked)
    shown = run_tables_progress(run=run, planned=plan_rows_planned(plan=plan))
    assert [t.name for t in shown] == [name.strip() for name in run.current_table.split(",")]
    assert any(t.rows_done > 0 for t in shown)
    planned = {row.source: row.source_rows for row in plan.rows}
    for table in shown:  # a demo agency's tables are small: none is split into parts
        assert table.rows_done == checkpoints.get(table.name, 0)
        assert table.rows_planned == planned[table.name]
    run.status = Status.PAUSED
    assert run_tables_progress(run=run, planned=plan_rows_planned(plan=plan)) == []  # nothing in flight


def test_every_agency_state_names_a_next_action():
    for state in AGENCY_STATES:
        assert agency_next_action(state=state, last_run=None, verification=None).text, state
