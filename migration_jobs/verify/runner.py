"""Run every check of one agency, handing each outcome over as soon as it is known.

The data checks (counts, content, references) read each database as of one REPEATABLE READ,
read-only snapshot, so RevOS writing meanwhile cannot make the two sides disagree halfway
through a table; several workers share those snapshots and check tables side by side
(verify/pool.py). A check that breaks is handed over as an error and the others still run.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import psycopg
from django.conf import settings

from migration_jobs.etl.catalog import Catalog, catalog_read
from migration_jobs.etl.connections import connect
from migration_jobs.etl.parallel import parallelism
from migration_jobs.etl.plan import TablePlan, migration_plan_build
from migration_jobs.verify import auth, capture_triggers, content, counts, isolation, references, schema
from migration_jobs.verify.model_drift import unified_model_drift
from migration_jobs.verify.outcome import ERROR, AgencyScope, CheckOutcome
from migration_jobs.verify.pool import Check, Pair, check_pool

logger = logging.getLogger(__name__)

Record = Callable[[CheckOutcome], None]


@contextmanager
def _snapshot_reader(alias: str) -> Iterator[psycopg.Connection]:
    with connect(alias, purpose="verification") as connection:
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.read_only = True
        yield connection


def _outcome_of(
    check_name: str, table_name: str, run: Callable[[], CheckOutcome], reset: Callable[[], None]
) -> CheckOutcome:
    """What `run` found, or the error that stopped it (after `reset` readies its connections again),
    with the seconds it took."""
    began = time.monotonic()
    try:
        outcome = run()
    except Exception as error:
        logger.exception("verification check %s %s failed to run", check_name, table_name)
        reset()
        outcome = CheckOutcome(
            check_name,
            ERROR,
            table_name,
            expected="the check runs to completion",
            actual=f"{type(error).__name__}: {str(error).strip()}",
            details={"traceback": traceback.format_exc(limit=8)},
        )
    return replace(outcome, seconds=round(time.monotonic() - began, 3))


def _guarded(
    record: Record,
    check_name: str,
    table_name: str,
    connections: tuple[psycopg.Connection, ...],
    run: Callable[[], CheckOutcome],
) -> None:
    """Record what `run` found, or the error that stopped it; either way the next check runs."""

    def rollback() -> None:
        for connection in connections:
            if not connection.closed:
                connection.rollback()

    record(_outcome_of(check_name, table_name, run, rollback))


def agency_verify(*, scope: AgencyScope, record: Record, workers: int | None = None) -> None:
    """Counts, content, references, auth, isolation and schema checks of one agency. Writes nothing.

    The data checks run `workers` at a time (default: the VERIFICATION_WORKERS setting).
    The isolation and schema checks run on their own connection beside the data checks (they do
    not read the snapshots); their outcomes are recorded after the data checks', as they come in a
    serial run, and every outcome is recorded on this thread.
    """
    found_beside: list[CheckOutcome] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-isolation") as beside:
        isolation_done = beside.submit(_isolation_checks, scope, None, found_beside.append, with_schema=True)
        try:
            with _snapshot_reader("revos") as source, _snapshot_reader("unified") as target:
                target_catalog = catalog_read(target)
                plans = _plans(source, target_catalog, record)
                reading = _Reading(scope, target_catalog)
                _data_checks(plans, reading, target)
                # Started first: its claims probes take a while and would otherwise run alone at the end.
                reading.add(
                    "auth",
                    "auth.users",
                    lambda pair: auth.auth_check(scope=scope, source=pair.source, catalog=target_catalog),
                    early=True,
                )
                reading.run(source=source, target=target, record=record, workers=workers)
        finally:
            isolation_done.result()
    for outcome in found_beside:
        record(outcome)
    _guarded(record, "schema.models_match_sql", "", (), lambda: schema.models_match_sql_check(unified_model_drift))
    _guarded(
        record,
        capture_triggers.CHECK_NAME,
        "",
        (),
        lambda: capture_triggers.capture_triggers_check(
            source_agency_id=scope.source_agency_id, target_agency_id=scope.target_agency_id
        ),
    )


def agency_verify_changes(
    *,
    scope: AgencyScope,
    changed_ids: dict[str, list[str]],
    record: Record,
    workers: int | None = None,
    counted: Callable[[TablePlan], bool] | None = None,
    isolation_only: isolation.Only | None = None,
) -> None:
    """The cutover's check (ghostferry's reverify): counts of every table, content of the changed rows
    only (`changed_ids`, source table -> ids), and the isolation cases, the table checks `workers` at
    a time. Writes nothing.

    `counted` narrows the counts to the tables it accepts and `isolation_only` the isolation cases
    and sweeps; the cutover's check inside its fence uses them for what changed since its check
    before the fence (verify/delta.py says why that proves the same).

    The isolation cases run on their own connection beside the data checks: RevOS is fenced while
    this runs, so the two share the wait. `record` is called from both threads.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-isolation") as beside:
        isolation_done = beside.submit(_isolation_checks, scope, None, record, with_schema=False, only=isolation_only)
        try:
            _changed_data_checks(
                scope=scope, changed_ids=changed_ids, record=record, workers=workers, counted=counted or _every
            )
        finally:
            isolation_done.result()


def _every(plan: TablePlan) -> bool:
    return True


def _changed_data_checks(
    *,
    scope: AgencyScope,
    changed_ids: dict[str, list[str]],
    record: Record,
    workers: int | None,
    counted: Callable[[TablePlan], bool],
) -> None:
    with _snapshot_reader("revos") as source, _snapshot_reader("unified") as target:
        target_catalog = catalog_read(target)
        plans = _plans(source, target_catalog, record)
        reading = _Reading(scope, target_catalog)
        remap = content.reused_ids(target, scope)
        for plan in plans:
            if counted(plan):
                reading.counts(plan)
            if changed_ids.get(plan.source):
                reading.content(plan, remap=remap, ids=changed_ids[plan.source])
        reading.run(source=source, target=target, record=record, workers=workers)


def _isolation_checks(
    scope: AgencyScope,
    target_catalog: Catalog | None,
    record: Record,
    *,
    with_schema: bool,
    only: isolation.Only | None = None,
) -> None:
    with connect("unified", purpose="verification-rls") as connection:
        # Each case compares what several statements read: one snapshot per case (a rollback ends it).
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.read_only = True
        if target_catalog is None:  # read here when this runs beside the data checks
            target_catalog = catalog_read(connection)
            connection.rollback()
        probe = isolation.Probe(connection, scope, target_catalog)
        if only is not None:
            probe.skip, probe.keep = only.skip, only.keep
        for name, case in {**isolation.CASES, **isolation.SWEEPS}.items():
            if only is None or name in only.cases:
                probe.rows = only.rows_for(name) if only is not None else None
                _guarded(record, name, "", (connection,), partial(case, probe))
        for name, check in schema.SQL_CHECKS.items() if with_schema else ():
            _guarded(record, name, "", (connection,), partial(check, connection))


def _plans(source: psycopg.Connection, target_catalog: Catalog, record: Record) -> list[TablePlan]:
    """The migration's own plan, so verification expects exactly what the engine was told to do."""
    try:
        return migration_plan_build(source=catalog_read(source), target=target_catalog)
    except Exception as error:
        source.rollback()
        for check_name in ("counts", "content"):
            _guarded(record, check_name, "", (), partial(_raise, error))
        return []


def _raise(error: Exception) -> CheckOutcome:
    raise error


@dataclass
class _Reading:
    """The table checks of one verification, queued, then run side by side on the shared snapshots."""

    scope: AgencyScope
    target_catalog: Catalog
    checks: list[Check] = field(default_factory=list)
    early: set[int] = field(default_factory=set)  # positions of the checks started first

    def add(
        self, check_name: str, table_name: str, check: Callable[[Pair], CheckOutcome], *, early: bool = False
    ) -> None:
        if early:
            self.early.add(len(self.checks))
        self.checks.append(lambda pair: _outcome_of(check_name, table_name, lambda: check(pair), pair.reset))

    def _sides(self, pair: Pair) -> dict[str, Any]:
        """What every table check is told: the agency, both sides of the pair, the target's catalog."""
        return {
            "scope": self.scope,
            "source": pair.source,
            "target": pair.target,
            "target_catalog": self.target_catalog,
            "source_side": pair.source_side,
        }

    def counts(self, plan: TablePlan) -> None:
        self.add(
            "counts",
            plan.source,
            lambda pair: counts.counts_check(plan, **self._sides(pair)),
        )

    def content(self, plan: TablePlan, *, remap: dict[str, str], ids: list[str] | None = None) -> None:
        self.add(
            "content",
            plan.source,
            lambda pair: content.content_check(plan, remap=remap, ids=ids, **self._sides(pair)),
        )

    def references(self, table: str, keys: list[references.ForeignKey]) -> None:
        self.add(
            "references",
            table,
            lambda pair: references.references_check(
                table, keys, scope=self.scope, target=pair.target, target_catalog=self.target_catalog
            ),
        )

    def run(
        self, *, source: psycopg.Connection, target: psycopg.Connection, record: Record, workers: int | None
    ) -> None:
        """Every queued check, `workers` at a time; outcomes recorded in the order they were queued."""
        with check_pool(
            source=source, target=target, workers=workers or parallelism(settings.VERIFICATION_WORKERS)
        ) as pool:
            for outcome in pool.outcomes(self.checks, early=frozenset(self.early)):
                record(outcome)


def _data_checks(plans: list[TablePlan], reading: _Reading, target: psycopg.Connection) -> None:
    for plan in plans:
        reading.counts(plan)
    if not reading.scope.migrated:
        reading.checks.append(lambda pair: content.content_not_applicable())
    else:
        remap = content.reused_ids(target, reading.scope)
        for plan in plans:
            reading.content(plan, remap=remap)
    for table, keys in references.foreign_keys_read(target).items():
        reading.references(table, keys)
