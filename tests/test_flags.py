"""Feature flags: the cutover interlock, deterministic rollout, the audit trail and who may toggle."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import pytest
from django.contrib.admin import ModelAdmin, site
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.sessions.backends.db import SessionStore
from django.core.exceptions import ValidationError
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from migration_jobs.admin.flags import enable_unified_db_for_selected
from migration_jobs.models import AgencyLink, MigrationRun, VerificationRun
from migration_jobs.models.flags import AgencyFlagOverride, FeatureFlag, FlagChange
from migration_jobs.refusals import CutoverRefused
from migration_jobs.selectors.flags import agency_flag_enabled, flag_bucket, flag_evaluate
from migration_jobs.selectors.overview import agencies_overview
from migration_jobs.services.flags import (
    flag_set_for_agency,
    flag_set_global,
    flag_set_percentage,
    unified_db_switch,
)

pytestmark = pytest.mark.django_db(databases=["default", "unified"])

SEED_FLAGS = {"unified_db": True, "app_toggle": False, "shared_hgc": False}


@pytest.fixture
def flags() -> dict[str, FeatureFlag]:
    """The seed flags, all off (a transactional test elsewhere may have flushed the data migration's rows)."""
    return {
        name: FeatureFlag.objects.update_or_create(
            name=name,
            defaults={"requires_verification": gated, "enabled_globally": False, "rollout_percentage": 0},
        )[0]
        for name, gated in SEED_FLAGS.items()
    }


@pytest.fixture
def operator() -> User:
    """Staff allowed to toggle flags and cut agencies over."""
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    user.user_permissions.add(
        *_permissions("view_featureflag", "change_featureflag", "change_flag_state", "cutover_migrationrun")
    )
    return user


@pytest.fixture
def viewer() -> User:
    """Staff who may look at and edit flag descriptions, but not turn flags on or off."""
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(*_permissions("view_featureflag", "change_featureflag"))
    return user


def _permissions(*codenames: str) -> list[Permission]:
    return list(Permission.objects.filter(content_type__app_label="migration_jobs", codename__in=codenames))


def make_link(name: str = "Acme") -> AgencyLink:
    return AgencyLink.objects.create(
        revos_agency_id=uuid.uuid4(),
        unified_agency_id=uuid.uuid4(),
        name=name,
        suggested_kind=AgencyLink.Kind.NEW,
        kind=AgencyLink.Kind.NEW,
        confirmed_at=timezone.now(),
    )


def make_run(
    link: AgencyLink, *, kind="migrate", status="succeeded", minutes_ago: int = 60, reason: str = ""
) -> MigrationRun:
    finished = timezone.now() - timedelta(minutes=minutes_ago)
    return MigrationRun.objects.create(
        agency_link=link,
        revos_agency_id=link.revos_agency_id,
        unified_agency_id=link.unified_agency_id,
        kind=kind,
        status=status,
        reason=reason,
        started_at=finished - timedelta(minutes=5),
        finished_at=None if status in ("queued", "running", "paused") else finished,
    )


def make_verification(link: AgencyLink, *, verdict="pass", status="finished", minutes_ago: int = 30):
    finished = timezone.now() - timedelta(minutes=minutes_ago)
    return VerificationRun.objects.create(
        agency_link=link,
        status=status,
        verdict=verdict,
        started_at=finished - timedelta(minutes=1),
        finished_at=finished,
    )


def switch_run(link: AgencyLink, *, kind="cutover", status="running") -> MigrationRun:
    """A cutover (or switch-back) run of the agency as its worker has it at the switch step."""
    return make_run(link, kind=kind, status=status, minutes_ago=0, reason=f"{kind} for the test")


def switched_by_run(link: AgencyLink, *, kind="cutover") -> FlagChange | None:
    """What a cutover (switch-back) run's switch step does, the only way unified_db changes; then it ends."""
    run = switch_run(link, kind=kind)
    try:
        return unified_db_switch(run=run)
    finally:
        MigrationRun.objects.filter(pk=run.pk).update(status="succeeded", finished_at=timezone.now())


def enable_unified_db(flags, link) -> None:
    switched_by_run(link)


def test_the_data_migration_creates_the_seed_flags_off():
    seeded = {flag.name: flag for flag in FeatureFlag.objects.filter(name__in=SEED_FLAGS)}
    assert set(seeded) == set(SEED_FLAGS)
    assert {name: flag.requires_verification for name, flag in seeded.items()} == SEED_FLAGS
    assert not any(flag.enabled_globally or flag.rollout_percentage for flag in seeded.values())
    assert seeded["unified_db"].app_context == "revos"


# --- the cutover interlock ----------------------------------------------------------------------


def test_unified_db_is_refused_for_a_migrated_agency_never_verified(flags):
    link = make_link()
    make_run(link)
    with pytest.raises(CutoverRefused, match="never been verified"):
        enable_unified_db(flags, link)
    assert not AgencyFlagOverride.objects.exists()
    assert not FlagChange.objects.exists()
    assert agency_flag_enabled(flag_name="unified_db", agency_link=link) is False


def test_unified_db_is_refused_after_a_failed_verification(flags):
    link = make_link()
    make_run(link)
    make_verification(link, verdict="fail")
    with pytest.raises(CutoverRefused, match="verdict fail; it must have passed"):
        enable_unified_db(flags, link)


def test_unified_db_is_refused_when_the_latest_verification_is_still_running(flags):
    link = make_link()
    make_run(link)
    make_verification(link, minutes_ago=40)
    VerificationRun.objects.create(agency_link=link, status="running")
    with pytest.raises(CutoverRefused, match="is running"):
        enable_unified_db(flags, link)


def test_unified_db_is_refused_when_the_verification_is_older_than_the_last_migration(flags):
    link = make_link()
    make_run(link, minutes_ago=120)
    make_verification(link, minutes_ago=90)
    rerun = make_run(link, minutes_ago=60)
    with pytest.raises(CutoverRefused, match=rf"older than its latest migrate \(#{rerun.pk}\); verify again"):
        enable_unified_db(flags, link)


def test_a_verification_that_started_before_the_migration_ended_does_not_count(flags):
    link = make_link()
    migration = make_run(link, minutes_ago=60)
    verification = make_verification(link, minutes_ago=30)
    verification.started_at = migration.finished_at - timedelta(seconds=1)
    verification.save(update_fields=["started_at"])
    with pytest.raises(CutoverRefused, match="verify again"):
        enable_unified_db(flags, link)


def test_unified_db_is_refused_after_a_rollback_even_if_verified_since(flags):
    link = make_link()
    make_run(link, minutes_ago=120)
    make_run(link, kind="rollback", minutes_ago=60)
    make_verification(link, minutes_ago=30)
    with pytest.raises(CutoverRefused, match="rolled back"):
        enable_unified_db(flags, link)


def test_unified_db_is_refused_while_a_migration_is_paused(flags):
    link = make_link()
    make_run(link, minutes_ago=120)
    make_verification(link, minutes_ago=90)
    make_run(link, status="paused")
    with pytest.raises(CutoverRefused, match="queued, running or paused"):
        enable_unified_db(flags, link)


def test_unified_db_is_refused_for_an_agency_never_migrated(flags):
    with pytest.raises(CutoverRefused, match="not been migrated yet"):
        enable_unified_db(flags, make_link())


def test_plans_do_not_count_as_data_changes(flags):
    link = make_link()
    make_run(link, minutes_ago=120)
    make_verification(link, minutes_ago=90)
    make_run(link, kind="plan", minutes_ago=10)
    enable_unified_db(flags, link)
    assert agency_flag_enabled(flag_name="unified_db", agency_link=link)


def test_unified_db_is_allowed_after_a_passing_verification_newer_than_the_migration(flags):
    link = make_link()
    make_run(link, minutes_ago=60)
    make_verification(link, minutes_ago=30)
    enable_unified_db(flags, link)
    assert AgencyFlagOverride.objects.get(flag=flags["unified_db"], agency_link=link).enabled
    assert agency_flag_enabled(flag_name="unified_db", agency_link=link)


def test_turning_unified_db_off_is_never_gated(flags):
    link = make_link()
    make_run(link, minutes_ago=60)
    make_verification(link, minutes_ago=30)
    enable_unified_db(flags, link)
    make_run(link, kind="rollback", minutes_ago=5)  # the verification is stale now
    switched_by_run(link, kind="switchback")
    assert not agency_flag_enabled(flag_name="unified_db", agency_link=link)


# --- unified_db: only the cutover and switch-back runs switch it -----------------------------------


def test_unified_db_set_by_hand_for_one_agency_is_refused_every_way_and_sends_staff_to_the_runs(flags):
    ready = make_link("Ready Co")
    make_run(ready, minutes_ago=60)
    make_verification(ready, minutes_ago=30)
    cut_over = make_link("Cut Over Co")
    make_run(cut_over, minutes_ago=60)
    make_verification(cut_over, minutes_ago=30)
    enable_unified_db(flags, cut_over)
    changes = FlagChange.objects.count()
    # On for a verified agency, off or back to the default for a cut-over one: each skips the fence.
    for link, enabled in ((ready, True), (cut_over, False), (cut_over, None)):
        with pytest.raises(CutoverRefused) as refused:
            flag_set_for_agency(flag=flags["unified_db"], agency_link=link, enabled=enabled, reason="r", actor=None)
        assert str(refused.value) == (
            "unified_db is switched only by a cutover or switch-back run, which stops writes on the side being left"
            f" before it switches, so none is lost; use “Cut over” or “Switch back” on {link}'s page under RevOS"
            " agencies."
        )
    assert FlagChange.objects.count() == changes
    assert not agency_flag_enabled(flag_name="unified_db", agency_link=ready)
    assert agency_flag_enabled(flag_name="unified_db", agency_link=cut_over)


def test_only_a_running_cutover_or_switch_back_run_switches_unified_db(flags):
    link = make_link()
    make_run(link, minutes_ago=60)
    make_verification(link, minutes_ago=30)
    for kind, status in (
        ("cutover", "succeeded"),  # over: the reconcile may have undone what it did
        ("cutover", "queued"),  # not fenced yet
        ("migrate", "running"),
        ("rollback", "running"),
    ):
        run = switch_run(link, kind=kind, status=status)
        with pytest.raises(CutoverRefused, match=rf"only a running cutover or switch-back run .* #{run.pk} is not one"):
            unified_db_switch(run=run)
        run.delete()
    assert not FlagChange.objects.exists()
    assert switched_by_run(link).new_value == "on"
    assert switched_by_run(link, kind="switchback").new_value == "off"
    trail = FlagChange.objects.order_by("id").values_list("new_value", "reason", "agency_link")
    assert list(trail) == [("on", "cutover for the test", link.pk), ("off", "switchback for the test", link.pk)]


def test_a_cutover_run_on_an_agency_not_verified_since_its_migration_is_still_refused(flags):
    link = make_link()
    make_run(link, minutes_ago=60)
    with pytest.raises(CutoverRefused, match="never been verified"):
        enable_unified_db(flags, link)


def test_unified_db_has_no_global_default_and_one_set_behind_the_services_switches_nobody(flags):
    for change in (
        lambda: flag_set_global(flag=flags["unified_db"], enabled=True, reason="all at once", actor=None),
        lambda: flag_set_global(flag=flags["unified_db"], enabled=False, reason="all off", actor=None),
        lambda: flag_set_percentage(flag=flags["unified_db"], percentage=10, reason="some", actor=None),
    ):
        with pytest.raises(CutoverRefused, match=r"no global switch or rollout percentage .*Cut over selected"):
            change()
    assert not FlagChange.objects.exists()
    verified, cut_over = make_link("Verified Co"), make_link("Cut Over Co")
    for link in (verified, cut_over):
        make_run(link, minutes_ago=60)
        make_verification(link, minutes_ago=30)
    enable_unified_db(flags, cut_over)
    # SQL, an old row: the apps must still see unified_db only where a cutover turned it on.
    FeatureFlag.objects.filter(name="unified_db").update(enabled_globally=True, rollout_percentage=100)
    assert not agency_flag_enabled(flag_name="unified_db", agency_link=verified)
    assert agency_flag_enabled(flag_name="unified_db", agency_link=cut_over)
    assert {row.link.name: row.cut_over for row in agencies_overview().rows} == {
        "Verified Co": False,
        "Cut Over Co": True,
    }


def test_flags_without_the_verification_gate_are_not_gated(flags):
    link = make_link()  # never migrated nor verified
    flag_set_for_agency(flag=flags["shared_hgc"], agency_link=link, enabled=True, reason="pilot", actor=None)
    assert agency_flag_enabled(flag_name="shared_hgc", agency_link=link)


def test_a_gated_flag_cannot_be_turned_on_globally_or_by_percentage(flags):
    gated = FeatureFlag.objects.create(name="gated_toggle", requires_verification=True)
    with pytest.raises(CutoverRefused, match="agency by agency"):
        flag_set_global(flag=gated, enabled=True, reason="all at once", actor=None)
    with pytest.raises(CutoverRefused, match="percentage rollout would skip"):
        flag_set_percentage(flag=gated, percentage=10, reason="some", actor=None)
    gated.refresh_from_db()
    assert not gated.enabled_globally and gated.rollout_percentage == 0


def test_a_change_without_a_reason_is_refused(flags):
    for reason in ("", "   "):
        with pytest.raises(ValidationError, match="reason is required"):
            flag_set_global(flag=flags["shared_hgc"], enabled=True, reason=reason, actor=None)
    assert not FeatureFlag.objects.get(name="shared_hgc").enabled_globally
    assert not FlagChange.objects.exists()


# --- evaluation and the deterministic rollout ---------------------------------------------------


def test_override_beats_global_which_beats_percentage(flags):
    link = make_link()
    flag = flags["shared_hgc"]
    flag_set_global(flag=flag, enabled=True, reason="everyone", actor=None)
    assert agency_flag_enabled(flag_name="shared_hgc", agency_link=link)
    flag_set_for_agency(flag=flag, agency_link=link, enabled=False, reason="opted out", actor=None)
    assert not agency_flag_enabled(flag_name="shared_hgc", agency_link=link)
    flag_set_for_agency(flag=flag, agency_link=link, enabled=None, reason="back to default", actor=None)
    assert agency_flag_enabled(flag_name="shared_hgc", agency_link=link)


def test_percentage_rollout_is_deterministic_monotonic_and_about_the_right_share():
    rng = random.Random(5)
    agencies = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(1000)]
    flag = FeatureFlag(name="shared_hgc")

    def enabled_at(percentage: int) -> set[uuid.UUID]:
        flag.rollout_percentage = percentage
        return {agency for agency in agencies if flag_evaluate(flag=flag, agency_id=agency, override=None)}

    assert [flag_bucket(flag_name="shared_hgc", agency_id=a) for a in agencies] == [
        flag_bucket(flag_name="shared_hgc", agency_id=a) for a in agencies
    ]
    rollout = {percentage: enabled_at(percentage) for percentage in range(0, 101, 10)}
    assert rollout[0] == set() and rollout[100] == set(agencies)
    for smaller, larger in zip(range(0, 100, 10), range(10, 101, 10), strict=True):
        assert rollout[smaller] <= rollout[larger], f"{smaller}% is not inside {larger}%"
    for percentage, chosen in rollout.items():
        assert abs(len(chosen) - 10 * percentage) <= 50, f"{len(chosen)} of 1000 at {percentage}%"
    assert enabled_at(30) == rollout[30], "same answer the second time"


def test_each_flag_rolls_out_to_its_own_agencies():
    rng = random.Random(7)
    agencies = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(200)]
    hgc = [flag_bucket(flag_name="shared_hgc", agency_id=a) for a in agencies]
    toggle = [flag_bucket(flag_name="app_toggle", agency_id=a) for a in agencies]
    assert hgc != toggle


def test_a_linked_agency_is_bucketed_by_its_unified_id(flags):
    link = make_link()
    bucket = flag_bucket(flag_name="app_toggle", agency_id=link.unified_agency_id)
    flag_set_percentage(flag=flags["app_toggle"], percentage=bucket + 1, reason="up to it", actor=None)
    assert agency_flag_enabled(flag_name="app_toggle", agency_link=link)
    if bucket:
        flag_set_percentage(flag=flags["app_toggle"], percentage=bucket, reason="just below", actor=None)
        assert not agency_flag_enabled(flag_name="app_toggle", agency_link=link)


# --- the audit trail ----------------------------------------------------------------------------


def test_every_change_is_in_the_audit_trail_and_the_admin_log(flags, operator):
    link = make_link("Beta Agency")
    flag = flags["shared_hgc"]
    flag_set_global(flag=flag, enabled=True, reason="launch day", actor=operator)
    flag_set_percentage(flag=flag, percentage=25, reason="quarter of agencies", actor=operator)
    flag_set_for_agency(flag=flag, agency_link=link, enabled=False, reason="customer asked", actor=operator)
    assert flag_set_global(flag=flag, enabled=True, reason="again", actor=operator) is None  # no-op, no row

    trail = list(
        FlagChange.objects.order_by("id").values_list("field", "agency_link", "old_value", "new_value", "reason")
    )
    assert trail == [
        ("global", None, "off", "on", "launch day"),
        ("percentage", None, "0%", "25%", "quarter of agencies"),
        ("override", link.pk, "default", "off", "customer asked"),
    ]
    assert set(FlagChange.objects.values_list("actor", flat=True)) == {operator.pk}
    assert all(change.created_at for change in FlagChange.objects.all())
    log = LogEntry.objects.filter(object_id=str(flag.pk), user=operator).order_by("id")
    assert [entry.change_message for entry in log] == [
        "shared_hgc global switch: off → on. Reason: launch day",
        "shared_hgc rollout percentage: 0% → 25%. Reason: quarter of agencies",
        "shared_hgc agency override for Beta Agency: default → off. Reason: customer asked",
    ]


def test_the_audit_trail_is_shown_in_the_admin(client, flags, operator):
    flag_set_global(flag=flags["app_toggle"], enabled=True, reason="header toggle ready", actor=operator)
    client.force_login(User.objects.create_superuser("root", password="pw"))
    change_page = client.get(reverse("admin:migration_jobs_featureflag_change", args=[flags["app_toggle"].pk]))
    assert change_page.status_code == 200
    assert "header toggle ready" in change_page.text and "On, off &amp; agency overrides" in change_page.text
    changelist = client.get(reverse("admin:migration_jobs_flagchange_changelist"))
    assert changelist.status_code == 200 and "header toggle ready" in changelist.text


# --- the admin: permission, forms with reasons, the bulk action -----------------------------------


def state_url(flag: FeatureFlag) -> str:
    return reverse("admin:migration_jobs_featureflag_state", args=[flag.pk])


def test_staff_without_the_permission_cannot_toggle(client, flags, viewer):
    link = make_link()
    client.force_login(viewer)
    page = client.get(state_url(flags["shared_hgc"]))
    assert page.status_code == 200 and "can see this flag" in page.text and 'id="global-form"' not in page.text
    posts = [
        {"form": "global", "enabled_globally": "on", "rollout_percentage": "50", "reason": "sneaky"},
        {"form": "override", "agency_link": link.pk, "state": "on", "reason": "sneaky"},
    ]
    for data in posts:
        assert client.post(state_url(flags["shared_hgc"]), data).status_code == 403
    flags["shared_hgc"].refresh_from_db()
    assert not flags["shared_hgc"].enabled_globally and flags["shared_hgc"].rollout_percentage == 0
    assert not AgencyFlagOverride.objects.exists() and not FlagChange.objects.exists()


def test_staff_with_the_permission_toggle_from_the_state_page(client, flags, operator):
    client.force_login(operator)
    data = {"form": "global", "enabled_globally": "on", "rollout_percentage": "40", "reason": "go"}
    response = client.post(state_url(flags["shared_hgc"]), data, follow=True)
    assert response.status_code == 200 and "Changed: shared_hgc global switch: off → on." in response.text
    flags["shared_hgc"].refresh_from_db()
    assert flags["shared_hgc"].enabled_globally and flags["shared_hgc"].rollout_percentage == 40
    assert FlagChange.objects.filter(actor=operator).count() == 2


def test_the_state_forms_require_a_reason(client, flags, operator):
    link = make_link()
    client.force_login(operator)
    for data in (
        {"form": "global", "enabled_globally": "on", "rollout_percentage": "0", "reason": ""},
        {"form": "override", "agency_link": link.pk, "state": "on", "reason": "  "},
    ):
        response = client.post(state_url(flags["shared_hgc"]), data)
        assert response.status_code == 200 and "This field is required." in response.text
    assert not FlagChange.objects.exists()


def test_the_unified_db_page_sends_staff_to_the_runs_and_refuses_a_forged_post(client, flags, operator):
    verified, cut_over = make_link("Verified Co"), make_link("Cut Over Co")
    for link in (verified, cut_over):
        make_run(link, minutes_ago=60)
        make_verification(link, minutes_ago=30)
    enable_unified_db(flags, cut_over)
    changes = FlagChange.objects.count()
    client.force_login(operator)
    url = state_url(flags["unified_db"])
    page = client.get(url).text
    assert 'id="run-only"' in page and "“Cut over” or “Switch back”" in page
    assert 'id="override-form"' not in page and 'id="global-form"' not in page
    for data, name in (
        ({"form": "override", "agency_link": verified.pk, "state": "on", "reason": "go"}, verified.name),
        ({"form": "override", "agency_link": cut_over.pk, "state": "off", "reason": "back"}, cut_over.name),
        ({"form": "override", "agency_link": cut_over.pk, "state": "default", "reason": "back"}, cut_over.name),
    ):
        refused = client.post(url, data)
        assert refused.status_code == 200
        assert "Refused: unified_db is switched only by a cutover or switch-back run" in refused.text
        assert f"on {name}&#x27;s page under RevOS agencies" in refused.text
    refused = client.post(url, {"form": "global", "enabled_globally": "on", "rollout_percentage": "0", "reason": "x"})
    assert refused.status_code == 200 and "Refused: unified_db has no global switch" in refused.text
    assert FlagChange.objects.count() == changes
    assert not agency_flag_enabled(flag_name="unified_db", agency_link=verified)
    assert agency_flag_enabled(flag_name="unified_db", agency_link=cut_over)


def test_the_unified_db_flag_cannot_be_deleted_alone_or_in_bulk(client, flags):
    client.force_login(User.objects.create_superuser("root", password="pw"))
    flag = flags["unified_db"]
    refused = client.get(reverse("admin:migration_jobs_featureflag_delete", args=[flag.pk]), follow=True)
    said = [str(m) for m in refused.context["messages"]]
    assert len(said) == 1 and said[0].startswith("unified_db cannot be deleted:"), said
    changelist = reverse("admin:migration_jobs_featureflag_changelist")
    bulk = {"action": "delete_selected", "_selected_action": [flag.pk, flags["app_toggle"].pk], "post": "yes"}
    refused = client.post(changelist, bulk, follow=True)
    assert [str(m) for m in refused.context["messages"]] == said
    assert FeatureFlag.objects.filter(name__in=["unified_db", "app_toggle"]).count() == 2
    # The other flags can still be deleted in bulk.
    client.post(changelist, {**bulk, "_selected_action": [flags["app_toggle"].pk]})
    assert not FeatureFlag.objects.filter(name="app_toggle").exists()


def _action_request(user: User, data: dict):
    request = RequestFactory().post("/admin/migration_jobs/agencylink/", data)
    request.user, request.session = user, SessionStore()
    request._messages = FallbackStorage(request)
    return request


# The cutover request reads RevOS's fence state: the RevOS test database, not the real one.
@pytest.mark.django_db(databases=["default", "unified", "revos"])
def test_bulk_cutover_reports_which_agencies_were_queued_and_why_others_were_not(flags, operator, rq_queues):
    ready, stale = make_link("Ready Agency"), make_link("Stale Agency")
    make_run(ready, minutes_ago=60)
    make_verification(ready, minutes_ago=30)
    make_verification(stale, minutes_ago=90)
    make_run(stale, minutes_ago=60)
    links = AgencyLink.objects.filter(pk__in=[ready.pk, stale.pk])
    modeladmin = ModelAdmin(AgencyLink, site)

    ask = enable_unified_db_for_selected(modeladmin, _action_request(operator, {}), links)
    ask.render()
    assert "Ready Agency" in ask.text and 'name="reason"' in ask.text and not FlagChange.objects.exists()

    request = _action_request(operator, {"apply": "yes", "reason": "wave 1"})
    assert enable_unified_db_for_selected(modeladmin, request, links) is None
    reported = [str(message) for message in request._messages]
    assert reported == [
        "Cutover queued for 1 (they run within the concurrency limit): Ready Agency.",
        f"Refused: Stale Agency cannot be cut over: its latest verification "
        f"(#{stale.verifications.get().pk}) is older than its latest migrate (#{stale.runs.get().pk}); verify again.",
    ]
    # The flag changes when the queued cutover run switches, after fencing RevOS and catching up.
    cutover = ready.runs.get(kind=MigrationRun.Kind.CUTOVER)
    assert cutover.status == MigrationRun.Status.QUEUED and cutover.reason == "wave 1"
    assert not stale.runs.filter(kind=MigrationRun.Kind.CUTOVER).exists()
    assert not FlagChange.objects.exists()


def test_bulk_enable_is_refused_to_staff_without_the_permission(flags, viewer):
    link = make_link()
    make_run(link, minutes_ago=60)
    make_verification(link, minutes_ago=30)
    request = _action_request(viewer, {"apply": "yes", "reason": "wave 1"})
    enable_unified_db_for_selected(ModelAdmin(AgencyLink, site), request, AgencyLink.objects.all())
    assert [str(m) for m in request._messages] == ["You may not cut agencies over."]
    assert not agency_flag_enabled(flag_name="unified_db", agency_link=link)
