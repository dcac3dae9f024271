import logging
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import CommandError
from django.db import connections

from migration_jobs.management.base import ProjectCommand
from migration_jobs.management.commands.reconcile import one_line, positive_seconds
from migration_jobs.management.database_command import databases_require
from migration_jobs.services.catch_up_stream import StreamPass, catch_up_stream_pass

logger = logging.getLogger(__name__)


class Command(ProjectCommand):
    help = (
        "Every CATCH_UP_STREAM_INTERVAL seconds: catch up each migrated, not yet cut over agency from the RevOS "
        "change capture and prune what was applied, so a cutover starts from seconds of backlog and the capture "
        "stays small. Runs beside the worker; --once runs one pass."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="One pass, then exit (for cron and tests).")
        parser.add_argument(
            "--interval", type=positive_seconds, default=None, help="Seconds between passes (CATCH_UP_STREAM_INTERVAL)."
        )

    def handle(self, *args, once: bool, interval: float | None, **options):
        interval = interval or settings.CATCH_UP_STREAM_INTERVAL
        if once:
            databases_require("default")
            try:
                report = catch_up_stream_pass()
            except Exception as error:
                raise CommandError(f"The catch-up pass failed: {one_line(error)}") from error
            self._show(report)
            if report.unreachable:
                raise CommandError("; ".join(report.unreachable) + ". Left for the next pass.")
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        logger.info("catching up every %g s", interval)
        while not stop.is_set():
            started = time.monotonic()
            try:
                report = catch_up_stream_pass()
                self._show(report)
                if report.unreachable:
                    logger.warning("%s; left for the next pass in %g s", "; ".join(report.unreachable), interval)
            except Exception as error:  # this pass's failure only: the next one tries again
                logger.warning("catch-up pass failed, next in %g s: %s", interval, one_line(error))
            finally:
                connections.close_all()
            stop.wait(max(0.0, started + interval - time.monotonic()))

    def _show(self, report: StreamPass) -> None:
        for done in report.streamed:
            self.stdout.write(str(done))
        for link, reason in report.skipped:
            self.stdout.write(f"{link.name}: left alone: {reason}")
