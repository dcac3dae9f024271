"""Bad configuration gets one clear message saying what to set, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import worker_environment

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")


def manage(*args: str, **overrides: str | None) -> subprocess.CompletedProcess:
    environment = {**worker_environment(), "ENV_FILE": ""}
    for key, value in overrides.items():
        if value is None:
            environment.pop(key, None)
        else:
            environment[key] = value
    return subprocess.run(
        [sys.executable, MANAGE, *args], env=environment, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DATABASE_URL", None, "DATABASE_URL is not set"),
        ("UNIFIED_DATABASE_URL", None, "UNIFIED_DATABASE_URL is not set"),
        ("REVOS_DATABASE_URL", "mysql://root@localhost/revos", "is not a PostgreSQL URL"),
        ("REDIS_URL", None, "REDIS_URL is not set"),
        ("REDIS_URL", "http://127.0.0.1:6379", "is not a Redis URL"),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432", "names no database"),
        ("MIGRATION_WRITERS", "-1", "MIGRATION_WRITERS=-1 is negative"),
        ("VERIFICATION_WORKERS", "-2", "VERIFICATION_WORKERS=-2 is negative"),
    ],
)
def test_missing_or_malformed_urls_say_what_to_set(variable, value, message):
    result = manage("check", **{variable: value})
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_unified_database_is_one_clear_line():
    result = manage("apply_unified_schema", UNIFIED_DATABASE_URL="postgres://postgres@127.0.0.1:1/unified")
    assert result.returncode != 0
    assert "The unified database (unified) cannot be reached: connection refused at 127.0.0.1:1." in result.stderr
    assert "Traceback" not in result.stderr


def test_the_plan_lists_every_version_as_applied(tenant_db):
    result = manage("apply_unified_schema", "--plan")
    assert result.returncode == 0, result.stderr
    assert "applied  0009_migration_bookkeeping.sql" in result.stdout
    assert "unified: 0 file(s) to apply." in result.stdout


def test_secret_key_is_required_without_debug():
    result = manage("check", DEBUG="false", SECRET_KEY=None, ALLOWED_HOSTS="example.com")
    assert result.returncode == 2
    assert "SECRET_KEY is not set" in result.stderr


def test_the_environment_wins_over_the_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("REDIS_URL=http://wrong\n")
    assert manage("check", ENV_FILE=str(env_file)).returncode == 0
    assert "is not a Redis URL" in manage("check", ENV_FILE=str(env_file), REDIS_URL=None).stderr


def test_every_log_line_is_printed_once():
    """Django's own `django` console handler used to print django.* lines a second time (DEBUG on)."""
    names = ("django.request", "django.server", "rq.worker", "migration_jobs.services.runs")
    probe = "import logging\n" + "".join(f"logging.getLogger({n!r}).warning('probe %s', {n!r})\n" for n in names)
    result = manage("shell", "-c", probe, DEBUG="true")
    assert result.returncode == 0, result.stderr
    for name in names:
        assert result.stderr.count(f"probe {name}") == 1, result.stderr
