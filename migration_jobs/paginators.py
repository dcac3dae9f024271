"""Admin pagination that never counts every row of a huge table.

`COUNT(*)` on PostgreSQL reads the whole table (or index); on a table of millions of rows that is
seconds per page view. Small results are still counted exactly. Large ones are estimated: from
pg_class.reltuples (kept fresh by autovacuum/ANALYZE) when unfiltered, from the planner's row
estimate when filtered. An estimate only moves the page count; the rows shown are always real.
"""

from __future__ import annotations

import json

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property

from migration_jobs.etl.connections import fetch_value

# Below this many rows an exact count is cheap enough to run on every page view.
EXACT_COUNT_LIMIT = 10_000


def table_row_estimate(*, queryset: QuerySet) -> int | None:
    """pg_class.reltuples for the queryset's table, or None if PostgreSQL has no estimate yet."""
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            [connections[queryset.db].ops.quote_name(queryset.model._meta.db_table)],
        )
        row = cursor.fetchone()
    # reltuples is -1 until the table is first vacuumed or analyzed.
    return row[0] if row and row[0] >= 0 else None


def query_row_estimate(*, queryset: QuerySet) -> int:
    """The planner's estimate of how many rows the queryset returns (EXPLAIN, no execution)."""
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = fetch_value(cursor)
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def bounded_count(*, queryset: QuerySet, limit: int) -> int:
    """The exact count, but reading no more than limit + 1 rows."""
    return queryset.order_by().values("pk")[: limit + 1].count()


class EstimatedCountPaginator(Paginator):
    """A Paginator whose count is exact up to EXACT_COUNT_LIMIT rows and estimated beyond."""

    exact_count_limit = EXACT_COUNT_LIMIT

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        if not queryset.query.where:
            estimate = table_row_estimate(queryset=queryset)
            if estimate is not None and estimate > self.exact_count_limit:
                return estimate
        counted = bounded_count(queryset=queryset, limit=self.exact_count_limit)
        if counted <= self.exact_count_limit:
            return counted
        return max(counted, query_row_estimate(queryset=queryset))
