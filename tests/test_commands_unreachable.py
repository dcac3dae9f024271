"""Every project command, with each database and Redis down in turn: one line naming what is down, no traceback.

The commands are found by walking Django's command registry, so a command added later is covered
without anyone listing it. Each runs as its own process (as an operator runs it) with one server's
URL pointing at a closed port.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from importlib import import_module
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command, get_commands, load_command_class

from migration_jobs.management.base import ProjectCommand
from tests.conftest import truncate_tenant_tables, worker_environment

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")
AGENCY = str(uuid.uuid4())
# What is down: the variable that points it at a closed port, the URL, and how the line must name it.
DOWN = {
    "default": ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/dead_controlplane", "The control-plane database"),
    "unified": ("UNIFIED_DATABASE_URL", "postgres://postgres@127.0.0.1:1/dead_unified", "The unified database"),
    "revos": ("REVOS_DATABASE_URL", "postgres://postgres@127.0.0.1:1/dead_revos", "The revos database"),
    "redis": ("REDIS_URL", "redis://127.0.0.1:1/0", "Redis (the job queue)"),
}
EVERYTHING_UP = "nothing"


def project_app(app: str) -> bool:
    """True for an app whose code is this project's, not Django's or an installed package's."""
    path = Path(import_module(app).__file__).resolve()
    return path.is_relative_to(Path(settings.BASE_DIR).resolve()) and "site-packages" not in path.parts


# The project's own commands only. Django's (migrate, shell, ...) and django_rq's (rqworker, rqstats,
# rqscheduler, ...) word their own errors and are not the operator interface this project promises;
# the project cannot change their output short of wrapping every third-party command.
COMMANDS = sorted((name, app) for name, app in get_commands().items() if project_app(app))


def argument_value(action: argparse.Action, down: str) -> list[str]:
    """A value the option accepts: none for a flag, the down database when it is a choice, else an id."""
    if action.nargs == 0:
        return []
    if action.choices:
        return [down if down in action.choices else sorted(action.choices)[0]]
    return [AGENCY]


def arguments(name: str, app: str, down: str) -> list[str]:
    """The fewest arguments the command's parser accepts.

    A UUID for each required positional (an agency id), every required option, the first option of a
    required group, --reason wherever it exists (switch_back_agency checks it in handle(), not in its
    parser, because its --plan needs none), and --once wherever it exists (a long-running command's
    single pass: reconcile).
    """
    parser = load_command_class(app, name).create_parser("manage.py", name)
    grouped = {action for group in parser._mutually_exclusive_groups for action in group._group_actions}
    args: list[str] = []
    for action in parser._actions:
        if action in grouped:
            continue
        if not action.option_strings and action.nargs not in ("?", "*"):
            args.append(AGENCY)
        elif action.option_strings and (action.required or {"--reason", "--once"} & set(action.option_strings)):
            args += [action.option_strings[0], *argument_value(action, down)]
    for group in parser._mutually_exclusive_groups:
        if group.required:
            action = group._group_actions[0]
            args += [action.option_strings[0], *argument_value(action, down)]
    return args


def manage(name: str, args: list[str], down: str) -> subprocess.CompletedProcess:
    overrides = {DOWN[down][0]: DOWN[down][1]} if down in DOWN else {}
    environment = {**worker_environment(), "ENV_FILE": "", "DB_CONNECT_TIMEOUT": "2", **overrides}
    return subprocess.run(
        [sys.executable, MANAGE, name, *args], env=environment, capture_output=True, text=True, timeout=120, check=False
    )


def names_its_server(down: str, result: subprocess.CompletedProcess) -> bool:
    return DOWN[down][2] in result.stderr


def command_outcomes(command: tuple[str, str]) -> dict:
    """One command run with each server down, then, if a run stopped without naming its server, with
    everything up (to show that it stops there anyway).

    One command's runs share the test databases (seed_demo's first successful run makes the later
    ones find its data), so they run one after another, always in this order; commands run in parallel.
    """
    name, app = command
    outcomes = {}
    for down in DOWN:
        args = arguments(name, app, down)
        outcomes[name, down] = (args, manage(name, args, down))
    if any(result.returncode and not names_its_server(down, result) for (_, down), (_, result) in outcomes.items()):
        args = arguments(name, app, EVERYTHING_UP)
        outcomes[name, EVERYTHING_UP] = (args, manage(name, args, EVERYTHING_UP))
    return outcomes


@pytest.fixture(scope="module")
def outcomes(django_db_setup, django_db_blocker) -> dict:
    """Every (command, server down) run, on the test databases, emptied before and after."""
    with django_db_blocker.unblock():
        truncate_tenant_tables()
    try:
        # Twice the cores: a run spends part of its time waiting on PostgreSQL (seeding, a scratch database).
        with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 2)) as pool:
            return {key: value for result in pool.map(command_outcomes, COMMANDS) for key, value in result.items()}
    finally:
        with django_db_blocker.unblock():
            truncate_tenant_tables()
            call_command("flush", database="default", interactive=False, verbosity=0)


def test_the_walk_finds_the_project_commands_and_no_third_party_one():
    names = {name for name, _ in COMMANDS}
    assert {"migrate_agency", "complete_agency", "sync_agencies", "seed_demo"} <= names
    assert not names & {"rqworker", "migrate", "shell"}


@pytest.mark.parametrize(("name", "app"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_project_command_derives_from_the_base_that_words_an_unreachable_server(name, app):
    assert isinstance(load_command_class(app, name), ProjectCommand)


@pytest.mark.parametrize(
    ("name", "down"),
    [(name, down) for name, _ in COMMANDS for down in DOWN],
    ids=[f"{name}-{down}-down" for name, _ in COMMANDS for down in DOWN],
)
def test_a_server_down_is_one_line_naming_it_never_a_traceback(outcomes, name, down):
    """A command that does not need the server may succeed; one that stops says so in one sentence,
    naming the server when that is why it stopped (else it stops as it does with everything up)."""
    args, result = outcomes[name, down]
    shown = f"manage.py {name} {' '.join(args)} with {down} down -> {result.returncode}\n{result.stderr}"
    assert "Traceback" not in result.stderr, shown
    if result.returncode == 0:
        return
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("CommandError: ") and lines[0].endswith("."), shown
    if names_its_server(down, result):
        assert "cannot be reached: connection refused at 127.0.0.1:1." in lines[0], shown
    else:  # stopped before it needed the server: exactly as with everything up
        up_args, up = outcomes[name, EVERYTHING_UP]
        assert (args, result.returncode, result.stderr) == (up_args, up.returncode, up.stderr), shown


def test_migration_status_carries_on_when_only_the_unified_database_is_down(outcomes):
    """It reads the control-plane database only. (What it lists depends on what seed_demo and sync_agencies,
    run beside it, have written by then.)"""
    _args, result = outcomes["migration_status", "unified"]
    assert result.returncode == 0 and not result.stderr, result.stderr
    assert "No RevOS agencies known yet" in result.stdout or " -> " in result.stdout or "not linked" in result.stdout
