"""The agencies overview and the agency page without JavaScript: states, filters, bulk path, plain forms.

The forms are read from the rendered HTML and sent as a browser with JavaScript off would send them
(their own fields, the CSRF token from the page, the pressed button), through the real admin views;
jobs run through a real RQ worker on real Redis and PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser

import psycopg
import pytest
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from migration_jobs.demo.demo import demo_data_seed
from migration_jobs.etl.engine import lock_key
from migration_jobs.models import AgencyLink, MigrationRun, VerificationRun
from migration_jobs.models.flags import FeatureFlag
from migration_jobs.selectors import AGENCY_STATES, agency_cockpit
from migration_jobs.selectors.agency_state import agency_cutover_refusal
from migration_jobs.selectors.flags import agency_flag_enabled
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
from migration_jobs.services.runs import migration_run_request
from tests.conftest import database_url, run_worker, start_worker_process
from tests.test_flags import switched_by_run

OVERVIEW = "admin:migration_jobs_agencylink_overview"
Status, Kind = MigrationRun.Status, MigrationRun.Kind


# --- forms as a browser without JavaScript sees them ------------------------------------------------


@dataclass
class Form:
    action: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    buttons: dict[str, tuple[str, str, bool]] = field(default_factory=dict)  # id -> (name, value, disabled)
    disabled: set[str] = field(default_factory=set)


class FormParser(HTMLParser):
    """Every <form> of a page: its action, the values it would send, and its buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.form: Form | None = None
        self.select: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.form = Form(action=a.get("action", ""))
            self.forms.append(self.form)
        elif self.form is None:
            return
        elif tag == "input" and a.get("name"):
            if "disabled" in a:
                self.form.disabled.add(a["name"])
            elif a.get("type") not in ("checkbox", "radio", "submit") or "checked" in a:
                self.form.fields.append((a["name"], a.get("value") or ""))
        elif tag == "select":
            self.select = a.get("name")
        elif tag == "option" and self.select and "selected" in a:
            self.form.fields.append((self.select, a.get("value", "")))
        elif tag == "button":
            self.form.buttons[a.get("id") or a.get("value", "")] = (
                a.get("name", ""),
                a.get("value", ""),
                "disabled" in a,
            )

    def handle_endtag(self, tag):
        if tag == "form":
            self.form = None
        elif tag == "select":
            self.select = None


def forms_of(response) -> list[Form]:
    parser = FormParser()
    parser.feed(response.content.decode())
    return parser.forms


def press(client: Client, page, button: str, **typed):
    """Submit the form holding `button` as a browser would: its fields, the typed values, the button."""
    form = next((f for f in forms_of(page) if button in f.buttons), None)
    assert form is not None, f"no button {button!r} on the page"
    name, value, disabled = form.buttons[button]
    assert not disabled, f"{button} is disabled"
    data: dict[str, list[str]] = {}
    for key, val in form.fields:
        data.setdefault(key, []).append(val)
    if name:
        data[name] = [value]
    for key, val in typed.items():
        assert key not in form.disabled, f"{key} is disabled"
        data[key] = val if isinstance(val, list) else [val]
    return client.post(form.action or page.wsgi_request.get_full_path(), data, follow=True)


def button_state(page, button: str) -> bool:
    """Whether `button` is on the page and enabled."""
    return any(button in f.buttons and not f.buttons[button][2] for f in forms_of(page))


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- users and data -------------------------------------------------------------------------------


def staff(*codenames: str, username: str | None = None) -> Client:
    user = User.objects.create_user(username or f"staff{User.objects.count()}", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="migration_jobs", codename__in=codenames)
    )
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


OPERATOR = (
    "view_agencylink",
    "confirm_agencylink",
    "plan_migrationrun",
    "start_migrationrun",
    "resume_migrationrun",
    "rollback_migrationrun",
    "start_verificationrun",
    "view_verificationrun",
    "view_migrationrun",
    "view_featureflag",
    "change_flag_state",
    "cutover_migrationrun",
    "switchback_migrationrun",
    "complete_migrationrun",
)


@pytest.fixture
def flags():
    """The seed flags (a transactional test elsewhere may have flushed the data migration's rows)."""
    for name, gated in (("unified_db", True), ("app_toggle", False), ("shared_hgc", False)):
        FeatureFlag.objects.update_or_create(
            name=name, defaults={"requires_verification": gated, "enabled_globally": False, "rollout_percentage": 0}
        )


def new_link(name: str, *, confirmed: bool = True) -> AgencyLink:
    return AgencyLink.objects.create(
        revos_agency_id=uuid.uuid4(),
        unified_agency_id=uuid.uuid4() if confirmed else None,
        name=name,
        domain=f"{name.lower().replace(' ', '')}.example",
        suggested_kind=AgencyLink.Kind.NEW,
        kind=AgencyLink.Kind.NEW if confirmed else "",
        confirmed_at=timezone.now() if confirmed else None,
    )


def record_run(link: AgencyLink, status: str, *, kind: str = Kind.MIGRATE, minutes_ago: int = 30) -> MigrationRun:
    finished = None if status in (Status.QUEUED, Status.RUNNING) else timezone.now() - timedelta(minutes=minutes_ago)
    return MigrationRun.objects.create(
        agency_link=link, revos_agency_id=link.revos_agency_id, kind=kind, status=status, finished_at=finished
    )


def record_verification(link: AgencyLink, verdict: str, *, minutes_ago: int = 10) -> VerificationRun:
    finished = timezone.now() - timedelta(minutes=minutes_ago)
    return VerificationRun.objects.create(
        agency_link=link,
        status=VerificationRun.Status.FINISHED,
        verdict=verdict,
        started_at=finished - timedelta(minutes=1),
        finished_at=finished,
    )


def held_by_a_live_run(link: AgencyLink) -> None:
    """The agency's lock held until the test ends, as a live `--sync` run holds it: the page's reconcile
    must find the running run alive (a running run nobody holds is failed when a page reads it)."""
    unified = connections["unified"]
    unified.ensure_connection()
    with unified.cursor() as cursor:
        cursor.execute(f"SELECT pg_advisory_xact_lock({lock_key(link.revos_agency_id).as_string(unified.connection)})")


def one_agency_per_state() -> dict[str, AgencyLink]:
    """An agency in each state of the overview, recorded as the runs and verifications would leave it."""
    links = {state: new_link(f"Agency {state}", confirmed=state != "not linked") for state in AGENCY_STATES}
    record_run(links["migrating"], Status.RUNNING)
    held_by_a_live_run(links["migrating"])
    record_run(links["migrated"], Status.SUCCEEDED)
    for state in ("verified", "cut over", "complete"):
        record_run(links[state], Status.SUCCEEDED)
        record_verification(links[state], VerificationRun.Verdict.PASS)
    for state in ("cut over", "complete"):
        switched_by_run(links[state])
    record_run(links["complete"], Status.SUCCEEDED, kind=Kind.COMPLETE, minutes_ago=1)
    record_run(links["failed"], Status.FAILED)
    record_run(links["paused"], Status.PAUSED)
    return links


def overview_rows(response) -> dict[str, str]:
    """Agency name -> state, as the overview page shows them."""
    return {row.link.name: row.state for row in response.context["overview"].rows}


# --- the overview ---------------------------------------------------------------------------------


@pytest.mark.django_db(databases=["default", "unified", "revos"])
def test_overview_shows_each_agency_state_and_the_count_per_state(flags):
    links = one_agency_per_state()
    response = staff("view_agencylink").get(reverse(OVERVIEW))
    assert response.status_code == 200
    assert overview_rows(response) == {link.name: state for state, link in links.items()}
    assert response.context["overview"].counts == dict.fromkeys(AGENCY_STATES, 1)
    body = response.content.decode()
    for state, link in links.items():
        assert f'data-agency="{link.pk}" data-state="{state}"' in body
        assert reverse("admin:migration_jobs_agencylink_change", args=[link.pk]) in body
    assert '<div class="breadcrumbs">' in body and "At a glance" in body


@pytest.mark.django_db(databases=["default", "unified"])
def test_overview_state_agrees_with_the_agency_page(flags):
    for state, link in one_agency_per_state().items():
        cut_over = agency_flag_enabled(flag_name="unified_db", agency_link=link)
        cockpit = agency_cockpit(link=link, cut_over=cut_over, cutover_refusal=agency_cutover_refusal(agency_link=link))
        assert cockpit.state == state


@pytest.mark.django_db(databases=["default", "unified", "revos"])
def test_state_filter_and_search_narrow_the_rows_but_not_the_counts(flags):
    links = one_agency_per_state()
    client = staff("view_agencylink")
    response = client.get(reverse(OVERVIEW), {"state": "failed"})
    assert overview_rows(response) == {links["failed"].name: "failed"}
    assert sum(response.context["overview"].counts.values()) == len(AGENCY_STATES)
    assert 'class="selected"' in response.content.decode()
    response = client.get(reverse(OVERVIEW), {"q": "agency ver"})
    assert overview_rows(response) == {links["verified"].name: "verified"}
    response = client.get(reverse(OVERVIEW), {"state": "migrated", "q": "agency ver"})
    assert overview_rows(response) == {}
    assert "No agency is migrated" in response.content.decode()
    # An unknown state is no filter at all, not an error.
    assert len(overview_rows(client.get(reverse(OVERVIEW), {"state": "bogus"}))) == len(AGENCY_STATES)


@pytest.mark.django_db(databases=["default", "unified", "revos"])
def test_overview_queries_do_not_grow_with_the_number_of_agencies(flags):
    client = staff("view_agencylink")

    def queries() -> int:
        with (
            CaptureQueriesContext(connections["default"]) as default,
            CaptureQueriesContext(connections["unified"]) as unified,
        ):
            assert client.get(reverse(OVERVIEW)).status_code == 200
        assert len(unified) == 0
        return len(default)

    one_agency_per_state()
    few = queries()
    for _ in range(2):
        more = one_agency_per_state()
        # The page reconciles each running run (their number is capped by the concurrency limit, not
        # by the number of agencies): more agencies, no more of them running.
        MigrationRun.objects.filter(agency_link=more["migrating"]).update(status=Status.PAUSED)
    assert queries() == few


@pytest.mark.django_db(databases=["default", "unified"])
def test_overview_without_agencies_points_to_the_sync():
    response = staff("view_agencylink").get(reverse(OVERVIEW))
    assert "No RevOS agencies yet" in response.content.decode()


@pytest.mark.django_db(databases=["default", "unified"])
def test_non_staff_are_sent_to_log_in_and_staff_without_view_permission_are_refused():
    visitor = User.objects.create_user("visitor", password="pw")
    client = Client()
    client.force_login(visitor)
    response = client.get(reverse(OVERVIEW))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login") + "?next=")
    assert Client().get(reverse(OVERVIEW)).status_code == 302  # anonymous
    assert staff("view_migrationrun").get(reverse(OVERVIEW)).status_code == 403
    assert staff("view_migrationrun").post(reverse(OVERVIEW), {"action": "migrate_selected"}).status_code == 403


@pytest.mark.django_db(databases=["default", "unified"])
def test_the_agency_list_links_to_the_overview():
    response = staff("view_agencylink").get(reverse("admin:migration_jobs_agencylink_changelist"))
    assert reverse(OVERVIEW) in response.content.decode()


# --- the bulk path --------------------------------------------------------------------------------


@pytest.fixture
def demo(tenant_db, rq_queues, flags) -> list[AgencyLink]:
    # Linked as suggested: an agency whose users AudienceOS already has is that agency (its rows
    # may only reference users of their own agency), the others are new.
    demo_data_seed(agencies=3, scale=0.5, seed=31)
    agency_links_sync()
    return list(AgencyLink.objects.order_by("name"))


def test_bulk_migrate_verify_and_cut_over_from_the_overview(demo):
    first, second, unlinked = demo
    for link in (first, second):
        agency_link_confirm(link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None)
    client = staff(*OPERATOR)
    page = client.get(reverse(OVERVIEW), {"state": "linked"})
    ids = [str(link.pk) for link in demo]

    response = press(client, page, "bulk-migrate_selected", _selected_action=ids)
    assert response.redirect_chain[-1][0] == reverse(OVERVIEW) + "?state=linked"  # back where it started
    lines = messages_of(response)
    assert any(line.startswith("Queued 2") for line in lines), lines
    assert any(unlinked.name in line and "no confirmed link" in line for line in lines), lines
    run_worker("migrations", "verification")  # each migration queues its own verification
    assert overview_rows(client.get(reverse(OVERVIEW))) == {
        first.name: "verified",
        second.name: "verified",
        unlinked.name: "not linked",
    }

    response = press(client, client.get(reverse(OVERVIEW)), "bulk-verify_selected_agencies", _selected_action=ids[:1])
    assert any("Verification queued for 1 agency" in line for line in messages_of(response))
    run_worker("verification")
    assert first.verifications.filter(verdict=VerificationRun.Verdict.PASS).count() == 2

    # Cutover asks for a reason first, on an intermediate page that posts back to the overview.
    reason_page = press(
        client, client.get(reverse(OVERVIEW)), "bulk-enable_unified_db_for_selected", _selected_action=ids
    )
    assert reason_page.status_code == 200 and b"Switch them" in reason_page.content
    form = next(f for f in forms_of(reason_page) if any(name == "apply" for name, _ in f.fields))
    assert form.action == ""  # the same URL: the overview
    response = client.post(
        reverse(OVERVIEW), {**dict(form.fields), "_selected_action": ids, "reason": "Verified, bulk"}, follow=True
    )
    lines = messages_of(response)
    assert any(line.startswith("Cutover queued for 2") for line in lines), lines
    assert any(line.startswith("Refused:") and unlinked.name in line for line in lines), lines
    run_worker("migrations")  # each cutover: fence, catch up, verify the changes, switch
    response = client.get(reverse(OVERVIEW))
    states = overview_rows(response)
    assert states == {first.name: "cut over", second.name: "cut over", unlinked.name: "not linked"}


def test_bulk_buttons_check_their_own_permissions(demo):
    agency_link_confirm(
        link=demo[0], kind=demo[0].suggested_kind, unified_agency_id=demo[0].suggested_agency_id, actor=None
    )
    viewer = staff("view_agencylink")
    page = viewer.get(reverse(OVERVIEW))
    ids = [str(demo[0].pk)]
    assert messages_of(press(viewer, page, "bulk-migrate_selected", _selected_action=ids)) == [
        "You may not start migrations."
    ]
    assert messages_of(press(viewer, page, "bulk-verify_selected_agencies", _selected_action=ids)) == [
        "You may not verify agencies."
    ]
    response = press(viewer, page, "bulk-enable_unified_db_for_selected", _selected_action=ids)
    assert messages_of(response) == ["You may not cut agencies over."]
    assert MigrationRun.objects.count() == 0 and VerificationRun.objects.count() == 0


def test_bulk_without_a_selection_or_with_an_unknown_action_does_nothing(demo):
    client = staff(*OPERATOR)
    page = client.get(reverse(OVERVIEW))
    response = press(client, page, "bulk-migrate_selected")
    assert messages_of(response) == ["Select at least one agency first; nothing was done."]
    response = press(
        client, page, "bulk-migrate_selected", action="delete_selected", _selected_action=[str(demo[0].pk)]
    )
    assert messages_of(response) == ["There is no bulk action 'delete_selected' for you here."]
    assert AgencyLink.objects.count() == 3 and MigrationRun.objects.count() == 0


# --- the agency page with JavaScript off ----------------------------------------------------------


def test_every_cockpit_button_works_as_a_plain_form_without_javascript(demo):
    link = next(link for link in demo if link.suggested_kind == AgencyLink.Kind.EXISTING)
    client = staff(*OPERATOR)
    url = reverse("admin:migration_jobs_agencylink_change", args=[link.pk])
    pressed = set()

    def go(button: str, expect: str, **typed):
        response = press(client, client.get(url), button, **typed)
        assert response.redirect_chain[-1][0] == url
        assert any(expect in line for line in messages_of(response)), (button, messages_of(response))
        pressed.add(button)
        return response

    page = client.get(url)
    assert not button_state(page, "action-migrate") and "confirm the link first" in page.content.decode()
    go("confirm-link", "Link confirmed: Same agency as an AudienceOS one")  # the suggestion is preselected

    go("action-plan", "Plan (dry run) of")
    run_worker("migrations")
    assert b'id="plan-report"' in client.get(url).content

    go("action-migrate", "Migrate of")
    go("action-cancel", "cancel requested")  # still queued: it stops at once
    assert b">Resume</button>" in client.get(url).content
    go("action-migrate", "Migrate of")  # Resume
    run_worker("migrations", "verification")
    page = client.get(url)
    assert page.context["cockpit"].state == "verified", page.context["cockpit"].last_run.error
    assert b'data-verdict="pass"' in page.content
    go("action-verify", "Verification of")
    run_worker("verification")

    go("action-rollback", "Roll back of")  # a plain POST: the confirm() dialog is JavaScript only
    run_worker("migrations", "verification")
    assert client.get(url).context["cockpit"].migrated_rows == 0
    go("action-migrate", "Migrate of")
    run_worker("migrations", "verification")

    go("action-migrate", "Migrate of")  # a catch-up run: RevOS keeps writing until the cutover
    go("action-pause", "pause requested")
    assert client.get(url).context["cockpit"].last_run.status == Status.PAUSED
    go("action-migrate", "Migrate of")  # Resume
    run_worker("migrations", "verification")

    go("action-fullreread", "A full re-read needs a reason", reason="  ")  # blank is no reason
    go("action-fullreread", "Full re-read of", reason="Rows edited in the unified database")
    run_worker("migrations", "verification")
    assert client.get(url).context["cockpit"].state == "verified"
    assert MigrationRun.objects.filter(agency_link=link, full_reread=True, reason__startswith="Rows edited").exists()

    go("action-cutover", "A cutover needs a reason", reason="")  # `required` stops a browser; the server too
    go("action-cutover", "Cutover of", reason="Verified; going live")
    run_worker("migrations")
    page = client.get(url)
    assert page.context["cockpit"].state == "cut over"
    assert not button_state(page, "action-migrate") and not button_state(page, "action-rollback")
    assert "the agency is cut over" in page.content.decode()

    plan = press(client, page, "action-switchback-plan")  # a page of its own, not a redirect
    assert b'id="switch-back-plan"' in plan.content and b"Nothing changed since the cutover" in plan.content
    pressed.add("action-switchback-plan")
    go("action-switchback", "Switch back of", reason="RevOS feature misbehaves")
    run_worker("migrations", "verification")
    assert client.get(url).context["cockpit"].state == "verified"
    go("action-cutover", "Cutover of", reason="Fixed; going live again")
    run_worker("migrations")
    go("action-complete", "move is complete", reason="A week without trouble")
    page = client.get(url)
    assert page.context["cockpit"].state == "complete" and 'id="complete-by"' in page.content.decode()
    assert not button_state(page, "action-switchback") and not button_state(page, "action-complete")

    agency_urls = url.removesuffix("change/")
    buttons = {b for f in forms_of(client.get(url)) if f.action.startswith(agency_urls) for b in f.buttons}
    assert buttons == pressed


def test_unverified_agency_cutover_is_disabled_and_a_forged_post_is_refused(demo):
    link = demo[0]
    agency_link_confirm(link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None)
    client = staff(*OPERATOR)
    url = reverse("admin:migration_jobs_agencylink_change", args=[link.pk])
    page = client.get(url)
    assert not button_state(page, "action-cutover")
    assert "Not yet: this agency has not been migrated yet." in page.content.decode()
    # A forged POST (the button enabled by hand) gets the interlock's reason, and nothing changes.
    token = client.cookies["csrftoken"].value
    cutover = reverse("admin:migration_jobs_agencylink_cutover", args=[link.pk])
    response = client.post(cutover, {"csrfmiddlewaretoken": token, "reason": "forged"}, follow=True)
    assert messages_of(response) == [
        f"Cutover refused: {link.name} cannot be cut over: this agency has not been migrated yet."
    ]
    assert not agency_flag_enabled(flag_name="unified_db", agency_link=link)


def test_progress_endpoint_reports_the_run_and_the_verification_for_the_live_page(demo):
    link = demo[0]
    agency_link_confirm(link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None)
    client = staff(*OPERATOR)
    progress = reverse("admin:migration_jobs_agencylink_progress", args=[link.pk])
    assert client.get(progress).json() == {"run": None, "verification": None}
    press(client, client.get(reverse("admin:migration_jobs_agencylink_change", args=[link.pk])), "action-migrate")
    data = client.get(progress).json()
    assert (data["status"], data["active"], data["verification"]) == ("queued", True, None)
    run_worker("migrations")
    data = client.get(progress).json()
    assert (data["status"], data["active"], data["percent"]) == ("succeeded", False, 100)
    assert data["verification"]["active"] is True and data["verification"]["verdict"] == ""
    run_worker("verification")
    assert client.get(progress).json()["verification"] == {
        "id": link.verifications.get().pk,
        "verdict": "pass",
        "active": False,
    }


def test_an_agency_shown_verified_after_a_pause_and_resume_offers_the_cutover(demo):
    link = demo[0]
    agency_link_confirm(link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None)
    client = staff(*OPERATOR)
    url = reverse("admin:migration_jobs_agencylink_change", args=[link.pk])
    press(client, client.get(url), "action-migrate")
    press(client, client.get(url), "action-pause")
    press(client, client.get(url), "action-migrate")  # Resume
    run_worker("migrations", "verification")
    page = client.get(url)
    assert page.context["cockpit"].state == "verified"
    assert button_state(page, "action-cutover"), agency_cutover_refusal(agency_link=link)


def test_the_overview_fails_a_run_whose_worker_was_killed_instead_of_showing_it_running(tenant_db, rq_queues, flags):
    demo_data_seed(agencies=1, scale=1, seed=5)
    agency_links_sync()
    link = AgencyLink.objects.get()
    link = agency_link_confirm(
        link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None
    )
    run = migration_run_request(link=link, kind=Kind.MIGRATE, actor=None)
    # A transaction left open in the unified database: the health throttle holds the run between its
    # batches, running and holding the agency's lock, until the worker is killed there.
    with psycopg.connect(database_url("unified"), application_name="a-report") as outsider:
        outsider.execute("SELECT 1")
        worker = start_worker_process(
            "migrations",
            "--worker-class",
            "rq.worker.SimpleWorker",
            MIGRATION_BATCH_SIZE="20",
            THROTTLE_MAX_TRANSACTION_SECONDS="0",
            THROTTLE_CHECK_INTERVAL_SECONDS="0.2",
            THROTTLE_MAX_SLEEP_SECONDS="0.5",
        )
        try:
            deadline = time.monotonic() + 120
            throttled = MigrationRun.objects.filter(
                pk=run.pk, status=Status.RUNNING, status_note__startswith="throttled"
            )
            while not throttled.exists():
                assert time.monotonic() < deadline, f"held running: {MigrationRun.objects.get(pk=run.pk).error}"
                time.sleep(0.1)
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
    assert MigrationRun.objects.get(pk=run.pk).status == Status.RUNNING, "nothing has looked at it yet"

    response = staff("view_agencylink").get(reverse(OVERVIEW))
    assert overview_rows(response) == {link.name: "failed"}
    assert "<progress" not in response.content.decode()
    run.refresh_from_db()
    assert run.status == Status.FAILED and "stopped without finishing" in run.error, run.error
