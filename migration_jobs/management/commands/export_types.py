from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from migration_jobs.etl.connections import connect
from migration_jobs.management.database_command import DatabaseCommand
from migration_jobs.selectors.typescript import typescript_types


class Command(DatabaseCommand):
    help = (
        "Write the unified database's TypeScript types (Supabase's generator shape: Database['public']"
        "['Tables'][t]['Row' | 'Insert' | 'Update'], CHECK-listed values as unions, Functions) to stdout or --out."
    )
    databases = ("unified",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", metavar="FILE", help="write here (its folder must exist) instead of stdout")

    def handle(self, *args: Any, out: str | None, **options: Any) -> None:
        with connect("unified", autocommit=True, purpose="export-types") as connection:
            types = typescript_types(connection)
        if not out:
            self.stdout.write(types, ending="")
            return
        path = Path(out)
        if not path.parent.is_dir():
            raise CommandError(f"--out {out}: the folder {path.parent} does not exist.")
        path.write_text(types)
        self.stdout.write(f"wrote {path} ({types.count(chr(10))} lines)")
