"""Shared auth: accounts move with the agency, the access-token hook's claims, and the app switch.

Demo agencies are seeded (every person has a bcrypt-hashed demo password; some people are in both
apps under differently cased emails; some have Google identities) and migrated with the real
engine, against the real RevOS and unified test databases.
"""

from __future__ import annotations

import uuid

import bcrypt
import psycopg
import pytest
from psycopg.types.json import Jsonb

from migration_jobs.demo.demo import demo_data_seed, demo_password
from migration_jobs.etl.connections import connect
from migration_jobs.etl.engine import AgencyMigration, RowRejected, agency_plan, agency_rollback
from migration_jobs.verify.auth import access_token_event, acting_as, hook_claims


def rows(alias: str, query: str, params=()) -> list[tuple]:
    with connect(alias, autocommit=True, purpose="test") as connection:
        return connection.execute(query, params).fetchall()


def migrate(agency, batch_size: int = 500) -> None:
    target = agency.unified_id or agency.revos_id
    AgencyMigration(agency.revos_id, target, link_existing=agency.unified_id is not None, batch_size=batch_size).run()


@pytest.fixture
def demo(tenant_db):
    """One agency in both apps, one RevOS-only and one AudienceOS-only."""
    summary = demo_data_seed(agencies=2, scale=1, seed=7)
    return {kind: [a for a in summary.agencies if a.kind == kind] for kind in ("both", "revos", "audience")}


@pytest.fixture
def migrated(demo):
    migrate(demo["both"][0])
    migrate(demo["revos"][0], batch_size=3)  # accounts too go in batches, each with its checkpoint
    return demo


def revos_people(agency) -> list[tuple]:
    return rows("revos", "SELECT id, email FROM users WHERE agency_id = %s ORDER BY id", [agency.revos_id])


def merged_people(agency) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(RevOS id, AudienceOS id) of the people the agency has in both apps."""
    return rows(
        "unified",
        "SELECT source_id, target_id FROM controlplane.id_map WHERE agency_id = %s AND source_table = 'users'"
        " AND NOT inserted ORDER BY source_id",
        [agency.revos_id],
    )


def account(user_id) -> tuple | None:
    found = rows(
        "unified",
        "SELECT email, encrypted_password, email_confirmed_at, raw_user_meta_data, raw_app_meta_data"
        " FROM auth.users WHERE id = %s",
        [user_id],
    )
    return found[0] if found else None


def signs_in(user_id, password: str) -> bool:
    """GoTrue's password check: bcrypt against the account's encrypted_password."""
    found = account(user_id)
    return bool(found and found[1]) and bcrypt.checkpw(password.encode(), found[1].encode())


def identities(alias: str, user_id) -> set[tuple[str, str]]:
    return set(rows(alias, "SELECT provider, provider_id FROM auth.identities WHERE user_id = %s", [user_id]))


# --- accounts move with the agency ------------------------------------------------------------


def test_a_revos_only_person_signs_in_to_the_unified_project_with_their_revos_password(migrated):
    for person, _ in revos_people(migrated["revos"][0]):
        assert signs_in(person, demo_password(person))
        assert not signs_in(person, demo_password(uuid.uuid4()))
        source = rows(
            "revos",
            "SELECT email, encrypted_password, email_confirmed_at, raw_user_meta_data FROM auth.users WHERE id = %s",
            [person],
        )[0]
        email, hashed, confirmed, user_metadata, app_metadata = account(person)
        assert (email, hashed, confirmed, user_metadata) == source
        assert app_metadata["app_origin"] == "revos"
        assert identities("unified", person) == identities("revos", person) != set()
    unconfirmed = rows(
        "unified",
        'SELECT count(*) FROM auth.users a JOIN public."user" u ON u.id = a.id'
        " WHERE u.agency_id = %s AND a.email_confirmed_at IS NULL",
        [migrated["revos"][0].revos_id],
    )[0][0]
    assert unconfirmed == 1, "the demo's unconfirmed person stays unconfirmed"


def test_a_person_in_both_apps_keeps_one_account_and_their_audienceos_password(migrated):
    agency = migrated["both"][0]
    merged = merged_people(agency)
    assert merged, "the demo has people in both apps"
    for revos_id, unified_id in merged:
        revos_email = rows("revos", "SELECT email FROM users WHERE id = %s", [revos_id])[0][0]
        accounts = rows("unified", "SELECT id FROM auth.users WHERE lower(email) = lower(%s)", [revos_email])
        assert accounts == [(unified_id,)]
        assert account(revos_id) is None
        assert signs_in(unified_id, demo_password(unified_id))
        assert not signs_in(unified_id, demo_password(revos_id))
    cased = [
        (r, u) for r, u in merged if rows("revos", "SELECT email FROM users WHERE id = %s", [r])[0][0] != account(u)[0]
    ]
    assert cased, "some people have differently cased emails in the two apps"
    # Every RevOS row that pointed at the RevOS person points at their one account now.
    revos_id, unified_id = merged[0]
    pointing = rows("revos", "SELECT count(*) FROM chat_sessions WHERE user_id = %s", [revos_id])[0][0]
    pointing += rows("revos", "SELECT count(*) FROM hgc_sessions WHERE user_id = %s", [revos_id])[0][0]
    now = rows(
        "unified",
        "SELECT count(*) FROM chat_session s JOIN controlplane.id_map m ON m.source_id = s.id AND m.inserted"
        " WHERE s.user_id = %s",
        [unified_id],
    )[0][0]
    assert now == pointing
    assert rows("unified", "SELECT count(*) FROM chat_session WHERE user_id = %s", [revos_id]) == [(0,)]


def test_revos_identities_are_attached_where_they_do_not_collide(migrated):
    agency = migrated["both"][0]
    attached = kept = 0
    for revos_id, unified_id in merged_people(agency):
        revos_google = {i for i in identities("revos", revos_id) if i[0] == "google"}
        unified_now = identities("unified", unified_id)
        assert revos_google <= unified_now, "a RevOS Google sign-in keeps working"
        assert [p for p, _ in unified_now].count("email") == 1, "the AudienceOS email login stands for the RevOS one"
        owners = rows(
            "unified",
            "SELECT count(*) FROM auth.identities WHERE (provider, provider_id) IN (SELECT * FROM unnest(%s::text[],"
            " %s::text[]))",
            [[p for p, _ in revos_google], [i for _, i in revos_google]],
        )[0][0]
        assert owners == len(revos_google), "a Google account is linked once"
        had_google = any(p == "google" for p, _ in rows("unified", "SELECT provider, 1 FROM auth.identities i"
                         " JOIN controlplane.id_map m ON m.source_id = i.id AND m.inserted WHERE i.user_id = %s",
                         [unified_id]))  # fmt: skip
        attached += had_google
        kept += bool(revos_google) and not had_google
    assert attached and kept, "the demo has both cases: a Google identity attached, one already there"


def test_the_plan_lists_the_merged_people_and_the_password_they_will_use(demo):
    agency = demo["both"][0]
    plan = agency_plan(source_agency_id=agency.revos_id, target_agency_id=agency.unified_id, link_existing=True)
    people = {p["unified_user_id"]: p for p in plan["merged_people"]}
    assert people and all("AudienceOS password" in p["password"] for p in people.values())
    assert {"revos_email", "email", "identities_attached", "identities_already_there"} <= set(
        next(iter(people.values()))
    )
    assert plan["tables"]["auth.users"]["reused"] == len(people)
    assert rows("unified", "SELECT count(*) FROM controlplane.id_map") == [(0,)], "a plan writes nothing"


def test_an_account_of_another_agencys_person_is_never_merged_into(demo):
    victim_agency, intruder = demo["audience"][0], demo["revos"][0]
    victim = rows("unified", 'SELECT id, email FROM "user" WHERE agency_id = %s LIMIT 1', [victim_agency.unified_id])[0]
    person = revos_people(intruder)[0][0]
    for statement in ("UPDATE users SET email = %s WHERE id = %s", "UPDATE auth.users SET email = %s WHERE id = %s"):
        rows("revos", statement + " RETURNING id", [victim[1].upper(), person])
    plan = agency_plan(source_agency_id=intruder.revos_id, target_agency_id=intruder.revos_id, link_existing=False)
    assert any(c.startswith("refused:") and str(victim_agency.unified_id) in c for c in plan["conflicts"])
    with pytest.raises(RowRejected) as refused:
        migrate(intruder)
    assert refused.value.table == "auth.users" and refused.value.source_id == str(person)
    assert "never merged across agencies" in refused.value.reason
    assert rows("unified", "SELECT count(*) FROM controlplane.id_map") == [(0,)]
    assert rows("unified", "SELECT count(*) FROM auth.identities WHERE user_id = %s", [victim[0]]) != [(0,)]


def test_rollback_removes_exactly_the_accounts_the_migration_created(demo):
    agency = demo["both"][0]
    before = rows("unified", "SELECT a::text FROM auth.users a ORDER BY id") + rows(
        "unified", "SELECT i::text FROM auth.identities i ORDER BY id"
    )
    migrate(agency)
    created = rows("unified", "SELECT count(*) FROM controlplane.id_map WHERE source_table = 'auth.users' AND inserted")
    assert created[0][0] == len(revos_people(agency)) - len(merged_people(agency)) > 0
    agency_rollback(source_agency_id=agency.revos_id, unified_agency_id=agency.unified_id)
    after = rows("unified", "SELECT a::text FROM auth.users a ORDER BY id") + rows(
        "unified", "SELECT i::text FROM auth.identities i ORDER BY id"
    )
    assert after == before, "merged AudienceOS accounts are as they were; the created ones are gone"


def test_catch_up_carries_password_changes_and_deleted_accounts(migrated):
    agency = migrated["revos"][0]
    (changed, _), (gone, _) = revos_people(agency)[:2]
    new_hash = bcrypt.hashpw(b"a new password", bcrypt.gensalt(4)).decode()
    rows("revos", "UPDATE auth.users SET encrypted_password = %s WHERE id = %s RETURNING id", [new_hash, changed])
    rows("revos", "DELETE FROM auth.users WHERE id = %s RETURNING id", [gone])  # its identities go with it
    migrate(agency)
    assert signs_in(changed, "a new password")
    assert account(gone) is None and identities("unified", gone) == set()


# --- the access-token hook --------------------------------------------------------------------


def token(connection, user_id, session_id=None) -> dict:
    session_id = session_id or uuid.uuid4()
    return hook_claims(connection, access_token_event(connection, user_id=user_id, session_id=session_id))


def test_the_hook_adds_agency_and_app_and_keeps_every_other_claim(migrated):
    revos_person = revos_people(migrated["revos"][0])[0][0]
    aos_person, aos_agency = rows(
        "unified", 'SELECT id, agency_id FROM "user" WHERE agency_id = %s LIMIT 1', [migrated["audience"][0].unified_id]
    )[0]
    with connect("unified", purpose="test") as connection:
        session = uuid.uuid4()
        event = access_token_event(connection, user_id=revos_person, session_id=session)
        claims = hook_claims(connection, event)
        assert claims == {**event["claims"], "agency_id": str(migrated["revos"][0].revos_id), "app_context": "revos"}
        audience = token(connection, aos_person)
        assert (audience["agency_id"], audience["app_context"]) == (str(aos_agency), "audience")


def test_a_person_without_a_public_user_row_gets_no_agency_id(migrated):
    with connect("unified", purpose="test") as connection:
        person = uuid.uuid4()
        connection.execute(
            "INSERT INTO auth.users (id, aud, role, email) VALUES (%s, 'authenticated', 'authenticated', %s)",
            [person, f"{person}@nobody.test"],
        )
        event = access_token_event(connection, user_id=person, session_id=uuid.uuid4())
        event["claims"]["agency_id"] = str(migrated["revos"][0].revos_id)  # a forged claim is dropped too
        claims = hook_claims(connection, event)
        assert "agency_id" not in claims and claims["app_context"] == "audience"
        with acting_as(connection, claims):
            assert connection.execute("SELECT count(*) FROM agency").fetchone()[0] == 0
        connection.rollback()


@pytest.mark.parametrize("role", ["authenticated", "anon", "service_role"])
def test_only_supabase_auth_admin_may_execute_the_hook(migrated, role):
    person = revos_people(migrated["revos"][0])[0][0]
    with connect("unified", purpose="test") as connection:
        event = access_token_event(connection, user_id=person, session_id=uuid.uuid4())
        connection.execute(f"SET ROLE {role}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("SELECT public.custom_access_token_hook(%s)", [Jsonb(event)])


# --- switch_app --------------------------------------------------------------------------------


def test_switch_app_keeps_the_session_and_changes_the_app_of_the_next_token(migrated):
    person = revos_people(migrated["revos"][0])[0][0]
    session = uuid.uuid4()
    with connect("unified", purpose="test") as connection:
        first = token(connection, person, session)
        assert first["app_context"] == "revos"
        with acting_as(connection, first):
            assert connection.execute("SELECT public.switch_app('audience')").fetchone()[0] == "audience"
        connection.commit()
        refreshed = token(connection, person, session)
        assert (refreshed["session_id"], refreshed["sub"]) == (str(session), str(person))
        assert (refreshed["app_context"], refreshed["agency_id"]) == ("audience", first["agency_id"])
        with acting_as(connection, refreshed):
            connection.execute("SELECT public.switch_app('revos')")
        assert token(connection, person, session)["app_context"] == "revos"


@pytest.mark.parametrize("value", ["both", "Audience", "", None])
def test_switch_app_refuses_anything_but_audience_and_revos(migrated, value):
    person = revos_people(migrated["revos"][0])[0][0]
    with connect("unified", purpose="test") as connection:
        claims = token(connection, person)
        with acting_as(connection, claims), pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
            connection.execute("SELECT public.switch_app(%s)", [value])
        assert "app_context must be 'audience' or 'revos'" in str(refused.value)


def test_switch_app_without_claims_or_as_anon_is_refused(migrated):
    with connect("unified", purpose="test") as connection:
        with acting_as(connection, None), pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            connection.execute("SELECT public.switch_app('audience')")
        assert "signed-in user" in str(refused.value)
        connection.rollback()
        person = revos_people(migrated["revos"][0])[0][0]
        claims = token(connection, person)
        with acting_as(connection, claims, role="anon"), pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("SELECT public.switch_app('audience')")
        connection.rollback()
        assert rows("unified", "SELECT count(*) FROM private.app_choice") == [(0,)]


def test_the_agency_page_lists_the_merged_people_after_a_plan(demo, rq_queues, admin_client):
    from django.urls import reverse

    from migration_jobs.models import AgencyLink, MigrationRun
    from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
    from migration_jobs.services.runs import migration_run_request
    from tests.conftest import run_worker

    agency_links_sync()
    link = AgencyLink.objects.get(revos_agency_id=demo["both"][0].revos_id)
    link = agency_link_confirm(
        link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None
    )
    run = migration_run_request(link=link, kind=MigrationRun.Kind.PLAN, actor=None)
    run_worker("migrations")
    run.refresh_from_db()
    assert run.status == MigrationRun.Status.SUCCEEDED, run.error
    page = admin_client.get(reverse("admin:migration_jobs_agencylink_change", args=[link.pk])).content.decode()
    assert "People already in AudienceOS: 2 keep their one account" in page
    assert page.count("their AudienceOS password (the RevOS one stops working)") == 2
