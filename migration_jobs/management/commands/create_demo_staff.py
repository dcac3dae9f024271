"""Create or update the demo's staff login and print it (called by `bin/stack demo`)."""

import secrets
from typing import Any, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError, OperationalError, transaction
from django.db.models import Field

from migration_jobs.management.base import ProjectCommand


def demo_staff_ensure(*, username: str, password: str) -> AbstractBaseUser:
    """A superuser `username` whose password is now `password`; other users are left alone."""
    user_model = get_user_model()
    with transaction.atomic():
        lookup: dict[str, Any] = {user_model.USERNAME_FIELD: username}
        user, _created = user_model._default_manager.get_or_create(**lookup)
        user.is_staff = True
        user.is_superuser = True
        user.is_active = True
        user.set_password(password)
        user.save()
    return user


class Command(ProjectCommand):
    help = "Create or update a superuser for the demo with a fresh generated password, and print the login."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="ops")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        user_model = get_user_model()
        # Validated as Django's own createsuperuser does: required, the field's length and validators.
        try:
            username_field = cast("Field[Any, Any]", user_model._meta.get_field(user_model.USERNAME_FIELD))
            username_field.clean(username, None)
        except ValidationError as error:
            raise CommandError(f"--username {username!r}: {' '.join(error.messages)}") from error
        # A new password each run: a demo login that never changes would end up in screenshots and notes.
        password = secrets.token_urlsafe(12)
        try:
            demo_staff_ensure(username=username, password=password)
        except OperationalError:
            raise  # the database is down, not unmigrated: ProjectCommand names it
        except DatabaseError as error:
            raise CommandError(f"Cannot create the staff login (did `manage.py migrate` run?): {error}") from error
        self.stdout.write(f"Staff login:  username {username}  password {password}")
