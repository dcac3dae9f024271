"""What sql/ says a database should be, made real: a scratch database built from the files.

`schema_diff` compares a live database with one (the `supabase db diff` of the plan's commands),
and `schema_lock_plan` replays the pending files on one to report the locks each would take on the
live database (lock modes depend on the statements, not on the rows, so empty tables tell the truth).
The scratch database lives beside the live one on the same server (the API roles are the
server's), is named `<live name>_scratch_<pid>`, and is dropped afterwards, whatever happens.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from django.conf import settings
from psycopg import sql

from migration_jobs.etl.connections import connect, fetch_value
from migration_jobs.services.schema import BOOKKEEPING_SQL, SchemaFile, schema_files, schema_plan


@contextmanager
def scratch_database(*, database: str) -> Iterator[psycopg.Connection]:
    """A new, empty database on `database`'s server (an autocommit connection); dropped on exit."""
    name = f"{settings.DATABASES[database]['NAME']}_scratch_{os.getpid()}"[:63]
    with connect(database, autocommit=True, purpose="scratch") as server:
        server.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with connect(database, autocommit=True, purpose="scratch", dbname=name) as scratch:
            scratch.execute(BOOKKEEPING_SQL)
            yield scratch
    finally:
        with connect(database, autocommit=True, purpose="scratch") as server:
            server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def default_privileges_copy(*, source: psycopg.Connection, target: psycopg.Connection) -> None:
    """Give `target` the default privileges `source` has in the schemas both have, for the roles
    this session may act for (itself, on Supabase `postgres`, and the roles it is a member of).

    They are the project's, not sql/'s (Supabase gives the API roles every privilege on what
    `postgres` creates in public), and they decide the grants a new object gets. Only per-schema
    defaults are copied: those only ever add to the built-in ones.
    """
    rows = source.execute(
        "SELECT r.rolname, n.nspname, d.defaclobjtype, (SELECT rolname FROM pg_roles WHERE oid = g.grantee),"
        " string_agg(g.privilege_type, ', ')"
        " FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace"
        " JOIN pg_roles r ON r.oid = d.defaclrole, aclexplode(d.defaclacl) g"
        " WHERE pg_has_role(d.defaclrole, 'USAGE') GROUP BY 1, 2, 3, 4"
    ).fetchall()
    present = {row[0] for row in target.execute("SELECT nspname FROM pg_namespace").fetchall()}
    objects = {"r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES", "n": "SCHEMAS"}
    for role, schema, kind, grantee, privileges in rows:
        if schema in present:
            target.execute(
                sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT {} ON {} TO {}").format(
                    sql.Identifier(role),
                    sql.Identifier(schema),
                    sql.SQL(privileges),
                    sql.SQL(objects[kind]),
                    sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC"),
                )
            )


def scratch_apply(connection: psycopg.Connection, files: list[SchemaFile]) -> None:
    """Run the files as schema_apply does (each in a transaction, or statement by statement)."""
    for schema_file in files:
        if schema_file.in_transaction:
            with connection.transaction():
                connection.execute(schema_file.sql)
        else:
            for statement in schema_file.statements:
                connection.execute(statement)


# --- locks ------------------------------------------------------------------------------------

# What each table lock mode holds up on the live database while it is held.
LOCK_EFFECT = {
    "AccessExclusiveLock": "reads and writes wait",
    "ExclusiveLock": "writes wait, reads go on",
    "ShareRowExclusiveLock": "writes wait, reads go on",
    "ShareLock": "writes wait, reads go on",
    "ShareUpdateExclusiveLock": "reads and writes go on; DDL and VACUUM wait",
    "RowExclusiveLock": "only DDL waits",
    "RowShareLock": "only DDL waits",
    "AccessShareLock": "only DDL waits",
}
MODE_ORDER = list(LOCK_EFFECT)
CONCURRENT = re.compile(
    r"^\s*(?:CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?\S+\s+ON\s+(?P<table>\S+)"
    r"|DROP\s+INDEX\s+CONCURRENTLY\s+(?:IF\s+EXISTS\s+)?(?P<index>[^\s;]+))",
    re.I,
)
TABLE_LOCKS_SQL = """
SELECT l.mode, array_agg(DISTINCT c.relname::text ORDER BY c.relname::text) FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.relation = ANY (%s)
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
GROUP BY l.mode
"""


@dataclass(frozen=True)
class FileLocks:
    schema_file: SchemaFile
    locks: dict[str, list[str]]  # lock mode -> tables of the live database it locks
    held: str  # how long: "until the file commits" or "each while its statement runs"

    def lines(self) -> list[str]:
        if not self.locks:
            return ["no existing table"]
        ordered = sorted(self.locks.items(), key=lambda item: MODE_ORDER.index(item[0]))
        return [f"{mode} on {', '.join(tables)} ({LOCK_EFFECT[mode]}), {self.held}" for mode, tables in ordered]


def schema_lock_plan(*, database: str) -> list[FileLocks]:
    """The table locks each pending file of `database` takes, measured on a scratch copy."""
    live = schema_plan(database=database)
    applied = {f.version for f in live.applied}
    with scratch_database(database=database) as scratch:
        scratch_apply(scratch, [f for f in schema_files(database=database) if f.version in applied])
        return [_file_locks(scratch, schema_file) for schema_file in live.pending]


def _file_locks(scratch: psycopg.Connection, schema_file: SchemaFile) -> FileLocks:
    """Run one file on the scratch database and say which existing tables it locked, and how."""
    if not schema_file.in_transaction:
        # CONCURRENTLY runs outside a transaction: its locks are gone before pg_locks can be read.
        tables: set[str] = set()
        for statement in schema_file.statements:
            match = CONCURRENT.match(statement)
            if match:
                table = match["table"] or _index_table(scratch, match["index"])
                tables |= {table.strip('"')} if table else set()
            scratch.execute(statement)
        return FileLocks(schema_file, {"ShareUpdateExclusiveLock": sorted(tables)} if tables else {}, _EACH)
    with scratch.transaction():
        existing = fetch_value(scratch.execute("SELECT array_agg(oid) FROM pg_class WHERE relkind IN ('r', 'p')"))
        scratch.execute(schema_file.sql)
        measured: dict[str, list[str]] = dict(scratch.execute(TABLE_LOCKS_SQL, [existing or []]).fetchall())
    return FileLocks(schema_file, _strongest_only(measured), "until the file commits")


_EACH = "each while its statement runs"


def _strongest_only(locks: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each table under the strongest mode the file takes on it."""
    strongest: dict[str, str] = {}
    for mode in sorted(locks, key=MODE_ORDER.index, reverse=True):
        for table in locks[mode]:
            strongest[table] = mode
    grouped: dict[str, list[str]] = {}
    for table, mode in sorted(strongest.items()):
        grouped.setdefault(mode, []).append(table)
    return grouped


def _index_table(scratch: psycopg.Connection, index: str) -> str | None:
    row = scratch.execute(
        "SELECT indrelid::regclass::text FROM pg_index WHERE indexrelid = to_regclass(%s)", [index]
    ).fetchone()
    return row[0] if row else None
