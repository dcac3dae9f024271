from typing import Any

from django.core.management.base import CommandParser

from migration_jobs.management.database_command import DatabaseCommand
from migration_jobs.selectors.agency_links import agency_link_resolve
from migration_jobs.selectors.agency_page import agency_cockpit_read
from migration_jobs.selectors.plan import plan_latest, plan_rows_planned
from migration_jobs.selectors.timeline import (
    agency_timeline,
    run_progress_lines,
    run_progress_tables,
    timeline_lines,
)
from migration_jobs.services.runs import migration_runs_reconcile_running


class Command(DatabaseCommand):
    help = (
        "Print one agency's state, next action and timeline (every run of every kind, with its outcome),"
        " as its page in the admin shows them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agency_id", help="The agency's RevOS id (or its unified id).")
        parser.add_argument("--limit", type=int, default=None, help="Only the newest this many runs.")

    def handle(self, *args: Any, agency_id: str, limit: int | None, **options: Any) -> None:
        link = agency_link_resolve(agency_id)
        migration_runs_reconcile_running(link=link)  # a run whose worker died reads failed, as on the page
        cockpit = agency_cockpit_read(link=link)
        timeline = agency_timeline(link=link, limit=limit)
        lines = timeline_lines(link=link, state=cockpit.state, next_action=cockpit.next_action, timeline=timeline)
        if cockpit.next_action.action == "relink":
            relink = f"Re-link: manage.py link_agency {link.revos_agency_id} --existing UNIFIED_ID (or --new)"
            lines[2:2] = [f"Re-link refused now: {cockpit.relink_refusal}" if cockpit.relink_refusal else relink]
        if (run := cockpit.last_run) is not None:
            # The latest run's progress, per table while it runs, after the next action as on the page.
            tables = run_progress_tables(run=run, planned=lambda: plan_rows_planned(plan=plan_latest(link=link)))
            lines[2:2] = run_progress_lines(run=run, tables=tables)
        for line in lines:
            self.stdout.write(line)
