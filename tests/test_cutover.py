"""RevOS change capture, the write fence, capture-based catch-up and the cutover run.

Real RevOS and unified test databases, real RQ workers (in-process, or processes where one is
killed), a real second PostgreSQL role for the fence.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from migration_jobs.demo.demo import demo_data_seed
from migration_jobs.etl import capture
from migration_jobs.etl.connections import connect
from migration_jobs.etl.reverse_capture import reverse_capture_state
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.models.flags import FeatureFlag, FlagChange
from migration_jobs.refusals import RunRefused
from migration_jobs.selectors.agency_state import agency_cut_over, agency_revos_read_only
from migration_jobs.selectors.flags import agency_flag_enabled
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
from migration_jobs.services.fenced_switch import Step
from migration_jobs.services.kinds import cutover
from migration_jobs.services.kinds.cutover import STEPS, cutover_run_request, cutover_runs_request_bulk
from migration_jobs.services.kinds.migrate import migration_runs_request_bulk
from migration_jobs.services.run_control import migration_run_control
from migration_jobs.services.runs import migration_run_request
from migration_jobs.verify import isolation
from tests.conftest import database_url, run_worker, start_worker_process

Status, Kind = MigrationRun.Status, MigrationRun.Kind
FENCE_ERROR = "has moved to the unified database"


def revos(statement: str, params=()):
    with connections["revos"].cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else None


def unified(statement: str, params=()):
    with connections["unified"].cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else None


def migrate(link: AgencyLink, **options) -> MigrationRun:
    run = migration_run_request(link=link, kind=Kind.MIGRATE, actor=None, **options)
    run_worker("migrations", "verification")
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED, run.error
    return run


def cut_over(link: AgencyLink, reason: str = "going live") -> MigrationRun:
    run = cutover_run_request(link=link, reason=reason, actor=None)
    run_worker("migrations")
    run.refresh_from_db()
    return run


def revos_write_error(agency_id, *, dsn: str | None = None) -> str | None:
    """Try one update of one of the agency's leads in RevOS, as an app would: the error, or None."""
    try:
        with psycopg.connect(dsn or database_url("revos"), autocommit=True) as connection:
            connection.execute(
                "UPDATE leads SET name = left(coalesce(name, '') || '+', 200)"
                " WHERE id = (SELECT id FROM leads WHERE agency_id = %s ORDER BY id LIMIT 1)",
                [agency_id],
            )
    except psycopg.errors.ReadOnlySqlTransaction as error:
        return str(error)
    return None


@pytest.fixture
def agencies(tenant_db, rq_queues, settings) -> tuple[AgencyLink, AgencyLink]:
    """Two confirmed RevOS agencies; the first migrated and verified, ready for cutover."""
    settings.CUTOVER_DRAIN_TIMEOUT_SECONDS = 5
    # The seed flag (a transactional test elsewhere may have flushed the data migration's row).
    FeatureFlag.objects.update_or_create(
        name="unified_db", defaults={"requires_verification": True, "enabled_globally": False, "rollout_percentage": 0}
    )
    demo_data_seed(agencies=3, scale=1, seed=5)
    agency_links_sync()
    links = []
    for link in AgencyLink.objects.order_by("name")[:2]:
        links.append(
            agency_link_confirm(
                link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None
            )
        )
    migrate(links[0])
    return links[0], links[1]


# --- capture -----------------------------------------------------------------------------------


def test_capture_records_the_agencys_rows_children_through_parents_and_no_other_agencys(agencies):
    link, other = agencies
    agency = link.revos_agency_id
    revos("UPDATE leads SET name = 'w1' WHERE agency_id IN (%s, %s)", [agency, other.revos_agency_id])
    revos(
        "UPDATE skill_executions SET status = status WHERE campaign_skill_id IN (SELECT s.id FROM campaign_skills s"
        " JOIN campaigns c ON c.id = s.campaign_id WHERE c.agency_id IN (%s, %s))",
        [agency, other.revos_agency_id],
    )
    captured = revos(
        "SELECT table_name, agency_id, count(DISTINCT row_id) FROM controlplane.change_log GROUP BY 1, 2 ORDER BY 1"
    )
    leads = revos("SELECT count(*) FROM leads WHERE agency_id = %s", [agency])[0][0]
    executions = revos(
        "SELECT count(*) FROM skill_executions e JOIN campaign_skills s ON s.id = e.campaign_skill_id"
        " JOIN campaigns c ON c.id = s.campaign_id WHERE c.agency_id = %s",
        [agency],
    )[0][0]
    assert captured == [("leads", agency, leads), ("skill_executions", agency, executions)]


def test_a_catch_up_reads_only_the_changed_rows_and_the_full_reread_stays_available(agencies):
    link, _ = agencies
    agency = link.revos_agency_id
    lead = revos("SELECT id FROM leads WHERE agency_id = %s ORDER BY id LIMIT 1", [agency])[0][0]
    revos("UPDATE leads SET status = 'contacted' WHERE id = %s", [lead])
    comment = revos(
        "SELECT c.id FROM comments c JOIN posts p ON p.id = c.post_id WHERE p.agency_id = %s"
        " AND NOT EXISTS (SELECT 1 FROM triggered_comments t WHERE t.comment_id = c.id)"
        " AND NOT EXISTS (SELECT 1 FROM processed_comments t WHERE t.comment_id = c.id) LIMIT 1",
        [agency],
    )[0][0]
    revos("DELETE FROM comments WHERE id = %s", [comment])
    run = migrate(link)
    assert run.status_note == "Caught up from the RevOS change capture: 2 changed rows."
    touched = {table for table, outcome in run.report.items() if outcome["source_rows"] or outcome["deleted"]}
    # Accounts are captured like the rest: untouched, they are not read at all.
    assert touched == {"leads", "comments"}
    assert run.report["leads"]["updated"] == 1 and run.report["comments"]["deleted"] == 1
    assert unified("SELECT status FROM lead WHERE id = %s", [lead]) == [("contacted",)]
    assert unified("SELECT count(*) FROM comment WHERE id = %s", [comment]) == [(0,)]
    # Nothing changed since: the next catch-up reads nothing.
    assert migrate(link).status_note == "Caught up from the RevOS change capture: 0 changed rows."
    full = migrate(link, full_reread=True)
    assert full.status_note == "" and full.report["leads"]["source_rows"] > 1
    call_command("migrate_agency", str(link.revos_agency_id), "--full", "--sync", stdout=io.StringIO())
    assert link.runs.first().full_reread and link.runs.first().status_note == ""


def test_accounts_are_captured_and_fenced_and_a_sign_in_alone_is_neither(agencies):
    link, _ = agencies
    agency = link.revos_agency_id
    copied = {row[0] for row in unified("SELECT id FROM auth.users")}
    people = revos(
        "SELECT a.id FROM auth.users a JOIN users u ON u.id = a.id WHERE u.agency_id = %s ORDER BY a.id", [agency]
    )
    changed, signed_in = [person for (person,) in people if person in copied][:2]
    revos("UPDATE auth.users SET encrypted_password = 'new-hash' WHERE id = %s", [changed])
    # GoTrue's sign-in bookkeeping alone: not recorded (mapping.TableMap.volatile).
    revos("UPDATE auth.users SET last_sign_in_at = now(), updated_at = now() WHERE id = %s", [signed_in])
    identity = revos("SELECT id FROM auth.identities WHERE user_id = %s LIMIT 1", [changed])
    if identity:
        revos("DELETE FROM auth.identities WHERE id = %s", [identity[0][0]])
    recorded = revos("SELECT table_name, row_id FROM controlplane.change_log WHERE agency_id = %s", [agency])
    assert ("auth.users", changed) in recorded and ("auth.users", signed_in) not in recorded
    run = migrate(link)
    accounts, identities = run.report["auth.users"], run.report["auth.identities"]
    # Only the recorded account was read and written: the catch-up no longer compares every account.
    assert accounts["source_rows"] == 1 and accounts["updated"] == 1 and accounts["inserted"] == 0
    assert identities["deleted"] == len(identity)
    assert unified("SELECT encrypted_password FROM auth.users WHERE id = %s", [changed]) == [("new-hash",)]
    # The fence holds the accounts too; a sign-in (the volatile columns alone) still goes through.
    with connect("revos") as control:
        capture.fence_set(control, agency_id=agency, owner="test", message=f'Agency "{link.name}" {FENCE_ERROR}')
    with pytest.raises(Exception, match=FENCE_ERROR):
        revos("UPDATE auth.users SET encrypted_password = 'too-late' WHERE id = %s", [changed])
    with pytest.raises(Exception, match=FENCE_ERROR):
        revos("DELETE FROM auth.identities WHERE user_id = %s", [signed_in])
    revos("UPDATE auth.users SET last_sign_in_at = now() WHERE id = %s", [signed_in])
    assert revos("SELECT encrypted_password FROM auth.users WHERE id = %s", [changed]) == [("new-hash",)]


def test_registration_waits_for_an_older_transaction_and_names_it(agencies):
    _, other = agencies
    with psycopg.connect(database_url("revos"), application_name="app-writer") as app:
        app.execute("UPDATE leads SET name = 'w2' WHERE agency_id = %s", [other.revos_agency_id])  # still open
        with connect("revos") as control, pytest.raises(capture.TransactionsStillOpen, match="app-writer"):
            capture.capture_register(
                control,
                agency_id=other.revos_agency_id,
                agency_name=other.name,
                tables=capture.revos_captured_tables(),
                wait_seconds=0.5,
            )


# --- the fence ---------------------------------------------------------------------------------


@pytest.fixture
def app_role(agencies):
    """A non-superuser login role with the rights an app has on RevOS's tables (not on controlplane)."""
    revos("DROP ROLE IF EXISTS revos_app_test")
    revos("CREATE ROLE revos_app_test LOGIN PASSWORD 'app'")
    # DROP OWNED BY needs the role's privileges, which a non-superuser (Supabase's postgres) lacks
    # for a role it merely created.
    revos("GRANT revos_app_test TO CURRENT_USER")
    revos("GRANT USAGE ON SCHEMA public TO revos_app_test")
    revos("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO revos_app_test")
    revos("ALTER TABLE leads NO FORCE ROW LEVEL SECURITY")
    revos("CREATE POLICY app_all ON leads TO revos_app_test USING (true) WITH CHECK (true)")
    yield database_url("revos").replace("postgres://postgres@", "postgres://revos_app_test:app@")
    revos("DROP POLICY app_all ON leads")
    revos("DROP OWNED BY revos_app_test")
    revos("DROP ROLE revos_app_test")


def test_the_fence_holds_for_an_app_role_and_the_owner_and_names_the_agency(agencies, app_role):
    link, other = agencies
    with connect("revos") as control:
        capture.fence_set(
            control,
            agency_id=link.revos_agency_id,
            owner="test",
            message=f'Agency "{link.name}" has moved to the unified database',
        )
        for dsn in (app_role, None):  # the app's role, then the owner (the control plane's role)
            assert f'Agency "{link.name}" {FENCE_ERROR}' in (revos_write_error(link.revos_agency_id, dsn=dsn) or "")
            assert revos_write_error(other.revos_agency_id, dsn=dsn) is None
        # The control plane's own work passes, and is not recorded as a change.
        before = revos("SELECT count(*) FROM controlplane.change_log")[0][0]
        capture.fence_bypass(control)
        control.execute("UPDATE leads SET name = 'w7' WHERE agency_id = %s", [link.revos_agency_id])
        control.commit()
        assert revos("SELECT count(*) FROM controlplane.change_log")[0][0] == before
        # Setting the bypass by hand, without the key only the control plane can read, does not.
        with psycopg.connect(app_role) as app, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            app.execute("SELECT set_config('controlplane.fence_bypass', 'guess', true)")
            app.execute("DELETE FROM leads WHERE agency_id = %s", [link.revos_agency_id])
        capture.fence_lift(control, agency_id=link.revos_agency_id)
    assert revos_write_error(link.revos_agency_id) is None


# --- the cutover -------------------------------------------------------------------------------


def verified(link: AgencyLink) -> AgencyLink:
    from migration_jobs.services.verification import verification_run_request

    verification_run_request(link=link, actor=None)
    run_worker("verification")
    return link


def test_cutover_applies_the_last_writes_fences_revos_and_switches(agencies, client, admin_user):
    link, other = agencies
    verified(link)
    lead = revos("SELECT id FROM leads WHERE agency_id = %s ORDER BY id LIMIT 1", [link.revos_agency_id])[0][0]
    revos("UPDATE leads SET status = 'converted' WHERE id = %s", [lead])  # after the verification
    out = io.StringIO()
    call_command("cutover_agency", str(link.revos_agency_id), "--reason", "going live", "--sync", stdout=out)
    run = link.runs.get(kind=Kind.CUTOVER)
    assert run.status == Status.SUCCEEDED, run.error
    assert "Delta verification" in out.getvalue() and "write downtime (fence to switch)" in out.getvalue()
    assert [s["status"] for s in run.steps] == ["done"] * len(STEPS)
    assert [s["label"] for s in run.steps][1:5] == [
        "Catch-up before the fence",
        "Verification before the fence",
        "Catch-up again before the fence",
        "Fence RevOS writes",
    ]
    assert all(s["seconds"] is not None for s in run.steps)
    # The write came before the catch-ups ahead of the fence: the final one has nothing left to run.
    assert run.steps[6]["detail"] == "no write captured since the catch-up before the fence: 0 changed rows to apply"
    assert unified("SELECT status FROM lead WHERE id = %s", [lead]) == [("converted",)]
    assert agency_flag_enabled(flag_name="unified_db", agency_link=link)
    switched = FlagChange.objects.filter(flag__name="unified_db", agency_link=link).get()
    assert (switched.new_value, switched.reason) == ("on", "going live"), "set by the run, with its reason"
    assert f'Agency "{link.name}" ({link.revos_agency_id}) {FENCE_ERROR}' in revos_write_error(link.revos_agency_id)
    assert revos_write_error(other.revos_agency_id) is None
    assert agency_revos_read_only(link=link) and not agency_revos_read_only(link=other)
    assert run.report["window_seconds"] < 30
    client.force_login(admin_user)
    page = client.get(f"/admin/migration_jobs/agencylink/{link.pk}/change/").content.decode()
    assert "Cut over on" in page and "by a command" in page


def test_a_write_after_the_catch_up_before_the_fence_is_applied_by_the_final_catch_up(agencies, monkeypatch):
    link, _ = agencies
    verified(link)
    lead = revos("SELECT id FROM leads WHERE agency_id = %s ORDER BY id LIMIT 1", [link.revos_agency_id])[0][0]
    fence = STEPS["fence"]

    def write_then_fence(switch_run):  # an app's write commits between the last catch-up ahead and the fence
        revos("UPDATE leads SET name = 'written at the fence' WHERE id = %s", [lead])
        return fence.do(switch_run)

    monkeypatch.setitem(STEPS, "fence", Step(fence.label, write_then_fence))
    run = cut_over(link)
    assert run.status == Status.SUCCEEDED, run.error
    assert {s["name"]: s["detail"] for s in run.steps}["catch_up"] == "1 changed rows applied"
    assert unified("SELECT name FROM lead WHERE id = %s", [lead]) == [("written at the fence",)]


def test_the_flags_api_says_the_agency_is_read_only_while_fenced(agencies, client, settings):
    settings.FLAGS_API_TOKEN = "token"
    link, _ = agencies
    cut_over(verified(link))
    answer = client.get(f"/api/flags/{link.revos_agency_id}/", HTTP_AUTHORIZATION="Bearer token").json()
    assert answer["revos_read_only"] is True and answer["flags"]["unified_db"] is True
    assert answer["unified_copy_read_only"] is False, "the unified copies are the agency's truth now"


def assert_undone(run: MigrationRun, link: AgencyLink, step: str) -> None:
    run.refresh_from_db()
    assert run.status in (Status.FAILED, Status.CANCELLED)
    assert step in (run.error or run.status_note), (run.error, run.status_note)
    assert "unified_db stays off" in (run.error or run.status_note)
    assert not agency_flag_enabled(flag_name="unified_db", agency_link=link)
    assert revos_write_error(link.revos_agency_id) is None, "the fence is lifted"
    assert not agency_revos_read_only(link=link)


def test_a_failed_delta_verification_lifts_the_fence_and_leaves_unified_db_off(agencies):
    link, _ = agencies
    verified(link)
    # A unified row lost behind the migration's back: the counts check of the cutover catches it.
    unified("DELETE FROM pod_activity WHERE id = (SELECT id FROM pod_activity WHERE agency_id = %s LIMIT 1)",
            [link.unified_agency_id])  # fmt: skip
    run = cut_over(link)
    assert_undone(run, link, "Delta verification")
    assert "counts pod_activities" in run.error


def caught_inside_the_fence(link: AgencyLink, monkeypatch, change) -> str:
    """Cut over with `change` made right after the verification before the fence has passed: the
    check inside the fence must catch it and the run be undone. Its error."""
    from migration_jobs.services.kinds import cutover

    check_ahead = cutover.delta_verify_ahead

    def then_change(**kwargs):
        ahead = check_ahead(**kwargs)
        assert all(o.status == "pass" for o in ahead.outcomes), "the check ahead passed"
        change()
        return ahead

    monkeypatch.setattr(cutover, "delta_verify_ahead", then_change)
    run = cut_over(link)
    assert_undone(run, link, "Delta verification")
    return run.error


def test_a_unified_row_changed_after_the_check_ahead_of_the_fence_is_caught_inside_it(agencies, monkeypatch):
    link, _ = agencies
    verified(link)
    # A lead RevOS did not change since the verification: only the record of unified writes names it.
    lead = unified("SELECT id FROM lead WHERE agency_id = %s ORDER BY id DESC LIMIT 1", [link.unified_agency_id])[0][0]
    error = caught_inside_the_fence(
        link, monkeypatch, lambda: unified("UPDATE lead SET name = 'tampered' WHERE id = %s", [lead])
    )
    assert "content leads: 0 missing, 0 extra, 1 differing" in error
    assert reverse_capture_state(unified_agency_id=link.unified_agency_id) is None, "unified writes not recorded"


def test_a_count_changed_after_the_check_ahead_of_the_fence_is_caught_inside_it(agencies, monkeypatch):
    link, _ = agencies
    verified(link)
    error = caught_inside_the_fence(
        link,
        monkeypatch,
        lambda: unified(
            "DELETE FROM pod_activity WHERE id = (SELECT id FROM pod_activity WHERE agency_id = %s LIMIT 1)",
            [link.unified_agency_id],
        ),
    )
    assert "counts pod_activities" in error


def test_a_policy_changed_after_the_check_ahead_of_the_fence_makes_every_isolation_case_run_inside_it(
    agencies, monkeypatch
):
    link, _ = agencies
    verified(link)
    # No pod_activity row changes: only the digest of the rules says the sweep must look there again.
    leak = "CREATE POLICY test_leak ON pod_activity FOR SELECT TO authenticated USING (true)"
    try:
        error = caught_inside_the_fence(link, monkeypatch, lambda: unified(leak))
    finally:
        unified("DROP POLICY IF EXISTS test_leak ON pod_activity")
    assert "isolation.other_agency_sees_nothing pod_activity" in error


def test_inside_the_fence_only_tables_changed_since_the_check_ahead_are_counted(agencies):
    link, _ = agencies
    verified(link)
    lead = revos("SELECT id FROM leads WHERE agency_id = %s ORDER BY id LIMIT 1", [link.revos_agency_id])[0][0]
    revos("UPDATE leads SET status = 'converted' WHERE id = %s", [lead])
    run = cut_over(link)
    assert run.status == Status.SUCCEEDED, run.error
    ahead, inside = (next(s["detail"] for s in run.steps if s["name"] == name) for name in ("verify_ahead", "verify"))
    checked_ahead = int(ahead.split()[0])
    counted_inside = int(inside.split("counts of ")[1].split()[0])
    assert 0 < counted_inside < checked_ahead / 3, (ahead, inside)


def test_inside_the_fence_the_isolation_cases_read_the_rows_written_since_the_check_ahead(agencies, monkeypatch):
    link, _ = agencies
    verified(link)
    # A migrated message handed to the wrong AI provider behind the tool's back: only the record of
    # unified writes names it, and case 3, narrowed to the rows written since, still reads it.
    message = unified(
        "SELECT id FROM chat_message WHERE agency_id = %s AND ai_provider = 'agentkit' ORDER BY id LIMIT 1",
        [link.unified_agency_id],
    )[0][0]
    error = caught_inside_the_fence(
        link, monkeypatch, lambda: unified("UPDATE chat_message SET ai_provider = 'gemini' WHERE id = %s", [message])
    )
    assert "isolation.case3_chat_ai_provider_per_app" in error


def test_a_policy_that_reads_another_table_makes_every_isolation_case_read_every_row_inside_the_fence(
    agencies, monkeypatch
):
    link, _ = agencies
    verified(link)
    # Visibility of every lead hangs on a row of another table: with it, a lead nobody wrote
    # becomes visible to any agency. Rows and rules of `lead` stay as they were.
    unified("CREATE TABLE test_gate (id uuid PRIMARY KEY)")
    unified("GRANT SELECT ON test_gate TO authenticated")
    unified("CREATE POLICY test_gated ON lead FOR SELECT TO authenticated USING (EXISTS (SELECT 1 FROM test_gate))")
    try:
        with connect("unified") as connection:
            assert not isolation.policies_row_local(connection)
        error = caught_inside_the_fence(
            link, monkeypatch, lambda: unified("INSERT INTO test_gate VALUES (gen_random_uuid())")
        )
    finally:
        unified("DROP POLICY IF EXISTS test_gated ON lead")
        unified("DROP TABLE IF EXISTS test_gate")
    assert "isolation.other_agency_sees_nothing lead" in error


def test_the_project_policies_decide_on_the_row_and_the_claims_alone(tenant_db):
    with connect("unified") as connection:
        assert isolation.policies_row_local(connection)
        connection.execute("CREATE FUNCTION test_allowed(uuid) RETURNS boolean LANGUAGE sql AS 'SELECT true'")
        connection.execute(
            "CREATE POLICY test_call ON lead FOR SELECT TO authenticated USING (test_allowed(agency_id))"
        )
        assert not isolation.policies_row_local(connection), "a function the policy calls may read any table"
        connection.rollback()
        assert isolation.policies_row_local(connection)


def test_revos_down_during_the_catch_up_fails_the_cutover_and_a_later_request_lifts_the_fence(agencies, monkeypatch):
    from django.conf import settings

    from migration_jobs.etl import catch_up
    from migration_jobs.etl.connections import DatabaseUnreachable

    link, _ = agencies
    verified(link)

    reachable = catch_up.connect

    def unreachable(*args, **kwargs):  # once RevOS is fenced: the catch-up before the fence gets through
        if not MigrationRun.objects.filter(agency_link=link, kind=Kind.CUTOVER, fence_held=True).exists():
            return reachable(*args, **kwargs)
        raise DatabaseUnreachable("The revos database (test) cannot be reached: connection refused")

    monkeypatch.setattr(catch_up, "connect", unreachable)
    # As if a write had come after the catch-up before the fence: the final catch-up has work to do.
    monkeypatch.setattr(cutover, "_nothing_captured_since", lambda switch_run: False)
    run = cut_over(link)
    run.refresh_from_db()
    assert run.status == Status.FAILED and "Final catch-up" in run.error and "cannot be reached" in run.error
    assert_undone(run, link, "Final catch-up")
    assert settings.CUTOVER_DRAIN_TIMEOUT_SECONDS == 5


def test_a_transaction_older_than_the_fence_past_the_drain_limit_aborts_the_cutover(agencies, settings):
    link, _ = agencies
    verified(link)
    settings.CUTOVER_DRAIN_TIMEOUT_SECONDS = 0.5
    with psycopg.connect(database_url("revos"), application_name="slow-app") as app:
        app.execute("UPDATE leads SET name = 'w3' WHERE agency_id = %s", [link.revos_agency_id])  # open, uncommitted
        run = cut_over(link)
        app.rollback()
    assert_undone(run, link, "Drain older transactions")
    assert "slow-app" in run.error


def test_cancel_during_the_drain_lifts_the_fence(agencies, settings):
    link, _ = agencies
    verified(link)
    settings.CUTOVER_DRAIN_TIMEOUT_SECONDS = 60
    with psycopg.connect(database_url("revos"), application_name="slow-app") as app:
        app.execute("UPDATE leads SET name = 'w3' WHERE agency_id = %s", [link.revos_agency_id])
        run = cutover_run_request(link=link, reason="go", actor=None)

        def cancel_when_draining():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                run.refresh_from_db()
                if run.current_table == "Drain older transactions":
                    migration_run_control(run=run, control="cancel", actor=None)
                    return
                time.sleep(0.05)

        canceller = threading.Thread(target=cancel_when_draining)
        canceller.start()
        run_worker("migrations")
        canceller.join()
        app.rollback()
    assert_undone(run, link, "Drain older transactions")
    run.refresh_from_db()
    assert run.status == Status.CANCELLED


def test_a_worker_killed_mid_cutover_leaves_nothing_fenced_after_the_next_request(agencies, settings):
    link, _ = agencies
    verified(link)
    with psycopg.connect(database_url("revos"), application_name="slow-app") as app:
        app.execute("UPDATE leads SET name = 'w3' WHERE agency_id = %s", [link.revos_agency_id])
        run = cutover_run_request(link=link, reason="go", actor=None)
        worker = start_worker_process(
            "migrations", "--worker-class", "rq.worker.SimpleWorker", CUTOVER_DRAIN_TIMEOUT_SECONDS="120"
        )
        deadline = time.monotonic() + 60
        # Killed while fenced, waiting for the older transaction (not between the fence and its step's end).
        while not MigrationRun.objects.filter(
            pk=run.pk, fence_held=True, current_table="Drain older transactions"
        ).exists():
            assert time.monotonic() < deadline, "the cutover fenced RevOS"
            time.sleep(0.05)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        app.rollback()
    assert revos_write_error(link.revos_agency_id) is not None, "killed while fenced"
    # The next request on the agency finds the run dead: undone, fence lifted, then queued anew.
    again = cutover_run_request(link=link, reason="again", actor=None)
    assert_undone(run, link, "Drain older transactions")
    run_worker("migrations")
    again.refresh_from_db()
    assert again.status == Status.SUCCEEDED, again.error


# --- after the cutover -------------------------------------------------------------------------


def test_after_cutover_migrate_catch_up_rollback_are_refused_everywhere_and_app_writes_survive(
    agencies, client, admin_user
):
    link, _ = agencies
    assert cut_over(verified(link)).status == Status.SUCCEEDED
    lead = unified("SELECT id FROM lead WHERE agency_id = %s ORDER BY id LIMIT 1", [link.unified_agency_id])[0][0]
    unified("UPDATE lead SET name = 'app wrote this' WHERE id = %s", [lead])  # an app write in unified
    for kind in (Kind.MIGRATE, Kind.ROLLBACK):
        with pytest.raises(RunRefused, match=r"was cut over to the unified database on .* by a command"):
            migration_run_request(link=link, kind=kind, actor=None)
    with pytest.raises(RunRefused, match="is cut over already"):
        cutover_run_request(link=link, reason="again", actor=None)
    for command in (["migrate_agency"], ["migrate_agency", "--full"], ["rollback_agency"]):
        with pytest.raises(CommandError, match="was cut over"):
            call_command(*command, str(link.revos_agency_id), "--sync")
    with pytest.raises(CommandError, match="is cut over already"):
        call_command("cutover_agency", str(link.revos_agency_id), "--reason", "again", "--sync")
    assert migration_runs_request_bulk(links=[link], actor=None).skipped[0][1].startswith(link.name)
    assert cutover_runs_request_bulk(links=[link], reason="bulk", actor=None).skipped
    client.force_login(admin_user)
    for action in ("migrate", "rollback"):
        response = client.post(f"/admin/migration_jobs/agencylink/{link.pk}/action/{action}/", follow=True)
        assert "was cut over" in response.content.decode()
    response = client.post(f"/admin/migration_jobs/agencylink/{link.pk}/cutover/", {"reason": "x"}, follow=True)
    assert "cut over already" in response.content.decode()
    run_worker("migrations", "verification")
    assert unified("SELECT name FROM lead WHERE id = %s", [lead]) == [("app wrote this",)]
    assert agency_cut_over(link=link) is not None
    assert MigrationRun.objects.filter(agency_link=link).exclude(kind=Kind.CUTOVER).count() == 1


# --- the concurrent writer ---------------------------------------------------------------------


def wait_until(condition, *, timeout: float = 60, what: str):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _still_running(link: AgencyLink) -> bool:
    from migration_jobs.services.runs import migration_runs_reconcile

    migration_runs_reconcile(link=link)
    return link.runs.filter(status=Status.RUNNING).exists()


def writer_log(path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_concurrent_writer_through_migrate_kill_resume_catch_ups_and_cutover_loses_nothing(
    tenant_db, rq_queues, settings, tmp_path
):
    import subprocess
    import sys
    from pathlib import Path

    from migration_jobs.services.verification import verification_run_request

    FeatureFlag.objects.update_or_create(
        name="unified_db", defaults={"requires_verification": True, "enabled_globally": False, "rollout_percentage": 0}
    )
    settings.MIGRATION_BATCH_SIZE = 50
    demo_data_seed(agencies=3, scale=2, seed=23)
    agency_links_sync()
    link, other = (
        agency_link_confirm(link=lk, kind=lk.suggested_kind, unified_agency_id=lk.suggested_agency_id, actor=None)
        for lk in AgencyLink.objects.order_by("name")[:2]
    )
    migrate(other)  # the second agency is captured too: its rows pass the same trigger
    log, control = tmp_path / "writes.jsonl", tmp_path / "control"
    control.mkdir()
    writer = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("concurrent_writer.py")), database_url("revos"), str(log),
         str(control), str(link.revos_agency_id), str(other.revos_agency_id)]
    )  # fmt: skip
    try:
        # The first migration, killed mid-way by SIGKILL, then resumed, while the app writes.
        run = migration_run_request(link=link, kind=Kind.MIGRATE, actor=None)
        worker = start_worker_process(
            "migrations", "--worker-class", "rq.worker.SimpleWorker", MIGRATION_BATCH_SIZE="20"
        )
        wait_until(lambda: MigrationRun.objects.filter(pk=run.pk, rows_done__gte=300).exists(), what="progress")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        # PostgreSQL ends the dead worker's sessions (and its lock) once it notices; then Resume.
        wait_until(lambda: not _still_running(link), what="the killed run to be recognised as dead")
        migrate(link)  # resumes from the checkpoints
        migrate(link)  # catch-ups from the capture
        migrate(link)
        # A full verification needs a quiet moment; the cutover itself does not.
        (control / "pause").touch()
        wait_until(lambda: (control / "paused").exists(), what="the writer to pause")
        migrate(link)
        verification = verification_run_request(link=link, actor=None)
        run_worker("verification")
        verification.refresh_from_db()
        assert verification.verdict == "pass"
        (control / "pause").unlink()
        wait_until(lambda: len(writer_log(log)) > 0 and not (control / "paused").exists(), what="writes again")
        written = len(writer_log(log))
        wait_until(lambda: len(writer_log(log)) > written + 100, what="writes after the verification")
        cutover = cut_over(link)
        assert cutover.status == Status.SUCCEEDED, cutover.error
        after = len(writer_log(log))
        wait_until(lambda: len(writer_log(log)) > after + 100, what="writes after the cutover")
    finally:
        (control / "stop").touch()
        writer.wait(timeout=30)

    entries = writer_log(log)
    mine = [e for e in entries if e["agency"] == str(link.revos_agency_id)]
    theirs = [e for e in entries if e["agency"] == str(other.revos_agency_id)]
    assert theirs and all(e["ok"] for e in theirs), "the second agency was never refused"
    refused = [e for e in mine if not e["ok"]]
    assert refused, "writes after the cutover were refused"
    assert all(e["sqlstate"] == "25006" and FENCE_ERROR in e["error"] and link.name in e["error"] for e in refused)
    assert all(e["n"] > max(a["n"] for a in mine if a["ok"]) for e in refused), "nothing refused before the fence"
    # Every acknowledged write of the agency is in the unified database, as its last one left it.
    final: dict[tuple[str, str], str | None] = {}
    for e in mine:
        if e["ok"]:
            final[(e["table"], e["id"])] = None if e["op"] == "delete" else e["value"]
    for (table, row_id), value in final.items():
        target, column = {"leads": ("lead", "name"), "comments": ("comment", "content")}[table]
        rows = unified(f"SELECT {column} FROM {target} WHERE id = %s", [row_id])
        assert rows == ([] if value is None else [(value,)]), (table, row_id, value)
    # And the whole agency equals RevOS's final state, table by table (content checksums).
    final_check = verification_run_request(link=link, actor=None)
    run_worker("verification")
    final_check.refresh_from_db()
    failing = list(final_check.results.exclude(status="pass").values_list("check_name", "table_name", "actual"))
    assert final_check.verdict == "pass", failing
