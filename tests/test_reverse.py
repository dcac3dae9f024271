"""The way back: the inverse map, the reverse applier and the switch-back plan, on real databases.

An agency is migrated with the real engine; the unified rows are then changed as the apps would
after cutover, and written back into RevOS. "Round trip" means: a RevOS row, migrated and written
back, is the RevOS row it was.
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from django.db import InternalError, connections

from migration_jobs.demo.demo import demo_data_seed
from migration_jobs.etl import capture
from migration_jobs.etl.catalog import catalog_read
from migration_jobs.etl.connections import connect
from migration_jobs.etl.engine import AgencyMigration
from migration_jobs.etl.plan import MappingError, migration_plan_build
from migration_jobs.etl.reverse import (
    ReverseRefused,
    Scope,
    reverse_apply,
    reverse_plan,
    reverse_plan_build,
    reverse_verify,
)
from migration_jobs.etl.reverse_accounts import accounts_baseline_record
from migration_jobs.etl.reverse_capture import reverse_capture_start, reverse_capture_stop, reverse_changes
from migration_jobs.mapping import QUALIFIED_TABLES, TABLE_MAPS, TableMap
from migration_jobs.models import AgencyLink
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
from tests.conftest import childless_leads


def revos(statement: str, params=()):
    with connections["revos"].cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else None


def unified(statement: str, params=()):
    with connections["unified"].cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else None


def migrate(link: AgencyLink) -> None:
    AgencyMigration(
        source_agency_id=link.revos_agency_id,
        target_agency_id=link.unified_agency_id,
        link_existing=link.kind == AgencyLink.Kind.EXISTING,
        batch_size=500,
    ).run()


def confirm(link: AgencyLink) -> AgencyLink:
    return agency_link_confirm(
        link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None
    )


def scope_of(link: AgencyLink, changed=None) -> Scope:
    return Scope(link.revos_agency_id, link.unified_agency_id, changed)


@pytest.fixture
def agencies(tenant_db):
    """Demo agencies in both apps, one linked to its AudienceOS self and one new, both migrated."""
    demo_data_seed(agencies=3, scale=1, seed=5)
    agency_links_sync()
    shared = confirm(AgencyLink.objects.filter(suggested_kind=AgencyLink.Kind.EXISTING).order_by("name").first())
    new = confirm(AgencyLink.objects.filter(suggested_kind=AgencyLink.Kind.NEW).order_by("name").first())
    migrate(shared)
    migrate(new)
    return shared, new


def revos_scope_checksums(*, agency_id, inside: bool) -> dict[str, str]:
    """Per RevOS table, a checksum of the agency's rows (inside) or of every other row."""
    with connect("revos") as source, connect("unified") as target:
        plans = migration_plan_build(source=catalog_read(source), target=catalog_read(target))
        sums = {}
        for plan in (p for p in plans if p.source not in QUALIFIED_TABLES):  # the accounts: compared whole
            condition = plan.scope_condition(agency_id).as_string(source)
            negation = "" if inside else "NOT "
            sums[plan.source] = source.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM \"{plan.source}\" t"
                f" WHERE {negation}({condition})"
            ).fetchone()
        return sums


# --- the inverse map ----------------------------------------------------------------------------


def by_source_of(plans) -> dict:
    return {p.source: p for p in plans}


def test_every_mapping_entry_has_a_way_back_for_every_revos_column(tenant_db):
    with connect("revos") as source, connect("unified") as target:
        plans = reverse_plan_build(source=source, target=target)
        source_catalog = catalog_read(source)
    # Every entry goes back, the accounts too (captured like the rest, and compared whole).
    assert {p.source for p in plans} == {entry.source for entry in TABLE_MAPS}
    assert all(entry.captured for entry in TABLE_MAPS)
    for plan in plans:
        written = {c.name for c in source_catalog.columns[plan.source] if not c.generated}
        assert set(plan.columns) == written, plan.source
    # GoTrue computes confirmed_at and identities.email; the sign-in bookkeeping alone changes nothing.
    assert "confirmed_at" not in by_source_of(plans)["auth.users"].columns
    assert "last_sign_in_at" not in by_source_of(plans)["auth.users"].compared
    assert by_source_of(plans)["auth.users"].forward.entry.inverse == {
        "raw_app_meta_data": "nullif(raw_app_meta_data - 'app_origin', '{}'::jsonb)"
    }
    # A RevOS column the forward map renames or folds away is named on the way back.
    by_source = {p.source: p for p in plans}
    assert "full_name" in by_source["users"].forward.entry.inverse
    assert by_source["clients"].forward.entry.inverse == {"status": "stage"}
    assert by_source["agencies"].forward.entry.inverse == {"plan": "settings ->> 'revos_plan'"}
    assert by_source["hgc_sessions"].forward.entry.inverse == {"metadata": "context"}
    # RevOS parents come before their children, so upserts never meet a missing parent.
    order = [p.source for p in plans]
    assert order.index("posts") < order.index("comments") < order.index("processed_comments")
    assert order.index("hgc_sessions") < order.index("hgc_messages")


def test_an_entry_without_a_way_back_for_a_renamed_column_is_refused_naming_it(tenant_db):
    from migration_jobs.etl.plan import table_plan_build
    from migration_jobs.etl.reverse import column_defaults, reverse_table_plan_build

    entry = next(e for e in TABLE_MAPS if e.source == "clients")
    without_inverse = TableMap(**{**entry.__dict__, "inverse": {}})
    with connect("revos") as source, connect("unified") as target:
        source_catalog, target_catalog = catalog_read(source), catalog_read(target)
        forward = table_plan_build(without_inverse, source=source_catalog, target=target_catalog)
        with pytest.raises(MappingError, match=r"clients\.status has no way back from client"):
            reverse_table_plan_build(
                forward, source=source_catalog, target=target_catalog, defaults=column_defaults(target)
            )


def test_every_entry_says_where_new_unified_rows_go():
    by_target: dict[str, list[TableMap]] = {}
    for entry in TABLE_MAPS:
        by_target.setdefault(entry.target, []).append(entry)
    for target, entries in by_target.items():
        # The agency row is the link itself.
        if target == "agency":
            continue
        # Every unified table that takes new rows sends them somewhere, and where two RevOS tables
        # fill it the conditions tell them apart.
        assert any(e.new_rows is not None for e in entries), target
    assert {e.source: e.new_rows for e in by_target["cartridge"]} == {
        "brand_cartridges": "type = 'brand'",
        "style_cartridges": "type = 'style'",
    }


# --- round trips --------------------------------------------------------------------------------


def test_a_migrated_agency_goes_back_to_exactly_its_revos_rows(agencies):
    for link in agencies:
        before = revos_scope_checksums(agency_id=link.revos_agency_id, inside=True)
        report = reverse_plan(scope=scope_of(link))
        assert report.problems == []
        assert report.as_dict()["totals"] == {"insert": 0, "update": 0, "delete": 0}
        unchanged = sum(c.unchanged for c in report.tables.values())
        owned = unified(
            "SELECT count(*) FROM controlplane.id_map WHERE agency_id = %s AND inserted", [link.revos_agency_id]
        )[0][0]
        assert unchanged == owned > 0
        applied = reverse_apply(scope=scope_of(link))
        assert sum(c.changes for c in applied.tables.values()) == 0
        assert revos_scope_checksums(agency_id=link.revos_agency_id, inside=True) == before


def test_edge_values_survive_the_round_trip(tenant_db):
    agency = uuid.uuid4()
    revos("INSERT INTO agencies (id, name, domain, plan) VALUES (%s, 'Round Trip Co', NULL, 'enterprise')", [agency])
    users = {uuid.uuid4(): name for name in ("Ann Marie Smith", None, "Prince", "Jo Van der Berg")}
    for user_id, full_name in users.items():
        revos(
            "INSERT INTO users (id, agency_id, email, full_name) VALUES (%s, %s, %s, %s)",
            [user_id, agency, f"{user_id.hex[:8]}@round.example", full_name],
        )
    revos(
        "INSERT INTO brand_cartridges (id, agency_id, name, company_name, industry, tone, logo_url, is_active)"
        " VALUES (%s, %s, 'B', 'Acme', NULL, 'dry \"wit\"', NULL, false)",
        [uuid.uuid4(), agency],
    )
    revos(
        "INSERT INTO style_cartridges (id, agency_id, name, writing_style, examples) VALUES (%s, %s, 'S', NULL, %s)",
        [uuid.uuid4(), agency, json.dumps([{"text": "a\tb\nc"}, 3, None])],
    )
    session = uuid.uuid4()
    revos(
        "INSERT INTO hgc_sessions (id, agency_id, title, metadata) VALUES (%s, %s, NULL, %s)",
        [session, agency, json.dumps({"model": "gpt-4o", "nested": {"a": [1, 2]}})],
    )
    revos(
        "INSERT INTO hgc_messages (id, session_id, role, content, tool_calls) VALUES (%s, %s, 'user', 'x', NULL)",
        [uuid.uuid4(), session],
    )
    agency_links_sync()
    link = confirm(AgencyLink.objects.get(revos_agency_id=agency))
    migrate(link)
    before = revos_scope_checksums(agency_id=agency, inside=True)
    report = reverse_plan(scope=scope_of(link))
    assert report.problems == []
    assert report.as_dict()["totals"] == {"insert": 0, "update": 0, "delete": 0}
    reverse_apply(scope=scope_of(link))
    assert revos_scope_checksums(agency_id=agency, inside=True) == before


# --- writing back -------------------------------------------------------------------------------


def test_unified_writes_to_revos_only_tables_go_back_and_a_catch_up_then_changes_nothing(agencies):
    link, _ = agencies
    agency, revos_agency = link.unified_agency_id, link.revos_agency_id
    others_before = revos_scope_checksums(agency_id=revos_agency, inside=False)
    campaign = unified("SELECT id FROM campaign WHERE agency_id = %s ORDER BY id LIMIT 1", [agency])[0][0]
    changed_lead, gone_lead = childless_leads(agency)
    new_lead = uuid.uuid4()
    unified("UPDATE lead SET status = 'qualified', name = 'Renamed in unified' WHERE id = %s", [changed_lead])
    unified("DELETE FROM lead WHERE id = %s", [gone_lead])
    unified(
        "INSERT INTO lead (id, agency_id, campaign_id, name, status, app_context)"
        " VALUES (%s, %s, %s, 'New', 'new', 'revos')",
        [new_lead, agency, campaign],
    )
    plan = reverse_plan(scope=scope_of(link))
    assert plan.problems == []
    leads = plan.tables["leads"]
    assert (leads.insert, leads.update, leads.delete) == (1, 1, 1)
    assert leads.samples == {"insert": [str(new_lead)], "update": [str(changed_lead)], "delete": [str(gone_lead)]}
    assert plan.as_dict()["totals"] == {"insert": 1, "update": 1, "delete": 1}

    report = reverse_apply(scope=scope_of(link))
    assert report.new_rows == [("leads", "lead", str(new_lead))]
    assert revos("SELECT status, name FROM leads WHERE id = %s", [changed_lead]) == [
        ("qualified", "Renamed in unified")
    ]
    assert revos("SELECT count(*) FROM leads WHERE id = %s", [gone_lead]) == [(0,)]
    assert revos("SELECT agency_id, campaign_id, name FROM leads WHERE id = %s", [new_lead]) == [
        (revos_agency, campaign, "New")
    ]
    assert revos_scope_checksums(agency_id=revos_agency, inside=False) == others_before
    # The id map now knows the new row and forgot the deleted one: RevOS and unified agree again.
    assert unified(
        "SELECT inserted FROM controlplane.id_map WHERE source_table = 'leads' AND source_id = %s", [new_lead]
    ) == [(True,)]
    assert unified("SELECT count(*) FROM controlplane.id_map WHERE source_id = %s", [gone_lead]) == [(0,)]
    assert sum(c.changes for c in reverse_verify(scope=scope_of(link)).tables.values()) == 0
    unified_before = unified(
        "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM lead t WHERE agency_id = %s", [agency]
    )
    migrate(link)  # a catch-up from RevOS now finds nothing to change
    assert unified("SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM lead t WHERE agency_id = %s", [agency]) == (
        unified_before
    )


def test_changed_rows_of_shared_tables_go_back_by_origin_and_under_revos_ids(agencies):
    link, _ = agencies
    agency, revos_agency = link.unified_agency_id, link.revos_agency_id
    reused_client, revos_client = unified(
        "SELECT target_id, source_id FROM controlplane.id_map WHERE agency_id = %s AND source_table = 'clients'"
        " AND NOT inserted LIMIT 1",
        [revos_agency],
    )[0]
    reused_user, revos_user = unified(
        "SELECT target_id, source_id FROM controlplane.id_map WHERE agency_id = %s AND source_table = 'users'"
        " AND NOT inserted LIMIT 1",
        [revos_agency],
    )[0]
    hgc_session = unified(
        "SELECT target_id FROM controlplane.id_map WHERE agency_id = %s AND source_table = 'hgc_sessions' LIMIT 1",
        [revos_agency],
    )[0][0]
    new_client, new_session, new_message, new_hgc_message, new_brand = (uuid.uuid4() for _ in range(5))
    with connect("unified") as connection, connection.cursor() as cursor:
        # As a cutover keeps them: the merged accounts are AudienceOS's and unchanged since.
        accounts_baseline_record(cursor, source_agency_id=revos_agency)
        connection.commit()
    unified("UPDATE client SET name = 'Renamed Client', stage = 'paused' WHERE id = %s", [reused_client])
    unified('UPDATE "user" SET first_name = %s, last_name = %s WHERE id = %s', ["Zed", "Quux", reused_user])
    unified(
        "INSERT INTO client (id, agency_id, name, stage) VALUES (%s, %s, 'Fresh Client', 'active')",
        [new_client, agency],
    )
    unified(
        "INSERT INTO chat_session (id, agency_id, user_id, client_id, title) VALUES (%s, %s, %s, %s, 'new chat')",
        [new_session, agency, reused_user, new_client],
    )
    unified(
        "INSERT INTO chat_message (id, agency_id, session_id, role, content, ai_provider)"
        " VALUES (%s, %s, %s, 'user', 'hi', 'agentkit'), (%s, %s, %s, 'user', 'hgc hi', 'agentkit')",
        [new_message, agency, new_session, new_hgc_message, agency, hgc_session],
    )
    unified(
        "INSERT INTO cartridge (id, agency_id, name, type, app_context, config)"
        " VALUES (%s, %s, 'Brand X', 'brand', 'both', %s)",
        [new_brand, agency, json.dumps({"company_name": "X Corp", "industry": None, "tone": "calm", "logo_url": None})],
    )
    changed = {
        "client": frozenset({reused_client, new_client}),
        "user": frozenset({reused_user}),
        "chat_session": frozenset({new_session}),
        "chat_message": frozenset({new_message, new_hgc_message}),
        "cartridge": frozenset({new_brand}),
    }
    plan = reverse_plan(scope=scope_of(link, changed))
    assert plan.problems == []
    totals = {name: (c.insert, c.update, c.delete) for name, c in plan.tables.items() if c.changes}
    assert totals == {
        "clients": (1, 1, 0),
        "users": (0, 1, 0),
        "chat_sessions": (1, 0, 0),
        "chat_messages": (1, 0, 0),
        "hgc_messages": (1, 0, 0),
        "brand_cartridges": (1, 0, 0),
    }
    reverse_apply(scope=scope_of(link, changed))
    # The reused rows go back under their RevOS ids; references are rewritten back too.
    assert revos("SELECT name, status FROM clients WHERE id = %s", [revos_client]) == [("Renamed Client", "paused")]
    assert revos("SELECT full_name FROM users WHERE id = %s", [revos_user]) == [("Zed Quux",)]
    assert revos("SELECT agency_id FROM clients WHERE id = %s", [new_client]) == [(revos_agency,)]
    assert revos("SELECT user_id, client_id FROM chat_sessions WHERE id = %s", [new_session]) == [
        (revos_user, new_client)
    ]
    assert revos("SELECT session_id FROM chat_messages WHERE id = %s", [new_message]) == [(new_session,)]
    assert revos("SELECT session_id FROM hgc_messages WHERE id = %s", [new_hgc_message]) == [(hgc_session,)]
    assert revos(
        "SELECT company_name, industry, tone, logo_url, agency_id FROM brand_cartridges WHERE id = %s", [new_brand]
    ) == [("X Corp", None, "calm", None, revos_agency)]
    # The new client is shared with AudienceOS: recorded as reused, so a rollback never deletes it.
    assert unified("SELECT inserted FROM controlplane.id_map WHERE source_id = %s", [new_client]) == [(False,)]
    assert sum(c.changes for c in reverse_verify(scope=scope_of(link, changed)).tables.values()) == 0


def test_values_revos_cannot_hold_are_reported_and_nothing_moves(agencies):
    _, link = agencies  # a new agency: every row is the migration's own
    agency = link.unified_agency_id
    lead = unified("SELECT id FROM lead WHERE agency_id = %s ORDER BY id LIMIT 1", [agency])[0][0]
    client = unified("SELECT id FROM client WHERE agency_id = %s ORDER BY id LIMIT 1", [agency])[0][0]
    brand = unified("SELECT id FROM cartridge WHERE agency_id = %s AND type = 'brand' LIMIT 1", [agency])[0][0]
    unified("UPDATE lead SET app_context = 'both', name = 'changed' WHERE id = %s", [lead])
    unified("UPDATE client SET contact_email = 'only@unified.example' WHERE id = %s", [client])
    unified('UPDATE cartridge SET config = config || \'{"palette": "blue"}\' WHERE id = %s', [brand])
    before = revos_scope_checksums(agency_id=link.revos_agency_id, inside=True)
    plan = reverse_plan(scope=scope_of(link))
    assert plan.tables["leads"].unholdable == {"app_context": [str(lead)]}
    assert plan.tables["clients"].unholdable == {"contact_email": [str(client)]}
    assert plan.tables["brand_cartridges"].unholdable == {"config": [str(brand)]}
    assert len(plan.problems) == 3
    assert "client.contact_email of 1 row(s) going back to clients" in " ".join(plan.problems)
    with pytest.raises(ReverseRefused, match="RevOS cannot hold"):
        reverse_apply(scope=scope_of(link))
    assert revos_scope_checksums(agency_id=link.revos_agency_id, inside=True) == before


def test_rows_revos_refuses_are_named_by_the_plan_and_nothing_moves(agencies):
    _, link = agencies
    agency = link.unified_agency_id
    user = unified('SELECT id FROM "user" WHERE agency_id = %s ORDER BY id LIMIT 1', [agency])[0][0]
    # 100 + 1 + 100 characters: RevOS's full_name holds 200.
    unified('UPDATE "user" SET first_name = %s, last_name = %s WHERE id = %s', ["a" * 100, "b" * 100, user])
    before = revos_scope_checksums(agency_id=link.revos_agency_id, inside=True)
    plan = reverse_plan(scope=scope_of(link))
    assert "value too long" in plan.tables["users"].refused
    assert any(line.startswith("users: RevOS refuses the rows") for line in plan.problems)
    assert revos_scope_checksums(agency_id=link.revos_agency_id, inside=True) == before
    with pytest.raises(ReverseRefused, match="value too long"):
        reverse_apply(scope=scope_of(link))
    assert revos_scope_checksums(agency_id=link.revos_agency_id, inside=True) == before


def test_a_new_unified_row_whose_id_is_another_agencys_revos_row_is_refused(agencies):
    link, other = agencies
    # Another agency's RevOS lead, its unified row gone; a unified lead of this agency takes its id.
    foreign_lead = childless_leads(other.unified_agency_id, 1)[0]
    unified("DELETE FROM lead WHERE id = %s", [foreign_lead])
    unified("DELETE FROM controlplane.id_map WHERE source_id = %s", [foreign_lead])
    unified(
        "INSERT INTO lead (id, agency_id, name, app_context) VALUES (%s, %s, 'taken id', 'revos')",
        [foreign_lead, link.unified_agency_id],
    )
    before = revos_scope_checksums(agency_id=other.revos_agency_id, inside=True)
    with pytest.raises(ReverseRefused, match=f"id {foreign_lead} .* another agency"):
        reverse_plan(scope=scope_of(link))
    with pytest.raises(ReverseRefused, match="another agency"):
        reverse_apply(scope=scope_of(link))
    assert revos_scope_checksums(agency_id=other.revos_agency_id, inside=True) == before


# --- reverse capture and the unified-side fence ---------------------------------------------------


def as_app(statement: str, params, *, agency_id, app_context="revos"):
    """Run one statement as the apps do: role authenticated with the agency's JWT claims."""
    with connect("unified") as connection:
        connection.execute("SET LOCAL ROLE authenticated")
        connection.execute(
            "SELECT set_config('request.jwt.claims', %s, true)",
            [json.dumps({"agency_id": str(agency_id), "app_context": app_context, "role": "authenticated"})],
        )
        connection.execute(statement, params)
        connection.commit()


@pytest.fixture
def captured(agencies):
    """The shared agency recorded by the reverse capture, as its cutover leaves it."""
    link, other = agencies
    reverse_capture_start(
        source_agency_id=link.revos_agency_id,
        unified_agency_id=link.unified_agency_id,
        agency_name=link.name,
        wait_seconds=10,
    )
    yield link, other
    reverse_capture_stop(source_agency_id=link.revos_agency_id, unified_agency_id=link.unified_agency_id)


def test_reverse_capture_records_the_agencys_unified_writes_and_no_other_agencys(captured):
    link, other = captured
    campaign = unified("SELECT id FROM campaign WHERE agency_id = %s LIMIT 1", [link.unified_agency_id])[0][0]
    other_campaign = unified("SELECT id FROM campaign WHERE agency_id = %s LIMIT 1", [other.unified_agency_id])[0][0]
    lead, other_lead = uuid.uuid4(), uuid.uuid4()
    as_app(
        "INSERT INTO lead (id, agency_id, campaign_id, name) VALUES (%s, %s, %s, 'x')",
        [lead, link.unified_agency_id, campaign],
        agency_id=link.unified_agency_id,
    )
    as_app(
        "INSERT INTO lead (id, agency_id, campaign_id, name) VALUES (%s, %s, %s, 'y')",
        [other_lead, other.unified_agency_id, other_campaign],
        agency_id=other.unified_agency_id,
    )
    client = unified("SELECT id FROM client WHERE agency_id = %s LIMIT 1", [link.unified_agency_id])[0][0]
    unified("UPDATE client SET website = 'https://changed.example' WHERE id = %s", [client])
    assert reverse_changes(unified_agency_id=link.unified_agency_id) == {
        "lead": frozenset({lead}),
        "client": frozenset({client}),
    }
    assert reverse_changes(unified_agency_id=other.unified_agency_id) == {}


def test_the_unified_fence_refuses_the_agencys_writes_naming_it_and_not_another_agencys(captured):
    link, other = captured
    with connect("unified") as connection:
        capture.fence_set(
            connection, agency_id=link.unified_agency_id, owner="test", message=f'Agency "{link.name}" is fenced'
        )
    campaign = unified("SELECT id FROM campaign WHERE agency_id = %s LIMIT 1", [link.unified_agency_id])[0][0]
    other_campaign = unified("SELECT id FROM campaign WHERE agency_id = %s LIMIT 1", [other.unified_agency_id])[0][0]
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match=f'Agency "{link.name}" is fenced'):
        as_app("UPDATE campaign SET name = 'no' WHERE id = %s", [campaign], agency_id=link.unified_agency_id)
    with pytest.raises(InternalError, match="is fenced"):  # psycopg's ReadOnlySqlTransaction, through Django
        unified("DELETE FROM campaign_skill WHERE agency_id = %s", [link.unified_agency_id])  # the owner too
    as_app("UPDATE campaign SET name = 'yes' WHERE id = %s", [other_campaign], agency_id=other.unified_agency_id)
    assert unified("SELECT name FROM campaign WHERE id = %s", [other_campaign]) == [("yes",)]
