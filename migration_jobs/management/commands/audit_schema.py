from collections.abc import Callable
from typing import Any

from django.core.management.base import CommandError, CommandParser

from migration_jobs.management.base import ProjectCommand
from migration_jobs.services.schema_audit import AUDIT_TARGETS, Finding, Severity, schema_audit_run


class Command(ProjectCommand):
    help = (
        "Audit one database for the seed's Phase 0 problems (RLS, leftover and duplicate tables, naming) "
        "and print each finding with the SQL that would fix it. Reads only; applies nothing. "
        "Exits 1 when any finding has error severity."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            required=True,
            choices=list(AUDIT_TARGETS),
            help="revos: the RevOS source; audience: the AudienceOS tables of the unified database; "
            "unified: all of the unified database.",
        )

    def handle(self, *args: Any, database: str, **options: Any) -> None:
        target = AUDIT_TARGETS[database]
        findings = schema_audit_run(database=database)
        counts = {severity: sum(f.severity == severity for f in findings) for severity in Severity}
        self.stdout.write(
            f"Schema audit of {target.label} (database alias {target.alias}): "
            f"{counts[Severity.ERROR]} error(s), {counts[Severity.WARN]} warning(s), {counts[Severity.INFO]} info."
        )
        for finding in findings:
            self._write(finding)
        if counts[Severity.ERROR]:
            raise CommandError(f"{counts[Severity.ERROR]} finding(s) of error severity.", returncode=1)

    def _write(self, finding: Finding) -> None:
        styles: dict[str, Callable[[str], str]] = {Severity.ERROR: self.style.ERROR, Severity.WARN: self.style.WARNING}
        style = styles.get(finding.severity, str)
        where = f"{finding.schema}.{finding.table}" if finding.table else finding.schema
        self.stdout.write("")
        self.stdout.write(style(f"{finding.severity.upper():5}  {finding.rule}  {where}"))
        self.stdout.write(f"       {finding.detail}")
        for line in finding.suggested_fix.splitlines():
            self.stdout.write(f"       | {line}")
