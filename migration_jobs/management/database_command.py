"""Commands that need databases: one line naming the one that does not answer, never a traceback."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError

from migration_jobs.etl.connections import DatabaseUnreachable, connect


def databases_require(*aliases: str, returncode: int = 1) -> None:
    """Raise CommandError naming the first database that does not answer, before anything is written."""
    for alias in aliases:
        try:
            connect(alias, autocommit=True, purpose="preflight").close()
        except DatabaseUnreachable as error:
            raise CommandError(f"{error}. Nothing was written.", returncode=returncode) from error


class DatabaseCommand(BaseCommand):
    """Checks its `databases` before it runs; a database lost half-way is one line too."""

    databases: tuple[str, ...] = ("default", "unified", "revos")
    unreachable_returncode = 1

    def execute(self, *args, **options):
        databases_require(*self.databases, returncode=self.unreachable_returncode)
        try:
            return super().execute(*args, **options)
        except (OperationalError, DatabaseUnreachable) as error:
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            raise CommandError(
                f"A database stopped answering: {reason}", returncode=self.unreachable_returncode
            ) from error
