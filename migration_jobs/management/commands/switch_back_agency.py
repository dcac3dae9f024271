from typing import Any

from django.core.management.base import CommandError, CommandParser

from migration_jobs.management.run_command import SteppedRunCommand
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.refusals import RunRefused
from migration_jobs.selectors.agency_links import agency_link_resolve
from migration_jobs.services.kinds.switch_back import switch_back_plan, switch_back_run_request


class Command(SteppedRunCommand):
    help = (
        "Queue (or with --sync, run) the switch back of a cut-over agency to RevOS, with what the apps wrote in "
        "the unified database since its cutover; --plan only prints what it would change in RevOS. Any failure "
        "before unified_db is turned off lifts the unified fence and leaves the agency cut over."
    )

    window_label = "unified write downtime (fence to reopen)"
    reason_required = False  # --plan needs none; running does (checked in handle)

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--plan", action="store_true", help="Print the rows it would change in RevOS; write nothing."
        )

    def handle(self, *args: Any, agency_id: str, **options: Any) -> None:
        if not options["plan"]:
            if not (options.get("reason") or "").strip():
                raise CommandError("--reason is required: it is kept with the run and the unified_db change.")
            return super().handle(*args, agency_id=agency_id, **options)
        try:
            plan = switch_back_plan(link=agency_link_resolve(agency_id))
        except RunRefused as refusal:
            raise CommandError(str(refusal)) from refusal
        self.write_plan(plan)
        if plan["problems"]:
            raise CommandError("RevOS cannot take the switch back as it stands: " + "; ".join(plan["problems"]))

    def write_plan(self, plan: dict) -> None:
        totals = plan["totals"]
        self.stdout.write(f"switch back would insert {totals['insert']}, update {totals['update']}, "
                          f"delete {totals['delete']} rows in RevOS")  # fmt: skip
        for table, change in plan["tables"].items():
            if change["insert"] or change["update"] or change["delete"] or change["unholdable"] or change["refused"]:
                self.stdout.write(
                    f"  {table:28} insert={change['insert']} update={change['update']} delete={change['delete']}"
                )
        for problem in plan["problems"]:
            self.stdout.write(f"  cannot hold: {problem}")

    def request_run(self, link: AgencyLink, options: dict[str, Any]) -> MigrationRun:
        return switch_back_run_request(link=link, reason=options["reason"], actor=None, enqueue=not options["sync"])
