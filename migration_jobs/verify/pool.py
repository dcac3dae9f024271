"""Checks side by side: tables in parallel, and both databases of one check working at once.

Each of the pool's workers owns a pair of connections, one to RevOS and one to the unified
database, both joined to the snapshots the runner's two connections exported: every check reads
the same instant of each database, whichever worker runs it, so the verdict is the one a serial
run would give. Within a check, the RevOS query runs in the pair's helper thread while the
worker's own thread waits for the unified one (psycopg releases the GIL while a query runs), as
ghostferry and Vitess VDiff keep both sides streaming.

Outcomes are handed over in the order the checks were submitted, each as soon as it and those
before it are known, so the results read as a serial run's do.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TypeVar

import psycopg

from migration_jobs.etl.connections import connect
from migration_jobs.etl.parallel import snapshot_export, snapshot_join
from migration_jobs.verify.outcome import CheckOutcome

T = TypeVar("T")
U = TypeVar("U")


def both_sides(source_side: Executor | None, on_source: Callable[[], T], on_target: Callable[[], U]) -> tuple[T, U]:
    """(on_source(), on_target()), the first run in `source_side` while this thread runs the second.

    Without an executor they run one after the other. Either way both have finished before this
    returns or raises, so neither connection is still busy when the caller uses it again.
    """
    if source_side is None:
        return on_source(), on_target()
    ours = source_side.submit(on_source)
    try:
        theirs = on_target()
    except BaseException:
        wait([ours])
        raise
    return ours.result(), theirs


@dataclass
class Pair:
    """One worker's connections, on the shared snapshots, and its thread for the RevOS side."""

    source: psycopg.Connection
    target: psycopg.Connection
    source_side: Executor
    snapshots: tuple[str, str]  # (RevOS, unified) snapshot ids

    def reset(self) -> None:
        """Back to the shared snapshots, after a check that failed left a transaction aborted."""
        snapshot_join(self.source, self.snapshots[0])
        snapshot_join(self.target, self.snapshots[1])


Check = Callable[[Pair], CheckOutcome]


class CheckPool:
    def __init__(self, runner: Executor, pairs: queue.SimpleQueue[Pair]):
        self._runner, self._pairs = runner, pairs

    def outcomes(self, checks: Sequence[Check], *, early: frozenset[int] = frozenset()) -> Iterator[CheckOutcome]:
        """Run every check on some pair; yield the outcomes in the order of `checks`.

        The checks at the positions `early` start first (a long one started last would run alone at
        the end, while the other workers have nothing left to do).
        """
        started = {i: self._runner.submit(self._on_a_pair, checks[i]) for i in sorted(early)}
        futures = [started.get(i) or self._runner.submit(self._on_a_pair, check) for i, check in enumerate(checks)]
        try:
            for future in futures:
                yield future.result()
        finally:
            for future in futures:  # the caller stopped early: what has not started never will
                future.cancel()

    def _on_a_pair(self, check: Check) -> CheckOutcome:
        pair = self._pairs.get()  # there are as many pairs as workers: one is always free
        try:
            return check(pair)
        finally:
            self._pairs.put(pair)


@contextmanager
def check_pool(*, source: psycopg.Connection, target: psycopg.Connection, workers: int) -> Iterator[CheckPool]:
    """`workers` pairs of connections sharing the snapshots of `source` and `target`.

    `source` and `target` must stay in their REPEATABLE READ transactions while the pool is used:
    their snapshots live only as long as those transactions.
    """
    snapshots = (snapshot_export(source), snapshot_export(target))
    pairs: queue.SimpleQueue[Pair] = queue.SimpleQueue()
    with ExitStack() as stack:
        for _ in range(workers):
            pair = Pair(
                stack.enter_context(connect("revos", purpose="verification")),
                stack.enter_context(connect("unified", purpose="verification")),
                stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-source")),
                snapshots,
            )
            pair.source.read_only = pair.target.read_only = True
            pair.reset()
            pairs.put(pair)
        # Entered last, so left first: every running check ends before its connections close.
        runner = stack.enter_context(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify"))
        yield CheckPool(runner, pairs)
