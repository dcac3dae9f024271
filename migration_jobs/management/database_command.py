"""Commands that need databases: checked before anything is written, one line naming the one that does not answer."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from migration_jobs.management.base import ProjectCommand, database_unreachable


def databases_require(*aliases: str, returncode: int = 1) -> None:
    """Raise CommandError naming the first database that does not answer, before anything is written."""
    if error := database_unreachable(*aliases):
        raise CommandError(f"{error}. Nothing was written.", returncode=returncode) from error


class DatabaseCommand(ProjectCommand):
    """Checks its `databases` before it runs; a database lost half-way is one line too (ProjectCommand)."""

    databases: tuple[str, ...] = ("default", "unified", "revos")

    def execute(self, *args: Any, **options: Any) -> str | None:
        databases_require(*self.databases, returncode=self.unreachable_returncode)
        return super().execute(*args, **options)
