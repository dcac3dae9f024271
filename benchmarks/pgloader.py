"""pgloader loading the same RevOS tables into a scratch database.

pgloader's PostgreSQL source has no row filter, so it loads whole tables: the benchmark's RevOS
database holds only the measured agency, which makes the whole tables exactly the agency's rows
(checked before loading). It loads into its own scratch database rather than a schema of the
unified one: pgloader 3.6.7 fails creating indexes when it renames the schema (TYPE-ERROR "The
value NIL is not of type PGLOADER.CATALOG:COLUMN", dimitri/pgloader#1448). The tables keep their
RevOS shape (no transform) with pgloader's defaults: create the tables, load them with its
parallel COPY writers, then build the primary keys, indexes and foreign keys. Its heap is sized to
the tables it loads (pgloader_heap_mb), so a repeat does not lose its peer figure to a heap too small.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from django.conf import settings
from psycopg import sql

from benchmarks.databases import libpq_parameters, pgloader_url, scratch_database_create, scratch_database_drop
from benchmarks.report import MIB
from benchmarks.workload import database_checkpoint, revos_agency_count
from migration_jobs.etl.catalog import catalog_read
from migration_jobs.etl.connections import connect
from migration_jobs.etl.plan import migration_plan_build

HEAP_MIN_MB = 4096


def pgloader_version() -> str | None:
    binary = shutil.which("pgloader")
    if binary is None:
        return None
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60).stdout
    return output.splitlines()[0] if output else "unknown"


def pgloader_heap_mb(*, source_bytes: int, memory_bytes: int) -> int:
    """The SBCL heap pgloader gets (`--dynamic-space-size`, MiB): room for its batches of every
    table in flight at once, twice the source tables' size plus 1 GiB for the rest, at least
    HEAP_MIN_MB, at most half of the machine's memory. Its build's default (1 to 4 GiB, as packaged)
    was exhausted at 1M rows ("Heap exhausted during garbage collection"), leaving a repeat without
    a peer figure."""
    wanted = 2 * source_bytes // MIB + 1024
    return int(max(HEAP_MIN_MB, min(wanted, memory_bytes // MIB // 2)))


def _memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _heap_options(binary: str, heap_mb: int) -> list[str]:
    """`--dynamic-space-size N` if this pgloader takes SBCL runtime options (an image saved with its
    runtime options fixed reads them as its own and refuses them); else nothing, as it was built."""
    probe = subprocess.run(
        [binary, "--dynamic-space-size", str(heap_mb), "--version"], capture_output=True, text=True, timeout=60
    )
    return ["--dynamic-space-size", str(heap_mb)] if probe.returncode == 0 else []


def _source_bytes(tables: list[str]) -> int:
    with connect("revos", purpose="benchmark") as source:
        return source.execute(
            "SELECT coalesce(sum(pg_table_size(format('public.%%I', t)::regclass)), 0) FROM unnest(%s::text[]) t",
            [tables],
        ).fetchone()[0]


def _source_tables() -> tuple[list[str], dict[str, int]]:
    """The mapped tables pgloader loads, and the rows of those it cannot (other schemas than public:
    Supabase Auth's accounts, one or two rows per person) by table."""
    with connect("revos", purpose="benchmark") as source, connect("unified", purpose="benchmark") as target:
        plans = migration_plan_build(source=catalog_read(source), target=catalog_read(target))
        left_out = {
            p.source: source.execute(sql.SQL("SELECT count(*) FROM {}").format(p.source_table)).fetchone()[0]
            for p in plans
            if "." in p.source
        }
        return [p.source for p in plans if p.source not in left_out], left_out


def _command_file(tables: list[str], *, target_name: str) -> str:
    names = ", ".join(f"'{t}'" for t in tables)
    return (
        "LOAD DATABASE\n"
        f"  FROM {pgloader_url(settings.DATABASES['revos'])}\n"
        f"  INTO {pgloader_url(settings.DATABASES['unified'], dbname=target_name)}\n"
        "  WITH include drop, create tables, create indexes, foreign keys, reset sequences\n"
        f"  INCLUDING ONLY TABLE NAMES MATCHING {names} IN SCHEMA 'public'\n"
        ";\n"
    )


def _rows_loaded(target_name: str, tables: list[str]) -> int:
    import psycopg

    with psycopg.connect(**libpq_parameters(settings.DATABASES["unified"], dbname=target_name)) as connection:
        return sum(
            connection.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
            for t in tables
        )


def pgloader_measure() -> dict:
    """Time pgloader on the agency's tables, or say why it was not run."""
    version = pgloader_version()
    if version is None:
        return {"status": "not installed"}
    if (agencies := revos_agency_count()) != 1:
        return {"status": f"skipped: RevOS holds {agencies} agencies, pgloader cannot load just one"}
    (tables, left_out), config = _source_tables(), settings.DATABASES["unified"]
    target_name = f"{config['NAME']}_pgloader"
    scratch_database_create(config=config, name=target_name)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pgloader-") as work:
            command = Path(work) / "revos.load"
            command.write_text(_command_file(tables, target_name=target_name))
            binary = shutil.which("pgloader")
            heap_mb = pgloader_heap_mb(source_bytes=_source_bytes(tables), memory_bytes=_memory_bytes())
            heap = _heap_options(binary, heap_mb)
            database_checkpoint()
            started = time.monotonic()
            result = subprocess.run(
                [binary, *heap, "--root-dir", work, "--on-error-stop", str(command)],
                capture_output=True,
                text=True,
            )
            seconds = time.monotonic() - started
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            return {
                "status": f"failed (exit {result.returncode})",
                "version": version,
                "heap_mb": heap_mb if heap else "the build's default",
                "output": tail,
            }
        rows = _rows_loaded(target_name, tables)
    finally:
        scratch_database_drop(config=config, name=target_name)
    return {
        "status": "ok",
        "version": version,
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds, 1),
        "tables": len(tables),
        "heap_mb": heap_mb if heap else "the build's default",
        "left_out": left_out,
        "target": "scratch database, RevOS table shapes; pgloader builds PKs, indexes and FKs after loading",
    }
