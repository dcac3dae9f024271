"""The HGC backend per app (seed case 3): served by the flags API per agency, changed by staff with a reason."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.urls import reverse

from migration_jobs.models.flags import AgencyAiProvider, AiProviderChange
from migration_jobs.services.flags import ai_provider_set
from tests.test_flags import make_link
from tests.test_flags_api import TOKEN, get_flags

pytestmark = pytest.mark.django_db(databases=["default", "unified"], transaction=True)


@pytest.fixture(autouse=True)
def api(settings):
    settings.FLAGS_API_TOKEN = TOKEN


@pytest.fixture
def staff():
    return User.objects.create_superuser("hgc-staff", "hgc@example.test", "pw")


def test_by_default_audienceos_loads_gemini_and_revos_agentkit(client):
    link = make_link()
    answer = get_flags(client, link.revos_agency_id, app_context="revos").json()
    assert answer["ai_providers"] == {"audience": "gemini", "revos": "agentkit"}
    assert answer["ai_provider"] == "agentkit"
    assert get_flags(client, link.unified_agency_id, app_context="audience").json()["ai_provider"] == "gemini"
    assert "ai_provider" not in get_flags(client, link.revos_agency_id).json(), "no app named, no single answer"


def test_staff_change_one_agencys_app_with_a_reason_and_the_api_answers_it_at_once(client, staff):
    link, other = make_link("Acme"), make_link("Other")
    get_flags(client, link.revos_agency_id, app_context="revos")  # cached before the change
    change = ai_provider_set(
        agency_link=link, app_context="revos", provider="gemini", reason="AgentKit outage", actor=staff
    )
    assert (change.old_value, change.new_value, change.reason, change.actor) == (
        "agentkit",
        "gemini",
        "AgentKit outage",
        staff,
    )
    assert get_flags(client, link.revos_agency_id, app_context="revos").json()["ai_provider"] == "gemini"
    assert get_flags(client, other.revos_agency_id, app_context="revos").json()["ai_provider"] == "agentkit"
    assert LogEntry.objects.filter(user=staff, change_message__contains="AgentKit outage").exists()
    back = ai_provider_set(agency_link=link, app_context="revos", provider="agentkit", reason="resolved", actor=staff)
    assert (back.old_value, back.new_value) == ("gemini", "agentkit")
    assert list(AiProviderChange.objects.values_list("new_value", flat=True)) == ["agentkit", "gemini"]


def test_setting_the_backend_already_in_use_records_nothing(staff):
    link = make_link()
    assert ai_provider_set(agency_link=link, app_context="audience", provider="gemini", reason="r", actor=staff) is None
    assert not AiProviderChange.objects.exists() and not AgencyAiProvider.objects.exists()


@pytest.mark.parametrize(
    ("app_context", "provider", "reason", "message"),
    [
        ("revos", "gemini", "  ", "A reason is required"),
        ("both", "gemini", "why", "app_context must be one of audience, revos"),
        ("revos", "openai", "why", "must be one of gemini, agentkit"),
    ],
)
def test_a_change_without_reason_or_with_unknown_values_is_refused(staff, app_context, provider, reason, message):
    link = make_link()
    with pytest.raises(ValidationError, match=message):
        ai_provider_set(agency_link=link, app_context=app_context, provider=provider, reason=reason, actor=staff)
    assert not AiProviderChange.objects.exists()


def test_the_admin_form_changes_it_through_the_service_and_needs_the_flag_permission(client, staff):
    link = make_link()
    client.force_login(staff)
    url = reverse("admin:migration_jobs_agencyaiprovider_add")
    form = {"agency_link": link.pk, "app_context": "audience", "provider": "agentkit", "reason": "pilot"}
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert AiProviderChange.objects.get().reason == "pilot"
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(viewer)
    assert client.post(url, {**form, "provider": "gemini"}).status_code == 403
