"""The way back: an agency's unified rows written back into RevOS (a switch back after cutover).

Every mapping entry also says how a unified row goes back to its RevOS table (mapping.py); this
module turns that into SQL and applies it. The unit of work is a set of unified rows, per RevOS
table:
  - rows that came from that RevOS table (the id map names them, reused AudienceOS rows included)
    go back under their RevOS ids, their references to the agency, users and clients rewritten
    back through the id map;
  - rows the apps created after cutover go back under their own ids, to the entry whose
    `new_rows` condition they meet (cartridges by type, chat messages by their session's origin);
  - rows of the id map whose unified row is gone are deleted from RevOS.

Applying makes each RevOS row equal to what the unified row says now, whatever RevOS held, so it
converges and may run again after a crash: upserts go parents first, deletes children first, all
in one RevOS transaction. The id map learns the new rows and forgets the deleted ones only after
RevOS committed; a run killed in between finds the new rows again (as new, upserted to the same
values) and records them then.

Which rows: `changed` names the unified ids that changed since cutover, per unified table (the
reverse capture); without it every row of the agency is a candidate that can be told apart
without it: rows the id map says the migration inserted, and rows of RevOS-only tables. Rows
AudienceOS already had (reused) and new rows of the shared tables need the capture to be told
apart from AudienceOS's own. With a capture, the agency's accounts join the rows in question
whole (etl/reverse_accounts.py).

Before anything moves, `reverse_plan` reports what RevOS cannot hold: a value that would not come
back unchanged on the next cutover (the forward map applied to the RevOS row differs from the
unified row, or a unified column RevOS lacks holds something else than its default), and every
row RevOS's constraints refuse (tried in a transaction that is rolled back).
"""

from __future__ import annotations

import logging
import string
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from migration_jobs.etl import capture, id_map
from migration_jobs.etl.catalog import Catalog, catalog_read, dependency_order, table_identifier
from migration_jobs.etl.connections import connect
from migration_jobs.etl.plan import MappingError, TablePlan, migration_plan_build
from migration_jobs.etl.reverse_accounts import accounts_in_question
from migration_jobs.mapping import SHARED_TARGETS, TABLE_MAPS

logger = logging.getLogger(__name__)

BASELINE = sql.SQL("controlplane.reverse_baseline")
SAMPLES = 10  # ids named per problem; the counts are exact
JSON_TYPES = frozenset({"json", "jsonb"})

Changed = dict[str, frozenset[UUID]]  # unified table -> ids changed since cutover


class ReverseRefused(Exception):
    """The switch back cannot be applied as it stands; the message names the table and row."""


@dataclass(frozen=True)
class ReverseTablePlan:
    """How the unified rows of one entry go back to its RevOS table."""

    forward: TablePlan
    columns: tuple[str, ...]  # RevOS columns written, id first
    expressions: tuple[sql.Composable, ...]  # over the unified row `t`; id and agency_id are placeholders
    types: tuple[str, ...]  # RevOS base types
    has_agency: bool
    shared_references: tuple[str, ...]  # RevOS columns holding a unified agency/user/client id to rewrite back
    unfilled: tuple[tuple[str, str | None], ...]  # unified columns the forward map leaves to their default
    sources_of_target: tuple[str, ...]  # every RevOS table that fills the same unified table

    @property
    def source(self) -> str:
        return self.forward.source

    @property
    def target(self) -> str:
        return self.forward.target

    @property
    def compared(self) -> tuple[str, ...]:
        """The columns whose difference makes a row change (mapping.TableMap.volatile: not those)."""
        return tuple(c for c in self.columns if c not in self.forward.entry.volatile)


def reverse_table_plan_build(
    forward: TablePlan, *, source: Catalog, target: Catalog, defaults: dict[str, dict[str, str]]
) -> ReverseTablePlan:
    """Resolve an entry's way back against both live schemas; MappingError names what has none."""
    entry = forward.entry
    target_columns = target.column_names(entry.target)
    columns, expressions, types, shared = [], [], [], []
    for column in source.columns[entry.source]:
        name = column.name
        if column.generated:
            continue  # RevOS computes it (auth.users.confirmed_at)
        if name in ("id", "agency_id"):
            expression: sql.Composable = sql.SQL("NULL")  # filled in by the read query
        elif name in entry.inverse:
            expression = sql.SQL("(" + entry.inverse[name] + ")")
        elif entry.config_from_rest and name not in target_columns:
            arrow = "->" if column.base_type in JSON_TYPES else "->>"
            expression = sql.SQL("(t.config " + arrow + " {})").format(sql.Literal(name))
        elif name in target_columns:
            expression = sql.SQL("t.{}").format(sql.Identifier(name))
            if target.foreign_keys.get(entry.target, {}).get(name) in SHARED_TARGETS:
                shared.append(name)
        else:
            raise MappingError(
                f"{entry.source}.{name} has no way back from {entry.target}: add it to the entry's `inverse`."
            )
        columns.append(name)
        expressions.append(expression)
        types.append(column.base_type)
    order = sorted(range(len(columns)), key=lambda i: columns[i] != "id")
    filled = set(forward.target_columns) | {c.name for c in target.columns[entry.target] if c.generated}
    table_defaults = defaults.get(entry.target, {})
    return ReverseTablePlan(
        forward=forward,
        columns=tuple(columns[i] for i in order),
        expressions=tuple(expressions[i] for i in order),
        types=tuple(types[i] for i in order),
        has_agency="agency_id" in columns,
        shared_references=tuple(shared),
        unfilled=tuple((c, table_defaults.get(c)) for c in target_columns if c not in filled),
        sources_of_target=tuple(e.source for e in TABLE_MAPS if e.target == entry.target),
    )


def column_defaults(connection: psycopg.Connection) -> dict[str, dict[str, str]]:
    """table -> {column: its DEFAULT expression} in `public`."""
    rows = connection.execute(
        """
        SELECT c.relname, a.attname, pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attrdef d
        JOIN pg_class c ON c.oid = d.adrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
        JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
        """
    ).fetchall()
    defaults: dict[str, dict[str, str]] = {}
    for table, column, expression in rows:
        defaults.setdefault(table, {})[column] = expression
    return defaults


def reverse_plan_build(*, source: psycopg.Connection, target: psycopg.Connection) -> list[ReverseTablePlan]:
    """Every entry's way back, in RevOS's foreign-key order (parents first)."""
    source_catalog, target_catalog = catalog_read(source), catalog_read(target)
    defaults = column_defaults(target)
    plans = [
        reverse_table_plan_build(forward, source=source_catalog, target=target_catalog, defaults=defaults)
        for forward in migration_plan_build(source=source_catalog, target=target_catalog)
    ]
    order = {t: i for i, t in enumerate(dependency_order([p.source for p in plans], source_catalog.foreign_keys))}
    return sorted(plans, key=lambda p: order[p.source])


# --- the unified side: which rows, and what they look like in RevOS ------------------------------


@dataclass(frozen=True)
class Scope:
    """The agency being switched back and the rows in question."""

    source_agency_id: UUID  # RevOS id, also the id map's agency_id
    target_agency_id: UUID
    changed: Changed | None = None  # None: every row that can be told apart without a capture

    def changed_ids(self, table: str) -> list[UUID] | None:
        return None if self.changed is None else sorted(self.changed.get(table, ()))


def _picked(plan: ReverseTablePlan, scope: Scope) -> sql.Composed:
    """(uid, rid, reused) of the unified rows that go back to `plan.source`."""
    changed = scope.changed_ids(plan.target)
    from_revos = id_map.agency_rows_back(agency_id=scope.source_agency_id, source_table=plan.source, target_ids=changed)
    entry = plan.forward.entry
    if entry.new_rows is None:
        return from_revos
    if changed is None and entry.app_context != "revos":
        # Without a capture a new row of a shared table cannot be told from AudienceOS's own rows.
        return from_revos
    sources = list(plan.sources_of_target)
    conditions: list[sql.Composable] = [
        sql.SQL("{} = {}").format(plan.forward.target_agency("t"), sql.Literal(scope.target_agency_id)),
        sql.SQL("({})").format(new_rows_condition(entry.new_rows)),
        id_map.unmapped_source(source_tables=sources, alias="t"),
        id_map.unmapped_target(source_tables=sources, alias="t", reused_only=True),
    ]
    if "app_context" in plan.forward.target_columns:
        conditions.append(sql.SQL("t.app_context <> 'audience'"))
    if changed is not None:
        conditions.append(sql.SQL("t.id = ANY({})").format(sql.Literal(changed)))
    new = sql.SQL("SELECT t.id, t.id, false FROM {target} t WHERE {conditions}").format(
        target=table_identifier(plan.target), conditions=sql.SQL(" AND ").join(conditions)
    )
    return sql.SQL("{} UNION ALL {}").format(from_revos, new)


def new_rows_condition(condition: str) -> sql.Composed:
    """An entry's `new_rows` SQL, each `{<RevOS table>}` in it standing for the unified ids the
    migrations inserted from that table (mapping.py says so; the id map's SQL stays in id_map.py)."""
    names = {name for _, name, _, _ in string.Formatter().parse(condition) if name}
    return sql.SQL(condition).format(**{name: id_map.inserted_from(name) for name in names})


def _rows_back(plan: ReverseTablePlan, scope: Scope, back: dict[str, str], *, with_keys: bool = False) -> sql.Composed:
    """The RevOS rows the picked unified rows become, cast to RevOS's types, and `__changed`.

    A reused row (AudienceOS's own, standing for a RevOS row) carries AudienceOS's values where the
    two apps disagreed before the cutover (its created_at, website, ...); only the columns the apps
    changed since go back, found by comparing with the row as it was at the cutover
    (controlplane.reverse_baseline). `__changed` lists them; it is NULL for every other row, whose
    columns all go back. With `with_keys`, rows also carry `__uid` (the unified id) and `__reused`.
    """
    values = []
    for column, expression, sql_type in zip(plan.columns, plan.expressions, plan.types, strict=True):
        if column == "id":
            expression = sql.SQL("p.rid")
        elif column == "agency_id":
            expression = sql.Literal(scope.source_agency_id)
        elif column in plan.shared_references and back:
            # A unified id of a reused agency, user or client becomes the RevOS id it stands for.
            text = sql.SQL("CAST({} AS text)").format(expression)
            expression = sql.SQL("coalesce(back.m ->> {}, {})").format(text, text)
        values.append(sql.SQL("CAST({} AS {}) AS {}").format(expression, sql.SQL(sql_type), sql.Identifier(column)))
    changed = sql.SQL(", ").join(
        sql.SQL("CASE WHEN now.{c} IS DISTINCT FROM base.{c} THEN {name} END").format(
            c=sql.Identifier(column), name=sql.Literal(column)
        )
        for column in plan.compared
    )
    keys = sql.SQL(", p.uid AS __uid, p.reused AS __reused") if with_keys else sql.SQL("")
    joined = sql.SQL(" CROSS JOIN (SELECT {}::jsonb AS m) AS back").format(sql.Literal(Jsonb(back))) if back else None
    return sql.SQL(
        "SELECT now.*, CASE WHEN p.reused THEN array_remove(ARRAY[{changed}], NULL) END AS __changed{keys}"
        " FROM ({picked}) AS p{back}"
        " CROSS JOIN LATERAL (SELECT {values} FROM {target} t WHERE t.id = p.uid) AS now"
        " LEFT JOIN LATERAL (SELECT {values} FROM jsonb_populate_record(NULL::{target}, ("
        "SELECT b.row_data FROM {baseline} b WHERE b.agency_id = {agency} AND b.table_name = {table}"
        " AND b.row_id = p.uid)) AS t) AS base ON p.reused"
    ).format(
        changed=changed,
        keys=keys,
        picked=_picked(plan, scope),
        back=joined or sql.SQL(""),
        values=sql.SQL(", ").join(values),
        target=table_identifier(plan.target),
        baseline=BASELINE,
        agency=sql.Literal(scope.source_agency_id),
        table=sql.Literal(plan.target),
    )


def _gone(plan: ReverseTablePlan, scope: Scope) -> sql.Composed:
    """RevOS ids whose unified row is gone: those of the id map, and (with a capture) new rows deleted again."""
    changed = scope.changed_ids(plan.target)
    mapped = id_map.agency_gone(
        plan.target, agency_id=scope.source_agency_id, source_table=plan.source, target_ids=changed
    )
    if changed is None:
        return mapped
    unknown = sql.SQL(
        "SELECT c.id FROM unnest({changed}::uuid[]) AS c(id)"
        " WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE t.id = c.id) AND {unmapped}"
    ).format(
        changed=sql.Literal(changed),
        target=table_identifier(plan.target),
        unmapped=id_map.unmapped_target(source_tables=list(plan.sources_of_target), alias="c"),
    )
    return sql.SQL("{} UNION {}").format(mapped, unknown)


def _with_accounts(unified: psycopg.Connection, scope: Scope) -> Scope:
    """With a capture, the agency's accounts join the rows in question: they are compared whole
    (etl/reverse_accounts.py)."""
    if scope.changed is None:
        return scope
    with unified.cursor() as cursor:
        accounts = accounts_in_question(
            cursor,
            source_agency_id=scope.source_agency_id,
            target_agency_id=scope.target_agency_id,
            changed_people=scope.changed.get("user", frozenset()),
        )
    return replace(scope, changed={**scope.changed, **accounts})


def _back_map(target: psycopg.Connection, scope: Scope) -> dict[str, str]:
    """Unified id -> RevOS id of the rows AudienceOS already had (the agency, users, clients)."""
    with target.cursor() as cursor:
        return id_map.agency_back_map(cursor, agency_id=scope.source_agency_id)


def unholdable_values(
    target: psycopg.Connection, plan: ReverseTablePlan, scope: Scope, back: dict[str, str]
) -> dict[str, list[str]]:
    """Unified column -> ids of rows whose value RevOS cannot carry back to the next cutover.

    A row the migration owns (inserted, or created since cutover) is rewritten from RevOS by the
    next catch-up: its value survives only if the forward map, applied to the RevOS row, gives it
    back. A unified column the forward map leaves alone must hold its default. Reused rows are
    AudienceOS's own and never rewritten, so they are left out. The id, agency and shared
    references are rewritten through the id map both ways and are not compared.
    """
    forward = plan.forward
    skipped = {"id", "agency_id"} | {forward.target_columns[i] for i in forward.remap_positions}
    compared = [(i, c) for i, c in enumerate(forward.target_columns) if c not in skipped]
    if not compared and not plan.unfilled:
        return {}
    aliases = [sql.Identifier(f"f{i}") for i in range(len(forward.target_columns))]
    checks = [
        sql.SQL("CASE WHEN f.{} IS DISTINCT FROM t.{} THEN {} END").format(
            aliases[i], sql.Identifier(c), sql.Literal(c)
        )
        for i, c in compared
    ]
    checks += [
        sql.SQL("CASE WHEN t.{} IS DISTINCT FROM ({}) THEN {} END").format(
            sql.Identifier(c), sql.SQL(default or "NULL"), sql.Literal(c)
        )
        for c, default in plan.unfilled
    ]
    query = sql.SQL(
        "SELECT f.__uid::text, array_remove(ARRAY[{checks}], NULL) FROM"
        " (SELECT r.__uid, {forward} FROM ({rows}) AS r WHERE NOT r.__reused) AS f({uid}, {aliases})"
        " JOIN {target} t ON t.id = f.__uid"
    ).format(
        checks=sql.SQL(", ").join(checks),
        forward=forward.select_list(scope.target_agency_id),
        rows=_rows_back(plan, scope, back, with_keys=True),
        uid=sql.Identifier("__uid"),
        aliases=sql.SQL(", ").join(aliases),
        target=table_identifier(plan.target),
    )
    found: dict[str, list[str]] = {}
    for uid, columns in target.execute(query):
        for column in columns:
            found.setdefault(column, []).append(uid)
    return found


# --- the RevOS side: compare, apply ----------------------------------------------------------------


@dataclass
class TableChange:
    """What the switch back does (or would do) to one RevOS table."""

    source: str
    target: str
    insert: int = 0
    update: int = 0
    delete: int = 0
    unchanged: int = 0
    samples: dict[str, list[str]] = field(default_factory=dict)  # kind -> RevOS ids
    unholdable: dict[str, list[str]] = field(default_factory=dict)  # unified column -> unified ids
    refused: str = ""  # RevOS's own refusal of the rows, from the trial

    @property
    def changes(self) -> int:
        return self.insert + self.update + self.delete


@dataclass
class ReverseReport:
    tables: dict[str, TableChange] = field(default_factory=dict)
    new_rows: list[tuple[str, str, str]] = field(default_factory=list)  # (source table, target table, id)
    deleted: list[tuple[str, str]] = field(default_factory=list)  # (source table, RevOS id)

    @property
    def problems(self) -> list[str]:
        """What stops the switch back, one line each, for staff to read."""
        lines = []
        for change in self.tables.values():
            for column, uids in change.unholdable.items():
                lines.append(
                    f"{change.target}.{column} of {len(uids)} row(s) going back to {change.source} holds a value"
                    f" RevOS cannot hold (e.g. {', '.join(uids[:3])})"
                )
            if change.refused:
                lines.append(f"{change.source}: RevOS refuses the rows: {change.refused}")
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "tables": {
                name: {
                    "target": c.target,
                    "insert": c.insert,
                    "update": c.update,
                    "delete": c.delete,
                    "unchanged": c.unchanged,
                    "samples": c.samples,
                    "unholdable": {k: v[:SAMPLES] for k, v in c.unholdable.items()},
                    "unholdable_rows": {k: len(v) for k, v in c.unholdable.items()},
                    "refused": c.refused,
                }
                for name, c in self.tables.items()
            },
            "problems": self.problems,
            "totals": {
                kind: sum(getattr(c, kind) for c in self.tables.values()) for kind in ("insert", "update", "delete")
            },
        }


class _Stage:
    """One RevOS table's rows from the unified side, staged in temporary tables of the RevOS session."""

    def __init__(self, plan: ReverseTablePlan, revos: psycopg.Connection, scope: Scope):
        self.plan, self.revos, self.scope = plan, revos, scope
        name = plan.source.replace(".", "_")
        self.rows = sql.Identifier(f"back_{name}")
        self.gone = sql.Identifier(f"gone_{name}")
        self.table = table_identifier(plan.source)
        self.column_list = sql.SQL(", ").join(sql.Identifier(c) for c in plan.columns)
        # Base types (varchar, not varchar(200)): a value too long for RevOS is refused by the write,
        # where the plan's trial names it, not by the staging copy.
        revos.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}, __changed text[])").format(
                self.rows,
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))
                    for c, t in zip(plan.columns, plan.types, strict=True)
                ),
            )
        )
        revos.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (id uuid PRIMARY KEY)").format(self.gone))
        revos.execute(sql.SQL("TRUNCATE {}, {}").format(self.rows, self.gone))

    def fill(self, unified: psycopg.Connection, back: dict[str, str]) -> None:
        try:
            self._fill(unified, back)
        except psycopg.errors.DataError as error:  # a unified value that does not cast to RevOS's type
            raise ReverseRefused(
                f"{self.plan.target} rows cannot become {self.plan.source} rows: {_reason(error)}. Nothing was written."
            ) from error

    def _fill(self, unified: psycopg.Connection, back: dict[str, str]) -> None:
        for query, stage, columns in (
            (_rows_back(self.plan, self.scope, back), self.rows, sql.SQL("{}, __changed").format(self.column_list)),
            (_gone(self.plan, self.scope), self.gone, sql.SQL("id")),
        ):
            with (
                unified.cursor() as reader,
                reader.copy(sql.SQL("COPY ({}) TO STDOUT").format(query)) as rows_out,
                self.revos.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, columns)) as rows_in,
            ):
                for data in rows_out:
                    rows_in.write(data)

    def in_scope(self, alias: str) -> sql.Composable:
        """The RevOS row `alias` belongs to the agency (through its parents where it has no agency_id)."""
        condition = self.plan.forward.scope_condition(self.scope.source_agency_id)
        return sql.SQL("{alias}.id IN (SELECT id FROM {table} WHERE {condition})").format(
            alias=sql.Identifier(alias), table=self.table, condition=condition
        )

    def compare(self, change: TableChange) -> None:
        """Count (and sample) the rows to insert, update and delete; refuse another agency's ids."""
        differs = sql.SQL(" OR ").join(
            sql.SQL("((s.__changed IS NULL OR {name} = ANY(s.__changed)) AND r.{c} IS DISTINCT FROM s.{c})").format(
                c=sql.Identifier(c), name=sql.Literal(c)
            )
            for c in self.plan.compared
        )
        query = sql.SQL(
            "SELECT CASE WHEN r.id IS NULL THEN 'insert' WHEN NOT {in_scope} THEN 'foreign'"
            " WHEN {differs} THEN 'update' ELSE 'unchanged' END AS kind, count(*),"
            " (array_agg(s.id::text ORDER BY s.id))[1:{samples}]"
            " FROM {rows} s LEFT JOIN {table} r ON r.id = s.id GROUP BY 1"
            " UNION ALL SELECT 'delete', count(*), (array_agg(g.id::text ORDER BY g.id))[1:{samples}]"
            " FROM {gone} g JOIN {table} r ON r.id = g.id WHERE {gone_in_scope}"
        ).format(
            in_scope=self.in_scope("r"),
            differs=differs,
            samples=sql.Literal(SAMPLES),
            rows=self.rows,
            table=self.table,
            gone=self.gone,
            gone_in_scope=self.in_scope("r"),
        )
        for kind, count, samples in self.revos.execute(query):
            if kind == "foreign":
                raise ReverseRefused(
                    f"{self.plan.source}: id {samples[0]} of a unified {self.plan.target} row already belongs to"
                    f" another agency's RevOS row ({count} such row(s)); nothing was written."
                )
            setattr(change, kind, count)
            if count and kind != "unchanged":
                change.samples[kind] = samples or []

    def upsert(self) -> None:
        changed = [c for c in self.plan.columns if c != "id"]
        compared = [c for c in self.plan.compared if c != "id"]
        # Reused rows: only the columns the apps changed since the cutover.
        self.revos.execute(
            sql.SQL(
                "UPDATE {table} AS r SET {assignments} FROM {rows} s"
                " WHERE r.id = s.id AND s.__changed IS NOT NULL AND cardinality(s.__changed) > 0"
            ).format(
                table=self.table,
                rows=self.rows,
                assignments=sql.SQL(", ").join(
                    sql.SQL("{c} = CASE WHEN {name} = ANY(s.__changed) THEN s.{c} ELSE r.{c} END").format(
                        c=sql.Identifier(c), name=sql.Literal(c)
                    )
                    for c in changed
                ),
            )
        )
        self.revos.execute(
            sql.SQL(
                "INSERT INTO {table} AS r ({columns}) SELECT {columns} FROM {rows} WHERE __changed IS NULL"
                " ON CONFLICT (id) DO UPDATE SET {assignments} WHERE ({current}) IS DISTINCT FROM ({incoming})"
            ).format(
                table=self.table,
                columns=self.column_list,
                rows=self.rows,
                assignments=sql.SQL(", ").join(
                    sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in changed
                ),
                current=sql.SQL(", ").join(sql.SQL("r.{}").format(sql.Identifier(c)) for c in compared),
                incoming=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in compared),
            )
        )

    def delete(self) -> list[str]:
        return [
            str(row_id)
            for (row_id,) in self.revos.execute(
                sql.SQL("DELETE FROM {table} r USING {gone} g WHERE r.id = g.id AND {in_scope} RETURNING r.id").format(
                    table=self.table, gone=self.gone, in_scope=self.in_scope("r")
                )
            )
        ]

    def new_ids(self) -> list[str]:
        """Staged rows the id map does not know yet: created in the unified database since cutover."""
        return [str(row_id) for (row_id,) in self.revos.execute(sql.SQL("SELECT id FROM {}").format(self.rows))]


@contextmanager
def _connections(purpose: str) -> Iterator[tuple[psycopg.Connection, psycopg.Connection]]:
    """RevOS for the writes, in one transaction that passes RevOS's fence (the agency is fenced
    there since its cutover) unrecorded; the unified database read from one snapshot."""
    with connect("revos", purpose=purpose) as revos, connect("unified", purpose=f"{purpose}-read") as unified:
        unified.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        unified.read_only = True
        capture.fence_bypass(revos)
        yield revos, unified


def _compare_all(
    revos: psycopg.Connection, unified: psycopg.Connection, scope: Scope
) -> tuple[list[ReverseTablePlan], dict[str, _Stage], ReverseReport, dict[str, str]]:
    plans = reverse_plan_build(source=revos, target=unified)
    back = _back_map(unified, scope)
    report = ReverseReport({p.source: TableChange(p.source, p.target) for p in plans})
    stages = {}
    for plan in plans:
        stage = _Stage(plan, revos, scope)
        stage.fill(unified, back)
        stage.compare(report.tables[plan.source])
        stages[plan.source] = stage
    return plans, stages, report, back


def _apply_all(plans: list[ReverseTablePlan], stages: dict[str, _Stage], report: ReverseReport) -> None:
    """Upserts parents first, then deletes children first, so no foreign key sees a missing parent."""
    for plan in plans:
        stages[plan.source].upsert()
    for plan in reversed(plans):
        report.deleted += [(plan.source, row_id) for row_id in stages[plan.source].delete()]


def reverse_plan(*, scope: Scope) -> ReverseReport:
    """A dry run: rows per RevOS table that would be inserted, updated and deleted, and what RevOS
    cannot hold (values, and rows its constraints refuse, found by applying in a transaction that
    is then rolled back). Writes nothing."""
    with _connections("switch-back-plan") as (revos, unified):
        scope = _with_accounts(unified, scope)
        plans, stages, report, back = _compare_all(revos, unified, scope)
        for plan in plans:
            report.tables[plan.source].unholdable = unholdable_values(unified, plan, scope, back)
        _trial(revos, plans, stages, report)
        revos.rollback()
        return report


def _trial(
    revos: psycopg.Connection, plans: list[ReverseTablePlan], stages: dict[str, _Stage], report: ReverseReport
) -> None:
    """Apply in savepoints and keep RevOS's refusal per table; the caller rolls everything back."""
    steps = [(p, "upsert") for p in plans] + [(p, "delete") for p in reversed(plans)]
    for plan, step in steps:
        try:
            with revos.transaction():
                getattr(stages[plan.source], step)()
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as error:
            change = report.tables[plan.source]
            change.refused = change.refused or _reason(error)


def reverse_apply(*, scope: Scope) -> ReverseReport:
    """Make the agency's RevOS rows equal to its unified rows in question, in one RevOS commit.

    Raises ReverseRefused, with nothing written, when RevOS cannot hold a
    value or refuses a row. Then records the new rows in the id map and forgets the deleted ones.
    """
    with _connections("switch-back") as (revos, unified):
        scope = _with_accounts(unified, scope)
        plans, stages, report, back = _compare_all(revos, unified, scope)
        problems = []
        for plan in plans:
            report.tables[plan.source].unholdable = unholdable_values(unified, plan, scope, back)
        problems = report.problems
        if problems:
            revos.rollback()
            raise ReverseRefused("; ".join(problems) + ". Nothing was written.")
        new_rows: dict[str, set[str]] = {p.source: set() for p in plans}
        for plan in plans:
            known = _known_ids(unified, plan, scope)
            new_rows[plan.source] = {i for i in stages[plan.source].new_ids() if i not in known}
        try:
            _apply_all(plans, stages, report)
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as error:
            revos.rollback()
            raise ReverseRefused(f"RevOS refused the switch back: {_reason(error)}. Nothing was written.") from error
        revos.commit()
        unified.rollback()
        report.new_rows = [(p.source, p.target, i) for p in plans for i in sorted(new_rows[p.source])]
    id_map_record(scope=scope, report=report)
    return report


def _known_ids(unified: psycopg.Connection, plan: ReverseTablePlan, scope: Scope) -> set[str]:
    with unified.cursor() as cursor:
        return id_map.table_source_ids(cursor, agency_id=scope.source_agency_id, source_table=plan.source)


def id_map_record(*, scope: Scope, report: ReverseReport) -> None:
    """Teach the id map what the switch back did, so that a later catch-up and cutover see RevOS's
    rows as the migration's own: new rows as inserted (reused, for the shared tables AudienceOS
    also owns, so a rollback never deletes them), deleted rows forgotten."""
    shared_sources = {e.source for e in TABLE_MAPS if e.identity is not None}
    with connect("unified", purpose="switch-back-id-map") as unified:
        with unified.cursor() as cursor:
            id_map.rows_record(
                cursor,
                agency_id=scope.source_agency_id,
                rows=[
                    (source, target, row_id, source not in shared_sources) for source, target, row_id in report.new_rows
                ],
            )
            id_map.rows_forget(cursor, agency_id=scope.source_agency_id, rows=report.deleted)
        unified.commit()


def reverse_verify(*, scope: Scope) -> ReverseReport:
    """Compare RevOS with the unified rows in question: every one must be unchanged (nothing left to
    insert, update or delete). Writes nothing."""
    with _connections("switch-back-verify") as (revos, unified):
        scope = _with_accounts(unified, scope)
        _, _, report, _ = _compare_all(revos, unified, scope)
        revos.rollback()
        return report


def _reason(error: Exception) -> str:
    diag = getattr(error, "diag", None)
    if diag is not None and diag.message_primary:
        return f"{diag.message_primary}. {diag.message_detail}" if diag.message_detail else diag.message_primary
    return str(error).strip().splitlines()[0]
