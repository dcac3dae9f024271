from typing import Any

from django.core.management.base import CommandError, CommandParser

from migration_jobs.management.base import ProjectCommand
from migration_jobs.refusals import RunRefused
from migration_jobs.selectors.agency_links import agency_link_resolve
from migration_jobs.services.kinds.complete import agency_complete


class Command(ProjectCommand):
    help = (
        "Complete a cut-over agency's move for good: the unified database stops recording its changes, RevOS "
        "stays read-only for it, and it can no longer be switched back."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agency_id", help="The agency's RevOS id (or its unified id).")
        parser.add_argument("--reason", required=True, help="Why, kept with the run.")

    def handle(self, *args: Any, agency_id: str, reason: str, **options: Any) -> None:
        try:
            run = agency_complete(link=agency_link_resolve(agency_id), reason=reason, actor=None)
        except RunRefused as refusal:
            raise CommandError(str(refusal)) from refusal
        if run.status != run.Status.SUCCEEDED:
            raise CommandError(f"Run {run.pk} {run.get_status_display().lower()}: {run.error}")
        self.stdout.write(f"run {run.pk}: {run.agency_link}'s move is complete; RevOS stays read-only for it.")
