"""Plain psycopg connections for the engine: COPY, advisory locks and commits per batch."""

from __future__ import annotations

import psycopg
from django.conf import settings

DJANGO_ONLY_OPTIONS = frozenset({"isolation_level", "assume_role", "server_side_binding", "pool", "cursor_factory"})


class DatabaseUnreachable(Exception):
    """A database the run needs did not answer; nothing was written."""


def connect(
    alias: str, *, autocommit: bool = False, purpose: str = "migration", dbname: str | None = None
) -> psycopg.Connection:
    """Open a new connection to a configured database, in UTC so text values compare exactly.

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
    try:
        return psycopg.connect(
            **parameters,
            autocommit=autocommit,
            application_name=f"controlplane-{purpose}",
            options="-c timezone=UTC -c datestyle=ISO,YMD -c intervalstyle=postgres -c extra_float_digits=3",
        )
    except psycopg.OperationalError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise DatabaseUnreachable(f"The {alias} database ({config['NAME']}) cannot be reached: {reason}") from error
