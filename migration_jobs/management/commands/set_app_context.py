from typing import Any

from django.core.management.base import CommandParser

from migration_jobs.management.base import ProjectCommand
from migration_jobs.services.app_context import unified_row_app_context_set


class Command(ProjectCommand):
    help = (
        "Set which app sees one unified row (app_context audience, revos or both). The apps cannot change it; "
        "staff can, here, with a reason recorded in the unified audit_log."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("table", help="A unified table with an app_context column, e.g. client.")
        parser.add_argument("row_id", help="The row's id.")
        parser.add_argument("app_context", help="audience, revos or both.")
        parser.add_argument("--reason", required=True, help="Why, kept in the audit log.")
        parser.add_argument("--by", default="manage.py", help="Who asks (kept in the audit log).")

    def handle(
        self, *args: Any, table: str, row_id: str, app_context: str, reason: str, by: str, **options: Any
    ) -> None:
        # A refusal (RunRefused) is one line, as every project command says it (ProjectCommand).
        done = unified_row_app_context_set(table=table, row_id=row_id, app_context=app_context, reason=reason, actor=by)
        self.stdout.write(done)
