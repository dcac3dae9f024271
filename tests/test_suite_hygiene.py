"""One failure stays one failure: what a test leaves open cannot hang the tests after it."""

from __future__ import annotations

import psycopg

from tests.conftest import database_url, truncate_tenant_tables


def test_a_session_left_idle_in_transaction_is_ended_before_the_next_truncate(tenant_db):
    # As a failed test would leave it: a transaction holding a lock TRUNCATE must wait for.
    left = psycopg.connect(database_url("revos"), application_name="left-by-a-failed-test")
    left.execute("SELECT count(*) FROM leads").fetchone()
    pid = left.info.backend_pid
    try:
        truncate_tenant_tables()  # would wait for ever on the lock without ending the session
        with psycopg.connect(database_url("revos"), autocommit=True) as probe:
            assert probe.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone() == (0,)
    finally:
        left.close()
