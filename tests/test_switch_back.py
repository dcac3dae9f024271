"""Switching a cut-over agency back to RevOS with what the apps wrote since, and completing a move.

Real RevOS and unified databases, real RQ workers: an agency is migrated, verified and cut over;
the apps then write to it in the unified database (as role `authenticated` with its JWT claims),
and the switch back must leave RevOS exactly as a RevOS app making the same writes would have.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import bcrypt
import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from migration_jobs.demo.demo import demo_data_seed
from migration_jobs.etl import capture
from migration_jobs.etl.catalog import catalog_read
from migration_jobs.etl.connections import connect
from migration_jobs.etl.plan import migration_plan_build
from migration_jobs.etl.reverse_capture import reverse_capture_state
from migration_jobs.mapping import QUALIFIED_TABLES
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.models.flags import FeatureFlag, FlagChange
from migration_jobs.refusals import RunRefused
from migration_jobs.selectors.flags import agency_flag_enabled
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
from migration_jobs.services.kinds.cutover import cutover_run_request
from migration_jobs.services.kinds.switch_back import switch_back_plan, switch_back_run_request
from migration_jobs.services.runs import migration_run_execute as cutover_run_execute
from migration_jobs.services.runs import migration_run_execute as switch_back_run_execute
from migration_jobs.services.runs import migration_run_request
from tests.conftest import agency_checksums, childless_leads, database_url, run_worker, start_worker_process

Status, Kind = MigrationRun.Status, MigrationRun.Kind
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def revos(statement: str, params=()):
    with connections["revos"].cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else None


def unified(statement: str, params=()):
    with connections["unified"].cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else None


def as_app(connection: psycopg.Connection, agency_id, statements: list[tuple[str, list]]) -> None:
    """One transaction of a RevOS app on the unified database: role authenticated, the agency's JWT."""
    with connection.transaction():
        connection.execute("SET LOCAL ROLE authenticated")
        connection.execute(
            "SELECT set_config('request.jwt.claims', %s, true)",
            [json.dumps({"agency_id": str(agency_id), "app_context": "revos", "role": "authenticated"})],
        )
        for statement, params in statements:
            connection.execute(statement, params)


def migrate_verify_cut_over(link: AgencyLink) -> MigrationRun:
    run = migration_run_request(link=link, kind=Kind.MIGRATE, actor=None)
    run_worker("migrations", "verification")  # a successful migration queues its verification
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED, run.error
    return cut_over(link)


def cut_over(link: AgencyLink) -> MigrationRun:
    cutover = cutover_run_execute(run_id=cutover_run_request(link=link, reason="move it", actor=None, enqueue=False).pk)
    assert cutover.status == Status.SUCCEEDED, cutover.error
    return cutover


def switch_back(link: AgencyLink) -> MigrationRun:
    run = switch_back_run_request(link=link, reason="RevOS feature broke", actor=None, enqueue=False)
    return switch_back_run_execute(run_id=run.pk)


@pytest.fixture
def flags(tenant_db):
    """The seed flags (a transactional test elsewhere may have flushed the data migration's rows)."""
    for name, gated in {"unified_db": True, "app_toggle": False, "shared_hgc": False}.items():
        FeatureFlag.objects.update_or_create(
            name=name, defaults={"requires_verification": gated, "enabled_globally": False, "rollout_percentage": 0}
        )


@pytest.fixture
def agencies(flags, rq_queues):
    """A RevOS agency linked to its AudienceOS self and a second one, both migrated; the first cut over."""
    demo_data_seed(agencies=3, scale=1, seed=5)
    agency_links_sync()
    links = []
    for kind in (AgencyLink.Kind.EXISTING, AgencyLink.Kind.NEW):
        link = AgencyLink.objects.filter(suggested_kind=kind).order_by("name").first()
        links.append(agency_link_confirm(link=link, kind=kind, unified_agency_id=link.suggested_agency_id, actor=None))
    shared, other = links
    run = migration_run_request(link=other, kind=Kind.MIGRATE, actor=None)
    run_worker("migrations", "verification")
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    migrate_verify_cut_over(shared)
    yield shared, other
    for link in (shared, other):  # the tenant tables are emptied next; nothing may stay fenced
        with connect("revos") as connection:
            capture.capture_remove(connection, agency_id=link.revos_agency_id)
        with connect("unified") as connection:
            capture.capture_remove(connection, agency_id=link.unified_agency_id)


# --- what RevOS should hold -------------------------------------------------------------------


def revos_plans():
    """The public tables a switch back sends back (the accounts are compared whole: reverse_accounts.py)."""
    with connect("revos") as source, connect("unified") as target:
        plans = migration_plan_build(source=catalog_read(source), target=catalog_read(target))
        return [plan for plan in plans if plan.entry.captured and plan.source not in QUALIFIED_TABLES]


def revos_checksums(plans, agency_id, *, schema: str = "public", inside: bool = True) -> dict[str, str]:
    """Per RevOS table, a checksum of the agency's rows (or every other agency's), column by column."""
    sums = {}
    with connect("revos") as connection:
        connection.execute(f"SET search_path = {schema}, public")
        for plan in plans:
            condition = plan.scope_condition(agency_id).as_string(connection)
            negation = "" if inside else "NOT "
            columns = ", ".join(f't."{c}"' for c in catalog_read(connection).column_names(plan.source))
            sums[plan.source] = connection.execute(
                f"SELECT count(*), md5(coalesce(string_agg(ROW({columns})::text, '|' ORDER BY t.id), ''))"
                f' FROM "{plan.source}" t WHERE {negation}({condition})'
            ).fetchone()
    return sums


def expected_revos_copy(plans, agency_id) -> None:
    """The agency's RevOS rows copied into schema `expected`, for a RevOS app's writes to go to."""
    with connect("revos") as connection:
        connection.execute("DROP SCHEMA IF EXISTS expected CASCADE")
        connection.execute("CREATE SCHEMA expected")
        for plan in plans:
            condition = plan.scope_condition(agency_id).as_string(connection)
            connection.execute(
                f'CREATE TABLE expected."{plan.source}" AS SELECT * FROM public."{plan.source}" WHERE {condition}'
            )
        connection.commit()


def as_revos_app(statements: list[tuple[str, list]]) -> None:
    """The same writes as a RevOS app would make them, on the `expected` copy."""
    with connect("revos") as connection:
        connection.execute("SET search_path = expected")
        for statement, params in statements:
            connection.execute(statement, params)
        connection.commit()


AUDIENCE_ONLY = ("client_assignment", "task", "stage_event", "communication", "document", "member_client_access")


def audience_checksums() -> dict[str, str]:
    return {
        t: unified(f"SELECT count(*) || ':' || md5(coalesce(string_agg(x::text, '|' ORDER BY id), '')) FROM {t} x")[0][
            0
        ]
        for t in AUDIENCE_ONLY
    }


# --- the whole round --------------------------------------------------------------------------


def test_switch_back_gives_revos_what_a_revos_app_would_have_written_and_a_new_cutover_brings_it_back(agencies):
    link, _ = agencies
    agency, revos_agency = link.unified_agency_id, link.revos_agency_id
    plans = revos_plans()
    expected_revos_copy(plans, revos_agency)
    others_before = revos_checksums(plans, revos_agency, inside=False)
    audience_before = audience_checksums()
    # What the apps write after cutover: inserts, updates and deletes, RevOS-only and shared tables.
    lead, lead_gone = childless_leads(agency)
    campaign = unified("SELECT id FROM campaign WHERE agency_id = %s ORDER BY id LIMIT 1", [agency])[0][0]
    reused_client, revos_client = unified(
        "SELECT target_id, source_id FROM controlplane.id_map WHERE agency_id = %s AND source_table = 'clients'"
        " AND NOT inserted ORDER BY 1 LIMIT 1",
        [revos_agency],
    )[0]
    reused_user, revos_user = unified(
        "SELECT target_id, source_id FROM controlplane.id_map WHERE agency_id = %s AND source_table = 'users'"
        " AND NOT inserted ORDER BY 1 LIMIT 1",
        [revos_agency],
    )[0]
    brand = unified(
        "SELECT id FROM cartridge WHERE agency_id = %s AND type = 'brand' AND app_context = 'both' ORDER BY id LIMIT 1",
        [agency],
    )[0][0]
    new_lead, new_session, new_message = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with connect("unified") as connection:
        as_app(
            connection,
            agency,
            [
                ("UPDATE lead SET status = 'qualified', name = 'Qualified in unified' WHERE id = %s", [lead]),
                ("DELETE FROM lead WHERE id = %s", [lead_gone]),
                (
                    "INSERT INTO lead (id, agency_id, campaign_id, name, status, created_at, app_context)"
                    " VALUES (%s, %s, %s, 'Newcomer', 'new', %s, 'revos')",
                    [new_lead, agency, campaign, T0],
                ),
                ("UPDATE client SET name = 'Renamed Client Co', stage = 'paused' WHERE id = %s", [reused_client]),
                (
                    "INSERT INTO chat_session (id, agency_id, user_id, client_id, title, created_at, updated_at)"
                    " VALUES (%s, %s, %s, %s, 'After cutover', %s, %s)",
                    [new_session, agency, reused_user, reused_client, T0, T0],
                ),
                (
                    "INSERT INTO chat_message (id, agency_id, session_id, role, content, created_at, ai_provider)"
                    " VALUES (%s, %s, %s, 'user', 'hello', %s, 'agentkit')",
                    [new_message, agency, new_session, T0],
                ),
                ("UPDATE cartridge SET config = jsonb_set(config, '{tone}', '\"calm\"') WHERE id = %s", [brand]),
            ],
        )
    as_revos_app(
        [
            ("UPDATE leads SET status = 'qualified', name = 'Qualified in unified' WHERE id = %s", [lead]),
            ("DELETE FROM leads WHERE id = %s", [lead_gone]),
            (
                "INSERT INTO leads (id, agency_id, campaign_id, name, status, created_at)"
                " VALUES (%s, %s, %s, 'Newcomer', 'new', %s)",
                [new_lead, revos_agency, campaign, T0],
            ),
            ("UPDATE clients SET name = 'Renamed Client Co', status = 'paused' WHERE id = %s", [revos_client]),
            (
                "INSERT INTO chat_sessions (id, agency_id, user_id, client_id, title, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, 'After cutover', %s, %s)",
                [new_session, revos_agency, revos_user, revos_client, T0, T0],
            ),
            (
                "INSERT INTO chat_messages (id, session_id, role, content, created_at)"
                " VALUES (%s, %s, 'user', 'hello', %s)",
                [new_message, new_session, T0],
            ),
            ("UPDATE brand_cartridges SET tone = 'calm' WHERE id = %s", [brand]),
        ]
    )
    plan = switch_back_plan(link=link)
    assert plan["problems"] == []
    assert plan["totals"] == {"insert": 3, "update": 3, "delete": 1}
    assert (
        plan["tables"]["leads"]["insert"] == plan["tables"]["leads"]["update"] == plan["tables"]["leads"]["delete"] == 1
    )

    call_command("switch_back_agency", str(revos_agency), "--reason", "RevOS feature broke", "--sync")

    run = link.runs.filter(kind=Kind.SWITCH_BACK).get()
    assert run.status == Status.SUCCEEDED, run.error
    assert [s["status"] for s in run.steps] == ["done"] * 7
    assert revos_checksums(plans, revos_agency) == revos_checksums(plans, revos_agency, schema="expected")
    assert revos_checksums(plans, revos_agency, inside=False) == others_before
    assert audience_checksums() == audience_before
    assert not agency_flag_enabled(flag_name="unified_db", agency_link=link)
    switched = FlagChange.objects.filter(flag__name="unified_db", agency_link=link).latest("id")
    assert (switched.new_value, switched.reason) == ("off", "RevOS feature broke"), "set by the run, with its reason"
    assert reverse_capture_state(unified_agency_id=agency) is None
    # RevOS accepts the agency's writes again.
    revos("UPDATE leads SET name = 'Written in RevOS again' WHERE id = %s", [new_lead])

    # A migrated agency again: catch up, verify, cut over; the unified rows are back, identical.
    revos("UPDATE leads SET name = 'Newcomer' WHERE id = %s", [new_lead])
    before_cutover = agency_checksums(agency)
    catch_up = migration_run_request(link=link, kind=Kind.MIGRATE, actor=None)
    run_worker("migrations", "verification")
    catch_up.refresh_from_db()
    assert catch_up.status == Status.SUCCEEDED, catch_up.error
    assert link.verifications.order_by("-id").first().verdict == "pass"
    cut_over(link)
    assert agency_checksums(agency) == before_cutover
    assert agency_flag_enabled(flag_name="unified_db", agency_link=link)
    assert reverse_capture_state(unified_agency_id=agency) is not None


# --- refusals ---------------------------------------------------------------------------------


def test_switch_back_and_complete_are_refused_before_cutover_with_reasons(agencies):
    _, other = agencies  # migrated, never cut over
    with pytest.raises(RunRefused, match="is not cut over: switching back applies after a cutover"):
        switch_back_run_request(link=other, reason="why", actor=None)
    with pytest.raises(CommandError, match="is not cut over"):
        call_command("switch_back_agency", str(other.revos_agency_id), "--reason", "why", "--sync")
    with pytest.raises(CommandError, match="is not cut over"):
        call_command("switch_back_agency", str(other.revos_agency_id), "--plan")
    with pytest.raises(CommandError, match="a move is completed only after its cutover"):
        call_command("complete_agency", str(other.revos_agency_id), "--reason", "done")
    assert not other.runs.filter(kind__in=(Kind.SWITCH_BACK, Kind.COMPLETE)).exists()


def test_a_switch_back_needs_a_reason(agencies):
    link, _ = agencies
    with pytest.raises(RunRefused, match="needs a reason"):
        switch_back_run_request(link=link, reason="  ", actor=None)
    with pytest.raises(CommandError, match="--reason is required"):
        call_command("switch_back_agency", str(link.revos_agency_id), "--sync")


def test_complete_keeps_revos_read_only_stops_the_reverse_capture_and_refuses_a_switch_back(agencies):
    link, _ = agencies
    lead = revos("SELECT id FROM leads WHERE agency_id = %s LIMIT 1", [link.revos_agency_id])[0][0]
    call_command("complete_agency", str(link.revos_agency_id), "--reason", "all good for a week")
    complete = link.runs.filter(kind=Kind.COMPLETE).get()
    assert complete.status == Status.SUCCEEDED
    assert reverse_capture_state(unified_agency_id=link.unified_agency_id) is None
    with pytest.raises(Exception, match="moved to the unified database"):
        revos("UPDATE leads SET name = 'no' WHERE id = %s", [lead])
    with pytest.raises(RunRefused, match=r"move was completed on .* there is no switching back"):
        switch_back_run_request(link=link, reason="why", actor=None)
    with pytest.raises(CommandError, match="complete already"):
        call_command("complete_agency", str(link.revos_agency_id), "--reason", "again")


def test_a_value_revos_cannot_hold_refuses_the_switch_back_and_leaves_the_agency_cut_over(agencies):
    link, _ = agencies
    lead = unified("SELECT id FROM lead WHERE agency_id = %s LIMIT 1", [link.unified_agency_id])[0][0]
    unified("UPDATE lead SET app_context = 'both' WHERE id = %s", [lead])
    plans = revos_plans()
    before = revos_checksums(plans, link.revos_agency_id)
    run = switch_back(link)
    assert run.status == Status.FAILED
    assert "Step Preflight failed" in run.error and "lead.app_context" in run.error and "stays cut over" in run.error
    assert agency_flag_enabled(flag_name="unified_db", agency_link=link)
    assert reverse_capture_state(unified_agency_id=link.unified_agency_id).fenced_at is None
    assert revos_checksums(plans, link.revos_agency_id) == before


def test_a_failure_after_the_fence_lifts_it_and_leaves_the_agency_cut_over(agencies, settings, monkeypatch):
    link, _ = agencies
    from migration_jobs.services.kinds import switch_back as module

    def broken(**kwargs):
        raise RuntimeError("RevOS went away")

    monkeypatch.setattr(module, "reverse_apply", broken)
    run = switch_back(link)
    assert run.status == Status.FAILED
    assert run.error.startswith("Step Apply changes to RevOS failed: RevOS went away. The unified fence is lifted")
    assert agency_flag_enabled(flag_name="unified_db", agency_link=link)
    state = reverse_capture_state(unified_agency_id=link.unified_agency_id)
    assert state is not None and state.fenced_at is None
    assert not run.fence_held


# --- a writer during the switch back ----------------------------------------------------------


def test_a_concurrent_unified_writer_loses_no_acknowledged_write_and_sees_the_fence_error(agencies):
    link, other = agencies
    agency = link.unified_agency_id
    leads = [r[0] for r in unified("SELECT id FROM lead WHERE agency_id = %s ORDER BY id LIMIT 5", [agency])]
    other_lead = unified("SELECT id FROM lead WHERE agency_id = %s LIMIT 1", [other.unified_agency_id])[0][0]
    acknowledged: dict[uuid.UUID, str] = {}
    refused: list[str] = []
    other_refused: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        # A RevOS app honouring the flag: it writes the unified database while unified_db is on.
        from django.db import connection as control

        with connect("unified") as connection:
            n = 0
            while not stop.is_set():
                if not agency_flag_enabled(flag_name="unified_db", agency_link=link):
                    break
                n += 1
                lead = leads[n % len(leads)]
                try:
                    as_app(connection, agency, [("UPDATE lead SET name = %s WHERE id = %s", [f"w{n}", lead])])
                    acknowledged[lead] = f"w{n}"
                except psycopg.errors.ReadOnlySqlTransaction as error:
                    refused.append(str(error))
                try:
                    as_app(
                        connection,
                        other.unified_agency_id,
                        [("UPDATE lead SET name = %s WHERE id = %s", [f"o{n}", other_lead])],
                    )
                except psycopg.Error as error:
                    other_refused.append(str(error))
                time.sleep(0.005)
        control.close()

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.5)
    run = switch_back(link)
    stop.set()
    thread.join(timeout=30)
    assert run.status == Status.SUCCEEDED, run.error
    assert acknowledged, "the writer wrote before the switch back"
    for lead, name in acknowledged.items():
        assert revos("SELECT name FROM leads WHERE id = %s", [lead]) == [(name,)]
    assert all(f'Agency "{link.name}"' in message for message in refused)
    # The other agency was never cut over: RevOS holds its truth, so the guard keeps the apps off its
    # unified copies (etl/unified_guard.py); this agency's switch-back fence never refuses it.
    assert other_refused and all("lives in RevOS until its cutover" in message for message in other_refused)


# --- a worker killed mid-switch-back ----------------------------------------------------------


def flags_api(link: AgencyLink) -> dict:
    """What the apps read: GET /api/flags/<agency id>/."""
    from django.test import Client, override_settings

    with override_settings(FLAGS_API_TOKEN="t0ken"):
        response = Client().get(
            f"/api/flags/{link.unified_agency_id}/?app_context=revos", HTTP_AUTHORIZATION="Bearer t0ken"
        )
    assert response.status_code == 200, response.content
    return response.json()


def kill_worker(worker) -> None:
    """SIGKILL a worker and the work horse it forked (the horse runs in a session of its own)."""
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
    for pid in children:
        os.kill(int(pid), signal.SIGKILL)
    os.killpg(worker.pid, signal.SIGKILL)


def test_a_worker_killed_mid_switch_back_is_undone_by_the_next_request(agencies, rq_queues):
    link, _ = agencies
    # Hold the drain: an app's open unified transaction older than the fence keeps the run waiting there.
    with psycopg.connect(database_url("unified"), application_name="an-app") as holder:
        holder.execute("SELECT txid_current()")
        run = switch_back_run_request(link=link, reason="test", actor=None)
        worker = start_worker_process("migrations", burst=True, CUTOVER_DRAIN_TIMEOUT_SECONDS="60")
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                run.refresh_from_db()
                if any(s["name"] == "drain" and s["status"] == "running" for s in run.steps):
                    break
                time.sleep(0.2)
            else:
                os.killpg(worker.pid, signal.SIGKILL)
                pytest.fail(
                    f"the switch back never reached its drain: {run.status} {run.error} {run.steps}"
                    f" {worker.stdout.read()[-3000:]}"
                )
            assert reverse_capture_state(unified_agency_id=link.unified_agency_id).fenced_at is not None
            answer = flags_api(link)
            assert answer["unified_read_only"] is True and answer["flags"]["unified_db"] is True
            kill_worker(worker)
            worker.wait(timeout=30)
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
        holder.rollback()
    # The next request on the agency finds the run dead (once PostgreSQL has dropped the killed
    # worker's session and its lock) and undoes it: unified accepts writes, the agency is cut over still.
    deadline = time.monotonic() + 30
    while run.status == Status.RUNNING and time.monotonic() < deadline:
        with pytest.raises(RunRefused):
            migration_run_request(link=link, kind=Kind.ROLLBACK, actor=None)
        run.refresh_from_db()
        time.sleep(0.2)
    assert run.status == Status.FAILED
    assert "before unified_db was turned off: the unified fence is lifted" in run.error
    assert reverse_capture_state(unified_agency_id=link.unified_agency_id).fenced_at is None
    assert agency_flag_enabled(flag_name="unified_db", agency_link=link)
    assert flags_api(link)["unified_read_only"] is False
    # And a switch back then goes through.
    assert switch_back(link).status == Status.SUCCEEDED


# --- a queued plan ------------------------------------------------------------------------------


def test_a_queued_plan_gives_way_to_a_switch_back_and_a_cutover_and_the_agency_history_says_so(agencies, rq_queues):
    from django.contrib.admin.models import LogEntry
    from django.contrib.auth.models import User

    shared, other = agencies  # shared is cut over; other is migrated and verified, not cut over
    staff = User.objects.create_user(f"staff-{uuid.uuid4().hex[:6]}", is_staff=True)
    queue = rq_queues["migrations"]
    plan = migration_run_request(link=shared, kind=Kind.PLAN, actor=None)
    assert queue.job_ids == [plan.job_id]

    back = switch_back_run_request(link=shared, reason="RevOS feature broke", actor=staff)
    plan.refresh_from_db()
    assert plan.status == Status.CANCELLED, plan.status_note
    assert plan.status_note == "superseded by a switch back requested before a worker started it"
    assert back.status == Status.QUEUED and queue.job_ids == [back.job_id] and back.job_id != plan.job_id
    assert queue.fetch_job(back.job_id).args == (back.pk,)  # its own job; the plan's is cancelled
    entry = LogEntry.objects.get(object_id=str(shared.pk), user=staff)
    assert f"Plan (dry run) run {plan.pk} cancelled: superseded by a switch back" in entry.change_message
    run_worker("migrations")
    back.refresh_from_db()
    assert back.status == Status.SUCCEEDED, back.error

    plan = migration_run_request(link=other, kind=Kind.PLAN, actor=None)
    cutover = cutover_run_request(link=other, reason="move it", actor=None)
    plan.refresh_from_db()
    assert plan.status == Status.CANCELLED and "superseded by a cut over" in plan.status_note
    run_worker("migrations")
    cutover.refresh_from_db()
    assert cutover.status == Status.SUCCEEDED, cutover.error
    assert not shared.runs.filter(kind=Kind.PLAN, status=Status.SUCCEEDED).exists(), "no cancelled plan ran"


def test_a_plan_whose_job_a_worker_has_taken_still_holds_the_agency(agencies, rq_queues):
    from rq.job import JobStatus

    shared, _ = agencies
    plan = migration_run_request(link=shared, kind=Kind.PLAN, actor=None)
    # As a worker leaves it while the run waits for a concurrency slot: the job started, the run queued.
    rq_queues["migrations"].fetch_job(plan.job_id).set_status(JobStatus.STARTED)
    with pytest.raises(RunRefused, match=f"already has a run queued \\(run {plan.pk}\\)"):
        switch_back_run_request(link=shared, reason="RevOS feature broke", actor=None)
    plan.refresh_from_db()
    assert plan.status == Status.QUEUED and not shared.runs.filter(kind=Kind.SWITCH_BACK).exists()


# --- the admin ----------------------------------------------------------------------------------


def staff_client(*permissions: str):
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    user = User.objects.create_user(f"staff-{uuid.uuid4().hex[:6]}", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_agencylink", *permissions]))
    client = Client()
    client.force_login(user)
    return client


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_admin_switch_back_checks_permission_and_reason_then_queues_the_run(agencies, rq_queues):
    from django.urls import reverse

    link, _ = agencies
    url = reverse("admin:migration_jobs_agencylink_reasoned", args=[link.pk, "switchback"])
    assert staff_client("switchback_migrationrun").get(url).status_code == 405
    response = staff_client().post(url, {"reason": "why"}, follow=True)
    assert messages_of(response) == ["You may not switch agencies back."]
    allowed = staff_client("switchback_migrationrun")
    response = allowed.post(url, {"reason": " "}, follow=True)
    assert messages_of(response) == [
        "Refused: A switch back needs a reason; it is kept with the run and the unified_db change."
    ]
    assert not link.runs.filter(kind=Kind.SWITCH_BACK).exists()
    plan = allowed.post(reverse("admin:migration_jobs_agencylink_switch_back_plan", args=[link.pk]))
    assert plan.status_code == 200 and b"Nothing changed since the cutover" in plan.content
    response = allowed.post(url, {"reason": "RevOS feature broke"}, follow=True)
    assert any(m.startswith(f"Switch back of {link.name} queued") for m in messages_of(response))
    run = link.runs.get(kind=Kind.SWITCH_BACK)
    assert run.status == Status.QUEUED and run.reason == "RevOS feature broke"
    run_worker("migrations")
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED, run.error


def test_admin_bulk_switch_back_asks_a_reason_and_says_why_an_agency_is_refused(agencies, rq_queues):
    from django.contrib.admin import helpers
    from django.urls import reverse

    link, other = agencies
    url = reverse("admin:migration_jobs_agencylink_changelist")
    client = staff_client("switchback_migrationrun")
    selection = {"action": "switch_back_selected", helpers.ACTION_CHECKBOX_NAME: [link.pk, other.pk]}
    asked = client.post(url, selection)
    assert asked.status_code == 200 and b"Switch them back" in asked.content
    response = client.post(url, {**selection, "apply": "yes", "reason": "RevOS feature broke"}, follow=True)
    said = messages_of(response)
    assert said[0] == f"Switch back queued for 1 (they run within the concurrency limit): {link.name}."
    assert said[1] == f"Refused: {other.name} is not cut over: switching back applies after a cutover" + (
        " (before it, RevOS is its source)."
    )
    assert link.runs.filter(kind=Kind.SWITCH_BACK, status=Status.QUEUED).count() == 1


def test_admin_complete_is_refused_before_cutover_and_the_page_then_says_complete(agencies):
    from django.urls import reverse

    link, other = agencies
    client = staff_client("complete_migrationrun")
    refused = client.post(
        reverse("admin:migration_jobs_agencylink_reasoned", args=[other.pk, "complete"]),
        {"reason": "done"},
        follow=True,
    )
    assert messages_of(refused) == [
        f"Refused: {other.name} is not cut over: a move is completed only after its cutover."
    ]
    done = client.post(
        reverse("admin:migration_jobs_agencylink_reasoned", args=[link.pk, "complete"]), {"reason": "done"}, follow=True
    )
    assert any("move is complete" in m for m in messages_of(done))
    assert done.context["cockpit"].state == "complete"
    assert 'id="complete-by"' in done.content.decode()


def test_a_reopen_that_fails_after_the_switch_leaves_it_to_the_next_request(agencies, rq_queues, monkeypatch):
    link, _ = agencies
    from migration_jobs.services.kinds import switch_back as module

    def unreachable(**kwargs):
        raise RuntimeError("RevOS did not answer")

    monkeypatch.setattr(module, "agency_reopen_revos", unreachable)
    lead = revos("SELECT id FROM leads WHERE agency_id = %s LIMIT 1", [link.revos_agency_id])[0][0]
    run = switch_back(link)
    assert run.status == Status.SUCCEEDED, run.error
    assert "not yet (RevOS did not answer)" in run.steps[-1]["detail"]
    assert not agency_flag_enabled(flag_name="unified_db", agency_link=link)
    with pytest.raises(Exception, match="moved to the unified database"):
        revos("UPDATE leads SET name = 'still fenced' WHERE id = %s", [lead])
    # The next request on the agency (a catch-up, allowed again) lifts what no live run stands for.
    migration_run_request(link=link, kind=Kind.MIGRATE, actor=None)
    revos("UPDATE leads SET name = 'RevOS again' WHERE id = %s", [lead])
    assert reverse_capture_state(unified_agency_id=link.unified_agency_id) is None


# --- accounts ---------------------------------------------------------------------------------


def revos_accounts(condition: str, params) -> str:
    """A checksum of RevOS's accounts and identities whose person matches `condition` on users."""
    return revos(
        "SELECT md5(coalesce(string_agg(x, '|' ORDER BY x), '')) FROM ("
        " SELECT a::text AS x FROM auth.users a WHERE a.id IN (SELECT id FROM users WHERE " + condition + ")"
        " UNION ALL SELECT i::text FROM auth.identities i WHERE i.user_id IN (SELECT id FROM users WHERE "
        + condition
        + ")) s",
        [*params, *params],
    )[0][0]


def mapped_pair(revos_agency, source_table: str, *, inserted: bool) -> tuple[uuid.UUID, uuid.UUID]:
    """(unified id, RevOS id) of one row of the agency's id map."""
    return unified(
        "SELECT target_id, source_id FROM controlplane.id_map WHERE agency_id = %s AND source_table = %s"
        " AND inserted = %s ORDER BY source_id LIMIT 1",
        [revos_agency, source_table, inserted],
    )[0]


def test_switch_back_carries_the_agencys_account_changes_to_revos_and_no_other_agencys(agencies):
    link, other = agencies
    revos_agency = link.revos_agency_id
    owned, _ = mapped_pair(revos_agency, "auth.users", inserted=True)  # a RevOS-only person's account
    merged, merged_revos = mapped_pair(revos_agency, "auth.users", inserted=False)  # also in AudienceOS
    removed, _ = unified(
        "SELECT target_id, source_id FROM controlplane.id_map WHERE agency_id = %s AND source_table = 'auth.identities'"
        " AND target_id IN (SELECT id FROM auth.identities WHERE user_id = %s) LIMIT 1",
        [revos_agency, owned],
    )[0]
    signed_in = unified(
        'SELECT a.id FROM auth.users a JOIN "user" u ON u.id = a.id WHERE u.agency_id = %s AND a.id NOT IN (%s, %s)'
        " ORDER BY a.id LIMIT 1",
        [link.unified_agency_id, owned, merged],
    )[0][0]
    other_person = unified(
        "SELECT target_id FROM controlplane.id_map WHERE agency_id = %s AND source_table = 'auth.users' LIMIT 1",
        [other.revos_agency_id],
    )[0][0]
    others_before = revos_accounts("agency_id <> %s", [revos_agency])
    merged_email_before = revos("SELECT email FROM auth.users WHERE id = %s", [merged_revos])[0][0]
    new_hash, merged_hash = (bcrypt.hashpw(p, bcrypt.gensalt(4)).decode() for p in (b"new in unified", b"merged new"))
    new_identity = uuid.uuid4()
    # What GoTrue writes in the unified project after cutover: a password and email change, new
    # metadata, an identity linked and one unlinked, sign-ins, and another agency's password change.
    unified(
        "UPDATE auth.users SET encrypted_password = %s, email = 'renamed.in.unified@example.com',"
        " raw_user_meta_data = coalesce(raw_user_meta_data, '{}') || '{\"nickname\": \"Zed\"}',"
        " last_sign_in_at = now(), updated_at = now() WHERE id = %s",
        [new_hash, owned],
    )
    unified("""UPDATE "user" SET email = 'renamed.in.unified@example.com' WHERE id = %s""", [owned])
    unified("UPDATE auth.users SET encrypted_password = %s, updated_at = now() WHERE id = %s", [merged_hash, merged])
    unified("UPDATE auth.users SET last_sign_in_at = now(), updated_at = now() WHERE id = %s", [signed_in])
    unified("UPDATE auth.users SET encrypted_password = %s WHERE id = %s", [new_hash, other_person])
    unified(
        "INSERT INTO auth.identities (id, provider_id, user_id, identity_data, provider, created_at, updated_at)"
        ' VALUES (%s, \'gh-4242\', %s, \'{"sub": "gh-4242", "email": "renamed.in.unified@example.com"}\','
        " 'github', now(), now())",
        [new_identity, owned],
    )
    unified("DELETE FROM auth.identities WHERE id = %s", [removed])

    plan = switch_back_plan(link=link)
    assert plan["problems"] == []
    accounts, identities = plan["tables"]["auth.users"], plan["tables"]["auth.identities"]
    # A sign-in alone changes nothing; the two changed accounts are listed.
    assert (accounts["insert"], accounts["update"], accounts["delete"]) == (0, 2, 0)
    assert sorted(accounts["samples"]["update"]) == sorted([str(owned), str(merged_revos)])
    assert (identities["insert"], identities["update"], identities["delete"]) == (1, 0, 1)

    run = switch_back(link)
    assert run.status == Status.SUCCEEDED, run.error

    email, hashed, user_metadata, app_metadata = revos(
        "SELECT email, encrypted_password, raw_user_meta_data, raw_app_meta_data FROM auth.users WHERE id = %s",
        [owned],
    )[0]
    assert email == "renamed.in.unified@example.com" and json.loads(user_metadata)["nickname"] == "Zed"
    assert "app_origin" not in json.loads(app_metadata or "{}"), "the unified project's own mark stays there"
    # GoTrue's password check against RevOS's account now passes with the new password only.
    assert bcrypt.checkpw(b"new in unified", hashed.encode())
    assert not bcrypt.checkpw(b"the old one", hashed.encode())
    # The merged person's RevOS account takes the password they changed, keeps its own email.
    merged_hashed, merged_email = revos(
        "SELECT encrypted_password, email FROM auth.users WHERE id = %s", [merged_revos]
    )[0]
    assert bcrypt.checkpw(b"merged new", merged_hashed.encode()) and merged_email == merged_email_before
    assert revos("SELECT user_id, provider FROM auth.identities WHERE id = %s", [new_identity]) == [(owned, "github")]
    assert revos("SELECT count(*) FROM auth.identities WHERE id = %s", [removed]) == [(0,)]
    assert revos_accounts("agency_id <> %s", [revos_agency]) == others_before

    # The forward direction still works: a catch-up and its verification, then a cutover again.
    catch_up = migration_run_request(link=link, kind=Kind.MIGRATE, actor=None)
    run_worker("migrations", "verification")
    catch_up.refresh_from_db()
    assert catch_up.status == Status.SUCCEEDED, catch_up.error
    verification = link.verifications.order_by("-id").first()
    failed = [(c.check_name, c.table_name, c.actual, c.details) for c in verification.results.exclude(status="pass")]
    assert verification.verdict == "pass", failed
    cut_over(link)
    assert unified("SELECT encrypted_password, email FROM auth.users WHERE id = %s", [owned]) == [
        (hashed, "renamed.in.unified@example.com")
    ]
    assert unified("SELECT user_id FROM auth.identities WHERE id = %s", [new_identity]) == [(owned,)]
