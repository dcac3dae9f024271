"""The embedded default: bin/stack starts a private PostgreSQL and Redis, and stops them afterwards.

These run bin/stack itself, as a subprocess, on a data folder of their own, whatever URLs the rest
of the suite uses.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import environ
import psutil
import psycopg
import pytest

pytestmark = pytest.mark.embedded

PROJECT = Path(__file__).resolve().parent.parent
STACK = PROJECT / "bin" / "stack"
URL_VARS = ("DATABASE_URL", "UNIFIED_DATABASE_URL", "REVOS_DATABASE_URL", "REDIS_URL")

# Runs inside `bin/stack run`: reports what it sees, as JSON, to the file named by argv[1].
PROBE = textwrap.dedent(
    """
    import json, os, subprocess, sys
    from pathlib import Path
    import psycopg, redis

    data = Path(os.environ["STACK_DATA_DIR"])
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        databases = [r[0] for r in conn.execute("SELECT datname FROM pg_database")]
    schema = subprocess.run(
        [sys.executable, "manage.py", "apply_unified_schema"], capture_output=True, text=True
    )
    with psycopg.connect(os.environ["UNIFIED_DATABASE_URL"]) as conn:
        has_cartridge = conn.execute("SELECT to_regclass('public.cartridge') IS NOT NULL").fetchone()[0]
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    report = {
        "urls": {var: os.environ[var] for var in os.environ if var.endswith("_URL")},
        "databases": databases,
        "schema_status": schema.returncode,
        "schema_output": schema.stdout + schema.stderr,
        "has_cartridge": has_cartridge,
        "redis_ping": client.ping(),
        "postgres_pid": int((data / "pg" / "postmaster.pid").read_text().split()[0]),
        "redis_pid": client.info("server")["process_id"],
    }
    Path(sys.argv[1]).write_text(json.dumps(report))
    """
)


def load_stack_module():
    loader = importlib.machinery.SourceFileLoader("bin_stack", str(STACK))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("bin_stack", loader))
    # dataclasses resolve their module through sys.modules.
    sys.modules.setdefault("bin_stack", module)
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """One data folder for the module, so PostgreSQL's initdb runs once."""
    return tmp_path_factory.mktemp("stack") / "var"


def stack_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in URL_VARS}
    return {**env, "STACK_DATA_DIR": str(data_dir), **extra}


def stack(*args: str, env: dict[str, str], **kwargs) -> subprocess.Popen:
    # A session of its own: no controlling terminal, so bin/stack never takes over the developer's.
    return subprocess.Popen([sys.executable, str(STACK), *args], cwd=PROJECT, env=env, start_new_session=True, **kwargs)


def leftover_processes(data_dir: Path) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info["cmdline"] or ()
        if any(str(data_dir) in part for part in cmdline) and running(proc.info["pid"]):
            found.append(f"{proc.info['pid']}: {' '.join(cmdline)}")
    return found


def running(pid: int) -> bool:
    # A stopped server stays a zombie until init reaps it; it no longer serves anything.
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_stopped(data_dir: Path, *pids: int) -> None:
    assert [pid for pid in pids if running(pid)] == []
    assert leftover_processes(data_dir) == []
    assert not (data_dir / "pg" / "postmaster.pid").exists()
    assert not (data_dir / "pg" / ".s.PGSQL.5432").exists()
    assert not (data_dir / "redis" / "redis.sock").exists()


def test_unix_socket_postgres_url_round_trips_through_django_environ():
    url = load_stack_module().postgres_url(socket_dir=Path("/srv/my project/var/pg"), database="unified")

    config = environ.Env.db_url_config(url)

    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert config["NAME"] == "unified"
    assert config["USER"] == "postgres"
    assert config["OPTIONS"] == {"host": "/srv/my project/var/pg"}


def test_run_serves_postgres_with_three_databases_and_redis_then_stops_them(data_dir, tmp_path):
    probe, report_file = tmp_path / "probe.py", tmp_path / "report.json"
    probe.write_text(PROBE)

    process = stack("--embedded", "run", "--", sys.executable, str(probe), str(report_file), env=stack_env(data_dir))
    assert process.wait(timeout=180) == 0

    report = json.loads(report_file.read_text())
    assert {"controlplane", "unified", "revos"} <= set(report["databases"])
    assert report["schema_status"] == 0, report["schema_output"]
    assert report["has_cartridge"] is True
    assert report["redis_ping"] is True
    assert report["urls"]["REDIS_URL"] == f"unix://{data_dir / 'redis' / 'redis.sock'}"
    assert_stopped(data_dir, report["postgres_pid"], report["redis_pid"])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_command_and_the_servers_and_sets_the_exit_status(data_dir, signum):
    waiting = "import time; print('ready', flush=True); time.sleep(120)"
    process = stack(
        "--embedded", "run", "--", sys.executable, "-c", waiting, env=stack_env(data_dir), stdout=subprocess.PIPE
    )
    try:
        assert process.stdout.readline() == b"ready\n"
        pids = [int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])]
        pids.append(int((data_dir / "redis" / "redis.pid").read_text()))

        process.send_signal(signum)

        assert process.wait(timeout=60) == 128 + signum
    finally:
        process.kill()
        process.stdout.close()
    assert_stopped(data_dir, *pids)


def test_servers_stop_only_when_the_last_user_leaves(data_dir):
    env = stack_env(data_dir)
    exported = subprocess.run(
        [sys.executable, str(STACK), "--embedded", "env"], cwd=PROJECT, env=env, capture_output=True, text=True
    )
    assert exported.returncode == 0, exported.stderr
    assert "export REDIS_URL=" in exported.stdout
    redis_pid = int((data_dir / "redis" / "redis.pid").read_text())

    assert stack("--embedded", "run", "--", "true", env=env).wait(timeout=60) == 0
    assert running(redis_pid), "a finished `run` stopped servers that `env` still holds"

    assert stack("stop", env=env).wait(timeout=60) == 0
    assert_stopped(data_dir, redis_pid)


def test_with_every_url_set_nothing_is_started(tmp_path):
    given = {
        "DATABASE_URL": "postgres://postgres@127.0.0.1:9/cp",
        "UNIFIED_DATABASE_URL": "postgres://postgres@127.0.0.1:9/unified",
        "REVOS_DATABASE_URL": "postgres://postgres@127.0.0.1:9/revos",
        "REDIS_URL": "redis://127.0.0.1:9/0",
    }
    data_dir = tmp_path / "var"

    exported = subprocess.run(
        [sys.executable, str(STACK), "env"],
        cwd=PROJECT,
        env=stack_env(data_dir, **given),
        capture_output=True,
        text=True,
    )

    assert exported.returncode == 0, exported.stderr
    for var, url in given.items():
        assert f"export {var}={url}\n" in exported.stdout
    assert not data_dir.exists()


def test_manage_py_in_a_second_shell_finds_the_running_servers(data_dir):
    """The README's shell commands, typed in another terminal beside `make demo`, need no exports."""
    env = stack_env(data_dir)
    assert stack("--embedded", "env", env=env, stdout=subprocess.DEVNULL).wait(timeout=120) == 0
    second_shell = {k: v for k, v in env.items() if k not in ("DEBUG", "SECRET_KEY", "ENV_FILE")}
    try:
        assert "REDIS_URL=unix://" in (data_dir / "stack.env").read_text()
        for args in (["migrate", "--no-input"], ["migration_status"]):
            result = subprocess.run(
                [sys.executable, "manage.py", *args], cwd=PROJECT, env=second_shell, capture_output=True, text=True
            )
            assert result.returncode == 0, result.stderr
        assert "No RevOS agencies known yet" in result.stdout
    finally:
        assert stack("stop", env=env).wait(timeout=60) == 0
    assert not (data_dir / "stack.env").exists()
    result = subprocess.run(
        [sys.executable, "manage.py", "migration_status"], cwd=PROJECT, env=second_shell, capture_output=True, text=True
    )
    assert "is not set" in result.stderr


def test_supabase_mode_starts_a_hosted_projects_cluster_beside_the_default_one(data_dir):
    """bin/stack --supabase: its own servers under <data>/supabase, `postgres` no superuser, GoTrue's
    auth in the tenant databases, and the control plane's schema applies there as `postgres`."""
    env = stack_env(data_dir)
    exported = subprocess.run(
        [sys.executable, str(STACK), "--supabase", "env"], cwd=PROJECT, env=env, capture_output=True, text=True
    )
    try:
        assert exported.returncode == 0, exported.stderr
        urls = dict(line.removeprefix("export ").split("=", 1) for line in exported.stdout.splitlines()[:-1])
        assert urls["SUPABASE_PROJECT_TEMPLATE"] == "supabase_project"
        assert str(data_dir / "supabase" / "pg") in urls["UNIFIED_DATABASE_URL"]
        applied = subprocess.run(
            [sys.executable, "manage.py", "apply_unified_schema"],
            cwd=PROJECT,
            env={**env, **{var: urls[var].strip("'") for var in URL_VARS}},
            capture_output=True,
            text=True,
        )
        assert applied.returncode == 0, applied.stdout + applied.stderr
        with psycopg.connect(urls["UNIFIED_DATABASE_URL"].strip("'")) as conn:
            superuser, auth_owner, users_owner, sessions = conn.execute(
                "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),"
                " (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'auth'),"
                " (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'auth.users'::regclass),"
                " to_regclass('auth.sessions') IS NOT NULL"
            ).fetchone()
        assert (superuser, auth_owner, users_owner, sessions) == (False, "supabase_admin", "supabase_auth_admin", True)
    finally:
        assert stack("--supabase", "stop", env=env).wait(timeout=60) == 0
    assert leftover_processes(data_dir / "supabase") == []
