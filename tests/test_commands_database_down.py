"""A database that does not answer: the commands print one line naming it and exit non-zero, writing nothing."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from migration_jobs.models import AgencyLink
from tests.conftest import worker_environment

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")
DEAD = "postgres://postgres@127.0.0.1:1/{}"
AGENCY = str(uuid.uuid4())

COMMANDS = {
    "sync_agencies": ([], 1),
    "link_agency": ([AGENCY, "--new"], 1),
    "migration_status": ([], 1),
    "verify_agency": ([AGENCY, "--sync"], 3),
    "rollback_agency": ([AGENCY], 1),
}
# (variable, what the line names) — migration_status reads only the control-plane database.
DOWN = [
    ("DATABASE_URL", "The control-plane database (dead_controlplane)"),
    ("UNIFIED_DATABASE_URL", "The unified database (dead_unified)"),
    ("REVOS_DATABASE_URL", "The revos database (dead_revos)"),
]


def manage(*args: str, **overrides: str) -> subprocess.CompletedProcess:
    environment = {**worker_environment(), "ENV_FILE": "", **overrides}
    return subprocess.run(
        [sys.executable, MANAGE, *args], env=environment, capture_output=True, text=True, timeout=120, check=False
    )


CASES = [
    pytest.param(command, variable, named, id=f"{command}-{variable}")
    for command in COMMANDS
    for variable, named in DOWN
    if command != "migration_status" or variable == "DATABASE_URL"
]


@pytest.mark.parametrize(("command", "variable", "named"), CASES)
def test_a_database_down_is_one_line_naming_it(tenant_db, command, variable, named):
    args, status = COMMANDS[command]
    result = manage(command, *args, **{variable: DEAD.format(named.split("(")[1].rstrip(")"))})

    assert result.returncode == status, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "cannot be reached" in lines[0], result.stderr
    assert not AgencyLink.objects.exists(), "nothing written"


def test_migration_status_carries_on_when_only_the_unified_database_is_down(tenant_db):
    result = manage("migration_status", UNIFIED_DATABASE_URL=DEAD.format("dead_unified"))
    assert result.returncode == 0, result.stderr
    assert "No RevOS agencies known yet" in result.stdout
