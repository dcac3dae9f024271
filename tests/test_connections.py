"""Connections as a hosted project needs them: the session limits of each kind of work, pooler URLs
refused, TLS settings passed through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections

from migration_jobs.etl.connections import PURPOSE_KINDS, connect, work_kind
from migration_jobs.services import schema
from tests.conftest import database_url, worker_environment

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")
LIMITS = ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")


def manage(*args: str, **overrides: str) -> subprocess.CompletedProcess:
    environment = {**worker_environment(), "ENV_FILE": "", **overrides}
    return subprocess.run(
        [sys.executable, MANAGE, *args], env=environment, capture_output=True, text=True, timeout=120, check=False
    )


def shown(cursor) -> dict[str, str]:
    """The session's limits as PostgreSQL reports them, normalised through set_config's own units."""
    values = {}
    for name in LIMITS:
        cursor.execute(f"SHOW {name}")
        values[name] = cursor.fetchone()[0]
    return values


def expected(cursor, kind: str) -> dict[str, str]:
    """What the settings say for a kind, as SHOW would print it (PostgreSQL's own unit choice)."""
    values = {}
    for name, value in settings.DATABASE_SESSION_TIMEOUTS[kind].items():
        cursor.execute(f"SELECT set_config('{name}', %s, true), current_setting('{name}')", [value])
        values[name] = cursor.fetchone()[1]
    cursor.execute("ROLLBACK")
    return values


@pytest.mark.parametrize(
    ("purpose", "kind"),
    [
        ("migration", "copy"),
        ("migration-write", "copy"),
        ("verification", "verification"),
        ("cutover-fence", "fence"),
        ("switch-back-fence", "fence"),
        ("scratch", "ddl"),
        ("reconcile", "control"),
    ],
)
@pytest.mark.parametrize("alias", ["unified", "revos"])
def test_each_kind_of_work_opens_its_sessions_with_its_own_limits(tenant_db, alias, purpose, kind):
    assert work_kind(purpose) == kind
    with connect(alias, purpose=purpose) as connection, connection.cursor() as cursor:
        limits = shown(cursor)
        assert limits == expected(cursor, kind)
    # The server's defaults are not what any kind has: the limits really come from the control plane.
    assert limits["statement_timeout"] != "0"


def test_the_kinds_differ_where_the_work_does(tenant_db):
    with connect("unified", purpose="migration") as copy, connect("unified", purpose="cutover-fence") as fence:
        long, short = shown(copy.cursor()), shown(fence.cursor())
    assert (long["statement_timeout"], short["statement_timeout"]) == ("1h", "30s")
    assert (long["lock_timeout"], short["lock_timeout"]) == ("1min", "5s")


def test_every_kind_a_purpose_names_has_limits():
    assert set(PURPOSE_KINDS.values()) | {"control"} <= set(settings.DATABASE_SESSION_TIMEOUTS)


@pytest.mark.parametrize("alias", ["default", "unified", "revos"])
def test_the_admins_own_connections_have_the_control_limits(tenant_db, alias):
    with connections[alias].cursor() as cursor:
        limits = shown(cursor)
    with connect("unified", purpose="reconcile") as connection:
        assert limits == expected(connection.cursor(), "control")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("postgres://postgres.ref:pw@aws-0-eu-west-1.pooler.supabase.com:6543/postgres", "port 6543"),
        ("postgres://postgres@127.0.0.1:5432/unified?pgbouncer=true", "pgbouncer=true"),
    ],
)
def test_a_transaction_pooler_url_is_refused_in_one_line_naming_the_variable(url, why):
    result = manage("check", UNIFIED_DATABASE_URL=url)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Configuration error: UNIFIED_DATABASE_URL points at a transaction pooler")
    assert why in line
    assert "session pooler" in line and "direct connection" in line


def test_the_session_pooler_port_is_accepted():
    url = "postgres://postgres.ref:pw@aws-0-eu-west-1.pooler.supabase.com:5432/postgres"
    assert manage("check", REVOS_DATABASE_URL=url).returncode == 0


def test_sslmode_in_the_url_reaches_every_connection(tenant_db):
    """The test server has no TLS: require makes libpq refuse it, which shows the mode was passed."""
    probe = (
        "from django.conf import settings\n"
        "from migration_jobs.etl.connections import DatabaseUnreachable, connect\n"
        "print(settings.DATABASES['unified']['OPTIONS']['sslmode'])\n"
        "try:\n"
        "    connect('unified', purpose='migration').close()\n"
        "except DatabaseUnreachable as error:\n"
        "    print(error)\n"
    )
    url = database_url("unified")
    result = manage(
        "shell", "--no-imports", "-c", probe, UNIFIED_DATABASE_URL=f"{url}{'&' if '?' in url else '?'}sslmode=require"
    )
    assert result.returncode == 0, result.stderr
    mode, *refusal = result.stdout.strip().splitlines()
    assert mode == "require"
    if settings.DATABASES["unified"].get("HOST"):  # libpq uses no TLS on a unix socket, so cannot refuse there
        assert len(refusal) == 1 and "SSL" in refusal[0] and "cannot be reached" in refusal[0]


@pytest.mark.parametrize(
    ("first_line", "kind"), [("", "ddl"), (schema.NO_TRANSACTION + "\n", "copy")], ids=["in-a-transaction", "outside"]
)
def test_schema_files_run_with_the_limits_of_ddl_and_index_builds_with_a_copys(
    tenant_db, tmp_path, monkeypatch, first_line, kind
):
    """A versioned file waits for a lock only seconds; a no-transaction one (CREATE INDEX CONCURRENTLY,
    which blocks no writes) as long as a copy. The admin's connection has its own limits again after."""
    directory = tmp_path / "revos"
    directory.mkdir()
    for schema_file in schema.schema_files(database="revos"):
        (directory / schema_file.path.name).write_text(schema_file.sql)
    settings_now = ", ".join(f"current_setting('{name}') AS {name}" for name in LIMITS)
    probe = f"CREATE TABLE controlplane.limits_probe AS SELECT {settings_now};"
    (directory / "9999_limits_probe.sql").write_text(first_line + probe + "\n")
    monkeypatch.setitem(schema.SCHEMA_DIRECTORIES, "revos", directory)
    try:
        assert [f.version for f in schema.schema_apply(database="revos")] == ["9999"]
        with connections["revos"].cursor() as cursor:
            cursor.execute(f"SELECT {', '.join(LIMITS)} FROM controlplane.limits_probe")
            seen = dict(zip(LIMITS, cursor.fetchone(), strict=True))
            assert seen == expected(cursor, kind)
            assert shown(cursor) == expected(cursor, "control")
    finally:
        with connections["revos"].cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS controlplane.limits_probe")
            cursor.execute("DELETE FROM controlplane.schema_version WHERE version = '9999'")
