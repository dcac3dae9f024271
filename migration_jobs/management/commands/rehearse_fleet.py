import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import redis
from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from psycopg import sql

from migration_jobs.etl.connections import connect
from migration_jobs.management.base import ProjectCommand
from migration_jobs.management.database_command import databases_require
from migration_jobs.services.rehearsal import RehearsalPlan, fleet_rehearse

# The configured databases, by the variable that names each (the scratch ones replace them in the
# rehearsal's own process).
URL_VARIABLES = {"default": "DATABASE_URL", "unified": "UNIFIED_DATABASE_URL", "revos": "REVOS_DATABASE_URL"}
INSIDE = "CONTROLPLANE_REHEARSAL"  # set in the rehearsal's own process, whose databases are scratch ones


class Command(ProjectCommand):
    help = (
        "Rehearse the whole plan on scratch databases beside the configured ones (never in them): seed a fleet "
        "of skewed sizes, migrate, verify and cut it over on real workers with app writers running, report as "
        "JSON and HTML (REHEARSAL_REPORT_DIR), then drop the scratch databases."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--agencies", type=int, default=20, help="Agencies in the fleet (default 20).")
        parser.add_argument("--max-rows", type=int, default=20000, help="Rows of the largest agency (Zipf).")
        parser.add_argument("--merge-share", type=float, default=0.3, help="Share merging into AudienceOS ones.")
        parser.add_argument("--workers", type=int, default=2, help="RQ worker processes (default 2).")
        parser.add_argument("--writer-threads", type=int, default=4, help="App writer threads.")
        parser.add_argument("--write-rate", type=float, default=40.0, help="App writes per second in all.")
        parser.add_argument("--wave-size", type=int, default=10, help="Agencies per wave.")
        parser.add_argument("--window-minutes", type=float, default=60.0, help="Length of a night's window.")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--plan-agencies", type=int, default=300, help="The real fleet's size, to extrapolate.")
        parser.add_argument("--report-dir", default="", help="Where the report goes (REHEARSAL_REPORT_DIR).")
        parser.add_argument("--suffix", default="rehearsal", help="Scratch databases: <configured name>_<suffix>.")
        parser.add_argument("--redis-url", default="", help="An empty Redis database for the rehearsal's queues.")

    def handle(self, *args: Any, **options: Any) -> None:
        self._check(options)
        report_dir = Path(options["report_dir"] or settings.REHEARSAL_REPORT_DIR).resolve()
        if os.environ.get(INSIDE) == "1":
            _inside_check(options["suffix"])
            self._rehearse(options, report_dir)
            return
        databases_require("default", "unified", "revos")  # the servers the scratch databases go on
        names = _scratch_names(options["suffix"])
        redis_url = _scratch_redis(options["redis_url"])
        self.stdout.write(f"scratch databases: {', '.join(names.values())}; queues: {redis_url}")
        try:
            for alias, name in names.items():
                _database_create(alias, name)
            child = subprocess.run(
                [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "rehearse_fleet",
                 *_arguments(options), "--report-dir", str(report_dir)],
                env=_child_environment(names, redis_url),
                check=False,
            )  # fmt: skip
        finally:
            for alias, name in names.items():
                _database_drop(alias, name)
            redis.Redis.from_url(redis_url).flushdb()
        if child.returncode:
            raise CommandError(f"The rehearsal failed (exit {child.returncode}); the scratch databases are dropped.")
        self.stdout.write(f"report: {report_dir / 'latest.html'}")

    def _check(self, options: dict[str, Any]) -> None:
        for option in ("agencies", "max_rows", "workers", "wave_size", "writer_threads"):
            if options[option] < 1:
                raise CommandError(f"--{option.replace('_', '-')} must be 1 or more (got {options[option]}).")
        if not 0 <= options["merge_share"] <= 1:
            raise CommandError(f"--merge-share is a share between 0 and 1 (got {options['merge_share']}).")
        if options["window_minutes"] <= 0 or options["write_rate"] < 0:
            raise CommandError("--window-minutes must be above 0 and --write-rate 0 or more.")

    def _rehearse(self, options: dict[str, Any], report_dir: Path) -> None:
        plan = RehearsalPlan(
            agencies=options["agencies"], max_rows=options["max_rows"], merge_share=options["merge_share"],
            workers=options["workers"], writer_threads=options["writer_threads"], write_rate=options["write_rate"],
            wave_size=options["wave_size"], window_minutes=options["window_minutes"], seed=options["seed"],
            plan_agencies=options["plan_agencies"], report_dir=report_dir,
        )  # fmt: skip
        report = fleet_rehearse(plan=plan)
        writes, downtime = report["writes"], report["downtime_seconds"]
        self.stdout.write(
            f"{report['agencies_cut_over']} of {report['agencies_total']} agencies cut over in"
            f" {report['fleet_seconds']} s ({report['nights']} nights), {report['rows_total']} rows,"
            f" fleet {report['fleet_rows_per_second']} rows/s;"
            f" downtime p50 {downtime['p50']} s, p95 {downtime['p95']} s, max {downtime['max']} s; writes"
            f" {writes['acknowledged']} acknowledged, {writes['refused']} refused, {writes['lost']} lost;"
            f" {len(report['failures'])} failures"
        )
        if writes["lost"] or report["agencies_cut_over"] < report["agencies_total"]:
            raise CommandError("The rehearsal lost writes or left agencies not cut over; see the report.")


OPTIONS = (
    "agencies", "max_rows", "merge_share", "workers", "writer_threads", "write_rate", "wave_size", "window_minutes",
    "seed", "plan_agencies", "suffix",
)  # fmt: skip


def _arguments(options: dict[str, Any]) -> list[str]:
    """The options again, for the rehearsal's own process."""
    return [part for name in OPTIONS for part in (f"--{name.replace('_', '-')}", str(options[name]))]


def _inside_check(suffix: str) -> None:
    """The rehearsal's own process runs only on scratch databases (their names end in the suffix)."""
    live = [config["NAME"] for config in settings.DATABASES.values() if not config["NAME"].endswith(f"_{suffix}")]
    if live:
        raise CommandError(f"Refusing to rehearse in {', '.join(live)}: not a scratch database of a rehearsal.")


def _live_names() -> set[str]:
    """Every database name the configuration names (and, under the tests, the test databases)."""
    names = {config["NAME"] for config in settings.DATABASES.values()}
    for variable in URL_VARIABLES.values():
        path = urlparse(os.environ.get(variable, "")).path.lstrip("/")
        if path:
            names.add(path)
    return names


def _scratch_names(suffix: str) -> dict[str, str]:
    """alias -> the scratch database beside the configured one; refuses any that names a configured database."""
    suffix = suffix.strip()
    if not suffix or not suffix.replace("_", "").isalnum():
        raise CommandError(f"--suffix {suffix!r} must be letters, digits or _ (the scratch names end in it).")
    names = {alias: f"{settings.DATABASES[alias]['NAME']}_{suffix}"[:63] for alias in URL_VARIABLES}
    live = _live_names()
    clash = sorted(set(names.values()) & live)
    if clash or len(set(names.values())) < len(names):
        raise CommandError(
            f"Refusing to rehearse in {', '.join(clash) or 'one database for two roles'}: the rehearsal never"
            " touches the configured databases. Give another --suffix."
        )
    return names


def _scratch_redis(given: str) -> str:
    """A Redis database for the rehearsal's queues: not the configured one, and empty (it is flushed after)."""
    configured = urlparse(settings.REDIS_URL)
    if given:
        url = given
    elif configured.scheme == "unix":
        # Not urlunparse: with no host it writes "unix:/path", which redis-py refuses.
        url = f"{settings.REDIS_URL.partition('?')[0]}?db=15"
    else:
        url = configured._replace(path="/15").geturl()
    if _redis_database(url) == _redis_database(settings.REDIS_URL):
        raise CommandError("Refusing the configured Redis database for the rehearsal's queues; give --redis-url.")
    if redis.Redis.from_url(url).dbsize():
        raise CommandError(f"{url} is not empty and the rehearsal flushes it afterwards; give an empty --redis-url.")
    return url


def _redis_database(url: str) -> tuple[str | None, int | None, str | None, int]:
    """(server, database number) of a Redis URL, whichever way it names them."""
    # redis-py leaves parse_url unannotated; it returns the keyword arguments of a Connection.
    kwargs: dict[str, Any] = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
    return kwargs.get("host"), kwargs.get("port"), kwargs.get("path"), int(kwargs.get("db") or 0)


def _database_create(alias: str, name: str) -> None:
    with connect(alias, autocommit=True, purpose="rehearsal") as server:
        server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _database_drop(alias: str, name: str) -> None:
    with connect(alias, autocommit=True, purpose="rehearsal") as server:
        server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _child_environment(names: dict[str, str], redis_url: str) -> dict[str, str]:
    """This process's environment with every URL naming a scratch database, and nothing read from files."""
    environment = {**os.environ, INSIDE: "1", "ENV_FILE": "", "REDIS_URL": redis_url, "DEMO_COMMANDS_ALLOWED": "true"}
    for alias, variable in URL_VARIABLES.items():
        url = urlparse(_configured_url(alias, variable))
        environment[variable] = url._replace(path=f"/{names[alias]}").geturl()
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    return environment


def _configured_url(alias: str, variable: str) -> str:
    raw = os.environ.get(variable)
    if raw:
        return raw
    config = settings.DATABASES[alias]
    return f"postgres://{config['USER']}@{config['HOST']}:{config['PORT'] or 5432}/{config['NAME']}"
