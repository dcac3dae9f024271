"""The flag read API: service-token auth, clear errors, agency lookup by either id, cache invalidation."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.urls import reverse

from migration_jobs.models.flags import FeatureFlag
from migration_jobs.selectors.flags import flags_cache_version
from migration_jobs.services.flags import flag_set_global
from tests.test_flags import SEED_FLAGS, make_link, make_run, make_verification, switched_by_run

pytestmark = pytest.mark.django_db(databases=["default", "unified"], transaction=True)

TOKEN = "flags-test-token-5"


@pytest.fixture(autouse=True)
def api(settings):
    settings.FLAGS_API_TOKEN = TOKEN


@pytest.fixture
def unified_agency():
    """Make AudienceOS agencies (unified database, no RevOS link); removed again afterwards."""
    made = []

    def make(name: str = "Audience Only") -> uuid.UUID:
        agency_id = uuid.uuid4()
        with connections["unified"].cursor() as cursor:
            cursor.execute("INSERT INTO agency (id, name, slug) VALUES (%s, %s, %s)", [agency_id, name, str(agency_id)])
        made.append(agency_id)
        return agency_id

    yield make
    with connections["unified"].cursor() as cursor:
        cursor.execute("DELETE FROM agency WHERE id = ANY(%s)", [made])


@pytest.fixture
def flags() -> dict[str, FeatureFlag]:
    return {
        name: FeatureFlag.objects.update_or_create(
            name=name,
            defaults={
                "requires_verification": gated,
                "app_context": "revos" if gated else "both",
                "enabled_globally": False,
                "rollout_percentage": 0,
            },
        )[0]
        for name, gated in SEED_FLAGS.items()
    }


def get_flags(client, agency_id, token: str | None = TOKEN, **params):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.get(reverse("api:agency-flags", args=[agency_id]), params, headers=headers)


def test_without_a_configured_token_the_api_is_unavailable(client, settings, flags, unified_agency):
    settings.FLAGS_API_TOKEN = ""
    response = get_flags(client, unified_agency())
    assert response.status_code == 503
    assert response.json() == {"error": "The flag API is disabled: FLAGS_API_TOKEN is not set on the control plane."}


@pytest.mark.parametrize("header", [None, "", "Bearer ", "Basic Zm9vOmJhcg==", TOKEN])
def test_a_missing_token_is_401(client, flags, header, unified_agency):
    headers = {} if header is None else {"Authorization": header}
    response = client.get(reverse("api:agency-flags", args=[unified_agency()]), headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert "Authorization: Bearer <token>" in response.json()["error"]


@pytest.mark.parametrize("token", ["wrong", TOKEN + "x", TOKEN[:-1], TOKEN.upper()])
def test_a_wrong_token_is_403(client, flags, token, unified_agency):
    response = get_flags(client, unified_agency(), token=token)
    assert response.status_code == 403
    assert response.json() == {"error": "The service token is wrong."}


def test_the_token_is_checked_before_the_agency_is_looked_up(client, flags):
    assert get_flags(client, "not-a-uuid", token="wrong").status_code == 403
    assert get_flags(client, uuid.uuid4(), token=None).status_code == 401


def test_a_malformed_agency_id_is_400(client, flags):
    response = get_flags(client, "12345")
    assert response.status_code == 400
    assert response.json() == {"error": "'12345' is not an agency id (a UUID)."}


def test_an_unknown_app_context_is_400(client, flags, unified_agency):
    response = get_flags(client, unified_agency(), app_context="both")
    assert response.status_code == 400
    assert "app_context must be one of revos, audience" in response.json()["error"]


def test_an_unknown_agency_is_404(client, flags):
    missing = uuid.uuid4()
    response = get_flags(client, missing)
    assert response.status_code == 404
    assert str(missing) in response.json()["error"]


def test_only_get_is_allowed(client, flags, unified_agency):
    url = reverse("api:agency-flags", args=[unified_agency()])
    assert client.post(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405


def test_an_audience_only_agency_gets_the_global_state(client, flags, unified_agency):
    agency_id = unified_agency()
    flag_set_global(flag=flags["shared_hgc"], enabled=True, reason="launch", actor=None)
    response = get_flags(client, agency_id, app_context="audience")
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    assert response.json() == {
        "agency_id": str(agency_id),
        "app_context": "audience",
        "flags": {"app_toggle": False, "shared_hgc": True},
        "revos_read_only": False,
        "unified_read_only": False,
        "unified_copy_read_only": False,
        "sessions_reset_at": None,
        "ai_providers": {"audience": "gemini", "revos": "agentkit"},
        "ai_provider": "gemini",
    }


def test_a_linked_agency_answers_by_either_id_with_its_overrides(client, flags):
    link = make_link("Linked")
    make_run(link, minutes_ago=60)
    make_verification(link, minutes_ago=30)
    switched_by_run(link)
    by_revos = get_flags(client, link.revos_agency_id, app_context="revos").json()
    by_unified = get_flags(client, link.unified_agency_id, app_context="revos").json()
    expected = {"app_toggle": False, "shared_hgc": False, "unified_db": True}
    assert by_revos["flags"] == by_unified["flags"] == expected
    assert by_revos["agency_id"] == str(link.revos_agency_id)
    assert get_flags(client, link.unified_agency_id).json()["app_context"] is None
    assert "unified_db" not in get_flags(client, link.unified_agency_id, app_context="audience").json()["flags"]


def test_answers_are_cached_and_every_change_invalidates_them_at_once(client, flags, unified_agency):
    agency_id = unified_agency()
    assert get_flags(client, agency_id).json()["flags"]["shared_hgc"] is False
    # Behind the services' back: the cached answer is still served, so the cache is really in use.
    FeatureFlag.objects.filter(name="shared_hgc").update(enabled_globally=True)
    assert get_flags(client, agency_id).json()["flags"]["shared_hgc"] is False
    FeatureFlag.objects.filter(name="shared_hgc").update(enabled_globally=False)

    version = flags_cache_version()
    flag_set_global(flag=flags["shared_hgc"], enabled=True, reason="launch", actor=None)
    assert flags_cache_version() > version
    assert get_flags(client, agency_id).json()["flags"]["shared_hgc"] is True


def test_a_change_made_in_the_admin_shows_in_the_next_answer(client, flags):
    link = make_link("Admin Co")
    assert get_flags(client, link.revos_agency_id).json()["flags"]["app_toggle"] is False
    client.force_login(User.objects.create_superuser("root", password="pw"))
    data = {"form": "override", "agency_link": link.pk, "state": "on", "reason": "beta tester"}
    state_url = reverse("admin:migration_jobs_featureflag_state", args=[flags["app_toggle"].pk])
    assert client.post(state_url, data).status_code == 302
    client.logout()
    assert get_flags(client, link.revos_agency_id).json()["flags"]["app_toggle"] is True


def test_a_flag_added_in_the_admin_shows_in_the_next_answer(client, flags, unified_agency):
    agency_id = unified_agency()
    assert "dark_mode" not in get_flags(client, agency_id).json()["flags"]
    client.force_login(User.objects.create_superuser("root", password="pw"))
    add = client.post(reverse("admin:migration_jobs_featureflag_add"), {"name": "dark_mode", "app_context": "both"})
    assert add.status_code == 302
    assert get_flags(client, agency_id).json()["flags"]["dark_mode"] is False
