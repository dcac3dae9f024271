"""Scratch databases: created beside the configured ones, marked as the benchmark's, dropped after.

Only a database carrying the benchmark's comment is ever dropped, so a name clash with a real
database stops the run instead of destroying it.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import environ
import psycopg
from psycopg import sql

MARK = "scratch database of `python -m benchmarks`; safe to drop"


class ScratchDatabaseError(Exception):
    """A scratch database cannot be made; the message says what to do."""


def url_config(url: str) -> dict:
    """A database URL parsed exactly as settings.py parses it."""
    return environ.Env.db_url_config(url)


def url_renamed(url: str, name: str) -> str:
    """The same server and options, another database name."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(name)))


def libpq_parameters(config: dict, *, dbname: str | None = None) -> dict:
    """psycopg connection parameters from a Django database config (libpq OPTIONS included)."""
    parameters = {k: v for k, v in config.get("OPTIONS", {}).items() if k != "connect_timeout"}
    for key, setting in (("user", "USER"), ("password", "PASSWORD"), ("host", "HOST"), ("port", "PORT")):
        if config.get(setting):
            parameters[key] = config[setting]
    parameters["dbname"] = dbname or config["NAME"]
    return parameters


def _server(config: dict) -> psycopg.Connection:
    try:
        return psycopg.connect(**libpq_parameters(config, dbname="postgres"), autocommit=True, connect_timeout=5)
    except psycopg.Error as error:
        raise ScratchDatabaseError(f"Cannot reach the PostgreSQL server of {config['NAME']}: {error}") from error


def _comment(connection: psycopg.Connection, name: str) -> str | None:
    row = connection.execute(
        "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = %s", [name]
    ).fetchone()
    return None if row is None else row[0]


def scratch_database_create(*, config: dict, name: str) -> None:
    """(Re)create an empty database `name` on the server of `config`, marked as the benchmark's."""
    with _server(config) as server:
        comment = _comment(server, name)
        if comment is not None and comment != MARK:
            raise ScratchDatabaseError(
                f"A database {name!r} exists and is not a benchmark scratch database; "
                "the benchmark will not drop it. Rename it or point the URLs at another server."
            )
        try:
            server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            server.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(MARK)))
        except psycopg.Error as error:
            raise ScratchDatabaseError(f"Cannot create the scratch database {name!r}: {error}") from error


def scratch_database_drop(*, config: dict, name: str) -> None:
    """Drop `name` if it is a benchmark scratch database; leave anything else alone."""
    with _server(config) as server:
        if _comment(server, name) == MARK:
            server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def pgloader_url(config: dict, *, dbname: str | None = None) -> str:
    """The pgloader spelling of a connection: pgsql://user:password@host:port/db (unix:dir for sockets)."""
    host = config.get("HOST") or config.get("OPTIONS", {}).get("host") or "localhost"
    port = config.get("PORT") or 5432
    netloc = f"unix:{host}:{port}" if str(host).startswith("/") else f"{host}:{port}"
    password = f":{quote(str(config['PASSWORD']), safe='')}" if config.get("PASSWORD") else ""
    user = quote(str(config.get("USER") or "postgres"), safe="")
    return f"pgsql://{user}{password}@{netloc}/{dbname or config['NAME']}"
