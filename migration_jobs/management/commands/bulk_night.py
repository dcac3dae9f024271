import time

from django.core.management.base import CommandError

from migration_jobs.management.database_command import DatabaseCommand
from migration_jobs.models import AgencyLink, BulkWindow
from migration_jobs.refusals import RunRefused
from migration_jobs.selectors.agency_links import agency_link_resolve
from migration_jobs.selectors.windows import bulk_window_plan
from migration_jobs.services.windows import bulk_window_advance, bulk_window_open, bulk_window_reopen, stop_at_parse


class Command(DatabaseCommand):
    help = (
        "Migrate or cut over many agencies in one night's window, in waves: no agency starts after --stop-at, "
        "running migrations pause at a batch boundary, and --resume gives the same plan another night. "
        "The reconciler queues each next wave; --wait follows the night here."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--kind", choices=BulkWindow.Kind.values, default="migrate", help="migrate (default) or cutover."
        )
        parser.add_argument("agency_ids", nargs="*", help="RevOS (or unified) agency ids, in the order to go.")
        parser.add_argument("--all", dest="every", action="store_true", help="Every confirmed agency, by name.")
        parser.add_argument("--wave-size", type=int, default=10, help="Agencies per wave (default 10).")
        parser.add_argument("--stop-at", required=True, help="The night's end: HH:MM (UTC) or an ISO date and time.")
        parser.add_argument("--reason", default="", help="Why (required for a cutover).")
        parser.add_argument("--resume", default="", help="A window's bulk id (or its first characters): next night.")
        parser.add_argument("--wait", action="store_true", help="Advance and show the plan until the night ends.")

    def handle(self, *args, kind, agency_ids, every, wave_size, stop_at, reason, resume, wait, **options):
        try:
            stop = stop_at_parse(stop_at)
            if resume:
                window = bulk_window_reopen(window=self._window(resume), stop_at=stop)
            else:
                window = bulk_window_open(
                    links=self._links(agency_ids, every), kind=kind, wave_size=wave_size, stop_at=stop, actor=None,
                    reason=reason,
                )  # fmt: skip
        except RunRefused as refusal:
            raise CommandError(str(refusal)) from refusal
        self.stdout.write(f"bulk id {window.bulk_request}")
        self.stdout.write(str(bulk_window_plan(window=window)))
        while wait:
            time.sleep(2)
            for line in bulk_window_advance(window=window):
                self.stdout.write(line)
            plan = bulk_window_plan(window=window)
            if plan.finished or (plan.ended and not plan.active):
                self.stdout.write(str(plan))
                return

    def _links(self, agency_ids: list[str], every: bool) -> list[AgencyLink]:
        if every == bool(agency_ids):
            raise RunRefused("Name the agencies or give --all (not both).")
        if every:
            return list(AgencyLink.objects.exclude(unified_agency_id=None).exclude(confirmed_at=None).order_by("name"))
        return [agency_link_resolve(agency_id) for agency_id in agency_ids]

    def _window(self, prefix: str) -> BulkWindow:
        windows = [w for w in BulkWindow.objects.all() if str(w.bulk_request).startswith(prefix.strip().lower())]
        if len(windows) != 1:
            raise RunRefused(f"{len(windows)} windows have a bulk id starting {prefix!r}; give more of it.")
        return windows[0]
