import argparse
import logging
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import CommandError
from django.db import connections

from migration_jobs.management.base import ProjectCommand
from migration_jobs.management.database_command import databases_require
from migration_jobs.services.reconcile import PassReport, reconcile_pass

logger = logging.getLogger(__name__)


def one_line(error: BaseException) -> str:
    """The error's first line: PostgreSQL adds the statement and a caret below its message."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a period; give seconds above 0")
    return seconds


class Command(ProjectCommand):
    help = (
        "Every RECONCILE_INTERVAL seconds, without any request: fail runs whose worker died and lift fences no "
        "live run owns, each action in the agency's history. Runs beside the worker; --once runs one pass."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="One pass, then exit (for cron and tests).")
        parser.add_argument(
            "--interval", type=positive_seconds, default=None, help="Seconds between passes (RECONCILE_INTERVAL)."
        )

    def handle(self, *args, once: bool, interval: float | None, **options):
        interval = interval or settings.RECONCILE_INTERVAL
        if once:
            self._once(interval)
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        logger.info("reconciling every %g s", interval)
        while not stop.is_set():
            started = time.monotonic()
            try:
                self._show(reconcile_pass(interval=interval), interval)
            except Exception as error:  # this pass's failure only: the next one tries again
                logger.warning("reconcile pass failed, next in %g s: %s", interval, one_line(error))
            finally:
                connections.close_all()  # a database that went away is connected afresh next pass
            stop.wait(max(0.0, started + interval - time.monotonic()))

    def _once(self, interval: float) -> None:
        databases_require("default")  # the one it cannot do without, named as the other commands do
        try:
            report = reconcile_pass(interval=interval)
        except Exception as error:
            raise CommandError(f"The reconcile pass failed: {one_line(error)}") from error
        for line in [*map(str, report.actions), *report.windows]:
            self.stdout.write(line)
        if report.unreachable:
            raise CommandError("; ".join(report.unreachable) + ". Left for the next pass.")
        if report.skipped:
            self.stdout.write("Another reconciler is in its pass; nothing done.")

    def _show(self, report: PassReport, interval: float) -> None:
        for line in [*map(str, report.actions), *report.windows]:
            self.stdout.write(line)
        if report.unreachable:
            logger.warning("%s; left for the next pass in %g s", "; ".join(report.unreachable), interval)
