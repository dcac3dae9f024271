"""The shared body of apply_unified_schema and apply_revos_schema."""

from typing import Any

import psycopg
from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError

from migration_jobs.etl.connections import DatabaseUnreachable
from migration_jobs.management.base import ProjectCommand
from migration_jobs.services.schema import SchemaError, schema_apply, schema_plan
from migration_jobs.services.schema_scratch import schema_lock_plan


class SchemaCommand(ProjectCommand):
    database: str

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--plan", action="store_true", help="Print what would be applied; apply nothing.")
        parser.add_argument(
            "--baseline",
            metavar="VERSION",
            help="Record files up to VERSION as applied without running them (the database already has them).",
        )

    def handle(self, *args: Any, plan: bool, baseline: str | None, **options: Any) -> None:
        try:
            if plan:
                self._print_plan()
                return
            applied = schema_apply(database=self.database, baseline_through=baseline)
        except SchemaError as error:
            raise CommandError(str(error)) from error
        for schema_file in applied:
            self.stdout.write(f"applied {schema_file.path.name}")
        self.stdout.write(self.style.SUCCESS(f"{self.database}: {len(applied)} file(s) applied, schema up to date."))

    def _print_plan(self) -> None:
        current = schema_plan(database=self.database)
        for schema_file in current.applied:
            self.stdout.write(f"  applied  {schema_file.path.name}")
        locks = self._locks() if current.pending else {}
        for schema_file in current.pending:
            self.stdout.write(f"  pending  {schema_file.path.name}")
            for line in locks.get(schema_file.version, ["locks: not measured (see above)"]):
                self.stdout.write(f"           {line}")
        self.stdout.write(f"{self.database}: {len(current.pending)} file(s) to apply.")

    def _locks(self) -> dict[str, list[str]]:
        """Each pending file's table locks, replayed on a scratch copy; a note if none can be made."""
        try:
            return {
                entry.schema_file.version: [f"locks: {line}" for line in entry.lines()]
                for entry in schema_lock_plan(database=self.database)
            }
        except (DatabaseError, psycopg.Error, DatabaseUnreachable) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            self.stdout.write(f"  (cannot measure the locks on a scratch database: {reason})")
            return {}
