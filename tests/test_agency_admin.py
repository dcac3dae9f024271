"""The RevOS agency admin: buttons are POSTs behind their own permissions, logged, never a 500."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from migration_jobs.demo.demo import demo_data_seed
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
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
    from migration_jobs.services.migration import migration_run_request

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
    assert MigrationRun.objects.filter(kind="rollback", status="succeeded").count() == 1


def test_run_list_links_each_run_to_its_job_and_the_dashboard_is_superusers_only(agencies):
    link = agencies.first()
    call_command("link_agency", str(link.revos_agency_id), "--new")
    call_command("migrate_agency", str(link.revos_agency_id), "--sync")
    client = staff("view_migrationrun")
    response = client.get(reverse("admin:migration_jobs_migrationrun_changelist"))
    assert response.status_code == 200
    job_url = reverse("django_rq:job_detail", args=[0, f"agency-{link.revos_agency_id}"])
    assert job_url in response.content.decode()
    assert client.get(reverse("django_rq:home")).status_code == 302, "staff is sent to log in as a superuser"
    superuser = User.objects.create_superuser("root", password="x")
    client.force_login(superuser)
    assert client.get(reverse("django_rq:home")).status_code == 200


def test_unknown_or_malformed_agency_urls_are_404_not_500(agencies):
    client = staff("start_migrationrun")
    for object_id in ("not-a-number", "999999"):
        assert client.get(f"/admin/migration_jobs/agencylink/{object_id}/progress/").status_code == 404
        assert post(client, f"/admin/migration_jobs/agencylink/{object_id}/action/migrate/").status_code == 404
    link = agencies.first()
    assert post(client, action_url(link, "no-such-action")).status_code == 404
