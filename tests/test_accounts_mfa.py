"""Second factors move with their account (TOTP keeps working); sessions do not, and the plan, the
cutover page and the flags API say so."""

from __future__ import annotations

import uuid

import pytest
from django.db import connections
from django.urls import reverse
from django.utils import timezone

from migration_jobs.models import MigrationRun
from migration_jobs.models.flags import FlagChange
from migration_jobs.services.verification import verification_run_execute, verification_run_request
from tests.test_flags import make_link, make_run, make_verification, switched_by_run
from tests.test_flags_api import get_flags
from tests.test_migration import migrate, revos, shared_agency, unified  # noqa: F401 (a fixture)
from tests.test_switch_back import agencies, flags, switch_back  # noqa: F401 (fixtures)

Status = MigrationRun.Status
FACTOR_COLUMNS = "id, friendly_name, factor_type::text, status::text, secret, created_at, updated_at"


def enroll(alias: str, user_id, *, name: str = "Authenticator", status: str = "verified") -> uuid.UUID:
    """A TOTP factor as GoTrue enrolls one (its secret is what the person's authenticator app holds)."""
    factor = uuid.uuid4()
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "INSERT INTO auth.mfa_factors (id, user_id, friendly_name, factor_type, status, created_at, updated_at,"
            " secret) VALUES (%s, %s, %s, 'totp', %s, now() - interval '1 day', now() - interval '1 day', %s)",
            [factor, user_id, name, status, f"JBSWY3DPEHPK3PXP{factor.hex[:8].upper()}"],
        )
    return factor


def factors(alias: str, user_id) -> list[tuple]:
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SELECT {FACTOR_COLUMNS} FROM auth.mfa_factors WHERE user_id = %s ORDER BY id", [user_id])
        return cursor.fetchall()


def people(link) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """(a person the migration inserts, a merged person's RevOS id, their AudienceOS account id)."""
    mapped = dict(
        unified(
            "SELECT source_id, target_id FROM controlplane.id_map WHERE agency_id = %s AND source_table = 'users'"
            " AND NOT inserted",
            [link.revos_agency_id],
        )
    )
    accounts = [
        row[0]
        for row in revos(
            "SELECT a.id FROM auth.users a JOIN users u ON u.id = a.id WHERE u.agency_id = %s ORDER BY a.id",
            [link.revos_agency_id],
        )
    ]
    inserted = next(a for a in accounts if a not in mapped)
    merged = next(a for a in accounts if a in mapped)
    return inserted, merged, mapped[merged]


@pytest.fixture
def with_factors(shared_agency):  # noqa: F811
    """The shared demo agency migrated once (so the merged people are known), then with factors in RevOS."""
    link = shared_agency
    assert migrate(link).status == Status.SUCCEEDED
    inserted, merged, account = people(link)
    enrolled = {
        "inserted": enroll("revos", inserted),
        "unverified": enroll("revos", inserted, name="Phone app", status="unverified"),
        "merged": enroll("revos", merged),
    }
    return link, inserted, merged, account, enrolled


def test_second_factors_move_with_their_account_and_verification_checks_them(with_factors):
    link, inserted, merged, account, _ = with_factors
    assert migrate(link).status == Status.SUCCEEDED
    assert factors("unified", inserted) == factors("revos", inserted) != []
    # A merged person's factor joins the AudienceOS account they keep, secret and all.
    assert factors("unified", account) == factors("revos", merged) != []
    verification = verification_run_execute(
        verification_run_id=verification_run_request(link=link, actor=None, enqueue=False).pk
    )
    assert verification.results.get(check_name="counts", table_name="auth.mfa_factors").status == "pass"
    assert verification.verdict == "pass", [
        (r.check_name, r.table_name, r.details) for r in verification.results.exclude(status="pass")
    ]
    # A secret that differs is a failure: the person's authenticator would stop working.
    unified("UPDATE auth.mfa_factors SET secret = 'TAMPERED' WHERE user_id = %s", [inserted])
    verification = verification_run_execute(
        verification_run_id=verification_run_request(link=link, actor=None, enqueue=False).pk
    )
    assert verification.verdict == "fail"
    assert verification.results.filter(table_name="auth.mfa_factors").exclude(status="pass").exists()


def test_a_catch_up_brings_factors_enrolled_and_removed_since_and_a_rollback_removes_them(with_factors):
    link, inserted, _, account, enrolled = with_factors
    assert migrate(link).status == Status.SUCCEEDED
    revos("DELETE FROM auth.mfa_factors WHERE id = %s", [enrolled["unverified"]])
    later = enroll("revos", inserted, name="Second phone")
    run = migrate(link)
    assert run.status == Status.SUCCEEDED, run.error
    assert run.report["auth.mfa_factors"]["inserted"] == 1 and run.report["auth.mfa_factors"]["deleted"] == 1
    assert {row[0] for row in factors("unified", inserted)} == {enrolled["inserted"], later}
    assert migrate(link, kind=MigrationRun.Kind.ROLLBACK).status == Status.SUCCEEDED
    assert factors("unified", inserted) == [] and factors("unified", account) == []


def test_a_factor_enrolled_in_the_unified_project_after_cutover_goes_back_with_a_switch_back(agencies):  # noqa: F811
    shared, _ = agencies
    person = unified(
        'SELECT a.id FROM auth.users a JOIN "user" u ON u.id = a.id JOIN controlplane.id_map m'
        " ON m.target_id = a.id AND m.source_table = 'auth.users' AND m.inserted WHERE u.agency_id = %s"
        " ORDER BY a.id LIMIT 1",
        [shared.unified_agency_id],
    )[0][0]
    factor = enroll("unified", person, name="Enrolled after the cutover")
    run = switch_back(shared)
    assert run.status == Status.SUCCEEDED, run.error
    assert (
        [row for row in factors("revos", person) if row[0] == factor]
        == [row for row in factors("unified", person) if row[0] == factor]
        != []
    )


def test_the_plan_and_the_cutover_page_say_the_people_sign_in_again(shared_agency, admin_client, settings):  # noqa: F811
    link = shared_agency
    run = migrate(link, kind=MigrationRun.Kind.PLAN)
    assert run.status == Status.SUCCEEDED, run.error
    people_with_accounts = run.report["tables"]["auth.users"]["source_rows"]
    assert f"The agency's {people_with_accounts} people with an account sign in again" in run.report["sessions"]
    page = admin_client.get(reverse("admin:migration_jobs_agencylink_change", args=[link.pk])).content.decode()
    assert 'id="plan-sessions"' in page and 'id="cutover-sessions"' in page
    assert page.count("sign in again at the cutover") == 2
    settings.AUTH_JWT_SECRET_SHARED = True
    page = admin_client.get(reverse("admin:migration_jobs_agencylink_change", args=[link.pk])).content.decode()
    assert "keep their access token until it expires" in page


def test_the_flags_api_says_when_the_agencys_sessions_were_reset(client, flags, settings):  # noqa: F811
    settings.FLAGS_API_TOKEN = "flags-test-token-5"
    link = make_link("Signs in again")
    make_run(link, minutes_ago=60)
    make_verification(link, minutes_ago=30)
    assert get_flags(client, link.revos_agency_id, token="flags-test-token-5").json()["sessions_reset_at"] is None
    before = timezone.now()
    switched_by_run(link)
    switched = FlagChange.objects.filter(agency_link=link, flag__name="unified_db").latest()
    answer = get_flags(client, link.unified_agency_id, token="flags-test-token-5").json()
    assert answer["sessions_reset_at"] == switched.created_at.isoformat()
    assert switched.created_at >= before
    # A switch back moves them again: the latest switch is the one that counts.
    switched_by_run(link, kind="switchback")
    latest = FlagChange.objects.filter(agency_link=link, flag__name="unified_db").latest()
    assert latest.pk != switched.pk
    answer = get_flags(client, link.revos_agency_id, token="flags-test-token-5").json()
    assert answer["sessions_reset_at"] == latest.created_at.isoformat()
    settings.AUTH_JWT_SECRET_SHARED = True  # tokens stay valid in both projects: nothing to drop
    assert get_flags(client, link.revos_agency_id, token="flags-test-token-5").json()["sessions_reset_at"] is None
