"""Test fixtures: real PostgreSQL and real Redis, tenant databases built from the checked-in SQL."""

from __future__ import annotations

import os

import django_rq
import pytest
from django.db import connections
from rq import SimpleWorker

from migration_jobs.services.database_marks import database_mark
from migration_jobs.services.schema import schema_apply

TENANT_ALIASES = ("unified", "revos")
# Set by `bin/stack --supabase`: the database the Supabase role mode clones a hosted project's
# unified and RevOS databases from (GoTrue's auth, the project's default privileges).
SUPABASE_PROJECT_TEMPLATE = os.environ.get("SUPABASE_PROJECT_TEMPLATE", "")


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """In the Supabase role mode the tenant test databases are clones of the hosted project's
    template, created by `postgres` (not a superuser); sql/ is then applied on top, as in production."""
    from django.conf import settings

    if SUPABASE_PROJECT_TEMPLATE:
        for alias in TENANT_ALIASES:
            settings.DATABASES[alias]["TEST"]["TEMPLATE"] = SUPABASE_PROJECT_TEMPLATE


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Build the unified and RevOS test databases from sql/, exactly as production gets them."""
    from django.conf import settings

    with django_db_blocker.unblock():
        for alias in TENANT_ALIASES:
            # pytest-django creates test databases only for the aliases the collected tests use;
            # the others still name the real databases, which the tests must never touch.
            if settings.DATABASES[alias]["NAME"] == settings.DATABASES[alias]["TEST"]["NAME"]:
                schema_apply(database=alias)
                database_mark(database=alias, purpose="test", reason="built by the test suite")
    # The suite runs with DEBUG off (pytest-django) on databases it built: demo data is allowed there.
    settings.DEMO_COMMANDS_ALLOWED = True


def sessions_left_end() -> list[int]:
    """End every other session on the tenant test databases: what a test left open (a connection a
    failed test never closed, a worker it started) would hold locks the next TRUNCATE waits on for
    ever, turning one failure into a hung suite. Returns the pids ended."""
    ended = []
    for alias in TENANT_ALIASES:
        with connections[alias].cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            )
            for (pid,) in cursor.fetchall():
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
                ended.append(pid)
    return ended


def truncate_tenant_tables() -> None:
    """Empty every tenant table (and the migration bookkeeping) in both tenant databases."""
    sessions_left_end()
    for alias in TENANT_ALIASES:
        with connections[alias].cursor() as cursor:
            # The bookkeeping first: while an agency's changes are captured, RevOS refuses TRUNCATE.
            bookkeeping = "schemaname = 'controlplane' AND tablename NOT IN ('schema_version', 'database_mark')"
            accounts = "schemaname = 'auth' AND tablename IN ('users', 'identities')"
            for condition in (bookkeeping, "schemaname = 'public'", accounts):
                cursor.execute(f"SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE {condition}")
                tables = [row[0] for row in cursor.fetchall()]
                if tables:
                    cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")


# The modules whose outcome depends on the databases' role model (who owns auth and the tables,
# what `postgres` may do, the default privileges): marked `supabase`, so that `make test` runs them
# a second time in the Supabase role mode. The rest (admin, flags, commands, configuration, and
# the data-level checks: verification, id map, duplicates) behave the same whoever owns what, and
# run once.
ROLE_MODEL_MODULES = {
    "test_auth",
    "test_capture_paths",
    "test_cutover",
    "test_migration",
    "test_models_match_sql",
    "test_production",
    "test_reconcile",
    "test_reverse",
    "test_schema",
    "test_schema_audit",
    "test_schema_diff",
    "test_schema_tenancy",
    "test_stale_locks",
    "test_supabase_mode",
    "test_switch_back",
    "test_tenant_references",
}


def pytest_collection_modifyitems(items):
    """A test that uses tenant_db talks to all three databases, outside a wrapping transaction."""
    for item in items:
        if "tenant_db" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.django_db(transaction=True, databases="__all__"))
        if item.module.__name__.rpartition(".")[2] in ROLE_MODEL_MODULES:
            item.add_marker(pytest.mark.supabase)


@pytest.fixture
def tenant_db(transactional_db, django_db_blocker):
    """Transactional access to all three databases, with empty tenant tables before and after."""
    truncate_tenant_tables()
    yield
    truncate_tenant_tables()


@pytest.fixture
def rq_queues():
    """The real RQ queues on the real Redis, emptied before and after the test."""
    names = ("migrations", "verification", "audit")

    def empty() -> None:
        for name in names:
            queue = django_rq.get_queue(name)
            queue.empty()
            registries = (
                queue.failed_job_registry,
                queue.finished_job_registry,
                queue.started_job_registry,
                queue.canceled_job_registry,
                # A retry another test's run left scheduled keeps its job id (one per agency) taken.
                queue.scheduled_job_registry,
                queue.deferred_job_registry,
            )
            for registry in registries:
                for job_id in registry.get_job_ids(cleanup=False):
                    queue.connection.delete(f"rq:job:{job_id}")
                queue.connection.delete(registry.key)

    empty()
    yield {name: django_rq.get_queue(name) for name in names}
    empty()


class BurstWorker(SimpleWorker):
    """A real RQ worker that drains its queues and stops, without the command channel.

    A worker subscribes to Redis pub/sub for stop and kill commands, read by a thread that sleeps
    in `get_message(timeout=60)`; some redis-py releases join that thread on teardown, so a burst
    could wait up to a minute after its last job. No test sends a burst worker a command."""

    def subscribe(self) -> None:
        pass

    def unsubscribe(self) -> None:
        pass


def run_worker(*queue_names: str) -> None:
    """Drain the named queues with a real RQ worker in burst mode, in this process."""
    queues = [django_rq.get_queue(name) for name in queue_names or ("migrations", "verification")]
    BurstWorker(queues, connection=queues[0].connection).work(burst=True)


def database_url(alias: str) -> str:
    """The URL of a database as the tests see it (the test database names included)."""
    from urllib.parse import quote

    from django.conf import settings

    config = settings.DATABASES[alias]
    port = f":{config['PORT']}" if config.get("PORT") else ""
    password = f":{quote(config['PASSWORD'], safe='')}" if config.get("PASSWORD") else ""
    socket_dir = config.get("OPTIONS", {}).get("host")
    query = f"?host={quote(socket_dir, safe='/')}" if socket_dir and not config.get("HOST") else ""
    host = config.get("HOST") or ("" if query else "localhost")
    return f"postgres://{config.get('USER') or 'postgres'}{password}@{host}{port}/{config['NAME']}{query}"


def worker_environment(**extra: str) -> dict[str, str]:
    """The environment for a real worker process that works on the test databases."""
    import os

    from django.conf import settings

    environment = {
        **os.environ,
        "DATABASE_URL": database_url("default"),
        "UNIFIED_DATABASE_URL": database_url("unified"),
        "REVOS_DATABASE_URL": database_url("revos"),
        "REDIS_URL": settings.REDIS_URL,
        "DEBUG": "true",
        "PYTHONUNBUFFERED": "1",
    }
    environment.update(extra)
    return environment


def start_worker_process(*queues: str, burst: bool = True, **extra: str):
    """A real `rqworker` process (its own Python, its own connections), as in production."""
    import subprocess
    import sys
    from pathlib import Path

    from django.conf import settings

    command = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "rqworker", *queues]
    if burst:
        command.append("--burst")
    return subprocess.Popen(
        command,
        env=worker_environment(**extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def agency_checksums(unified_agency_id) -> dict[str, str]:
    """A content checksum of each unified table's rows of one agency (every column, by id)."""
    checksums = {}
    with connections["unified"].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1"
        )
        for (table,) in cursor.fetchall():
            key = "id" if table == "agency" else "agency_id"
            cursor.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM \"{table}\" t "
                f"WHERE t.{key} = %s",
                [unified_agency_id],
            )
            count, digest = cursor.fetchone()
            checksums[table] = f"{count}:{digest}"
    return checksums


def childless_leads(unified_agency_id, count: int = 2) -> list:
    """Ids of the agency's unified leads nothing references, so deleting one needs nothing else."""
    with connections["unified"].cursor() as cursor:
        cursor.execute(
            "SELECT id FROM lead l WHERE agency_id = %s"
            " AND NOT EXISTS (SELECT 1 FROM dm_message d WHERE d.lead_id = l.id)"
            " AND NOT EXISTS (SELECT 1 FROM dm_delivery d WHERE d.lead_id = l.id)"
            " AND NOT EXISTS (SELECT 1 FROM email_queue d WHERE d.lead_id = l.id)"
            " AND NOT EXISTS (SELECT 1 FROM email_extraction_review d WHERE d.lead_id = l.id) ORDER BY id LIMIT %s",
            [unified_agency_id, count],
        )
        return [row[0] for row in cursor.fetchall()]
