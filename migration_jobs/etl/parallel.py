"""What several connections need to work as one: a shared snapshot, and how many of them to open.

Parallel readers must all see the database as of one instant, or a table read on one connection
and its parent read on another could disagree. As pg_dump --jobs and pgcopydb do, one connection
exports its REPEATABLE READ snapshot (`pg_export_snapshot()`) and keeps its transaction open;
every other connection starts its transaction with `SET TRANSACTION SNAPSHOT` and so reads
exactly what the first one reads, however long the work takes.
"""

from __future__ import annotations

import os

import psycopg
from django.conf import settings
from psycopg import sql

from migration_jobs.etl.connections import fetch_value

LOCAL_HOSTS = frozenset({"", "localhost", "127.0.0.1", "::1"})
REMOTE_DEFAULT = 2


def snapshot_export(connection: psycopg.Connection) -> str:
    """The id of `connection`'s transaction snapshot; valid while that transaction stays open."""
    if connection.isolation_level not in (psycopg.IsolationLevel.REPEATABLE_READ, psycopg.IsolationLevel.SERIALIZABLE):
        raise ValueError("Only a REPEATABLE READ or SERIALIZABLE transaction has one snapshot to share.")
    snapshot: str = fetch_value(connection.execute("SELECT pg_export_snapshot()"))
    return snapshot


def snapshot_join(connection: psycopg.Connection, snapshot: str) -> None:
    """Start a new REPEATABLE READ transaction on `connection` that sees exactly `snapshot`."""
    if not connection.closed:
        connection.rollback()
    connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    connection.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))


def parallelism(configured: int, *, alias: str = "unified") -> int:
    """How many connections work at once: the setting, else the database host's CPU count.

    PostgreSQL does not tell a client how many CPUs its host has, so the count is known only when
    the database runs on this machine (a local socket or a loopback address); elsewhere it is 2.
    """
    if configured > 0:
        return configured
    host = str(settings.DATABASES[alias].get("HOST") or "")
    local = host in LOCAL_HOSTS or host.startswith("/")
    return max(1, os.cpu_count() or REMOTE_DEFAULT) if local else REMOTE_DEFAULT
