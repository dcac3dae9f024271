from typing import Any

import psycopg
from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError

from migration_jobs.management.base import UNREACHABLE, ProjectCommand
from migration_jobs.services.schema import SchemaError
from migration_jobs.services.schema_diff import schema_diff


class Command(ProjectCommand):
    help = (
        "Compare a live database with what sql/ says it should be (tables, columns, types, constraints, "
        "indexes, policies, RLS flags, grants, functions with their bodies, triggers and whether each fires, "
        "views, types, and the capture triggers once attached), by applying sql/ to a scratch database beside it. "
        "Prints each difference; exits 0 when they match, 1 when they differ, 2 when it cannot compare."
    )

    unreachable_returncode = 2  # it cannot compare, as documented

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", required=True, choices=["unified", "revos"])

    def handle(self, *args: Any, database: str, **options: Any) -> None:
        try:
            differences = schema_diff(database=database)
        except SchemaError as error:
            raise CommandError(str(error), returncode=2) from error
        except UNREACHABLE:
            raise  # one line naming the database that is down (ProjectCommand)
        except (DatabaseError, psycopg.Error) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CommandError(
                f"Cannot compare the {database} database with sql/{database}/: {reason}.", returncode=2
            ) from error
        for difference in differences:
            self.stdout.write(str(difference))
        if differences:
            raise CommandError(f"{database}: {len(differences)} difference(s) from sql/{database}/.", returncode=1)
        self.stdout.write(self.style.SUCCESS(f"{database}: matches sql/{database}/."))
