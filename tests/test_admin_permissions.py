"""Every admin view checks its own permission, and a malformed id in any admin URL is a 404.

The URLs are generated from the admin's own URL patterns (every registered ModelAdmin's, custom
views included) and django-rq's, not listed by hand, and probed as a staff user without any
permission, as one with only the view_* permissions, and (for malformed ids) as a superuser.
"""

from __future__ import annotations

import uuid

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.models.flags import FeatureFlag

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

# Views that answer only POST: a GET is 405 for everyone.
POST_ONLY = {"sync", "confirm", "cutover", "action", "run", "reasoned", "plan"}


@pytest.fixture
def link(tenant_db):
    # Transactional tests flush the seeded flags: one flag, so the flag pages have a row.
    FeatureFlag.objects.get_or_create(name="unified_db")
    return AgencyLink.objects.create(revos_agency_id=uuid.uuid4(), name="Acme", suggested_kind="new")


def client_for(*, permissions=(), superuser=False) -> Client:
    user = User.objects.create_user(f"u{User.objects.count()}", password="x", is_staff=True, is_superuser=superuser)
    user.user_permissions.add(*permissions)
    client = Client()
    client.force_login(user)
    return client


def view_only_client() -> Client:
    return client_for(
        permissions=Permission.objects.filter(codename__startswith="view_").exclude(codename="view_job_queues")
    )


def admin_urls(link: AgencyLink, *, object_id: str | None = None) -> dict[str, str]:
    """Every URL of every registered ModelAdmin, keyed by URL name, with a real (or the given) id."""
    urls = {}
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in ("migration_jobs", "auth"):
            continue
        for pattern in model_admin.urls:
            if not isinstance(pattern, URLPattern) or not pattern.name:
                continue
            kwargs = {}
            for name in pattern.pattern.converters:
                action = "switchback" if pattern.name.endswith("_reasoned") else "migrate"
                an_id = object_id or _an_id(model, link)
                # Django's user admin names its password page's id `id`
                kwargs[name] = {"object_id": an_id, "id": an_id, "action": action}[name]
            urls[pattern.name] = reverse(f"admin:{pattern.name}", kwargs=kwargs)
    return urls


def _an_id(model, link: AgencyLink) -> str:
    if model is AgencyLink:
        return str(link.pk)
    existing = model._default_manager.order_by().values_list("pk", flat=True).first()
    if existing is not None:
        return str(existing)
    return str(uuid.uuid4()) if model._meta.pk.get_internal_type() == "UUIDField" else "424242"


def rq_urls() -> list[str]:
    resolver = next(
        p for p in get_resolver().url_patterns if isinstance(p, URLResolver) and str(p.pattern) == "admin/rq/"
    )
    urls = []
    for pattern in resolver.url_patterns:
        kwargs = {
            name: {"job_id": "x", "key": "x", "scheduler_name": "x"}.get(name, 0) for name in pattern.pattern.converters
        }
        if "cron_job_name" in kwargs or "result_id" in kwargs:
            continue
        urls.append(reverse(f"django_rq:{pattern.name}", kwargs=kwargs))
    return urls


def kind_of(name: str) -> str:
    return name.rsplit("_", 1)[-1]


def test_a_staff_user_without_permissions_is_refused_every_admin_view(link):
    client = client_for()
    urls = admin_urls(link)
    assert {"migration_jobs_agencylink_progress", "migration_jobs_featureflag_state"} <= set(urls)
    allowed = {}
    for name, url in urls.items():
        response = client.get(url)
        refused = 405 if kind_of(name) in POST_ONLY else 403
        # Django's history view answers a row that does not exist with a redirect to the index
        # before it looks at permissions: nothing of any row is shown.
        missing_row = response.status_code == 302 and response["Location"] == reverse("admin:index")
        if response.status_code not in (403, refused) and not (kind_of(name) == "history" and missing_row):
            allowed[name] = response.status_code
    assert allowed == {}
    assert client.get(reverse("admin:migration_jobs_agencylink_overview")).status_code == 403


def test_the_progress_endpoint_shows_nothing_without_view_permission(link):
    MigrationRun.objects.create(agency_link=link, revos_agency_id=link.revos_agency_id, kind="migrate", error="secret")
    url = reverse("admin:migration_jobs_agencylink_progress", args=[link.pk])
    refused = client_for().get(url)
    assert refused.status_code == 403 and b"secret" not in refused.content
    assert view_only_client().get(url).json()["error"] == "secret"


def test_view_permissions_show_pages_but_change_nothing(link):
    client = view_only_client()
    urls = admin_urls(link)
    readable = [
        *(f"migration_jobs_agencylink_{view}" for view in ("changelist", "change", "history", "progress")),
        "migration_jobs_featureflag_changelist",
        "migration_jobs_featureflag_change",
        "migration_jobs_featureflag_state",
        "migration_jobs_migrationrun_changelist",
        "migration_jobs_verificationrun_changelist",
        "migration_jobs_schemaauditrun_changelist",
        "migration_jobs_lead_changelist",
    ]
    assert {name: client.get(urls[name]).status_code for name in readable} == dict.fromkeys(readable, 200)
    before = MigrationRun.objects.count()
    response = client.post(reverse("admin:migration_jobs_agencylink_action", args=[link.pk, "migrate"]), follow=True)
    assert "You do not have permission to migrate agencies." in response.content.decode()
    assert MigrationRun.objects.count() == before
    flag = FeatureFlag.objects.get(name="unified_db")  # made by the fixture
    state = reverse("admin:migration_jobs_featureflag_state", args=[flag.pk])
    assert client.post(state, {"form": "global", "rollout_percentage": 100, "reason": "x"}).status_code == 403
    assert client.post(reverse("admin:migration_jobs_schemaauditrun_run")).status_code == 403


def test_the_job_queues_need_their_own_permission_stats_endpoints_included(link):
    urls = rq_urls()
    assert reverse("django_rq:home_json") in urls and reverse("django_rq:home") in urls
    for client in (client_for(), view_only_client()):
        answers = {url: client.get(url).status_code for url in urls}
        assert {url: code for url, code in answers.items() if code != 403} == {}
    token = client_for().get(reverse("django_rq:home_json"), headers={"authorization": "Bearer anything"})
    assert token.status_code == 403
    anonymous = Client().get(reverse("django_rq:home_json"))
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    allowed = client_for(permissions=Permission.objects.filter(codename="view_job_queues"))
    assert allowed.get(reverse("django_rq:home")).status_code == 200
    assert "queues" in allowed.get(reverse("django_rq:home_json")).json()


@pytest.mark.parametrize("object_id", ["abc", "99999999999999999999999999", "1;DROP", "00000000-0000"])
def test_a_malformed_id_in_any_admin_url_is_a_404(link, object_id):
    client = client_for(superuser=True)
    urls = admin_urls(link, object_id=object_id)
    assert "/admin/migration_jobs/featureflag/" + object_id + "/state/" in urls.values()
    answers = {
        name: (client.get(url).status_code, client.post(url).status_code)
        for name, url in urls.items()
        if f"/{object_id}/" in url
    }
    # A POST-only view may look at the method (405) or the id (404) first; neither is a 500.
    wrong = {
        name: codes
        for name, codes in answers.items()
        if codes[1] != 404 or codes[0] not in ((404, 405) if kind_of(name) in POST_ONLY else (404,))
    }
    assert wrong == {}
