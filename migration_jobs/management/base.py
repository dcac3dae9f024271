"""The base of every project command: a database or Redis that does not answer is one line naming it.

Django prints a CommandError as one line and exits with its returncode; anything else escapes as a
traceback. So every command derives from ProjectCommand (a test walks them all), and the failures
that mean "a server is down" are turned into a CommandError here, once, whatever command hit them.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from migration_jobs.etl.connections import DatabaseUnreachable, connect, connection_failure_reason
from migration_jobs.refusals import RunRefused

UNREACHABLE = (OperationalError, psycopg.OperationalError, DatabaseUnreachable, RedisConnectionError, RedisTimeoutError)


def database_unreachable(*aliases: str) -> DatabaseUnreachable | None:
    """The failure of the first of `aliases` (every configured database if none) that does not answer."""
    for alias in aliases or tuple(settings.DATABASES):
        try:
            connect(alias, autocommit=True, purpose="preflight").close()
        except DatabaseUnreachable as error:
            return error
    return None


def unreachable_message(error: BaseException) -> str:
    """One sentence naming the server behind `error`.

    Django's and psycopg's OperationalError do not say which database they came from (all three are
    often on one server), so the databases are asked again and the first that does not answer is named.
    """
    if isinstance(error, (RedisConnectionError, RedisTimeoutError)):
        return f"Redis (the job queue) cannot be reached: {connection_failure_reason(error)}."
    if not isinstance(error, DatabaseUnreachable):
        error = database_unreachable() or error
    if isinstance(error, DatabaseUnreachable):
        return f"{error}."
    return f"A database operation failed: {connection_failure_reason(error)}."


class ProjectCommand(BaseCommand):
    """A management command of this project; see the module docstring."""

    unreachable_returncode = 1

    def execute(self, *args: Any, **options: Any) -> str | None:
        try:
            return super().execute(*args, **options)
        except UNREACHABLE as error:
            raise CommandError(unreachable_message(error), returncode=self.unreachable_returncode) from error
        except RunRefused as refusal:  # a service said no: its one line, as the admin shows it
            raise CommandError(str(refusal)) from refusal
