"""The plan finds every row the unified schema would refuse, before the run, and says why."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connections
from django.test import Client
from django.urls import reverse

from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
from migration_jobs.services.runs import migration_run_request
from tests.conftest import run_worker


@pytest.fixture
def bad_agency(tenant_db, rq_queues):
    """A RevOS-only demo agency with the rows `seed_demo --with-bad-rows` plants."""
    call_command("seed_demo", "--agencies", "3", "--seed", "9", "--with-bad-rows")
    agency_links_sync()
    with connections["revos"].cursor() as cursor:
        cursor.execute("SELECT agency_id FROM leads WHERE status = 'maybe later'")
        (agency_id,) = cursor.fetchone()
    link = AgencyLink.objects.get(revos_agency_id=agency_id)
    return agency_link_confirm(link=link, kind="new", unified_agency_id=None, actor=None)


def plan(link: AgencyLink) -> MigrationRun:
    run = migration_run_request(link=link, kind=MigrationRun.Kind.PLAN, actor=None)
    run_worker("migrations")
    run.refresh_from_db()
    assert run.status == MigrationRun.Status.SUCCEEDED, run.error
    return run


def refused(run: MigrationRun) -> set[tuple[str, str, str]]:
    return {(r["table"], r["source_id"], r["constraint"]) for r in run.report["refused"]}


def test_the_plan_lists_every_bad_row_with_its_reason(bad_agency):
    with connections["revos"].cursor() as cursor:
        cursor.execute(
            "SELECT id FROM users WHERE agency_id = %s AND lower(email) IN"
            " (SELECT lower(email) FROM users WHERE agency_id = %s GROUP BY 1 HAVING count(*) > 1)",
            [bad_agency.revos_agency_id] * 2,
        )
        twins = {str(i) for (i,) in cursor.fetchall()}
    run = plan(bad_agency)
    found = refused(run)
    assert {("users", twin, "user_email_lower_key") for twin in twins} <= found
    assert len(twins) == 2
    constraints = {c for _, _, c in found}
    assert {"lead_status_check", "user.first_name varchar(100)", "post_campaign_id_fkey"} <= constraints
    assert run.report["refused_total"] == len(found) == 5, found
    reasons = {r["constraint"]: r for r in run.report["refused"]}
    assert reasons["lead_status_check"]["value"] == "status=maybe later"
    assert "status = ANY" in reasons["lead_status_check"]["reason"]
    assert "points at a campaign row" in reasons["post_campaign_id_fkey"]["reason"]
    # Nothing was written.
    with connections["unified"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM lead WHERE agency_id = %s", [bad_agency.unified_agency_id])
        assert cursor.fetchone()[0] == 0


def test_a_clean_agency_plans_with_no_refused_rows_and_parents_first(tenant_db, rq_queues):
    call_command("seed_demo", "--agencies", "2", "--seed", "4")
    agency_links_sync()
    link = AgencyLink.objects.order_by("name").first()
    link = agency_link_confirm(
        link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None
    )
    run = plan(link)
    assert run.report["refused"] == [] and run.report["refused_total"] == 0
    order = run.report["order"]
    assert order[0] == "agencies" and order.index("users") < order.index("leads")
    assert order.index("chat_sessions") < order.index("chat_messages")
    assert "backup_dm_sequences" in run.report["not_migrated"] and run.report["unmapped"] == []


def test_constraints_are_read_from_the_live_schema(bad_agency):
    """A NOT NULL the unified database gains is checked without a change to the plan."""
    with connections["unified"].cursor() as cursor:
        cursor.execute("ALTER TABLE lead ALTER COLUMN email SET NOT NULL")
    try:
        with connections["revos"].cursor() as cursor:
            cursor.execute(
                "UPDATE leads SET email = NULL WHERE id = (SELECT id FROM leads WHERE agency_id = %s"
                " AND status <> 'maybe later' ORDER BY id LIMIT 1) RETURNING id",
                [bad_agency.revos_agency_id],
            )
            (lead,) = cursor.fetchone()
        assert ("leads", str(lead), "lead.email NOT NULL") in refused(plan(bad_agency))
    finally:
        with connections["unified"].cursor() as cursor:
            cursor.execute("ALTER TABLE lead ALTER COLUMN email DROP NOT NULL")


def test_the_page_shows_the_plan_the_csv_and_migrate_warns(bad_agency):
    run = plan(bad_agency)
    admin = User.objects.create_superuser("boss", "", "x")
    client = Client()
    client.force_login(admin)
    page = client.get(reverse("admin:migration_jobs_agencylink_change", args=[bad_agency.pk])).content.decode()
    assert 'id="plan-totals"' in page and "parents first" in page
    assert "Rows the unified schema would refuse: 5" in page and "maybe later" in page
    assert f"The last plan (#{run.pk}) found 5 rows" in page
    assert "backup_dm_sequences" in page
    response = client.get(reverse("admin:migration_jobs_agencylink_plan_csv", args=[bad_agency.pk]))
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {(r["table"], r["source_id"], r["constraint"]) for r in rows} == refused(run)
    token = client.get(reverse("admin:migration_jobs_agencylink_changelist")).cookies["csrftoken"].value
    response = client.post(
        reverse("admin:migration_jobs_agencylink_action", args=[bad_agency.pk, "migrate"]),
        {"csrfmiddlewaretoken": token},
        follow=True,
    )
    assert any("found 5 row(s) the unified schema would refuse" in str(m) for m in response.context["messages"])


def test_the_planted_rows_are_the_ones_the_run_refuses(bad_agency):
    """The plan and the run agree: a migration stops at one of the listed rows, naming it."""
    listed = {source_id for _, source_id, _ in refused(plan(bad_agency))}
    run = migration_run_request(link=bad_agency, kind=MigrationRun.Kind.MIGRATE, actor=None)
    run_worker("migrations")
    run.refresh_from_db()
    assert run.status == MigrationRun.Status.FAILED
    assert any(source_id in run.error for source_id in listed), run.error


def test_the_dry_run_command_prints_what_the_page_shows_and_writes_the_same_csv(bad_agency, tmp_path):
    out, path = io.StringIO(), tmp_path / "refused.csv"
    call_command(
        "migrate_agency", str(bad_agency.revos_agency_id), "--dry-run", "--sync", "--csv", str(path), stdout=out
    )
    printed = out.getvalue()
    run = MigrationRun.objects.filter(agency_link=bad_agency, kind=MigrationRun.Kind.PLAN).get()
    for table, source_id, constraint in refused(run):  # every refused row, with its constraint
        assert any(table in line and source_id in line and constraint in line for line in printed.splitlines())
    assert "Rows the unified schema would refuse: 5" in printed
    tables = [line.split()[1] for line in printed.splitlines() if line[:5].strip().isdigit()]
    # Parents first, in the order the run takes and the page lists.
    assert tables[0] == "agencies" and tables == [name for name in run.report["order"] if name in run.report["tables"]]
    assert "parents first" in printed
    client = Client()
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    page_csv = client.get(reverse("admin:migration_jobs_agencylink_plan_csv", args=[bad_agency.pk])).content.decode()
    assert path.read_bytes().decode() == page_csv and len(list(csv.DictReader(io.StringIO(page_csv)))) == 5
