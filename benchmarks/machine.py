"""The machine the figures came from: they only mean something next to it."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import psutil

from benchmarks.pgloader import pgloader_version
from migration_jobs.etl.connections import connect


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def code_describe() -> dict:
    """The commit measured, and the files that differed from it (figures from a dirty tree say so)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30).stdout
        except OSError:
            return ""

    changed = [line[3:] for line in git("status", "--porcelain").splitlines() if line[3:].endswith(".py")]
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or "unknown", "changed_files": changed}


def machine_describe() -> dict:
    with connect("unified", autocommit=True, purpose="benchmark") as connection:
        postgres = connection.execute("SHOW server_version").fetchone()[0]
        shared_buffers = connection.execute("SHOW shared_buffers").fetchone()[0]
        autovacuum = connection.execute("SHOW autovacuum").fetchone()[0]
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": postgres,
        "shared_buffers": shared_buffers,
        "autovacuum": autovacuum,
        "pgloader": pgloader_version() or "not installed",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
