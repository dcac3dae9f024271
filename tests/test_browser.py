"""The ops cockpit end to end in Debian's headless Chromium, with a real RQ worker behind the live server.

A staff user logs in, finds a demo agency on the overview, links, plans and migrates it while the
page's progress bar follows the worker, reads the verification turn green and cuts it over. A
non-staff user is sent to the login page; an unverified agency cannot be cut over, not even by a
forged POST. Any failing step leaves a screenshot and the page's HTML in `test-artifacts/`; a
passing run leaves `agency.png` and `overview.png` there.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from migration_jobs.demo.demo import demo_data_seed
from migration_jobs.models import AgencyLink, MigrationRun, VerificationRun
from migration_jobs.models.flags import FeatureFlag
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
from tests.conftest import start_worker_process

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--window-size=1400,1100",
)
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"
PASSWORD = "correct horse battery staple"
# Generous: a cold worker process imports Django, then migrates and verifies a whole demo agency.
JOB_TIMEOUT = 240
STALE = (NoSuchElementException, StaleElementReferenceException)


# --- the browser, the worker and the data ----------------------------------------------------------


@pytest.fixture
def browser(tmp_path):
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip(f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): `make browser`")
    options = Options()
    options.binary_location = CHROMIUM
    for argument in CHROME_ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


class Steps:
    """Names each step of a test; a failing step saves a screenshot and the page's HTML."""

    def __init__(self, driver, test_name: str) -> None:
        self.driver, self.test_name = driver, test_name

    @contextlib.contextmanager
    def __call__(self, name: str):
        try:
            yield
        except BaseException:
            self.save(f"FAILED-{self.test_name}-{name}", with_html=True)
            raise

    def save(self, stem: str, *, with_html: bool = False) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', stem)}.png"
        with contextlib.suppress(Exception):  # a dead browser must not hide the real failure
            self.driver.save_screenshot(str(path))
            if with_html:
                path.with_suffix(".html").write_text(self.driver.page_source)
        return path


@pytest.fixture
def steps(browser, request) -> Steps:
    return Steps(browser, request.node.name)


class Worker:
    """A real `rqworker` process for the test's duration; its output is kept for a failure report."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process, self.lines = process, []
        # Drained continuously: a full pipe would block the worker's logging, and so the worker.
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
        self.reader.join(timeout=5)

    def output(self) -> str:
        return "\n".join(self.lines[-60:])


@pytest.fixture
def worker(rq_queues):
    # Small batches keep the migration going long enough for the progress bar to be seen moving.
    running = Worker(start_worker_process("migrations", "verification", burst=False, MIGRATION_BATCH_SIZE="10"))
    yield running
    running.stop()


@pytest.fixture
def demo(tenant_db) -> list[AgencyLink]:
    """Three demo RevOS agencies (some also in AudienceOS), synced, with the seed flags in place."""
    # A transactional test elsewhere may have flushed the data migration's flag rows.
    for name, gated in (("unified_db", True), ("app_toggle", False), ("shared_hgc", False)):
        FeatureFlag.objects.update_or_create(
            name=name, defaults={"requires_verification": gated, "enabled_globally": False, "rollout_percentage": 0}
        )
    demo_data_seed(agencies=3, scale=2, seed=5)
    agency_links_sync()
    return list(AgencyLink.objects.order_by("name"))


@pytest.fixture
def staff_user(tenant_db):
    return get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)


# --- page helpers ---------------------------------------------------------------------------------


def log_in(driver, live_server, username: str, password: str = PASSWORD) -> None:
    driver.get(live_server.url + reverse("admin:login"))
    driver.find_element(By.ID, "id_username").send_keys(username)
    driver.find_element(By.ID, "id_password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()


def wait_until(driver, condition, *, timeout: float = 30, message: str = ""):
    """Wait on the DOM; elements may go stale while the page reloads itself, so keep asking."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=STALE).until(condition, message)


def text_of(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text.strip()


def messages_on(driver) -> list[str]:
    return [li.text for li in driver.find_elements(By.CSS_SELECTOR, "ul.messagelist li")]


def click(driver, element_id: str) -> None:
    driver.find_element(By.ID, element_id).click()


def open_agency_from_overview(driver, live_server, link: AgencyLink) -> None:
    driver.get(live_server.url + reverse("admin:migration_jobs_agencylink_overview"))
    driver.find_element(By.LINK_TEXT, link.name).click()
    wait_until(driver, lambda d: d.find_element(By.ID, "cockpit"), message="the agency page")


# --- the tests ------------------------------------------------------------------------------------


def test_staff_links_plans_migrates_verifies_and_cuts_over_a_demo_agency(
    browser, steps, live_server, demo, staff_user, worker
):
    shared = next(link for link in demo if link.suggested_kind == AgencyLink.Kind.EXISTING)
    driver = browser

    with steps("log-in"):
        log_in(driver, live_server, staff_user.username)
        wait_until(driver, lambda d: admin.site.index_title in d.title, message="the admin index after logging in")

    with steps("overview"):
        driver.get(live_server.url + reverse("admin:migration_jobs_agencylink_overview"))
        rows = driver.find_elements(By.CSS_SELECTOR, "#overview-table tbody tr[data-agency]")
        assert {row.get_attribute("data-state") for row in rows} == {"not linked"}
        assert len(rows) == len(demo)
        counts = driver.find_element(By.CSS_SELECTOR, "#state-counts a[data-state='not linked'] .count")
        assert counts.text == str(len(demo))

    with steps("open-agency"):
        driver.find_element(By.LINK_TEXT, shared.name).click()
        wait_until(driver, lambda d: text_of(d, "agency-state") == "not linked", message="the agency page")
        assert "Home" in driver.find_element(By.CSS_SELECTOR, ".breadcrumbs").text
        assert not driver.find_element(By.ID, "action-migrate").is_enabled()
        assert text_of(driver, "why-migrate") == "confirm the link first"

    with steps("confirm-link"):
        click(driver, "confirm-link")
        wait_until(driver, lambda d: text_of(d, "agency-state") == "linked", message="the link confirmed")
        assert any("Link confirmed" in m for m in messages_on(driver)), messages_on(driver)

    with steps("plan"):
        click(driver, "action-plan")
        wait_until(
            driver, lambda d: d.find_element(By.ID, "plan-report"), timeout=JOB_TIMEOUT, message="the plan table"
        )
        planned = driver.find_elements(By.CSS_SELECTOR, "#plan-report tbody tr")
        assert len(planned) > 5
        assert "users" in driver.find_element(By.ID, "plan-report").text

    with steps("migrate"):
        assert text_of(driver, "action-migrate") == "Migrate"
        click(driver, "action-migrate")
        wait_until(driver, lambda d: any("queued" in m for m in messages_on(d)), message="the migration queued")
        seen = set()

        def reached_100(d) -> bool:
            value = d.find_element(By.ID, "run-progress").get_attribute("value")
            if 0 < float(value) < 100 and not any(0 < v < 100 for v in seen):
                steps.save("agency-migrating")
            seen.add(int(float(value)))
            return text_of(d, "run-percent") == "100" and value == "100"

        wait_until(driver, reached_100, timeout=JOB_TIMEOUT, message=f"progress 100% (worker: {worker.output()})")
        run = MigrationRun.objects.filter(agency_link=shared, kind="migrate").get()
        assert run.status == MigrationRun.Status.SUCCEEDED, run.error
        assert text_of(driver, "run-status-text") == "Succeeded"
        # The bar moved while the page stayed open: it was driven by the worker, not by a reload.
        assert any(0 < value < 100 for value in seen), f"no intermediate progress seen: {sorted(seen)}"

    with steps("verification"):
        wait_until(
            driver,
            lambda d: text_of(d, "verification-verdict") == "Pass",
            timeout=JOB_TIMEOUT,
            message=f"a passing verification (worker: {worker.output()})",
        )
        assert VerificationRun.objects.get(agency_link=shared).verdict == VerificationRun.Verdict.PASS
        assert text_of(driver, "agency-state") == "verified"
        assert driver.find_element(By.ID, "action-cutover").is_enabled()

    with steps("cutover"):
        driver.find_element(By.CSS_SELECTOR, "#cutover-form input[name=reason]").send_keys(
            "Verified in the browser test"
        )
        click(driver, "action-cutover")
        # Like Switch back and Complete, Cutover asks before it fences RevOS's writes.
        confirmation = wait_until(driver, lambda d: d.switch_to.alert, message="the cutover's confirmation")
        assert confirmation.text.startswith("Cut over (unified_db on):") and shared.name in confirmation.text
        confirmation.accept()
        # The click returns before the POST's answer replaces the page: wait for the new page's message.
        wait_until(
            driver,
            lambda d: any("cutover of" in m.lower() for m in messages_on(d)),
            message="the message that the cutover was queued",
        )

        def cut_over(d) -> bool:  # the worker runs the cutover's steps; the page shows them when done
            d.refresh()
            return text_of(d, "agency-state") == "cut over"

        wait_until(driver, cut_over, timeout=JOB_TIMEOUT, message=f"state cut over (worker: {worker.output()})")
        assert "Switch unified_db on" in text_of(driver, "run-steps")
        assert text_of(driver, "flag-unified_db").endswith("on")
        assert not driver.find_element(By.ID, "action-cutover").is_enabled()
        assert text_of(driver, "cutover-reason") == "Done: unified_db is on for this agency."
        steps.save("agency")

    with steps("overview-after"):
        other = next(link for link in demo if link.pk != shared.pk)
        agency_link_confirm(link=other, kind="new", unified_agency_id=None, actor=staff_user)
        driver.get(live_server.url + reverse("admin:migration_jobs_agencylink_overview"))
        states = {
            row.get_attribute("data-agency"): row.get_attribute("data-state")
            for row in driver.find_elements(By.CSS_SELECTOR, "#overview-table tbody tr[data-agency]")
        }
        assert states[str(shared.pk)] == "cut over" and states[str(other.pk)] == "linked"
        steps.save("overview")


def test_non_staff_user_is_sent_to_the_login_page(browser, steps, live_server, demo):
    visitor = get_user_model().objects.create_user("visitor", password=PASSWORD)
    overview = reverse("admin:migration_jobs_agencylink_overview")

    with steps("login-form-refuses"):
        log_in(browser, live_server, visitor.username)
        error = wait_until(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".errornote"))
        assert "staff account" in error.text

    with steps("session-refused"):
        # Even with a valid session (logged in elsewhere), the admin pages send a non-staff user to log in.
        client = Client()
        client.force_login(visitor)
        browser.add_cookie(
            {"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value}
        )
        for url in (overview, reverse("admin:migration_jobs_agencylink_change", args=[demo[0].pk])):
            browser.get(live_server.url + url)
            wait_until(browser, lambda d: d.find_elements(By.ID, "login-form"), message="the login page")
            assert reverse("admin:login") in browser.current_url and "next=" in browser.current_url
            assert not browser.find_elements(By.ID, "cockpit")


def test_unverified_agency_cannot_be_cut_over_even_by_a_forged_post(browser, steps, live_server, demo, staff_user):
    link = demo[0]
    agency_link_confirm(link=link, kind="new", unified_agency_id=None, actor=staff_user)

    with steps("disabled-with-reason"):
        log_in(browser, live_server, staff_user.username)
        wait_until(browser, lambda d: admin.site.index_title in d.title)
        open_agency_from_overview(browser, live_server, link)
        assert text_of(browser, "agency-state") == "linked"
        button = browser.find_element(By.ID, "action-cutover")
        assert not button.is_enabled()
        assert text_of(browser, "cutover-reason") == "Not yet: this agency has not been migrated yet."

    with steps("forged-post"):
        # What a user could do with the developer tools: enable the form and send it anyway.
        browser.execute_script(
            "document.querySelectorAll('#cutover-form [disabled]').forEach(e => e.removeAttribute('disabled'));"
        )
        browser.find_element(By.CSS_SELECTOR, "#cutover-form input[name=reason]").send_keys("forged")
        click(browser, "action-cutover")
        wait_until(browser, lambda d: d.switch_to.alert, message="the cutover's confirmation").accept()
        wait_until(browser, lambda d: messages_on(d), message="a message")
        assert any(
            m.startswith("Cutover refused:") and "this agency has not been migrated yet" in m
            for m in messages_on(browser)
        ), messages_on(browser)
        assert text_of(browser, "agency-state") == "linked"
        assert text_of(browser, "flag-unified_db").endswith("off")


def no_sideways_scroll(driver) -> bool:
    """Nothing on the page is wider than the 1400 px window: no column clipped or scrolled away."""
    return driver.execute_script(
        "const r = document.querySelector('.results');"
        "return document.documentElement.scrollWidth <= window.innerWidth && (!r || r.scrollWidth <= r.clientWidth);"
    )


def test_plan_table_verification_matrix_and_app_filters_read_right(browser, steps, live_server, rq_queues, staff_user):
    from django.core.management import call_command
    from django.db import connections

    from migration_jobs.services.runs import migration_run_request
    from tests.conftest import run_worker

    call_command("seed_demo", "--agencies", "3", "--seed", "9", "--with-bad-rows")
    agency_links_sync()
    with connections["revos"].cursor() as cursor:
        cursor.execute("SELECT agency_id FROM leads WHERE status = 'maybe later'")
        (bad_agency_id,) = cursor.fetchone()
    bad = agency_link_confirm(
        link=AgencyLink.objects.get(revos_agency_id=bad_agency_id), kind="new", unified_agency_id=None, actor=None
    )
    shared = AgencyLink.objects.filter(suggested_kind=AgencyLink.Kind.EXISTING).first()
    shared = agency_link_confirm(link=shared, kind="existing", unified_agency_id=shared.suggested_agency_id, actor=None)
    migration_run_request(link=bad, kind=MigrationRun.Kind.PLAN, actor=None)
    migration_run_request(link=shared, kind=MigrationRun.Kind.MIGRATE, actor=None)
    run_worker("migrations", "verification")
    with connections["unified"].cursor() as cursor:
        cursor.execute(
            "DELETE FROM email_queue WHERE id = (SELECT target_id FROM controlplane.id_map WHERE agency_id = %s"
            " AND target_table = 'email_queue' AND inserted ORDER BY target_id LIMIT 1)",
            [shared.revos_agency_id],
        )
    from migration_jobs.services.verification import verification_run_request

    failed = verification_run_request(link=shared, actor=None)
    run_worker("verification")
    driver = browser
    log_in(driver, live_server, staff_user.username)
    wait_until(driver, lambda d: admin.site.index_title in d.title)

    with steps("plan-table"):
        driver.get(live_server.url + reverse("admin:migration_jobs_agencylink_change", args=[bad.pk]))
        rows = driver.find_elements(By.CSS_SELECTOR, "#plan-report tbody tr")
        assert [cell.text for cell in rows[0].find_elements(By.TAG_NAME, "td")][:2] == ["1", "agencies"]
        assert "parents first" in text_of(driver, "plan-totals")
        refused = driver.find_elements(By.CSS_SELECTOR, "#plan-refused-rows tbody tr")
        assert len(refused) == 5
        assert "maybe later" in text_of(driver, "plan-refused-rows")
        assert "would refuse" in text_of(driver, "migrate-warning")
        assert driver.find_element(By.ID, "plan-refused-csv").get_attribute("href").endswith("/plan.csv")
        assert no_sideways_scroll(driver)
        steps.save("plan")

    with steps("verification-matrix"):
        driver.get(live_server.url + reverse("admin:migration_jobs_verificationrun_change", args=[failed.pk]))
        failures = driver.find_element(By.ID, "verification-failures")
        matrix = driver.find_element(By.ID, "verification-matrix")
        assert failures.location["y"] < matrix.location["y"], "failures come first"
        first_row = matrix.find_element(By.CSS_SELECTOR, "tbody tr")
        assert "has-failure" in first_row.get_attribute("class")
        assert "fail" in first_row.text
        details = failures.find_element(By.TAG_NAME, "details")
        assert details.get_attribute("open") is None  # folded until asked for
        details.find_element(By.TAG_NAME, "summary").click()
        assert "sample ids" in details.text or "missing" in details.text
        assert no_sideways_scroll(driver)
        steps.save("verification")

    with steps("app-filters"):
        url = live_server.url + reverse("admin:migration_jobs_client_changelist")
        driver.get(f"{url}?agency={shared.unified_agency_id}&app_context__exact=revos")
        exact = len(driver.find_elements(By.CSS_SELECTOR, "#result_list tbody tr"))
        driver.get(f"{url}?agency={shared.unified_agency_id}")
        driver.find_element(By.LINK_TEXT, "Visible in RevOS").click()
        wait_until(driver, lambda d: "visible=revos" in d.current_url)
        visible = len(driver.find_elements(By.CSS_SELECTOR, "#result_list tbody tr"))
        assert visible > exact, (visible, exact)  # the shared ('both') clients count as RevOS's
        driver.find_element(By.LINK_TEXT, "Came from RevOS (migrated)").click()
        wait_until(driver, lambda d: "visible=migrated" in d.current_url)

    with steps("lists-fit-1400px"):
        for name in ("verificationrun", "chatsession", "featureflag", "migrationrun"):
            driver.get(live_server.url + reverse(f"admin:migration_jobs_{name}_changelist"))
            assert no_sideways_scroll(driver), name
