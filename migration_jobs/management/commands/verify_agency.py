"""verify_agency AGENCY_ID [--sync]: queue (or run here) a verification of one agency.

Exit status: 0 the verdict is pass (or the verification was queued), 1 fail, 2 the request was
refused (unknown or malformed id, no confirmed link, a run in progress, Redis down), 3 error.
"""

import json
from collections import Counter
from typing import Any

from django.core.management.base import CommandError, CommandParser

from migration_jobs.management.database_command import DatabaseCommand
from migration_jobs.models import VerificationRun
from migration_jobs.refusals import RunRefused
from migration_jobs.selectors.agency_links import agency_link_resolve
from migration_jobs.services.verification import verification_run_execute, verification_run_request

Verdict = VerificationRun.Verdict
EXIT_STATUS: dict[str, int] = {Verdict.FAIL: 1, Verdict.ERROR: 3}


class Command(DatabaseCommand):
    unreachable_returncode = 3  # an error, as documented: the verification could not run
    help = "Verify one migrated agency (counts, content, references, RLS isolation, schema); --sync runs it here."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agency_id", help="The agency's RevOS id (or its unified id).")
        parser.add_argument("--sync", action="store_true", help="Run in this process instead of queueing for a worker.")

    def handle(self, *args: Any, agency_id: str, sync: bool, verbosity: int = 1, **options: Any) -> None:
        self.verbosity = verbosity
        try:
            link = agency_link_resolve(agency_id)
            run = verification_run_request(link=link, actor=None, enqueue=not sync)
        except RunRefused as refusal:
            raise CommandError(str(refusal), returncode=2) from refusal
        if not sync:
            self.stdout.write(f"verification {run.pk} of {link} queued (job {run.job_id}).")
            return
        run = verification_run_execute(verification_run_id=run.pk)
        self.report(run)
        if run.verdict in EXIT_STATUS:
            raise CommandError(
                f"verification {run.pk}: {run.get_verdict_display().lower()}", returncode=EXIT_STATUS[run.verdict]
            )

    def report(self, run: VerificationRun) -> None:
        """The verdict, a tally per check family, then every check that did not pass (all of them with -v 2)."""
        self.stdout.write(f"verification {run.pk} of {run.agency_link}: {run.get_verdict_display().lower()}")
        tally: dict[str, Counter] = {}
        for result in run.results.all():
            tally.setdefault(result.check_name.split(".")[0], Counter())[result.status] += 1
        for family, statuses in tally.items():
            self.stdout.write(f"  {family:11} " + ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())))
        for result in run.results.all():
            if result.status != "pass" or self.verbosity > 1:
                line = f"  {result.status:5} {result.check_name} {result.table_name}".rstrip()
                self.stdout.write(f"{line}: expected {result.expected}; found {result.actual}")
                if result.status != "pass" and result.details:
                    self.stdout.write(f"        {json.dumps(result.details, sort_keys=True)[:2000]}")
        if run.error:
            self.stdout.write(f"  {run.error}")
