"""Content: the transformed RevOS rows against the unified rows, compared by checksums over id ranges.

As data-diff does it: each side reduces an id range to (rows, sum of row hashes) per sub-range in
one GROUP BY, computed by its own database; equal sub-ranges are done with, differing ones are
split again until they are small enough to fetch and compare row by row. Only checksums and the
rows of small differing ranges cross the wire, so memory depends on the range size, never on the
table size, and a difference is named by its ids.

Both sides are reduced to the same relation, (id uuid, vals text[], h bigint): the target columns
as text, cast to the target's types first, so equal values print alike (both connections are in
UTC), and the row's hash. The checksums sum `h` and only the rows of small differing ranges are
fetched as `vals`, compared value by value.
The source side is the plan's own transformation with the id map's rewrites of reused agency,
user and client ids applied; rows AudienceOS already had (reused, `inserted = false`) are its
own and are compared on neither side.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from migration_jobs.etl import id_map
from migration_jobs.etl.catalog import Catalog
from migration_jobs.etl.plan import TablePlan
from migration_jobs.verify.outcome import SAMPLE_SIZE, AgencyScope, CheckOutcome, not_applicable, status_of
from migration_jobs.verify.pool import both_sides

UUID_MAX = (1 << 128) - 1
FANOUT = 16  # sub-ranges per split
Row = tuple[UUID, list[str | None]]  # (id, the row's values as text) as _rows reads them
LEAF_ROWS = 256  # a differing range this small is fetched and compared row by row
DIFFERENCE_LIMIT = 1000  # stop narrowing down after this many differing ids (the result says so)


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a connection and a query of (id uuid, vals text[])."""

    connection: psycopg.Connection
    relation: sql.Composable


@dataclass
class Diff:
    source_rows: int = 0
    target_rows: int = 0
    missing: int = 0  # in the source, not in the target
    extra: int = 0  # in the target, not in the source
    differing: int = 0
    samples: dict[str, list[str]] = field(default_factory=lambda: {"missing": [], "extra": [], "differing": []})
    differing_columns: dict[str, list[str]] = field(default_factory=dict)
    truncated: bool = False
    ranges_compared: int = 0

    @property
    def total(self) -> int:
        return self.missing + self.extra + self.differing

    def note(self, kind: str, row_id: UUID, columns: list[str] | None = None) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.samples[kind]) < SAMPLE_SIZE:
            self.samples[kind].append(str(row_id))
            if columns is not None:
                self.differing_columns[str(row_id)] = columns


# --- the two relations -----------------------------------------------------------------------

# Types whose values are equal exactly when their text is (jsonb and numeric(p, s) print one form per
# value; varchar and text compare bytes under the deterministic collations PostgreSQL hashes with):
# hashed as they are, which skips printing them. Any other type is hashed as its text, so a change
# that only shows in print (-0 and 0 of a float, 1.0 and 1.00 of an unconstrained numeric) still counts.
HASHED_AS_VALUES = frozenset(
    {"uuid", "bigint", "integer", "smallint", "boolean", "date", "timestamp with time zone", "text", "jsonb"}
)


def _hashed(value: sql.Composable, sql_type: str) -> sql.Composable:
    """What the row hash takes of one column: the value itself, or its text (see HASHED_AS_VALUES)."""
    as_value = sql_type in HASHED_AS_VALUES or sql_type.startswith(("character varying", "numeric("))
    return value if as_value else sql.SQL("CAST({} AS text)").format(value)


def _row_hash(values: list[sql.Composable]) -> sql.Composed:
    """One bigint per row: PostgreSQL's own record hash of the typed columns. It costs a third of
    hashing the row's text (no output functions, no array), measured on a 112k-row table."""
    return sql.SQL("hash_record_extended(ROW({}), 0)").format(sql.SQL(", ").join(values))


def source_relation(plan: TablePlan, *, scope: AgencyScope, target: Catalog, remap: dict[str, str]) -> sql.Composed:
    """The agency's source rows as the target should hold them: (id, vals) with reused ids rewritten."""
    types = _full_types(plan, target)
    aliases = [sql.Identifier(f"c{i}") for i in range(len(plan.target_columns))]
    conditions = [plan.scope_condition(scope.source_agency_id)]
    if plan.entry.where:
        conditions.append(sql.SQL(plan.entry.where))
    transformed = sql.SQL("SELECT {} FROM {} WHERE {}").format(
        plan.select_list(scope.target_agency_id),
        plan.source_table,
        sql.SQL(" AND ").join(conditions),
    )
    values, typed = [], []
    for position, (alias, sql_type) in enumerate(zip(aliases, types, strict=True)):
        if position not in compared_positions(plan):
            continue
        value = sql.SQL("CAST(s.{} AS {})").format(alias, sql.SQL(sql_type))
        text = sql.SQL("CAST({} AS text)").format(value)
        if remap and position in plan.remap_positions:
            text = sql.SQL("coalesce(remap.m ->> {}, {})").format(text, text)
            value = sql.SQL("CAST({} AS {})").format(text, sql.SQL(sql_type))
        values.append(text)
        typed.append(_hashed(value, sql_type))
    id_alias = aliases[plan.target_columns.index("id")]
    query = sql.SQL(
        "SELECT s.{id} AS id, ARRAY[{values}]::text[] AS vals, {hash} AS h FROM ({transformed}) AS s({aliases})"
    ).format(
        id=id_alias,
        values=sql.SQL(", ").join(values),
        hash=_row_hash(typed),
        transformed=transformed,
        aliases=sql.SQL(", ").join(aliases),
    )
    if not remap:
        return query
    # The same rewrite the engine applies; its rows are AudienceOS's and stay out of the comparison.
    return sql.SQL("{} CROSS JOIN (SELECT {}::jsonb AS m) AS remap WHERE NOT (remap.m ? CAST(s.{} AS text))").format(
        query, sql.Literal(Jsonb(remap)), id_alias
    )


def target_relation(
    plan: TablePlan, *, scope: AgencyScope, target: Catalog, ids: Sequence[str] | None = None
) -> sql.Composed:
    """The unified rows this agency's migration inserted from `plan.source`: (id, vals); with `ids`, of
    those source ids only (found by the id map's primary key rather than by all the agency's rows)."""
    types = [sql_type for i, sql_type in enumerate(_full_types(plan, target)) if i in compared_positions(plan)]
    typed = [
        sql.SQL("CAST(t.{} AS {})").format(sql.Identifier(column), sql.SQL(sql_type))
        for column, sql_type in zip(compared_columns(plan), types, strict=True)
    ]
    return sql.SQL(
        "SELECT t.id AS id, ARRAY[{values}]::text[] AS vals, {hash} AS h FROM {target} t WHERE t.id IN ({inserted})"
    ).format(
        values=sql.SQL(", ").join(sql.SQL("CAST({} AS text)").format(value) for value in typed),
        hash=_row_hash([_hashed(value, sql_type) for value, sql_type in zip(typed, types, strict=True)]),
        target=plan.target_table,
        inserted=id_map.inserted_ids(agency_id=scope.source_agency_id, source_table=plan.source)
        if ids is None
        else sql.SQL("{} AND m.source_id = ANY({}::uuid[])").format(
            id_map.inserted_ids(agency_id=scope.source_agency_id, source_table=plan.source), sql.Literal(list(ids))
        ),
    )


def compared_positions(plan: TablePlan) -> frozenset[int]:
    """The target columns compared: not the volatile ones (mapping.TableMap.volatile), GoTrue's
    sign-in bookkeeping, whose changes alone the capture does not record either."""
    return frozenset(i for i, column in enumerate(plan.target_columns) if column not in plan.entry.volatile)


def compared_columns(plan: TablePlan) -> tuple[str, ...]:
    return tuple(column for i, column in enumerate(plan.target_columns) if i in compared_positions(plan))


def _full_types(plan: TablePlan, target: Catalog) -> list[str]:
    """The target columns' declared types (numeric(14, 2), not numeric): what a stored value looks like."""
    declared = {c.name: c.sql_type for c in target.columns[plan.target]}
    return [declared[column] for column in plan.target_columns]


def reused_ids(target: psycopg.Connection, scope: AgencyScope) -> dict[str, str]:
    """Source id -> unified id of the rows AudienceOS already had (agency, users, clients)."""
    with target.cursor() as cursor:
        return id_map.agency_reused_ids(cursor, agency_id=scope.source_agency_id)


# --- checksums and bisection -----------------------------------------------------------------


def _split(low: int, high: int, parts: int) -> list[int]:
    """Lower bounds of up to `parts` equal sub-ranges of [low, high]."""
    width = high - low + 1
    if width <= parts:
        return list(range(low, high + 1))
    return [low + width * i // parts for i in range(parts)]


def _checksums(side: Side, low: int, high: int, bounds: list[int]) -> dict[int, tuple[int, int]]:
    """Per sub-range (1-based, as width_bucket numbers them): rows and the sum of their row hashes."""
    # The whole id space gets no condition at all: with stale statistics the planner takes
    # "id BETWEEN min AND max" for a narrow range and re-scans the primary key once per parent row.
    within = (
        sql.SQL("")
        if (low, high) == (0, UUID_MAX)
        else sql.SQL(" WHERE r.id BETWEEN {} AND {}").format(sql.Literal(UUID(int=low)), sql.Literal(UUID(int=high)))
    )
    # The relation's `h`: PostgreSQL's own 64-bit hashes (those hash partitioning keeps stable). Two
    # servers that hashed alike rows apart would only send the comparison down to the rows, which
    # are compared by value. `vals` is not read here, so neither database prints a row.
    # OFFSET 0 keeps the rows narrow (bucket, hash) before they are grouped: the planner cannot tell
    # how few buckets there are, and sorted whole rows for a GroupAggregate, spilling to disk.
    query = sql.SQL(
        "SELECT b.bucket, count(*), sum(b.h) FROM (SELECT width_bucket(r.id, {bounds}::uuid[]) AS bucket, r.h"
        " FROM ({relation}) AS r{within} OFFSET 0) AS b GROUP BY 1"
    ).format(bounds=sql.Literal([UUID(int=b) for b in bounds]), relation=side.relation, within=within)
    return {bucket: (rows, total) for bucket, rows, total in side.connection.execute(query)}


def _rows(side: Side, low: int, high: int) -> list[Row]:
    query = sql.SQL("SELECT r.id, r.vals FROM ({}) AS r WHERE r.id BETWEEN {} AND {} ORDER BY r.id").format(
        side.relation, sql.Literal(UUID(int=low)), sql.Literal(UUID(int=high))
    )
    return side.connection.execute(query).fetchall()


def relation_diff(source: Side, target: Side, *, columns: tuple[str, ...], source_side: Executor | None = None) -> Diff:
    """Narrow the differences of two (id, vals) relations down to ids, depth first, in id order.

    Each database works on its side at the same time: the source's queries run in `source_side`
    (a helper thread of its own when none is given) while this thread waits for the target's.
    """
    if source_side is None:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-source") as helper:
            return _relation_diff(source, target, columns=columns, source_side=helper)
    return _relation_diff(source, target, columns=columns, source_side=source_side)


def _relation_diff(source: Side, target: Side, *, columns: tuple[str, ...], source_side: Executor) -> Diff:
    diff = Diff()
    pending: list[tuple[int, int, bool]] = [(0, UUID_MAX, False)]  # (low, high, small enough to fetch)
    top = True
    while pending and not diff.truncated:
        low, high, fetch = pending.pop()
        if fetch:
            source_rows, target_rows = both_sides(
                source_side, partial(_rows, source, low, high), partial(_rows, target, low, high)
            )
            _compare_rows(diff, source_rows, target_rows, columns)
            continue
        bounds = _split(low, high, FANOUT)
        ours, theirs = both_sides(
            source_side, partial(_checksums, source, low, high, bounds), partial(_checksums, target, low, high, bounds)
        )
        diff.ranges_compared += len(bounds)
        if top:
            diff.source_rows = sum(rows for rows, _ in ours.values())
            diff.target_rows = sum(rows for rows, _ in theirs.values())
            top = False
        for bucket in range(len(bounds), 0, -1):  # pushed in reverse, so popped in id order
            if ours.get(bucket) == theirs.get(bucket):
                continue
            sub_low = bounds[bucket - 1]
            sub_high = bounds[bucket] - 1 if bucket < len(bounds) else high
            rows = max(ours.get(bucket, (0, 0))[0], theirs.get(bucket, (0, 0))[0])
            pending.append((sub_low, sub_high, rows <= LEAF_ROWS or sub_high - sub_low < FANOUT))
    return diff


def _compare_rows(diff: Diff, ours: list[Row], theirs: list[Row], columns: tuple[str, ...]) -> None:
    """Merge two id-ordered row lists, noting each id missing, extra or differing."""
    i = j = 0
    while (i < len(ours) or j < len(theirs)) and not diff.truncated:
        if j >= len(theirs) or (i < len(ours) and ours[i][0] < theirs[j][0]):
            diff.note("missing", ours[i][0])
            i += 1
        elif i >= len(ours) or theirs[j][0] < ours[i][0]:
            diff.note("extra", theirs[j][0])
            j += 1
        else:
            (row_id, expected), (_, actual) = ours[i], theirs[j]
            if expected != actual:
                changed = [c for c, a, b in zip(columns, expected, actual, strict=True) if a != b]
                diff.note("differing", row_id, changed)
            i, j = i + 1, j + 1
        diff.truncated = diff.total >= DIFFERENCE_LIMIT


# --- the check -------------------------------------------------------------------------------


def content_check(
    plan: TablePlan,
    *,
    scope: AgencyScope,
    source: psycopg.Connection,
    target: psycopg.Connection,
    target_catalog: Catalog,
    remap: dict[str, str],
    ids: Sequence[str] | None = None,
    source_side: Executor | None = None,
) -> CheckOutcome:
    """One source table: do the unified rows hold exactly the transformed source rows?

    With `ids`, only those rows are compared (the rows changed since the last full verification).
    """
    relations: tuple[sql.Composed, ...] = (
        source_relation(plan, scope=scope, target=target_catalog, remap=remap),
        target_relation(plan, scope=scope, target=target_catalog, ids=ids),
    )
    if ids is not None:
        relations = tuple(
            sql.SQL("SELECT * FROM ({}) AS changed WHERE changed.id = ANY({}::uuid[])").format(
                r, sql.Literal(list(ids))
            )
            for r in relations
        )
    diff = relation_diff(
        Side(source, relations[0]), Side(target, relations[1]), columns=compared_columns(plan), source_side=source_side
    )
    details = {
        "target_table": plan.target,
        "source_rows": diff.source_rows,
        "target_rows": diff.target_rows,
        "ranges_compared": diff.ranges_compared,
    }
    if diff.total:
        details.update(
            missing_in_target=diff.missing,
            extra_in_target=diff.extra,
            differing=diff.differing,
            sample_ids=diff.samples,
            differing_columns=diff.differing_columns,
            stopped_early=diff.truncated,
        )
    actual = f"{diff.source_rows - diff.missing - diff.differing} identical"
    if diff.total:
        more = " (at least; stopped narrowing down)" if diff.truncated else ""
        actual = f"{diff.missing} missing, {diff.extra} extra, {diff.differing} differing{more}"
    return CheckOutcome(
        "content",
        status_of(diff.total == 0),
        plan.source,
        expected=f"{diff.source_rows} rows of {plan.target} equal to the transformed source",
        actual=actual,
        details=details,
    )


def content_not_applicable() -> CheckOutcome:
    return not_applicable(
        "content", "", "the agency is not migrated (rolled back, or never run): there are no migrated rows to compare"
    )
