"""The RevOS agency admin: buttons are POSTs behind their own permissions, logged, never a 500."""

from __future__ import annotations

import uuid

import django_rq
import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import resolve, reverse
from django_rq.queues import get_queue_by_index

from migration_jobs.admin.runs import AGENCY_ACTIONS
from migration_jobs.admin.switch_back import REASONED_ACTIONS
from migration_jobs.demo.demo import demo_data_seed
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
from migration_jobs.services.runs import migration_run_request
from migration_jobs.templatetags.rq_jobs import rq_job_url
from tests.conftest import run_worker


@pytest.fixture
def agencies(tenant_db, rq_queues):
    demo_data_seed(agencies=3, scale=1, seed=21)
    agency_links_sync()
    return AgencyLink.objects.order_by("name")


def staff(*permissions: str) -> Client:
    user = User.objects.create_user(f"ops-{len(permissions)}-{User.objects.count()}", password="x", is_staff=True)
    for codename in ("view_agencylink", "change_agencylink", *permissions):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def post(client: Client, url: str, data=None):
    """POST as a browser does: with the CSRF token the admin's pages carry."""
    token = client.get(reverse("admin:migration_jobs_agencylink_changelist")).cookies["csrftoken"].value
    return client.post(url, {**(data or {}), "csrfmiddlewaretoken": token}, follow=True)


def action_url(link: AgencyLink, action: str) -> str:
    return reverse("admin:migration_jobs_agencylink_action", args=[link.pk, action])


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_agency_page_shows_the_cockpit(agencies):
    link = agencies.first()
    response = staff().get(reverse("admin:migration_jobs_agencylink_change", args=[link.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "not linked" in body and "confirm the link first" in body
    assert 'id="action-migrate"' in body


def test_confirm_then_migrate_from_the_admin_is_logged_and_runs(agencies):
    link = agencies.filter(suggested_kind="existing").first()
    client = staff("confirm_agencylink", "start_migrationrun")
    response = post(
        client,
        reverse("admin:migration_jobs_agencylink_confirm", args=[link.pk]),
        {"kind": "existing", "unified_agency_id": str(link.suggested_agency_id)},
    )
    assert any("Link confirmed" in m for m in messages_of(response))
    response = post(client, action_url(link, "migrate"))
    assert response.status_code == 200
    assert any("queued" in m for m in messages_of(response)), messages_of(response)
    run_worker("migrations")
    run = MigrationRun.objects.get(agency_link=link)
    assert run.status == MigrationRun.Status.SUCCEEDED, run.error
    logged = list(LogEntry.objects.filter(object_id=str(link.pk)).values_list("change_message", flat=True))
    assert any("Link confirmed" in m for m in logged) and any(m.startswith("migrate:") for m in logged)


def test_each_button_needs_its_own_permission(agencies):
    link = agencies.first()
    agency_link_confirm(link=link, kind="new", unified_agency_id=None, actor=None)
    client = staff("plan_migrationrun")  # may plan, may not migrate or roll back
    for action in ("migrate", "rollback"):
        response = post(client, action_url(link, action))
        assert any("do not have permission" in m for m in messages_of(response))
    assert MigrationRun.objects.count() == 0
    assert any("queued" in m for m in messages_of(post(client, action_url(link, "plan"))))


def test_buttons_refuse_get_and_missing_csrf(agencies):
    link = agencies.first()
    client = staff("start_migrationrun")
    assert client.get(action_url(link, "migrate")).status_code == 405
    assert client.post(action_url(link, "migrate")).status_code == 403  # no CSRF token
    assert MigrationRun.objects.count() == 0


def test_migrating_an_unlinked_agency_says_why_and_queues_nothing(agencies):
    link = agencies.first()
    response = post(staff("start_migrationrun"), action_url(link, "migrate"))
    assert any("no confirmed link" in m for m in messages_of(response))
    assert MigrationRun.objects.count() == 0


def test_redis_down_is_a_message_not_a_500(agencies, settings):
    link = agencies.first()
    agency_link_confirm(link=link, kind="new", unified_agency_id=None, actor=None)
    settings.RQ_QUEUES = {n: {**q, "URL": "redis://127.0.0.1:1/0"} for n, q in settings.RQ_QUEUES.items()}
    response = post(staff("start_migrationrun"), action_url(link, "migrate"))
    assert response.status_code == 200
    assert any("Redis" in m and "Nothing was queued" in m for m in messages_of(response))


def test_bulk_migrate_skips_unlinked_and_busy_agencies_and_says_so(agencies):
    first, second, third = agencies[:3]
    first, second = (
        agency_link_confirm(link=x, kind="new", unified_agency_id=None, actor=None) for x in (first, second)
    )
    from migration_jobs.services.runs import migration_run_request

    migration_run_request(link=second, kind="migrate", actor=None)
    client = staff("start_migrationrun")
    changelist = reverse("admin:migration_jobs_agencylink_changelist")
    token = client.get(changelist).cookies["csrftoken"].value
    response = client.post(
        changelist,
        {
            "action": "migrate_selected",
            "_selected_action": [first.pk, second.pk, third.pk],
            "csrfmiddlewaretoken": token,
        },
        follow=True,
    )
    lines = messages_of(response)
    assert any(line.startswith("Queued 1") and first.name in line for line in lines)
    assert any(second.name in line and "already has a run" in line for line in lines)
    assert any(third.name in line and "no confirmed link" in line for line in lines)


def test_unreachable_database_gives_a_clear_503_page(agencies, monkeypatch):
    from django.conf import settings
    from django.db import connections

    link = agencies.first()
    client = staff()
    connections["unified"].close()
    with monkeypatch.context() as patch:
        for config in (settings.DATABASES["unified"], connections["unified"].settings_dict):
            patch.setitem(config, "HOST", "127.0.0.1")
            patch.setitem(config, "PORT", "1")
        response = client.get(reverse("admin:migration_jobs_agencylink_change", args=[link.pk]))
        connections["unified"].close()
    assert response.status_code == 503
    assert "cannot be reached" in response.content.decode()


def test_commands_refuse_bad_ids_and_run_a_migration(agencies, capsys):
    with pytest.raises(CommandError, match="is not an agency id"):
        call_command("migrate_agency", "nope")
    link = agencies.first()
    with pytest.raises(CommandError, match="no confirmed link"):
        call_command("migrate_agency", str(link.revos_agency_id), "--sync")
    call_command("link_agency", str(link.revos_agency_id), "--suggested")
    call_command("migrate_agency", str(link.revos_agency_id), "--dry-run", "--sync")
    call_command("migrate_agency", str(link.revos_agency_id), "--sync")
    call_command("migration_status")
    out = capsys.readouterr().out
    assert "Plan (dry run)" in out and "Succeeded" in out and "migrate succeeded 100%" in out
    call_command("rollback_agency", str(link.revos_agency_id), "--sync")
    rollback = MigrationRun.objects.get(kind="rollback", status="succeeded")
    assert rollback.rows_done == rollback.rows_total == sum(t["deleted"] for t in rollback.report.values()) > 0


def test_progress_shows_an_eta_and_the_live_inserted_row_count(agencies):
    link = agency_link_confirm(link=agencies.first(), kind="new", unified_agency_id=None, actor=None)
    run = MigrationRun.objects.create(
        agency_link=link, revos_agency_id=link.revos_agency_id, kind="migrate", status="succeeded"
    )
    run.status, run.rows_done, run.rows_total, run.rows_per_second = "running", 1000, 31000, 100.0
    assert (run.eta_seconds, run.eta_display) == (300, "ETA 5m 00s")
    run.rows_per_second = 0
    assert run.eta_display == ""
    progress = staff().get(reverse("admin:migration_jobs_agencylink_progress", args=[link.pk])).json()
    assert progress["migrated_rows"] == 0 and progress["eta"] == ""


def test_each_run_links_to_its_own_job_under_its_own_queue_and_the_dashboard_needs_its_own_permission(agencies):
    link = agencies.first()
    call_command("link_agency", str(link.revos_agency_id), "--new")
    call_command("migrate_agency", str(link.revos_agency_id), "--sync")  # queues its verification
    link.refresh_from_db()
    migrated = link.runs.get()
    plan = migration_run_request(link=link, kind=MigrationRun.Kind.PLAN, actor=None)
    verification = link.verifications.get()
    assert not migrated.job_id, "run by the command itself: no job to link to"
    viewer = staff("view_migrationrun", "view_verificationrun", "view_job_queues")
    cockpit = viewer.get(reverse("admin:migration_jobs_agencylink_change", args=[link.pk])).content.decode()
    for run in (plan, verification):
        url = rq_job_url(queue=run.QUEUE, job_id=run.job_id)
        match = resolve(url)
        assert (match.view_name, match.kwargs["job_id"]) == ("django_rq:job_detail", run.job_id)
        assert get_queue_by_index(match.kwargs["queue_index"]).name == run.QUEUE
        page = viewer.get(url)
        assert page.status_code == 200 and run.job_id in page.content.decode()
        assert f'href="{url}"' in cockpit, "the timeline links the run to its own job"
        model = type(run)._meta.model_name
        run_page = viewer.get(reverse(f"admin:migration_jobs_{model}_change", args=[run.pk])).content.decode()
        assert f'href="{url}"' in run_page
    runs = viewer.get(reverse("admin:migration_jobs_migrationrun_changelist")).content.decode()
    assert rq_job_url(queue=plan.QUEUE, job_id=plan.job_id) in runs
    client = staff("view_migrationrun")
    without_queues = client.get(reverse("admin:migration_jobs_agencylink_change", args=[link.pk]))
    assert "job-link" not in without_queues.content.decode(), "no link to a dashboard it may not open"
    assert client.get(reverse("django_rq:home")).status_code == 403, "staff without 'view the job queues'"
    assert staff("view_job_queues").get(reverse("django_rq:home")).status_code == 200
    superuser = User.objects.create_superuser("root", password="x")
    client.force_login(superuser)
    assert client.get(reverse("django_rq:home")).status_code == 200


def test_a_double_click_on_migrate_queues_one_run_and_one_job(agencies):
    link = agencies.first()
    call_command("link_agency", str(link.revos_agency_id), "--new")
    client = staff("start_migrationrun")
    first, second = (post(client, action_url(link, "migrate")) for _ in range(2))
    run = link.runs.get()
    assert messages_of(first) == [f"Migrate of {link.name} queued (run {run.pk})."]
    assert messages_of(second) == [f"{link.name} already has a run queued (run {run.pk})."]
    assert django_rq.get_queue(MigrationRun.QUEUE).job_ids == [run.job_id]


def test_unknown_or_malformed_agency_urls_are_404_not_500(agencies):
    client = staff("start_migrationrun")
    for object_id in ("not-a-number", "999999"):
        assert client.get(f"/admin/migration_jobs/agencylink/{object_id}/progress/").status_code == 404
        assert post(client, f"/admin/migration_jobs/agencylink/{object_id}/action/migrate/").status_code == 404
    link = agencies.first()
    assert post(client, action_url(link, "no-such-action")).status_code == 404


def test_rolling_back_an_agency_never_linked_or_migrated_is_refused_everywhere(agencies):
    never_linked, linked = agencies[0], agencies[1]
    agency_link_confirm(link=linked, kind="new", unified_agency_id=None, actor=None)
    client = staff("rollback_migrationrun")
    for link, reason in ((never_linked, "never linked or migrated"), (linked, "nothing to roll back")):
        response = post(client, action_url(link, "rollback"))  # a forged POST: the button is disabled
        assert any(reason in m for m in messages_of(response)), messages_of(response)
        with pytest.raises(CommandError, match=reason):
            call_command("rollback_agency", str(link.revos_agency_id), "--sync")
    assert MigrationRun.objects.count() == 0


def test_a_paused_run_can_be_cancelled_from_the_page(agencies):
    link = agency_link_confirm(link=agencies.first(), kind="new", unified_agency_id=None, actor=None)
    run = MigrationRun.objects.create(
        agency_link=link, revos_agency_id=link.revos_agency_id, kind="migrate", status="paused"
    )
    client = staff("resume_migrationrun")
    page = client.get(reverse("admin:migration_jobs_agencylink_change", args=[link.pk]))
    assert {a.name: a.enabled for a in page.context["cockpit"].actions}["cancel"]
    response = post(client, action_url(link, "cancel"))
    assert any("cancel requested" in m for m in messages_of(response)), messages_of(response)
    run.refresh_from_db()
    assert (run.status, run.status_note) == ("cancelled", "cancelled while paused")
    response = post(client, action_url(link, "cancel"))
    assert any("no run in progress" in m for m in messages_of(response))


def test_create_demo_staff_validates_the_username_like_django(agencies):
    for bad, reason in (("", "cannot be blank"), ("no spaces", "Enter a valid username"), ("x" * 151, "at most 150")):
        with pytest.raises(CommandError, match=reason):
            call_command("create_demo_staff", "--username", bad)
    assert not User.objects.filter(is_superuser=True).exists()


def test_explicit_client_links_must_name_clients_of_this_agency_in_both_databases(agencies):
    from django.db import connections

    from migration_jobs.models import ClientLink
    from migration_jobs.services.agency_links import LinkError, client_link_check

    link = agencies.filter(suggested_kind="existing").first()
    link = agency_link_confirm(link=link, kind="existing", unified_agency_id=link.suggested_agency_id, actor=None)
    with connections["revos"].cursor() as cursor:
        cursor.execute("SELECT id FROM clients WHERE agency_id = %s LIMIT 1", [link.revos_agency_id])
        (revos_client,) = cursor.fetchone()
        cursor.execute("SELECT id FROM clients WHERE agency_id <> %s LIMIT 1", [link.revos_agency_id])
        (foreign_revos_client,) = cursor.fetchone()
    with connections["unified"].cursor() as cursor:
        cursor.execute("SELECT id FROM client WHERE agency_id = %s LIMIT 1", [link.unified_agency_id])
        (unified_client,) = cursor.fetchone()
        cursor.execute("SELECT id FROM client WHERE agency_id <> %s LIMIT 1", [link.unified_agency_id])
        (foreign_unified_client,) = cursor.fetchone()
    nowhere = uuid.uuid4()
    for revos_id, unified_id, reason in (
        (nowhere, unified_client, "No RevOS client"),
        (foreign_revos_client, unified_client, "belongs to another agency"),
        (revos_client, nowhere, "No unified client"),
        (revos_client, foreign_unified_client, "belongs to another agency"),
    ):
        with pytest.raises(LinkError, match=reason):
            client_link_check(link=link, revos_client_id=revos_id, unified_client_id=unified_id)
    client_link_check(link=link, revos_client_id=revos_client, unified_client_id=unified_client)

    # The admin's inline refuses it; a link whose client vanished later stops plan and migrate.
    client = staff("confirm_agencylink")
    url = reverse("admin:migration_jobs_agencylink_change", args=[link.pk])
    form = {
        "client_links-TOTAL_FORMS": "1",
        "client_links-INITIAL_FORMS": "0",
        "client_links-0-revos_client_id": str(nowhere),
        "client_links-0-unified_client_id": str(unified_client),
    }
    response = post(client, url, form)
    assert f"No RevOS client {nowhere} exists." in response.content.decode()
    assert not ClientLink.objects.exists()
    ClientLink.objects.create(agency_link=link, revos_client_id=revos_client, unified_client_id=nowhere)
    with pytest.raises(CommandError, match="No unified client"):
        call_command("migrate_agency", str(link.revos_agency_id), "--dry-run")
    assert MigrationRun.objects.count() == 0


def test_a_finished_run_shows_its_per_table_report(agencies):
    link = agencies.first()
    call_command("link_agency", str(link.revos_agency_id), "--new")
    call_command("migrate_agency", str(link.revos_agency_id), "--sync")
    run = MigrationRun.objects.get(kind="migrate")
    client = staff()
    page = client.get(reverse("admin:migration_jobs_agencylink_change", args=[link.pk]))
    report = page.context["run_report"]
    assert report.run == run and [r.source for r in report.rows][:2] == ["agencies", "users"]
    assert report.totals["inserted"] == page.context["cockpit"].migrated_rows > 0
    assert all(r.seconds is not None and r.seconds >= 0 for r in report.rows)
    assert f'id="run-report-{run.pk}"' in page.content.decode()
    superuser = Client()
    superuser.force_login(User.objects.create_superuser("root", "", "x"))
    detail = superuser.get(reverse("admin:migration_jobs_migrationrun_change", args=[run.pk])).content.decode()
    assert f'id="run-report-{run.pk}"' in detail and "&lt;table" not in detail


def test_pages_say_what_they_are_and_the_cockpit_comes_first(agencies):
    link = agencies.first()
    client = staff()
    page = client.get(reverse("admin:migration_jobs_agencylink_change", args=[link.pk])).content.decode()
    assert f"<title>{link.name} | Migration cockpit |" in page and "Change RevOS agency" not in page
    index = client.get(reverse("admin:index")).content.decode()
    assert index.index('id="cockpit-first"') < index.index('class="app-migration_jobs')
    assert "Unified agencies" in index and "RevOS agencies" in index


def test_a_get_of_any_button_url_is_a_page_with_a_link_back(agencies):
    link = agencies.first()
    client = staff("start_migrationrun", "switchback_migrationrun", "complete_migrationrun", "run_schemaauditrun")
    agency_page = reverse("admin:migration_jobs_agencylink_change", args=[link.pk])
    buttons = {
        **{action_url(link, action): agency_page for action in AGENCY_ACTIONS},
        **{
            reverse(f"admin:migration_jobs_agencylink_{name}", args=[link.pk]): agency_page
            for name in ("confirm", "cutover", "switch_back_plan")
        },
        **{
            reverse("admin:migration_jobs_agencylink_reasoned", args=[link.pk, action]): agency_page
            for action in REASONED_ACTIONS
        },
        reverse("admin:migration_jobs_agencylink_sync"): reverse("admin:migration_jobs_agencylink_changelist"),
        reverse("admin:migration_jobs_schemaauditrun_run"): reverse("admin:migration_jobs_schemaauditrun_changelist"),
    }
    for url, back in buttons.items():
        response = client.get(url)
        assert (response.status_code, response["Allow"]) == (405, "POST"), url
        body = response.content.decode()
        assert 'id="back-link"' in body and f'href="{back}"' in body, url
    assert MigrationRun.objects.count() == 0
