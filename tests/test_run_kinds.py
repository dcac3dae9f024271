"""A run kind is one unit: its declaration in the registry is all the control plane knows of it.

A throwaway kind declared here, and nowhere else, is requested, queued, executed by a real worker
and shown on the cockpit; the kinds' members are named only in the registry's kind modules.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import uuid
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from django.test import Client
from django.urls import reverse

import migration_jobs
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.run_kinds import RunKind, run_kind_get, run_kind_register, run_kinds
from migration_jobs.services.runs import migration_run_request
from tests.conftest import run_worker

PACKAGE = Path(migration_jobs.__file__).parent
MEMBERS = frozenset(MigrationRun.Kind.names)


# --- a throwaway kind, declared in this module only -------------------------------------------


def _probe(run: MigrationRun, mark_running) -> tuple[dict, str]:
    mark_running()
    return {"probed": run.agency_link.name}, f"Probed {run.agency_link.name}."


PROBE = run_kind_register(RunKind(value="probe", label="Probe", work=_probe))


def link_named(name: str) -> AgencyLink:
    return AgencyLink.objects.create(revos_agency_id=uuid.uuid4(), name=name, suggested_kind="new")


def staff(*codenames: str) -> Client:
    user = User.objects.create_user(f"staff{User.objects.count()}", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=("view_agencylink", "change_agencylink", *codenames))
    )
    client = Client()
    client.force_login(user)
    return client


def test_a_kind_declared_in_a_test_module_is_requested_executed_and_shown_on_the_cockpit(tenant_db, rq_queues):
    link = link_named("Probe Agency")
    run = migration_run_request(link=link, kind=PROBE.value, actor=None)
    assert run.status == MigrationRun.Status.QUEUED and rq_queues["migrations"].count == 1

    run_worker("migrations")  # the RQ job: services/runs.py executes the kind's work
    run.refresh_from_db()
    assert (run.status, run.report, run.status_note) == (
        MigrationRun.Status.SUCCEEDED,
        {"probed": "Probe Agency"},
        "Probed Probe Agency.",
    )
    assert not link.verifications.exists(), "the kind declares no verification after it"

    client = staff()
    page = client.get(reverse("admin:migration_jobs_agencylink_change", args=[link.pk])).content.decode()
    assert f"#{run.pk}</a>" in page and "Probed Probe Agency." in page
    listing = client.get(reverse("admin:migration_jobs_agencylink_changelist")).content.decode()
    assert "Probe: Succeeded" in listing


# --- the kinds' members are named only where the kinds are declared ---------------------------


def kind_member_uses(source: str) -> list[int]:
    """The lines that name a member of MigrationRun.Kind (`Kind.CUTOVER`, `MigrationRun.Kind.PLAN`)
    or call the enum (`Kind(value)`); AgencyLink.Kind and BulkWindow.Kind are other enums."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in MEMBERS:
            holder = node.value
            if (isinstance(holder, ast.Name) and holder.id == "Kind") or (
                isinstance(holder, ast.Attribute)
                and holder.attr == "Kind"
                and ast.unparse(holder.value) == "MigrationRun"
            ):
                lines.append(node.lineno)
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("Kind", "MigrationRun.Kind"):
            lines.append(node.lineno)
    return lines


def test_the_kind_check_sees_members_and_enum_calls_but_not_the_agency_links_kind():
    source = (
        "a = MigrationRun.Kind.CUTOVER\n"
        "b = Kind.PLAN\n"
        "c = MigrationRun.Kind(value).label\n"
        "d = AgencyLink.Kind.EXISTING\n"
        "f = BulkWindow.Kind.MIGRATE\n"
        "e = run.kind == 'migrate'\n"
    )
    assert kind_member_uses(source) == [1, 2, 3]


def test_run_kind_members_are_named_only_in_the_modules_that_declare_the_kinds():
    declaring = {Path(inspect.getsourcefile(kind.work)) for kind in run_kinds() if kind is not PROBE}
    assert {path.stem for path in declaring} == {"migrate", "plan", "rollback", "cutover", "switch_back", "complete"}
    named = {
        path.relative_to(PACKAGE.parent).as_posix(): lines
        for path in PACKAGE.rglob("*.py")
        if "migrations" not in path.parts and (lines := kind_member_uses(path.read_text()))
    }
    assert {path.stem for path in declaring} <= {Path(name).stem for name in named}, "the check reads them"
    outside = {name: lines for name, lines in named.items() if PACKAGE.parent / name not in declaring}
    assert outside == {}


def test_every_kind_of_the_model_is_registered_and_every_registered_kind_loads():
    assert {kind.value for kind in run_kinds()} >= set(MigrationRun.Kind.values)
    for value in MigrationRun.Kind.values:
        assert run_kind_get(value).label == MigrationRun.Kind(value).label
    with pytest.raises(LookupError, match="no run kind 'nothing' is registered"):
        run_kind_get("nothing")


# --- the Cut over button checks cutover_migrationrun -------------------------------------------


@pytest.mark.django_db(databases=["default", "unified"])  # the agency page it returns to reads the unified one
def test_the_cut_over_button_checks_the_cutover_permission_not_the_flags_one():
    link = link_named("Gated Agency")
    url = reverse("admin:migration_jobs_agencylink_cutover", args=[link.pk])
    response = staff("change_flag_state").post(url, {"reason": "move it"}, follow=True)
    assert [str(m) for m in response.context["messages"]] == ["You may not cut agencies over."]
    response = staff("cutover_migrationrun").post(url, {"reason": "move it"}, follow=True)
    assert [str(m) for m in response.context["messages"]] == [
        "Cutover refused: Gated Agency cannot be cut over: this agency has not been migrated yet."
    ]
    assert not link.runs.exists()


@pytest.mark.django_db
def test_whoever_could_cut_over_before_keeps_it_after_the_permission_migration():
    grant = importlib.import_module("migration_jobs.migrations.0017_cutover_permission")
    flag_state = Permission.objects.get(codename="change_flag_state")
    cutover = Permission.objects.get(codename="cutover_migrationrun")
    user = User.objects.create_user("flagger", password="pw", is_staff=True)
    user.user_permissions.add(flag_state)
    group = Group.objects.create(name="flaggers")
    group.permissions.add(flag_state)
    bystander = User.objects.create_user("bystander", password="pw", is_staff=True)
    with connection.schema_editor() as editor:
        grant.grant_cutover_to_flag_changers(apps, editor)
    assert cutover in user.user_permissions.all() and cutover in group.permissions.all()
    assert not bystander.user_permissions.exists()
