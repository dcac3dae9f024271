"""python -m benchmarks [--rows N] [--scales A,B] [--sizes A,B,C] [--quick] [--repeats N] [--clients N]
                        [--requests N] [--out FILE] [--only cutover|fleet] [--fleet-agencies N] [--fleet-rows N]

Runs in scratch databases `<name>_bench` created beside the three configured ones (and dropped at
the end unless --keep-databases), so the data of DATABASE_URL, UNIFIED_DATABASE_URL and
REVOS_DATABASE_URL is never touched. The RQ queues of REDIS_URL must be free of other workers.
Prints the figures, writes them as JSON to --out and exits 0: targets are reported, not asserted.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import traceback
from pathlib import Path

import environ

from benchmarks.databases import (
    ScratchDatabaseError,
    scratch_database_create,
    scratch_database_drop,
    url_config,
    url_renamed,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE_VARS = ("DATABASE_URL", "UNIFIED_DATABASE_URL", "REVOS_DATABASE_URL")
QUEUES = ("migrations", "verification")
QUICK = {
    "rows": 100_000,
    "sizes": (10_000, 50_000, 100_000),
    "clients": 100_000,
    "rls_leads": 100_000,
    "people": 1_000,
    "fleet_agencies": 20,
    "fleet_rows": 100_000,
    "scales": (),
}
FULL = {
    "rows": 1_000_000,
    "clients": 1_000_000,
    "rls_leads": 1_000_000,
    "people": 10_000,
    "fleet_agencies": 200,  # the fleet: 200 agencies, about 2M rows in all
    "fleet_rows": 2_000_000,
}


class BenchRefused(Exception):
    """The benchmark cannot run here as things are; the message says what to change."""


def _count(text: str) -> int:
    """100000, 100_000, 100k or 1M."""
    text = text.strip().lower().replace("_", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if factor > 1 else text) * factor)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count of repeats; give 1 or more")
    return value


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1])
    parser.add_argument("--rows", type=_count, help="source rows of the main agency (default 1M; --quick 100k)")
    parser.add_argument(
        "--sizes",
        type=lambda v: tuple(_count(p) for p in v.split(",")),
        help="agency sizes for the memory series (default 100k,1M,5M; --quick 10k,50k,100k)",
    )
    parser.add_argument(
        "--scales",
        type=lambda v: tuple(_count(p) for p in v.split(",") if p.strip()),
        help="further agency sizes at which the migration is held against pgloader and the raw COPY pipe as at"
        " --rows, repeats included (default 5M; --quick none; '' for none)",
    )
    parser.add_argument("--clients", type=_count, help="unified clients for the changelist (default 1M; --quick 100k)")
    parser.add_argument("--requests", type=int, default=30, help="timed changelist requests (default 30)")
    parser.add_argument(
        "--repeats",
        type=_positive,
        default=3,
        help="times each throughput figure is measured; the report gives the median and spread (default 3;"
        " 5 where the ratios spread over more than 25 %%)",
    )
    parser.add_argument(
        "--rls-leads", type=_count, help="unified leads for the RLS read cost (default 1M; --quick 100k)"
    )
    parser.add_argument(
        "--people", type=_count, help="people of the main agency, for the cutover window (default 10k; --quick 1k)"
    )
    parser.add_argument(
        "--only",
        choices=["cutover", "fleet"],
        help="measure only this: `cutover` seeds, migrates and verifies once, then measures the cutover;"
        " `fleet` migrates one large agency alone, then rehearses the fleet (manage.py rehearse_fleet)",
    )
    parser.add_argument(
        "--fleet-agencies",
        type=_count,
        help="agencies of the fleet rehearsal (default 200; --quick 20; 0 leaves the fleet out)",
    )
    parser.add_argument(
        "--fleet-rows", type=_count, help="rows of the whole fleet, sizes by Zipf's law (default 2M; --quick 100k)"
    )
    parser.add_argument(
        "--fleet-plan-agencies",
        type=_positive,
        default=300,
        help="the real fleet's size the fleet's wall time is extrapolated to (the plan names none; default 300)",
    )
    parser.add_argument(
        "--fleet-redis-url",
        default="",
        help="an empty Redis database for the rehearsal's queues (default: database 15 of REDIS_URL's server)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a first look in a few minutes")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds a worker may run before it is killed")
    parser.add_argument("--out", type=Path, default=Path("bench-results/latest.json"))
    parser.add_argument("--keep-databases", action="store_true", help="leave the scratch databases for a look")
    parser.add_argument(
        "--empty-queues", action="store_true", help="drop jobs waiting in the migrations/verification queues"
    )
    args = parser.parse_args(argv)
    if args.fleet_agencies is not None and args.fleet_agencies < 0:
        parser.error(f"--fleet-agencies {args.fleet_agencies}: give a number of agencies, or 0 to leave the fleet out")
    return args


def _options(args: argparse.Namespace):
    from benchmarks.runner import DEFAULT_SCALES, DEFAULT_SIZES, BenchOptions

    defaults = QUICK if args.quick else {**FULL, "sizes": DEFAULT_SIZES, "scales": DEFAULT_SCALES}
    return BenchOptions(
        rows=args.rows or defaults["rows"],
        sizes=args.sizes or defaults["sizes"],
        clients=args.clients or defaults["clients"],
        requests=args.requests,
        repeats=args.repeats,
        max_repeats=max(args.repeats, BenchOptions.max_repeats),
        rls_leads=args.rls_leads or defaults["rls_leads"],
        people=args.people or defaults["people"],
        fleet_agencies=defaults["fleet_agencies"] if args.fleet_agencies is None else args.fleet_agencies,
        fleet_rows=args.fleet_rows or defaults["fleet_rows"],
        fleet_plan_agencies=args.fleet_plan_agencies,
        fleet_redis_url=args.fleet_redis_url,
        scales=defaults["scales"] if args.scales is None else args.scales,
        seed=args.seed,
        timeout=args.timeout,
        log_dir=args.out.parent / "logs",
    )


def _scratch_urls() -> dict[str, str]:
    """The configured URLs with `_bench` appended to each database name."""
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
    missing = [var for var in (*DATABASE_VARS, "REDIS_URL") if not os.environ.get(var)]
    if missing:
        raise BenchRefused(f"{', '.join(missing)} not set: run `make bench` (bin/stack provides them) or export them.")
    return {var: url_renamed(os.environ[var], f"{url_config(os.environ[var])['NAME']}_bench") for var in DATABASE_VARS}


def _databases_prepare() -> None:
    from django.core.management import call_command

    from migration_jobs.services.schema import schema_apply

    for alias in ("unified", "revos"):
        schema_apply(database=alias)
    call_command("migrate", verbosity=0)


def _queues_check(*, empty: bool) -> None:
    """The benchmark's worker must be the only one taking jobs, and the only jobs must be its own."""
    import django_rq
    from rq import Worker

    for name in QUEUES:
        queue = django_rq.get_queue(name)
        if workers := [worker for worker in Worker.all(queue=queue) if not _dead_here(worker)]:
            raise BenchRefused(
                f"{len(workers)} RQ worker(s) listen on the {name!r} queue of REDIS_URL and would take the "
                "benchmark's jobs. Stop them (e.g. `make demo`'s worker) or point REDIS_URL at another database."
            )
        if len(queue) and not empty:
            raise BenchRefused(f"The {name!r} queue holds {len(queue)} job(s); rerun with --empty-queues to drop them.")
        queue.empty()


def _dead_here(worker) -> bool:
    """A worker of this host whose process is gone (killed mid-job, its registration not expired yet)."""
    if worker.hostname != socket.gethostname() or not worker.pid:
        return False
    try:
        os.kill(worker.pid, 0)
    except ProcessLookupError:
        worker.register_death()
        return True
    except PermissionError:
        return False
    return False


def _queues_empty() -> None:
    import django_rq

    for name in QUEUES:
        django_rq.get_queue(name).empty()


def _run(args: argparse.Namespace) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    django.setup()
    from benchmarks.report import cutover_report_table, fleet_report_table, report_table, report_write
    from benchmarks.runner import benchmark_run, cutover_benchmark_run, fleet_benchmark_run

    _databases_prepare()
    _queues_check(empty=args.empty_queues)
    run, table = {
        "cutover": (cutover_benchmark_run, cutover_report_table),
        "fleet": (fleet_benchmark_run, fleet_report_table),
    }.get(args.only, (benchmark_run, report_table))
    try:
        report = run(options=_options(args), worker_env=dict(os.environ))
    finally:
        _queues_empty()  # they were empty before; a job left now is the benchmark's and names dropped rows
    print(table(report))
    report_write(report, args.out)
    print(f"\nwritten to {args.out}")


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt  # so the worker is killed and the scratch databases dropped, as on Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        scratch = _scratch_urls()
        for url in scratch.values():
            scratch_database_create(config=url_config(url), name=url_config(url)["NAME"])
    except (BenchRefused, ScratchDatabaseError) as refusal:
        print(f"benchmarks: {refusal}", file=sys.stderr)
        return 2
    os.environ.update(scratch)  # this process and the workers it starts use the scratch databases
    try:
        _run(args)
    except BenchRefused as refusal:
        print(f"benchmarks: {refusal}", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        return 1
    except KeyboardInterrupt:
        print("benchmarks: interrupted", file=sys.stderr)
        return 130
    finally:
        _scratch_drop(scratch, keep=args.keep_databases)
    return 0


def _scratch_drop(scratch: dict[str, str], *, keep: bool) -> None:
    if "django" in sys.modules:
        from django.db import connections

        connections.close_all()
    for url in scratch.values():
        if keep:
            print(f"kept scratch database {url_config(url)['NAME']}", file=sys.stderr)
        else:
            scratch_database_drop(config=url_config(url), name=url_config(url)["NAME"])


if __name__ == "__main__":
    sys.exit(main())
