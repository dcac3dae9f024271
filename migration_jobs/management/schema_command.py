"""The shared body of apply_unified_schema and apply_revos_schema."""

from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError

from migration_jobs.services.schema import SchemaError, schema_apply, schema_plan


class SchemaCommand(BaseCommand):
    database: str

    def add_arguments(self, parser):
        parser.add_argument("--plan", action="store_true", help="Print what would be applied; apply nothing.")
        parser.add_argument(
            "--baseline",
            metavar="VERSION",
            help="Record files up to VERSION as applied without running them (the database already has them).",
        )

    def handle(self, *args, plan: bool, baseline: str | None, **options):
        try:
            if plan:
                self._print_plan()
                return
            applied = schema_apply(database=self.database, baseline_through=baseline)
        except SchemaError as error:
            raise CommandError(str(error)) from error
        except OperationalError as error:
            raise CommandError(f"Cannot reach the {self.database} database: {error}".strip()) from error
        for schema_file in applied:
            self.stdout.write(f"applied {schema_file.path.name}")
        self.stdout.write(self.style.SUCCESS(f"{self.database}: {len(applied)} file(s) applied, schema up to date."))

    def _print_plan(self) -> None:
        current = schema_plan(database=self.database)
        for schema_file in current.applied:
            self.stdout.write(f"  applied  {schema_file.path.name}")
        for schema_file in current.pending:
            self.stdout.write(f"  pending  {schema_file.path.name}")
        self.stdout.write(f"{self.database}: {len(current.pending)} file(s) to apply.")
