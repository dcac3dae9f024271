"""Versioned SQL schemas: the files in sql/<database>/ are the single source of truth.

Each database records the files applied to it, with their checksums, in
controlplane.schema_version. Applying runs only the new files, each in its own transaction, and
refuses to run at all when a file that was already applied has changed since.

A file whose first line is `-- schema: no-transaction` runs statement by statement outside a
transaction instead, for what PostgreSQL refuses inside one (CREATE INDEX CONCURRENTLY); its
statements must be safe to run again, since an interrupted file is re-run from its start.

On the unified database, every live public table must be declared in migration_jobs/tenancy.py
with its tenant key before anything runs (the files loop over the live tables).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connections, transaction

from migration_jobs.etl.connections import Cursor
from migration_jobs.tenancy import tenancy_problems

SQL_ROOT = Path(settings.BASE_DIR) / "sql"
SCHEMA_DIRECTORIES = {"unified": SQL_ROOT / "unified", "revos": SQL_ROOT / "revos"}
VERSION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
NO_TRANSACTION = "-- schema: no-transaction"

# Applied files amended in place, with the checksums they had when databases applied them. Each
# amendment only lets a role that is not a superuser run the file where it creates the auth shim
# (Supabase's `postgres`, docs/supabase-mode.md): where a database already ran the old text, the
# new text would have done the same there, and a new version file could not help a new database,
# whose build stops in the old file itself. Nothing else may be amended.
AMENDED: dict[tuple[str, str], frozenset[str]] = {
    ("unified", "0001"): frozenset({"e901b4d69ce95e641136f2d75c102bf522d1f36025c34ff5118b9d72c88a9662"}),
    ("unified", "0040"): frozenset({"afb1855bf90639198afddeab4909a82e42fa6b938549c7ed9bf4792ffd7eb19c"}),
    ("revos", "0020"): frozenset({"2d7d8d975cb53d97fca8645a43a5f6938d2f3f1a0bb7b306738929e921acf649"}),
}

BOOKKEEPING_SQL = """
CREATE SCHEMA IF NOT EXISTS controlplane;
CREATE TABLE IF NOT EXISTS controlplane.schema_version (
    version text PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    baseline boolean NOT NULL DEFAULT false
);
"""


class SchemaError(Exception):
    """The schema files and the database disagree in a way only a person can resolve."""


@dataclass(frozen=True)
class SchemaFile:
    version: str
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    @property
    def in_transaction(self) -> bool:
        return not self.sql.startswith(NO_TRANSACTION)

    @property
    def statements(self) -> list[str]:
        return sql_statements(self.sql)


@dataclass(frozen=True)
class SchemaPlan:
    database: str
    applied: list[SchemaFile]
    pending: list[SchemaFile]


def schema_files(*, database: str) -> list[SchemaFile]:
    """The versioned files for `database`, in version order."""
    files = []
    for path in sorted(SCHEMA_DIRECTORIES[database].glob("*.sql")):
        match = VERSION_FILE.match(path.name)
        if not match:
            raise SchemaError(f"{path} is not named NNNN_name.sql; rename it so its version is clear.")
        files.append(SchemaFile(match["version"], match["name"], path))
    return files


def sql_statements(text: str) -> list[str]:
    """Split a file into statements at `;` ending a line, outside dollar-quoted bodies."""
    statements: list[str] = []
    current: list[str] = []
    quoted = False
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current.append(line)
        quoted ^= line.count("$$") % 2 == 1
        if not quoted and line.rstrip().endswith(";"):
            statements.append("\n".join(current))
            current = []
    if current:
        statements.append("\n".join(current))
    return statements


def _check_tenancy(cursor: Cursor) -> None:
    """Refuse, naming each table, when a live public table is undeclared or lacks its tenant key."""
    cursor.execute(
        "SELECT c.relname, array_agg(a.attname::text) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        " WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition GROUP BY c.relname"
    )
    problems = tenancy_problems(dict(cursor.fetchall()))
    if problems:
        raise SchemaError(
            "Nothing was applied: the unified schema files scope every public table by its tenant key, and "
            + "; ".join(problems)
            + "."
        )


def schema_plan(*, database: str) -> SchemaPlan:
    """What is applied and what would be applied; raises SchemaError on an edited file."""
    files = schema_files(database=database)
    with connections[database].cursor() as cursor:
        cursor.execute(BOOKKEEPING_SQL)
        cursor.execute("SELECT version, checksum FROM controlplane.schema_version")
        recorded = dict(cursor.fetchall())
        if database == "unified":
            _check_tenancy(cursor)
    known = {f.version for f in files}
    missing = sorted(set(recorded) - known)
    if missing:
        raise SchemaError(
            f"The {database} database has versions {', '.join(missing)} applied that sql/{database}/ "
            "does not have. Check out the code that matches this database."
        )
    for schema_file in files:
        applied_as = recorded.get(schema_file.version)
        if applied_as not in (None, schema_file.checksum, *AMENDED.get((database, schema_file.version), ())):
            raise SchemaError(
                f"{schema_file.path.name} was changed after it was applied to the {database} database. "
                "Applied files are immutable: restore it and put the change in a new version file."
            )
    return SchemaPlan(
        database=database,
        applied=[f for f in files if f.version in recorded],
        pending=[f for f in files if f.version not in recorded],
    )


def schema_apply(*, database: str, baseline_through: str | None = None) -> list[SchemaFile]:
    """Apply every pending file to `database`, each in one transaction; return what ran.

    `baseline_through` records files up to that version as applied without running them, for a
    database that already has them (the production AudienceOS project has 0002 already).
    """
    alias = database
    plan = schema_plan(database=database)
    applied = []
    for schema_file in plan.pending:
        as_baseline = baseline_through is not None and schema_file.version <= baseline_through
        if not as_baseline and not schema_file.in_transaction:
            _run_outside_transaction(alias, schema_file)
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            if not as_baseline and schema_file.in_transaction:
                # DDL waiting for a lock queues the apps' queries behind it: it fails in seconds instead.
                _session_limits(cursor, kind="ddl", local=True)
                cursor.execute(schema_file.sql)
            cursor.execute(
                "INSERT INTO controlplane.schema_version (version, name, checksum, baseline) VALUES (%s, %s, %s, %s)",
                [schema_file.version, schema_file.name, schema_file.checksum, as_baseline],
            )
        applied.append(schema_file)
    return applied


def _run_outside_transaction(alias: str, schema_file: SchemaFile) -> None:
    """Run a no-transaction file statement by statement (autocommit), after dropping what an
    interrupted earlier attempt left: an INVALID index it names, which IF NOT EXISTS would keep."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT i.indexrelid::regclass::text, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE NOT i.indisvalid"
        )
        for qualified, name in cursor.fetchall():
            if re.search(rf"\b{re.escape(name)}\b", schema_file.sql):
                cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {qualified}")
        # A concurrent index build blocks nobody's writes and may take as long as a copy.
        _session_limits(cursor, kind="copy", local=False)
        try:
            for statement in schema_file.statements:
                cursor.execute(statement)
        finally:
            _session_limits(cursor, kind="control", local=False)  # what the admin's connection has


def _session_limits(cursor: Cursor, *, kind: str, local: bool) -> None:
    """Give this session (or, `local`, this transaction) the limits of a kind of work
    (settings.DATABASE_SESSION_TIMEOUTS)."""
    for name, value in settings.DATABASE_SESSION_TIMEOUTS[kind].items():
        cursor.execute("SELECT set_config(%s, %s, %s)", [name, value, local])
