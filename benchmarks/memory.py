"""Run a process and sample the resident memory of its whole tree (an RQ worker forks a work horse).

The peak of one process is its VmHWM (the kernel's own high-water mark, exact however short the
process lived) where Linux provides it, else the highest RSS a sample saw. The tree's peak is the
highest sum of the RSS of its processes at one sample.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

SAMPLE_SECONDS = 0.02


@dataclass(frozen=True)
class ProcessRun:
    returncode: int
    seconds: float
    process_peak_bytes: int  # the largest single process of the tree (the work horse, for rqworker)
    tree_peak_bytes: int
    samples: int
    output_tail: str
    timed_out: bool = False


def high_water_mark(pid: int) -> int | None:
    """VmHWM of a live process in bytes, or None where /proc does not report it."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


class TreeSampler(threading.Thread):
    """Samples one process and its descendants until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peaks: dict[int, int] = {}
        self.tree_peak = 0
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(SAMPLE_SECONDS)

    def sample(self) -> None:
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for process in processes:
            try:
                rss = process.memory_info().rss
            except psutil.Error:
                continue  # it ended between listing and reading
            total += rss
            peak = max(rss, high_water_mark(process.pid) or 0)
            self.peaks[process.pid] = max(self.peaks.get(process.pid, 0), peak)
        self.tree_peak = max(self.tree_peak, total)
        self.samples += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def tree_kill(pid: int) -> None:
    """Kill a process and every descendant (an rqworker waits for its work horse on SIGTERM)."""
    try:
        root = psutil.Process(pid)
        processes = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    # The root is left for its parent's Popen.wait() to reap, which then sees the kill's status.
    psutil.wait_procs(processes[:-1], timeout=10)


def process_run_sampled(
    command: Sequence[str], *, env: Mapping[str, str], log: Path, timeout: float | None = None
) -> ProcessRun:
    """Run `command` to its end (or kill it after `timeout` s) with its output in `log`, sampling its memory."""
    started = time.monotonic()
    timed_out = False
    with open(log, "w") as output:
        process = subprocess.Popen(list(command), env=dict(env), stdout=output, stderr=subprocess.STDOUT)
        sampler = TreeSampler(process.pid)
        sampler.start()
        try:
            returncode = process.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:  # on a timeout, and on Ctrl-C or SIGTERM of the benchmark itself
            if process.poll() is None:
                tree_kill(process.pid)
            returncode = process.wait()
        seconds = time.monotonic() - started
        sampler.stop()
    return ProcessRun(
        timed_out=timed_out,
        returncode=returncode,
        seconds=seconds,
        process_peak_bytes=max(sampler.peaks.values(), default=0),
        tree_peak_bytes=sampler.tree_peak,
        samples=sampler.samples,
        output_tail="\n".join(log.read_text(errors="replace").splitlines()[-20:]),
    )
