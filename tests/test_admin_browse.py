"""Staff browse the unified database in the admin: read-only, filterable, and fast on big tables."""

from __future__ import annotations

import itertools

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client as HttpClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from migration_jobs.models.unified import (
    Agency,
    Campaign,
    Cartridge,
    ChatMessage,
    ChatSession,
    Client,
    Lead,
    LinkedinAccount,
    Post,
    UnifiedUser,
)
from migration_jobs.paginators import EstimatedCountPaginator
from migration_jobs.selectors import agency_app_context_counts

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "unified", "revos"])

BROWSABLE = [Agency, UnifiedUser, Client, Cartridge, ChatSession, ChatMessage, Lead, Campaign, LinkedinAccount, Post]
_serial = itertools.count()


def changelist_url(model) -> str:
    return reverse(f"admin:migration_jobs_{model._meta.model_name}_changelist")


def change_url(obj) -> str:
    return reverse(f"admin:migration_jobs_{obj._meta.model_name}_change", args=[obj.pk])


# --- Row builders: each row gets parents of its own, so a missing select_related shows up. -----


def new_agency(**fields) -> Agency:
    n = next(_serial)
    return Agency.objects.create(**{"name": f"Agency {n}", "slug": f"agency-{n}", **fields})


def new_user(agency, **fields) -> UnifiedUser:
    return UnifiedUser.objects.create(agency=agency, email=f"user{next(_serial)}@example.com", **fields)


def new_client(agency, **fields) -> Client:
    return Client.objects.create(**{"agency": agency, "name": f"Client {next(_serial)}", **fields})


def new_cartridge(agency, **fields) -> Cartridge:
    fields = {"name": f"Cartridge {next(_serial)}", "type": Cartridge.Type.BRAND, **fields}
    return Cartridge.objects.create(agency=agency, user=new_user(agency), **fields)


def new_session(agency, **fields) -> ChatSession:
    fields = {"title": f"Chat {next(_serial)}", **fields}
    return ChatSession.objects.create(agency=agency, user=new_user(agency), client=new_client(agency), **fields)


def new_message(agency, **fields) -> ChatMessage:
    fields = {"role": "user", "content": "Hello", **fields}
    return ChatMessage.objects.create(agency=agency, session=new_session(agency), **fields)


def new_campaign(agency, **fields) -> Campaign:
    fields = {"name": f"Campaign {next(_serial)}", **fields}
    return Campaign.objects.create(agency=agency, client=new_client(agency), **fields)


def new_lead(agency, **fields) -> Lead:
    fields = {"name": f"Lead {next(_serial)}", **fields}
    return Lead.objects.create(agency=agency, campaign=new_campaign(agency), **fields)


def new_linkedin_account(agency, **fields) -> LinkedinAccount:
    fields = {"profile_url": f"https://linkedin.com/in/p{next(_serial)}", **fields}
    return LinkedinAccount.objects.create(agency=agency, user=new_user(agency), **fields)


def new_post(agency, **fields) -> Post:
    account, campaign = new_linkedin_account(agency), new_campaign(agency)
    return Post.objects.create(agency=agency, linkedin_account=account, campaign=campaign, content="Hi", **fields)


BUILDERS = {
    Agency: lambda agency: new_agency(),
    UnifiedUser: new_user,
    Client: new_client,
    Cartridge: new_cartridge,
    ChatSession: new_session,
    ChatMessage: new_message,
    Lead: new_lead,
    Campaign: new_campaign,
    LinkedinAccount: new_linkedin_account,
    Post: new_post,
}


@pytest.fixture
def agency(tenant_db) -> Agency:
    return new_agency(name="Acme Growth", domain="acme.example")


@pytest.fixture
def staff(tenant_db) -> HttpClient:
    user = get_user_model().objects.create_superuser("staff", "staff@example.com", "pw")
    client = HttpClient()
    client.force_login(user)
    return client


def shown(response) -> set:
    return {obj.pk for obj in response.context["cl"].result_list}


# --- Browsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", BROWSABLE, ids=lambda m: m.__name__)
def test_changelist_and_read_only_change_page_render(staff, agency, model):
    obj = BUILDERS[model](agency)
    response = staff.get(changelist_url(model))
    assert response.status_code == 200
    assert obj.pk in shown(response)

    response = staff.get(change_url(obj))
    assert response.status_code == 200
    assert b'name="_save"' not in response.content
    assert response.context["has_change_permission"] is False


def test_filtering_by_app_context_shows_only_matching_rows(staff, agency):
    audience = new_client(agency, app_context="audience")
    revos = [new_client(agency, app_context="revos") for _ in range(2)]
    both = new_client(agency)

    assert shown(staff.get(changelist_url(Client), {"app_context__exact": "revos"})) == {c.pk for c in revos}
    assert shown(staff.get(changelist_url(Client), {"app_context__exact": "audience"})) == {audience.pk}
    assert shown(staff.get(changelist_url(Client), {"app_context__exact": "both"})) == {both.pk}


def test_visibility_filters_follow_the_rls_rule_and_the_id_map(staff, agency):
    from django.db import connections

    audience = new_client(agency, app_context="audience")
    revos = new_client(agency, app_context="revos")
    both = new_client(agency)
    with connections["unified"].cursor() as cursor:
        cursor.execute(
            "INSERT INTO controlplane.id_map (agency_id, source_table, source_id, target_table, target_id, inserted)"
            " VALUES (gen_random_uuid(), 'clients', gen_random_uuid(), 'client', %s, true),"
            " (gen_random_uuid(), 'clients', gen_random_uuid(), 'client', %s, false)",
            [revos.pk, audience.pk],
        )

    assert shown(staff.get(changelist_url(Client), {"visible": "revos"})) == {revos.pk, both.pk}
    assert shown(staff.get(changelist_url(Client), {"visible": "audience"})) == {audience.pk, both.pk}
    assert shown(staff.get(changelist_url(Client), {"visible": "migrated"})) == {revos.pk}
    page = staff.get(changelist_url(Client)).content.decode()
    assert "Visible in RevOS" in page and "Came from RevOS (migrated)" in page


def test_cartridges_filter_by_type_and_chat_messages_by_ai_provider(staff, agency):
    brand = new_cartridge(agency, type="brand", app_context="revos")
    new_cartridge(agency, type="training", app_context="audience")
    agentkit = new_message(agency, ai_provider="agentkit", app_context="revos")
    new_message(agency, ai_provider="gemini")

    assert shown(staff.get(changelist_url(Cartridge), {"type__exact": "brand"})) == {brand.pk}
    assert shown(staff.get(changelist_url(ChatMessage), {"ai_provider__exact": "agentkit"})) == {agentkit.pk}


def test_search_by_text_and_by_pasted_uuid(staff, agency):
    other = new_agency()
    lead = new_lead(agency, email="jane@example.com")
    new_lead(other, email="joe@example.com")

    assert shown(staff.get(changelist_url(Lead), {"q": "jane@"})) == {lead.pk}
    assert shown(staff.get(changelist_url(Lead), {"q": str(lead.campaign_id)})) == {lead.pk}
    assert shown(staff.get(changelist_url(Lead), {"q": str(agency.pk)})) == {lead.pk}


# --- The agency page ---------------------------------------------------------------------------


def test_agency_page_counts_clients_cartridges_chats_and_leads_per_app_context(staff, agency):
    new_client(agency, app_context="revos")
    new_client(agency, app_context="revos")
    new_client(agency, app_context="audience")
    new_cartridge(agency, type="training", app_context="audience")
    new_session(agency, app_context="revos")
    new_lead(agency)
    new_client(new_agency(), app_context="revos")  # another agency's row is not counted

    response = staff.get(change_url(agency))

    assert response.status_code == 200
    table = response.context["app_context_table"]
    assert table["headers"] == ["AudienceOS", "RevOS", "Both apps", "Total"]
    counts = {row["label"]: [count for count, _url in row["cells"]] for row in table["rows"]}
    # new_cartridge, new_session, new_lead also create users, clients and campaigns ('both').
    assert counts["Clients"] == [1, 2, 2, 5]
    assert counts["Cartridges"] == [1, 0, 0, 1]
    assert counts["HGC chat sessions"] == [0, 1, 0, 1]
    assert counts["Leads"] == [0, 1, 0, 1]
    assert b'id="app-context-counts"' in response.content
    revos_clients_url = table["rows"][0]["cells"][1][1]
    assert len(shown(staff.get(revos_clients_url))) == 2


def test_agency_counts_cost_one_group_by_query_per_table_whatever_the_rows(agency):
    for _ in range(20):
        new_client(agency, app_context="revos")
    with CaptureQueriesContext(connections["unified"]) as queries:
        counts = agency_app_context_counts(agency_id=agency.pk)
    assert counts["clients"] == {"audience": 0, "revos": 20, "both": 0, "total": 20}
    assert len(queries) == len(counts)
    assert all("GROUP BY" in query["sql"] for query in queries.captured_queries)


# --- Nothing can be edited, and only staff get in ----------------------------------------------


def test_posting_a_change_is_refused_and_changes_nothing(staff, agency):
    response = staff.post(change_url(agency), {"name": "Hijacked", "slug": agency.slug, "app_context": "both"})
    assert response.status_code == 403
    agency.refresh_from_db()
    assert agency.name == "Acme Growth"


def test_add_and_delete_are_refused(staff, agency):
    assert staff.get(reverse("admin:migration_jobs_client_add")).status_code == 403
    client = new_client(agency)
    assert staff.post(reverse("admin:migration_jobs_client_delete", args=[client.pk])).status_code == 403
    assert Client.objects.filter(pk=client.pk).exists()


def test_non_staff_are_sent_to_the_login_page(tenant_db, agency):
    visitor = HttpClient()
    member = get_user_model().objects.create_user("member", "member@example.com", "pw")
    logged_in = HttpClient()
    logged_in.force_login(member)
    for client in (visitor, logged_in):
        response = client.get(changelist_url(Agency))
        assert response.status_code == 302
        assert response.url.startswith(reverse("admin:login"))


# --- Fast on big tables ------------------------------------------------------------------------


def changelist_queries(client, model) -> int:
    with CaptureQueriesContext(connections["unified"]) as queries:
        response = client.get(changelist_url(model))
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize("model", BROWSABLE, ids=lambda m: m.__name__)
def test_changelist_query_count_does_not_grow_with_rows(staff, agency, model):
    for _ in range(5):
        BUILDERS[model](agency)
    with_5 = changelist_queries(staff, model)
    for _ in range(45):
        BUILDERS[model](agency)
    assert changelist_queries(staff, model) == with_5


def test_unfiltered_big_table_is_counted_from_the_statistics(staff, agency, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "exact_count_limit", 10)
    for _ in range(30):
        new_client(agency)
    with connections["unified"].cursor() as cursor:
        cursor.execute("ANALYZE client")

    with CaptureQueriesContext(connections["unified"]) as queries:
        response = staff.get(changelist_url(Client))

    assert response.context["cl"].result_count == 30
    assert not [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]


def test_filtered_big_table_counts_at_most_the_limit_then_estimates(staff, agency, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "exact_count_limit", 10)
    for _ in range(30):
        new_client(agency, app_context="revos")
    new_client(agency, app_context="audience")

    with CaptureQueriesContext(connections["unified"]) as queries:
        response = staff.get(changelist_url(Client), {"app_context__exact": "revos"})

    assert response.context["cl"].result_count >= 11
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT 11" in sql for sql in counts)
    assert any(q["sql"].startswith("EXPLAIN") for q in queries.captured_queries)


def test_small_results_are_counted_exactly(staff, agency):
    for _ in range(3):
        new_client(agency, app_context="revos")
    response = staff.get(changelist_url(Client), {"app_context__exact": "revos"})
    assert response.context["cl"].result_count == 3
