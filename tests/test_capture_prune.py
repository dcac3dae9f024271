"""The capture stays small: applied records are pruned, repeats folded, and nothing a reader needs goes.

Against real PostgreSQL and Redis: catch-ups, a pruner racing them and an app writing in another
process; the continuous catch-up's pass (`manage.py catch_up_stream --once`) over agencies in
every state.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from migration_jobs.demo.demo import demo_data_seed
from migration_jobs.etl import capture
from migration_jobs.etl.capture_prune import capture_backlogs, capture_prune
from migration_jobs.etl.catch_up import CapturedMigration, CaptureOnly
from migration_jobs.etl.connections import connect
from migration_jobs.etl.reverse_capture import reverse_changes
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.models.flags import FeatureFlag
from migration_jobs.selectors.capture import agency_capture_needed_since
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
from migration_jobs.services.catch_up_stream import agency_stream_refusal
from migration_jobs.services.kinds.cutover import cutover_run_request
from migration_jobs.services.kinds.switch_back import switch_back_run_request
from migration_jobs.services.runs import migration_run_request
from migration_jobs.services.verification import verification_run_request
from tests.conftest import database_url, run_worker

Status, Kind = MigrationRun.Status, MigrationRun.Kind


def revos(statement: str, params=()):
    with connections["revos"].cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else None


def unified(statement: str, params=()):
    with connections["unified"].cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else None


def migrate(link: AgencyLink) -> MigrationRun:
    run = migration_run_request(link=link, kind=Kind.MIGRATE, actor=None)
    run_worker("migrations")
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED, run.error
    return run


def verify(link: AgencyLink) -> None:
    run = verification_run_request(link=link, actor=None)
    run_worker("verification")
    run.refresh_from_db()
    assert run.verdict == "pass"


def records(agency_id) -> list[tuple[str, str]]:
    """The agency's RevOS capture records as (table, row id), oldest first."""
    return revos(
        "SELECT table_name, row_id::text FROM controlplane.change_log WHERE agency_id = %s ORDER BY seq", [agency_id]
    )


def catch_up(link: AgencyLink, **options) -> CapturedMigration:
    migration = CapturedMigration(link.revos_agency_id, link.unified_agency_id, False, batch_size=200, **options)
    migration.run()
    return migration


def prune(link: AgencyLink) -> int:
    with connect("revos", purpose="test") as connection:
        return capture_prune(
            connection, agency_id=link.revos_agency_id, keep_since=agency_capture_needed_since(link=link)
        )


@pytest.fixture
def agencies(tenant_db, rq_queues, settings) -> tuple[AgencyLink, AgencyLink]:
    """Two confirmed agencies; the first migrated (its capture registered), the second not."""
    settings.CUTOVER_DRAIN_TIMEOUT_SECONDS = 5
    FeatureFlag.objects.update_or_create(
        name="unified_db", defaults={"requires_verification": True, "enabled_globally": False, "rollout_percentage": 0}
    )
    demo_data_seed(agencies=3, scale=1, seed=7)
    agency_links_sync()
    links = [
        agency_link_confirm(link=lk, kind=lk.suggested_kind, unified_agency_id=lk.suggested_agency_id, actor=None)
        for lk in AgencyLink.objects.order_by("name")[:2]
    ]
    migrate(links[0])
    return links[0], links[1]


def leads_of(link: AgencyLink, count: int) -> list[str]:
    rows = revos("SELECT id::text FROM leads WHERE agency_id = %s ORDER BY id LIMIT %s", [link.revos_agency_id, count])
    return [row[0] for row in rows]


def test_a_prune_folds_applied_repeats_keeps_unapplied_records_and_every_changed_since_answer(agencies):
    link, _ = agencies
    agency = link.revos_agency_id
    verify(link)
    first, second = leads_of(link, 2)
    for n in range(5):
        revos("UPDATE leads SET name = %s WHERE id = %s", [f"five-{n}", first])
    revos("UPDATE leads SET name = 'once' WHERE id = %s", [second])
    catch_up(link)
    needed = agency_capture_needed_since(link=link)
    with connect("revos", purpose="test") as connection:
        asked = [None, needed, timezone.now() - timedelta(seconds=1)]
        before = [capture.changes_since(connection, agency_id=agency, since=t) for t in asked]
    assert prune(link) == 4, "four of the five records of the first lead were repeats"
    assert records(agency).count(("leads", first)) == 1 and records(agency).count(("leads", second)) == 1
    with connect("revos", purpose="test") as connection:
        assert [capture.changes_since(connection, agency_id=agency, since=t) for t in asked] == before
    # Written after the last catch-up: no catch-up has applied these, so none goes.
    revos("UPDATE leads SET name = 'late-1' WHERE id = %s", [first])
    revos("UPDATE leads SET name = 'late-2' WHERE id = %s", [first])
    with connect("revos", purpose="test") as connection:
        pending = capture.changes_pending_count(connection, agency_id=agency)
        assert pending == (2, 1)
        assert prune(link) == 1, "only the applied record of the first lead, now older than the late ones"
        assert capture.changes_pending_count(connection, agency_id=agency) == pending
    assert catch_up(link).changed_rows == 1
    assert unified("SELECT name FROM lead WHERE id = %s", [first]) == [("late-2",)]


def test_records_older_than_what_the_cutovers_check_needs_are_deleted_once_applied(agencies):
    link, _ = agencies
    agency = link.revos_agency_id
    first, second = leads_of(link, 2)
    revos("UPDATE leads SET name = 'before' WHERE id = ANY(%s)", [[first, second]])
    catch_up(link)
    assert prune(link) == 0, "no verification passed yet: the cutover's check reads every record"
    # The records were written before the verification (less the clock margin) that now passes.
    revos(
        "UPDATE controlplane.change_log SET captured_at = captured_at - interval '1 hour' WHERE agency_id = %s",
        [agency],
    )
    verify(link)
    revos("UPDATE leads SET name = 'after' WHERE id = %s", [first])
    assert prune(link) == 2, "both old records were applied and are older than the check needs"
    assert records(agency) == [("leads", first)], "the write after the verification stays"
    catch_up(link)
    assert prune(link) == 0 and records(agency) == [("leads", first)], "applied, but the check still reads it"
    assert unified("SELECT name FROM lead WHERE id = %s", [first]) == [("after",)]


def writes_of(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


def test_a_pruner_racing_catch_ups_and_an_app_writing_loses_no_write(agencies, tmp_path):
    link, _ = agencies
    log, control = tmp_path / "writes.jsonl", tmp_path / "control"
    control.mkdir()
    writer = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("concurrent_writer.py")), database_url("revos"), str(log),
         str(control), str(link.revos_agency_id)]
    )  # fmt: skip
    stop, pruned, errors = threading.Event(), [], []

    def pruner() -> None:  # as fast as it can, without the agency's lock: the position alone protects
        try:
            with connect("revos", purpose="test-pruner") as connection:
                while not stop.is_set():
                    pruned.append(capture_prune(connection, agency_id=link.revos_agency_id, keep_since=None))
        except Exception as error:  # reported below: a pruner that died proves nothing
            errors.append(error)

    thread = threading.Thread(target=pruner)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        rounds = 0
        while rounds < 8 and time.monotonic() < deadline:
            catch_up(link)
            rounds += 1
            time.sleep(0.2)
    finally:
        (control / "stop").touch()
        writer.wait(timeout=30)
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors
    assert sum(pruned) > 0, "the pruner deleted applied records while the catch-ups ran"
    catch_up(link)
    entries = writes_of(log)
    assert len(entries) > 50 and all(e["ok"] for e in entries)
    final: dict[tuple[str, str], str | None] = {}
    for e in entries:
        final[(e["table"], e["id"])] = None if e["op"] == "delete" else e["value"]
    for (table, row_id), value in final.items():
        target, column = {"leads": ("lead", "name"), "comments": ("comment", "content")}[table]
        assert unified(f"SELECT {column} FROM {target} WHERE id = %s", [row_id]) == (
            [] if value is None else [(value,)]
        ), (table, row_id, value)
    prune(link)
    assert len(records(link.revos_agency_id)) <= len(final), "at most one record per row written"


def stream_once() -> str:
    out = io.StringIO()
    call_command("catch_up_stream", "--once", stdout=out)
    return out.getvalue()


def test_the_stream_catches_up_and_prunes_a_migrated_agency_and_leaves_one_with_a_run_alone(agencies):
    link, other = agencies
    first = leads_of(link, 1)[0]
    for n in range(3):
        revos("UPDATE leads SET name = %s WHERE id = %s", [f"streamed-{n}", first])
    said = stream_once()
    assert f"{link.name}: 1 changed rows applied" in said
    assert other.name not in said, "an agency never migrated is not captured: nothing to stream"
    assert unified("SELECT name FROM lead WHERE id = %s", [first]) == [("streamed-2",)]
    with connect("revos", purpose="test") as connection:
        backlog = capture_backlogs(connection)[link.revos_agency_id]
    assert (backlog.pending_records, backlog.records) == (0, 1)
    # A run queued for the agency: the stream leaves it to the run, saying why, as staff would be told.
    revos("UPDATE leads SET name = 'waits' WHERE id = %s", [first])
    run = migration_run_request(link=link, kind=Kind.MIGRATE, actor=None)
    assert f"already has a run queued (run {run.pk})" in stream_once()
    assert unified("SELECT name FROM lead WHERE id = %s", [first]) == [("streamed-2",)]
    run_worker("migrations")
    assert agency_stream_refusal(link=link) is None


def test_the_stream_never_catches_up_a_cut_over_agency_and_folds_its_reverse_capture(agencies):
    link, _ = agencies
    verify(link)
    cutover = cutover_run_request(link=link, reason="going live", actor=None)
    run_worker("migrations")
    cutover.refresh_from_db()
    assert cutover.status == Status.SUCCEEDED, cutover.error
    assert "cut over to the unified database" in agency_stream_refusal(link=link)
    lead = unified("SELECT id::text FROM lead WHERE agency_id = %s ORDER BY id LIMIT 1", [link.unified_agency_id])[0][0]
    for n in range(4):
        unified("UPDATE lead SET name = %s WHERE id = %s", [f"app-{n}", lead])
    changed = reverse_changes(unified_agency_id=link.unified_agency_id)
    said = stream_once()
    assert f"{link.name}: 0 changed rows applied, 0 RevOS and 3 unified capture records pruned" in said
    assert reverse_changes(unified_agency_id=link.unified_agency_id) == changed, "a switch back sends the same rows"
    assert revos("SELECT name FROM leads WHERE id = %s", [lead]) != [("app-3",)], "RevOS untouched"
    # The switch back reads the folded reverse capture and sends the app's last write back.
    back = switch_back_run_request(link=link, reason="rolling back", actor=None)
    run_worker("migrations")
    back.refresh_from_db()
    assert back.status == Status.SUCCEEDED, back.error
    assert revos("SELECT name FROM leads WHERE id = %s", [lead]) == [("app-3",)]


def test_a_capture_only_catch_up_refuses_an_agency_without_a_position(agencies):
    _, other = agencies
    with pytest.raises(CaptureOnly, match="first load"):
        catch_up(other, capture_only=True)
    with connect("revos", purpose="test") as connection:
        assert capture.capture_state(connection, agency_id=other.revos_agency_id) is None, "refused before registering"
