"""Nights: bulk migrate and cutover in waves inside a window, stopped at its end, resumed the next night.

Real PostgreSQL, Redis and RQ workers (in this process, and a worker process for a run paused at a
batch boundary).
"""

from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from migration_jobs.demo.demo import demo_data_seed
from migration_jobs.models import AgencyLink, BulkWindow, MigrationRun
from migration_jobs.models.flags import FeatureFlag
from migration_jobs.refusals import RunRefused
from migration_jobs.selectors.windows import bulk_window_plan
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
from migration_jobs.services.reconcile import reconcile_pass
from migration_jobs.services.verification import verification_run_request
from migration_jobs.services.windows import bulk_window_open, bulk_window_reopen, stop_at_parse
from tests.conftest import run_worker, start_worker_process

Status, Kind = MigrationRun.Status, MigrationRun.Kind


@pytest.fixture
def links(tenant_db, rq_queues, settings) -> list[AgencyLink]:
    FeatureFlag.objects.update_or_create(
        name="unified_db", defaults={"requires_verification": True, "enabled_globally": False, "rollout_percentage": 0}
    )
    demo_data_seed(agencies=3, scale=1, seed=11)
    agency_links_sync()
    return [
        agency_link_confirm(link=lk, kind=lk.suggested_kind, unified_agency_id=lk.suggested_agency_id, actor=None)
        for lk in AgencyLink.objects.order_by("name")
    ]


def runs_of(window: BulkWindow) -> list[MigrationRun]:
    return list(MigrationRun.objects.filter(bulk_request=window.bulk_request).order_by("pk"))


def test_waves_go_one_after_another_and_the_plan_says_what_is_done_and_next(links):
    window = bulk_window_open(
        links=links, kind="migrate", wave_size=2, stop_at=timezone.now() + timedelta(hours=1), actor=None
    )
    assert [r.agency_link for r in runs_of(window)] == links[:2], "the first wave only"
    plan = bulk_window_plan(window=window)
    assert (plan.waves, plan.active, plan.next_wave) == (
        [[links[0].name, links[1].name], [links[2].name]],
        [links[0].name, links[1].name],
        [links[2].name],
    )
    assert reconcile_pass().windows == [], "a wave still running: the next one waits"
    run_worker("migrations")
    assert f"{links[2].name}: queued run" in " ".join(reconcile_pass().windows)
    run_worker("migrations")
    plan = bulk_window_plan(window=window)
    assert plan.finished and len(plan.done) == 3
    assert "3 done, 0 running, 0 stopped" in str(plan) and "finished" in str(plan)


def test_no_run_starts_after_the_nights_end_and_the_next_night_resumes_it(links):
    window = bulk_window_open(
        links=links, kind="migrate", wave_size=3, stop_at=timezone.now() + timedelta(hours=1), actor=None
    )
    # The night ends before a worker takes the queued runs: the gate pauses them instead.
    BulkWindow.objects.filter(pk=window.pk).update(stop_at=timezone.now() - timedelta(seconds=1))
    run_worker("migrations")
    runs = runs_of(window)
    assert [r.status for r in runs] == [Status.PAUSED] * 3
    assert all(r.status_note.startswith("window ended: ") and r.started_at is None for r in runs)
    window.refresh_from_db()
    plan = bulk_window_plan(window=window)
    assert plan.ended and len(plan.stopped) == 3 and "ended" in str(plan)
    with pytest.raises(RunRefused, match="has passed"):
        bulk_window_reopen(window=window, stop_at=timezone.now() - timedelta(minutes=1))
    bulk_window_reopen(window=window, stop_at=timezone.now() + timedelta(hours=1))
    run_worker("migrations")
    plan = bulk_window_plan(window=window)
    assert plan.finished and window.nights == 2
    assert len(runs_of(window)) == 6, "the first night's paused runs stay in the history"


def test_a_running_migration_pauses_at_a_batch_boundary_when_the_night_ends_and_resumes_the_next(
    tenant_db, rq_queues, settings
):
    demo_data_seed(agencies=1, scale=3, seed=4)
    agency_links_sync()
    link = AgencyLink.objects.get()
    link = agency_link_confirm(
        link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None
    )
    window = bulk_window_open(
        links=[link], kind="migrate", wave_size=1, stop_at=timezone.now() + timedelta(hours=1), actor=None
    )
    worker = start_worker_process("migrations", MIGRATION_BATCH_SIZE="10", MIGRATION_WRITERS="1")
    try:
        deadline = time.monotonic() + 60
        while not MigrationRun.objects.filter(bulk_request=window.bulk_request, rows_done__gt=0).exists():
            assert time.monotonic() < deadline and worker.poll() is None, "the run started"
            time.sleep(0.05)
        BulkWindow.objects.filter(pk=window.pk).update(stop_at=timezone.now())
        said = reconcile_pass().windows
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    run = runs_of(window)[0]
    assert any("pausing" in line for line in said), said
    assert run.status == Status.PAUSED and 0 < run.rows_done < run.rows_total, (run.status, run.rows_done)
    bulk_window_reopen(window=window, stop_at=timezone.now() + timedelta(hours=1))
    run_worker("migrations")
    assert bulk_window_plan(window=window).finished
    verification = verification_run_request(link=link, actor=None)
    run_worker("verification")
    verification.refresh_from_db()
    assert verification.verdict == "pass", "the resumed migration brought every row"


def test_bad_window_requests_are_one_clear_line(links):
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"^'25:99' is not a time"):
        call_command("bulk_night", "--all", "--stop-at", "25:99", stdout=out)
    with pytest.raises(CommandError, match="empty"):
        call_command("bulk_night", "--all", "--stop-at", "23:00", "--wave-size", "0", stdout=out)
    with pytest.raises(CommandError, match="needs a reason"):
        call_command("bulk_night", "--kind", "cutover", "--all", "--stop-at", "23:00", stdout=out)
    assert not BulkWindow.objects.exists()
    now = timezone.now()
    assert now < stop_at_parse("00:00", now=now) <= now + timedelta(days=1)
    call_command("bulk_night", str(links[0].revos_agency_id), "--stop-at", "23:59", stdout=out)
    assert "1 waves of 10" in out.getvalue() and MigrationRun.objects.filter(agency_link=links[0]).count() == 1


def test_the_admin_plans_a_night_from_the_bulk_form_and_shows_its_plan(links, admin_client):
    form = {"agencies": [link.pk for link in links[:2]], "kind": "migrate", "wave_size": "1", "reason": ""}
    refused = admin_client.post("/admin/migration_jobs/bulkwindow/night/", {**form, "stop_at": "soon"})
    assert refused.status_code == 200 and "is not a time" in refused.content.decode()
    assert not BulkWindow.objects.exists()
    planned = admin_client.post("/admin/migration_jobs/bulkwindow/night/", {**form, "stop_at": "23:59"})
    assert planned.status_code == 302
    window = BulkWindow.objects.get()
    assert [r.agency_link for r in runs_of(window)] == [links[0]], "the first wave of one"
    listed = admin_client.get("/admin/migration_jobs/bulkwindow/").content.decode()
    assert "2 waves of 1" in listed and f"next: {links[1].name}" in listed
    overview = admin_client.get("/admin/migration_jobs/agencylink/overview/").content.decode()
    assert "2 waves of 1" in overview and "Capture backlog" in overview
