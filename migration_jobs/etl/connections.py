"""Plain psycopg connections for the engine: COPY, advisory locks and commits per batch."""

from __future__ import annotations

import os
import re
from typing import Any, Protocol

import psycopg
from django.conf import settings
from rq import get_current_job

DJANGO_ONLY_OPTIONS = frozenset({"isolation_level", "assume_role", "server_side_binding", "pool", "cursor_factory"})


# PostgreSQL keeps a backend (and the advisory lock it holds) until it notices the client is gone;
# a host that vanishes without closing its sockets goes unnoticed for the kernel's keepalive time
# (two hours by default). These make both ends probe an idle connection after 30 s and give up
# after 3 unanswered probes 10 s apart. libpq and PostgreSQL ignore them on unix sockets.
KEEPALIVE_PARAMETERS = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
SERVER_KEEPALIVE_OPTIONS = "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3"
# How messages name each database alias.
DATABASE_LABELS = {"default": "control-plane"}
# The application_name tag of a connection opened inside an RQ job; the rest of it is `controlplane-<purpose>`.
WORKER_TAG = " w="


class Cursor(Protocol):
    """A DB-API cursor, psycopg's or Django's, as the statements shared by both use it.

    Rows are `Any`: their shape is the SQL's, which the type checker does not read.
    """

    def execute(self, query: Any, params: Any = ..., /) -> object: ...

    def executemany(self, query: Any, params_seq: Any, /) -> object: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    @property
    def rowcount(self) -> int: ...


def fetch_row(cursor: Cursor) -> Any:
    """The one row a statement always returns (an aggregate, a function's result, `RETURNING` of a sure write).

    psycopg types `fetchone()` as possibly None; here the SQL rules that out.
    """
    return cursor.fetchone()


def fetch_value(cursor: Cursor) -> Any:
    """The first column of the one row a statement always returns (count(*), EXISTS, a function's result)."""
    return cursor.fetchone()[0]


def application_name(purpose: str) -> str:
    """`controlplane-<purpose>`, plus who holds it: the RQ worker's name inside a job, else the process.

    A run's lock holder is found by this name in pg_stat_activity and its worker's heartbeat looked
    up in Redis (services/lock_holders.py). PostgreSQL keeps the first 63 bytes.
    """
    job = get_current_job()
    holder = f"{WORKER_TAG}{job.worker_name}" if job is not None and job.worker_name else f" pid={os.getpid()}"
    return f"controlplane-{purpose}{holder}"[:63]


class DatabaseUnreachable(Exception):
    """A database the run needs did not answer; nothing was written."""


# The first line of libpq's and redis-py's connection failures; what follows it is a generic hint
# ("Is the server running on that host ...?") that says nothing about this failure.
_POSTGRES_FAILURE = re.compile(
    r'connection to server (?:at "(?P<host>[^"]+)"(?: \([^)]*\))?, port (?P<port>\d+)|on socket "(?P<socket>[^"]+)")'
    r" failed: (?:FATAL: )?(?P<why>.+)"
)
_REDIS_FAILURE = re.compile(r"Error \d+ connecting to (?P<where>\S+?)\. (?P<why>.+?)\.?$")


def connection_failure_reason(error: BaseException) -> str:
    """Why a PostgreSQL or Redis connection failed, in a few words: "connection refused at 127.0.0.1:1"."""
    text = " ".join(str(error).strip().split("\n")[0].split())
    if match := _POSTGRES_FAILURE.search(text):
        where, why = match["socket"] or f"{match['host']}:{match['port']}", match["why"]
    elif match := _REDIS_FAILURE.search(text):
        where, why = match["where"], match["why"]
    else:
        return text.removeprefix("connection failed: ").removeprefix("connection is bad: ") or type(error).__name__
    return f"{why[:1].lower()}{why[1:]} at {where}"


# The kind of work (settings.DATABASE_SESSION_TIMEOUTS) of each connection purpose; a purpose not
# named here is `control`. A switch's fence connection is `<switch>-fence` (services/fenced_switch.py).
PURPOSE_KINDS = {
    **dict.fromkeys(
        (
            "migration",
            "migration-read",
            "migration-write",
            "rollback",
            "rollback-read",
            "capture",
            "cutover",
            "cutover-read",
            "switch-back",
            "switch-back-read",
            "switch-back-plan",
            "switch-back-plan-read",
            "switch-back-id-map",
            "reverse-capture",
            "complete",
        ),
        "copy",
    ),
    **dict.fromkeys(
        (
            "verification",
            "verification-auth",
            "verification-app-switch",
            "verification-rls",
            "switch-back-verify",
            "switch-back-verify-read",
            "cutover-check",
            "plan-read",
            "plan-check",
        ),
        "verification",
    ),
    **dict.fromkeys(("fence", "cutover-fence", "switch-back-fence", "guard"), "fence"),
    "scratch": "ddl",
}


def work_kind(purpose: str) -> str:
    """Which limits a connection opened for `purpose` gets (settings.DATABASE_SESSION_TIMEOUTS)."""
    return PURPOSE_KINDS.get(purpose, "control")


def connect(
    alias: str, *, autocommit: bool = False, purpose: str = "migration", dbname: str | None = None
) -> psycopg.Connection:
    """Open a new connection to a configured database, in UTC so text values compare exactly, with
    the session limits of its purpose's kind of work (`work_kind`).

    `dbname` opens another database on the same server, as the same role (a scratch database).
    """
    config = settings.DATABASES[alias]
    # OPTIONS may carry libpq parameters (a unix-socket `host` from a `?host=` URL, sslmode, ...).
    parameters = {k: v for k, v in config.get("OPTIONS", {}).items() if k not in DJANGO_ONLY_OPTIONS}
    for key, setting in (
        ("dbname", "NAME"),
        ("user", "USER"),
        ("password", "PASSWORD"),
        ("host", "HOST"),
        ("port", "PORT"),
    ):
        if config.get(setting):
            parameters[key] = config[setting]
    if dbname is not None:
        parameters["dbname"] = dbname
    parameters.setdefault("connect_timeout", 5)
    parameters = {**KEEPALIVE_PARAMETERS, **parameters}
    # Session settings from the URL (settings.py adds the server keepalives and the `control`
    # limits there) come after ours, and the limits of this connection's kind after them.
    session = parameters.pop("options", SERVER_KEEPALIVE_OPTIONS)
    try:
        return psycopg.connect(
            **parameters,
            autocommit=autocommit,
            application_name=application_name(purpose),
            options="-c timezone=UTC -c datestyle=ISO,YMD -c intervalstyle=postgres -c extra_float_digits=3 "
            f"{session} {settings.DATABASE_SESSION_OPTIONS[work_kind(purpose)]}",
        )
    except psycopg.OperationalError as error:
        name = DATABASE_LABELS.get(alias, alias)
        raise DatabaseUnreachable(
            f"The {name} database ({config['NAME']}) cannot be reached: {connection_failure_reason(error)}"
        ) from error
