"""The agency page as ops read it, in Debian's headless Chromium at 1400 px: the timeline keeps a failed
cutover beside its retry, the steps run the full width below the Actions, every failure shows the
button that moves on from it, and a paused then resumed run's counters agree with each other.
"""

from __future__ import annotations

import psycopg
import pytest
from django.contrib import admin
from django.db import connections
from django.urls import reverse

from migration_jobs.models import AgencyLink, MigrationRun, VerificationRun
from migration_jobs.services.agency_links import agency_link_confirm
from migration_jobs.services.kinds.cutover import cutover_run_request
from migration_jobs.services.runs import migration_run_request
from migration_jobs.services.verification import verification_run_request
from tests import test_browser as ui
from tests.conftest import database_url, run_worker
from tests.test_browser import log_in, text_of, wait_until

pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
from selenium.webdriver.common.by import By

pytestmark = pytest.mark.browser
# The browser, the demo agencies and the staff user of the cockpit's first browser test.
browser, steps, demo, staff_user = ui.browser, ui.steps, ui.demo, ui.staff_user

Status, Kind = MigrationRun.Status, MigrationRun.Kind
# The longest the page of a demo agency may be: the steps, timeline, report and plan fit in it;
# the 600-row list of people that once made it 24,852 px tall is folded away.
PAGE_HEIGHT_LIMIT = 6000


def confirmed(link: AgencyLink) -> AgencyLink:
    return agency_link_confirm(
        link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None
    )


def migrated(link: AgencyLink) -> MigrationRun:
    run = migration_run_request(link=link, kind=Kind.MIGRATE, actor=None)
    run_worker("migrations", "verification")
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED, run.error
    return run


def open_cockpit(driver, live_server, link: AgencyLink) -> None:
    driver.get(live_server.url + reverse("admin:migration_jobs_agencylink_change", args=[link.pk]))
    wait_until(driver, lambda d: d.find_element(By.ID, "cockpit"), message="the agency page")


def box(driver, element_id: str) -> dict:
    return driver.execute_script(
        "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return {top: r.top + window.scrollY, width: r.width};",
        element_id,
    )


def next_action_shown(driver) -> tuple[str, str]:
    """The next action's sentence and its button's text; both must be there."""
    return text_of(driver, "next-action"), text_of(driver, "next-action-button")


def test_failed_and_retried_cutover_full_width_steps_and_next_actions(
    browser, steps, live_server, demo, staff_user, settings
):
    link = confirmed(demo[0])
    migration_run_request(link=link, kind=Kind.PLAN, actor=None)
    run_worker("migrations")
    migrated(link)
    settings.CUTOVER_DRAIN_TIMEOUT_SECONDS = 0.5
    with psycopg.connect(database_url("revos"), application_name="slow-app") as app:
        app.execute("UPDATE leads SET name = 'w3' WHERE agency_id = %s", [link.revos_agency_id])  # left open
        failed = cutover_run_request(link=link, reason="first try", actor=None)
        run_worker("migrations")
        app.rollback()
    failed.refresh_from_db()
    assert failed.status == Status.FAILED
    driver = browser
    log_in(driver, live_server, staff_user.username)
    wait_until(driver, lambda d: admin.site.index_title in d.title)

    with steps("failed-cutover-offers-retry"):
        open_cockpit(driver, live_server, link)
        sentence, button = next_action_shown(driver)
        assert "Retry" in sentence and "Retry the cutover" in button
        assert "Drain" in text_of(driver, "run-step-failed") and "slow-app" in text_of(driver, "run-step-failed")
        assert text_of(driver, "action-cutover") == "Retry the cutover"

    settings.CUTOVER_DRAIN_TIMEOUT_SECONDS = 5
    retried = cutover_run_request(link=link, reason="second try", actor=None)
    run_worker("migrations")
    retried.refresh_from_db()
    assert retried.status == Status.SUCCEEDED, retried.error

    with steps("timeline-and-full-width-steps"):
        open_cockpit(driver, live_server, link)
        outcomes = {
            row.get_attribute("data-run"): row.get_attribute("data-outcome")
            for row in driver.find_elements(By.CSS_SELECTOR, "#timeline-table tr[data-model=migrationrun]")
        }
        assert outcomes[str(failed.pk)] == "Failed" and outcomes[str(retried.pk)] == "Succeeded"
        content = box(driver, "content")
        steps_table = box(driver, "run-steps")
        assert steps_table["width"] >= 0.9 * content["width"], (steps_table, content)
        assert box(driver, "actions")["top"] < box(driver, "run-steps-module")["top"]  # Actions before the steps
        height = driver.execute_script("return document.documentElement.scrollHeight")
        assert height < PAGE_HEIGHT_LIMIT, height
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        assert "0 / 0" not in text_of(driver, "run-status")
        steps.save("cockpit-cut-over")


def test_failed_verification_is_repaired_from_its_next_action_button(browser, steps, live_server, demo, staff_user):
    link = confirmed(demo[1])
    migrated(link)
    with connections["unified"].cursor() as cursor:
        cursor.execute(
            "DELETE FROM email_queue WHERE id = (SELECT target_id FROM controlplane.id_map WHERE agency_id = %s"
            " AND target_table = 'email_queue' AND inserted ORDER BY target_id LIMIT 1)",
            [link.revos_agency_id],
        )
    verification_run_request(link=link, actor=None)
    run_worker("verification")
    driver = browser
    log_in(driver, live_server, staff_user.username)
    wait_until(driver, lambda d: admin.site.index_title in d.title)

    with steps("failed-verification-names-the-full-reread"):
        open_cockpit(driver, live_server, link)
        sentence, button = next_action_shown(driver)
        assert "full re-read" in sentence and button == "Full re-read…"
        driver.find_element(By.ID, "next-action-button").click()
        reason = driver.switch_to.active_element
        assert reason.get_attribute("id") == "fullreread-why"
        reason.send_keys("an email was deleted in the unified database")
        driver.find_element(By.ID, "action-fullreread").click()
        wait_until(driver, lambda d: "Full re-read of" in d.find_element(By.CSS_SELECTOR, "ul.messagelist").text)

    run_worker("migrations", "verification")
    with steps("repaired"):
        driver.refresh()
        wait_until(driver, lambda d: text_of(d, "verification-verdict") == "Pass", message="a passing verification")
        assert text_of(driver, "agency-state") == "verified"
        assert VerificationRun.objects.filter(agency_link=link).latest().verdict == VerificationRun.Verdict.PASS
        first = driver.find_element(By.CSS_SELECTOR, "#timeline-table tbody tr[data-model=verificationrun]")
        assert first.get_attribute("data-outcome") == "Pass"


def test_paused_then_resumed_run_counters_agree(browser, steps, live_server, demo, staff_user, settings):
    settings.MIGRATION_BATCH_SIZE = 5
    link = confirmed(demo[2])
    run = migration_run_request(link=link, kind=Kind.MIGRATE, actor=None)
    # Staff press Pause while it runs: it stops after its first batch.
    MigrationRun.objects.filter(pk=run.pk).update(control=MigrationRun.Control.PAUSE)
    run_worker("migrations")
    run.refresh_from_db()
    assert run.status == Status.PAUSED and 0 < run.rows_done < run.rows_total
    driver = browser
    log_in(driver, live_server, staff_user.username)
    wait_until(driver, lambda d: admin.site.index_title in d.title)

    with steps("paused"):
        open_cockpit(driver, live_server, link)
        percent = int(100 * run.rows_done / run.rows_total)
        assert text_of(driver, "run-rows") == f"{run.rows_done:,} / {run.rows_total:,}"
        assert text_of(driver, "run-percent") == str(percent)
        assert driver.find_element(By.ID, "run-progress").get_attribute("value") == str(percent)
        assert text_of(driver, "run-tables") == f"{run.tables_done} / {run.tables_total}"
        sentence, button = next_action_shown(driver)
        assert "Resume" in sentence and button == "Resume"

    with steps("resumed"):
        driver.find_element(By.ID, "next-action-button").click()
        wait_until(driver, lambda d: "queued" in d.find_element(By.CSS_SELECTOR, "ul.messagelist").text)
        run_worker("migrations", "verification")
        resumed = MigrationRun.objects.filter(agency_link=link).latest()
        assert resumed.pk != run.pk and resumed.status == Status.SUCCEEDED, resumed.error
        driver.refresh()
        wait_until(driver, lambda d: text_of(d, "run-status-text") == "Succeeded")
        assert text_of(driver, "run-percent") == "100"
        assert text_of(driver, "run-rows") == f"{resumed.rows_total:,} / {resumed.rows_total:,}"
        assert text_of(driver, "run-tables") == f"{resumed.tables_total} / {resumed.tables_total}"
        outcomes = [
            row.get_attribute("data-outcome")
            for row in driver.find_elements(By.CSS_SELECTOR, "#timeline-table tr[data-model=migrationrun]")
        ]
        assert outcomes[:2] == ["Succeeded", "Paused"]  # the paused run stays in the history
