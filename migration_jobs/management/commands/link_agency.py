import uuid
from typing import Any

from django.core.management.base import CommandError, CommandParser

from migration_jobs.management.database_command import DatabaseCommand
from migration_jobs.refusals import RunRefused
from migration_jobs.selectors.agency_links import agency_link_resolve
from migration_jobs.services.agency_links import LinkError, agency_link_confirm


class Command(DatabaseCommand):
    help = "Confirm which unified agency a RevOS agency becomes: --new, --existing UNIFIED_ID, or --suggested."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agency_id", help="The agency's RevOS id.")
        choice = parser.add_mutually_exclusive_group(required=True)
        choice.add_argument("--new", action="store_true", help="A new agency in the unified database.")
        choice.add_argument("--existing", metavar="UNIFIED_ID", help="This AudienceOS agency.")
        choice.add_argument("--suggested", action="store_true", help="Whatever the suggestion says.")

    def handle(
        self, *args: Any, agency_id: str, new: bool, existing: str | None, suggested: bool, **options: Any
    ) -> None:
        try:
            link = agency_link_resolve(agency_id)
            if suggested:
                kind, target = link.suggested_kind, link.suggested_agency_id
            elif new:
                kind, target = "new", None
            else:
                kind, target = "existing", uuid.UUID(existing)
            link = agency_link_confirm(link=link, kind=kind, unified_agency_id=target, actor=None)
        except ValueError as error:
            raise CommandError(f"{existing!r} is not an agency id (a UUID).") from error
        except (RunRefused, LinkError) as refusal:
            raise CommandError(str(refusal)) from refusal
        self.stdout.write(f"{link.name}: {link.get_kind_display()} -> {link.unified_agency_id}")
