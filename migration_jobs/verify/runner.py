"""Run every check of one agency, handing each outcome over as soon as it is known.

The data checks (counts, content, references) read each database as of one REPEATABLE READ,
read-only snapshot, so RevOS writing meanwhile cannot make the two sides disagree halfway
through a table; several workers share those snapshots and check tables side by side
(verify/pool.py). A check that breaks is handed over as an error and the others still run.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from django.conf import settings

from migration_jobs.etl.catalog import Catalog, catalog_read
from migration_jobs.etl.connections import connect
from migration_jobs.etl.parallel import parallelism
from migration_jobs.etl.plan import TablePlan, migration_plan_build
from migration_jobs.verify import content, counts, isolation, references, schema
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


def _outcome_of(check_name: str, table_name: str, run: Callable[[], CheckOutcome], reset: Callable[[], None]):
    """What `run` found, or the error that stopped it (after `reset` readies its connections again)."""
    try:
        return run()
    except Exception as error:
        logger.exception("verification check %s %s failed to run", check_name, table_name)
        reset()
        return CheckOutcome(
            check_name,
            ERROR,
            table_name,
            expected="the check runs to completion",
            actual=f"{type(error).__name__}: {str(error).strip()}",
            details={"traceback": traceback.format_exc(limit=8)},
        )


def _guarded(
    record: Record, check_name: str, table_name: str, connections: tuple, run: Callable[[], CheckOutcome]
) -> None:
    """Record what `run` found, or the error that stopped it; either way the next check runs."""

    def rollback() -> None:
        for connection in connections:
            if not connection.closed:
                connection.rollback()

    record(_outcome_of(check_name, table_name, run, rollback))


def agency_verify(*, scope: AgencyScope, record: Record, workers: int | None = None) -> None:
    """Counts, content, references, isolation and schema checks of one agency. Writes nothing.

    The data checks run `workers` at a time (default: the VERIFICATION_WORKERS setting).
    """
    workers = workers or parallelism(settings.VERIFICATION_WORKERS)
    with _snapshot_reader("revos") as source, _snapshot_reader("unified") as target:
        target_catalog = catalog_read(target)
        plans = _plans(source, target_catalog, record)
        _data_checks(
            plans,
            scope=scope,
            source=source,
            target=target,
            target_catalog=target_catalog,
            record=record,
            workers=workers,
        )
    with connect("unified", purpose="verification-rls") as connection:
        connection.read_only = True
        probe = isolation.Probe(connection, scope, target_catalog)
        for name, case in {**isolation.CASES, **isolation.SWEEPS}.items():
            _guarded(record, name, "", (connection,), lambda case=case: case(probe))
        for name, check in schema.SQL_CHECKS.items():
            _guarded(record, name, "", (connection,), lambda check=check: check(connection))
    _guarded(record, "schema.models_match_sql", "", (), lambda: schema.models_match_sql_check(unified_model_drift))


def _plans(source: psycopg.Connection, target_catalog: Catalog, record: Record) -> list[TablePlan]:
    """The migration's own plan, so verification expects exactly what the engine was told to do."""
    try:
        return migration_plan_build(source=catalog_read(source), target=target_catalog)
    except Exception as error:
        source.rollback()
        for check_name in ("counts", "content"):
            _guarded(record, check_name, "", (), lambda error=error: _raise(error))
        return []


def _raise(error: Exception) -> CheckOutcome:
    raise error


def _data_checks(
    plans: list[TablePlan],
    *,
    scope: AgencyScope,
    source: psycopg.Connection,
    target: psycopg.Connection,
    target_catalog: Catalog,
    record: Record,
    workers: int,
) -> None:
    """Counts and content per source table, references per unified table, `workers` at a time."""
    checks: list[Check] = []

    def add(check_name: str, table_name: str, check: Callable[[Pair], CheckOutcome]) -> None:
        checks.append(lambda pair: _outcome_of(check_name, table_name, lambda: check(pair), pair.reset))

    for plan in plans:
        add(
            "counts",
            plan.source,
            lambda pair, plan=plan: counts.counts_check(
                plan,
                scope=scope,
                source=pair.source,
                target=pair.target,
                target_catalog=target_catalog,
                source_side=pair.source_side,
            ),
        )
    if not scope.migrated:
        checks.append(lambda pair: content.content_not_applicable())
    else:
        remap = content.reused_ids(target, scope)
        for plan in plans:
            add(
                "content",
                plan.source,
                lambda pair, plan=plan: content.content_check(
                    plan,
                    scope=scope,
                    source=pair.source,
                    target=pair.target,
                    target_catalog=target_catalog,
                    remap=remap,
                    source_side=pair.source_side,
                ),
            )
    for table, keys in references.foreign_keys_read(target).items():
        add(
            "references",
            table,
            lambda pair, table=table, keys=keys: references.references_check(
                table, keys, scope=scope, target=pair.target, target_catalog=target_catalog
            ),
        )
    with check_pool(source=source, target=target, workers=workers) as pool:
        for outcome in pool.outcomes(checks):
            record(outcome)
