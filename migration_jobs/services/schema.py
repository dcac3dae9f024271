"""Versioned SQL schemas: the files in sql/<database>/ are the single source of truth.

Each database records the files applied to it, with their checksums, in
controlplane.schema_version. Applying runs only the new files, each in its own transaction, and
refuses to run at all when a file that was already applied has changed since.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connections, transaction

SQL_ROOT = Path(settings.BASE_DIR) / "sql"
SCHEMA_DIRECTORIES = {"unified": SQL_ROOT / "unified", "revos": SQL_ROOT / "revos"}
VERSION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

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


def schema_plan(*, database: str) -> SchemaPlan:
    """What is applied and what would be applied; raises SchemaError on an edited file."""
    files = schema_files(database=database)
    with connections[database].cursor() as cursor:
        cursor.execute(BOOKKEEPING_SQL)
        cursor.execute("SELECT version, checksum FROM controlplane.schema_version")
        recorded = dict(cursor.fetchall())
    known = {f.version for f in files}
    missing = sorted(set(recorded) - known)
    if missing:
        raise SchemaError(
            f"The {database} database has versions {', '.join(missing)} applied that sql/{database}/ "
            "does not have. Check out the code that matches this database."
        )
    for schema_file in files:
        if schema_file.version in recorded and recorded[schema_file.version] != schema_file.checksum:
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
    plan = schema_plan(database=database)
    applied = []
    for schema_file in plan.pending:
        as_baseline = baseline_through is not None and schema_file.version <= baseline_through
        with transaction.atomic(using=database), connections[database].cursor() as cursor:
            if not as_baseline:
                cursor.execute(schema_file.sql)
            cursor.execute(
                "INSERT INTO controlplane.schema_version (version, name, checksum, baseline) VALUES (%s, %s, %s, %s)",
                [schema_file.version, schema_file.name, schema_file.checksum, as_baseline],
            )
        applied.append(schema_file)
    return applied
