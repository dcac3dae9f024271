"""Turn a mapping entry into the SQL that reads one agency's rows already shaped for the target."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg import sql

from migration_jobs.etl.catalog import Catalog, dependency_order, table_identifier
from migration_jobs.mapping import NOT_MIGRATED, SHARED_TARGETS, TABLE_MAPS, TableMap


class MappingError(Exception):
    """The mapping and the live schemas disagree; fix the mapping entry it names."""


@dataclass(frozen=True)
class TablePlan:
    """How one source table becomes rows of its target table."""

    entry: TableMap
    target_columns: tuple[str, ...]
    # One expression per target column, over the source row; None stands for the target agency.
    expressions: tuple[sql.Composable | None, ...]
    sql_types: tuple[str, ...]  # target base types, so the text values are in canonical form
    # Positions of target columns that reference a shared table whose rows may be reused.
    remap_positions: tuple[int, ...]
    target_has_agency: bool
    # (column, parent table, parent must share the row's agency) of every foreign key among the
    # target columns, when a set-based check can stand in for the target's foreign-key triggers;
    # None when it cannot.
    references: tuple[tuple[str, str, bool], ...] | None = None

    @property
    def source(self) -> str:
        return self.entry.source

    @property
    def target(self) -> str:
        return self.entry.target

    @property
    def source_table(self) -> sql.Identifier:
        return table_identifier(self.entry.source)

    @property
    def target_table(self) -> sql.Identifier:
        return table_identifier(self.entry.target)

    def target_agency(self, alias: str = "t") -> sql.Composable:
        """The agency of a unified row `alias`: its agency_id, the entry's expression, or (agency) its id."""
        if self.target_has_agency:
            return sql.SQL("{}.agency_id").format(sql.Identifier(alias))
        if self.entry.target_agency:
            return sql.SQL(self.entry.target_agency.format(t=alias))
        return sql.SQL("{}.id").format(sql.Identifier(alias))

    def scope_condition(self, source_agency_id: UUID) -> sql.Composable:
        """Select the agency's rows of the source table, through parents where it has no agency_id."""
        if self.entry.source == "agencies":
            return sql.SQL("id = {}").format(sql.Literal(source_agency_id))
        condition = sql.SQL("agency_id = {}").format(sql.Literal(source_agency_id))
        for column, parent in reversed(self.entry.scope):
            condition = sql.SQL("{} IN (SELECT id FROM {} WHERE {})").format(
                sql.Identifier(column), sql.Identifier(parent), condition
            )
        return condition

    def select_list(self, target_agency_id: UUID) -> sql.Composed:
        """The target columns computed from the source row, cast to the target's types."""
        return sql.SQL(", ").join(
            sql.SQL("CAST({} AS {})").format(
                sql.Literal(target_agency_id) if expression is None else expression, sql.SQL(sql_type)
            )
            for expression, sql_type in zip(self.expressions, self.sql_types, strict=True)
        )

    def conditions(self, source_agency_id: UUID, ids: Sequence[str] | None = None) -> list[sql.Composable]:
        """The agency's rows the mapping selects; with `ids`, only those of them (a catch-up's changes)."""
        conditions = [self.scope_condition(source_agency_id)]
        if self.entry.where:
            conditions.append(sql.SQL(self.entry.where))
        if ids is not None:
            conditions.append(sql.SQL("id = ANY({}::uuid[])").format(sql.Literal(list(ids))))
        return conditions

    def source_query(
        self,
        *,
        source_agency_id: UUID,
        target_agency_id: UUID,
        after_id: UUID | None = None,
        ids: Sequence[str] | None = None,
        id_range: tuple[UUID | None, UUID | None] = (None, None),
    ) -> sql.Composed:
        """The agency's rows, transformed and ordered by id, optionally after a checkpoint and
        within [low, high) of the ids (one part of a table written by several writers)."""
        conditions = self.conditions(source_agency_id, ids) + id_range_conditions(id_range)
        if after_id is not None:
            conditions.append(sql.SQL("id > {}").format(sql.Literal(after_id)))
        return sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY id").format(
            self.select_list(target_agency_id),
            self.source_table,
            sql.SQL(" AND ").join(conditions),
        )

    def source_ids_query(self, *, source_agency_id: UUID, ids: Sequence[str] | None = None) -> sql.Composed:
        return sql.SQL("SELECT id FROM {} WHERE {} ORDER BY id").format(
            self.source_table, sql.SQL(" AND ").join(self.conditions(source_agency_id, ids))
        )

    def count_query(self, *, source_agency_id: UUID, ids: Sequence[str] | None = None) -> sql.Composed:
        conditions = self.conditions(source_agency_id, ids)
        return sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self.source_table, sql.SQL(" AND ").join(conditions))


def id_range_conditions(id_range: tuple[UUID | None, UUID | None]) -> list[sql.Composable]:
    """`id` within [low, high), a bound None where the range is open (one part of a split table)."""
    low, high = id_range
    return [
        *([sql.SQL("id >= {}").format(sql.Literal(low))] if low is not None else []),
        *([sql.SQL("id < {}").format(sql.Literal(high))] if high is not None else []),
    ]


def _expression_for(entry: TableMap, column: str, source_columns: list[str], rest: list[str]) -> sql.Composable | None:
    if column == "agency_id":
        return None
    if column == "app_context":
        return sql.Literal(entry.app_context)
    if column in entry.constants:
        return sql.Literal(entry.constants[column])
    if column in entry.expressions:
        return sql.SQL("(" + entry.expressions[column] + ")")
    if column == "config" and entry.config_from_rest:
        pairs = sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(c)) for c in rest)
        return sql.SQL("jsonb_build_object({})").format(pairs)
    if column in source_columns:
        return sql.Identifier(column)
    raise LookupError(column)


def table_plan_build(entry: TableMap, *, source: Catalog, target: Catalog) -> TablePlan:
    """Resolve an entry against both live schemas; MappingError says what does not fit."""
    if entry.source not in source.columns:
        raise MappingError(f"RevOS has no table {entry.source!r} (mapping entry {entry.source} -> {entry.target}).")
    if entry.target not in target.columns:
        raise MappingError(f"The unified database has no table {entry.target!r} (mapping entry {entry.source}).")
    source_columns = source.column_names(entry.source)
    target_columns = target.column_names(entry.target)
    used_by_expressions = {
        word for expression in entry.expressions.values() for word in re.findall(r"[a-z_][a-z0-9_]*", expression)
    }
    rest = [
        c
        for c in source_columns
        if c not in target_columns and c not in used_by_expressions and c not in ("id", "agency_id")
    ]
    columns, expressions, sql_types = [], [], []
    generated = {c.name for c in target.columns[entry.target] if c.generated}
    for column in target_columns:
        if column in generated:
            continue  # PostgreSQL computes it (auth.users.confirmed_at, auth.identities.email)
        try:
            expression = _expression_for(entry, column, source_columns, rest)
        except LookupError:
            continue  # left to the column's default
        # The base type: a cast to varchar(n) would truncate silently where the insert must fail.
        sql_type = next(c.base_type for c in target.columns[entry.target] if c.name == column)
        columns.append(column)
        expressions.append(expression)
        sql_types.append(sql_type)
    if "id" not in columns:
        raise MappingError(f"{entry.source} -> {entry.target}: the target id is not filled.")
    references = target.foreign_keys.get(entry.target, {})
    remap = tuple(
        i for i, c in enumerate(columns) if c != "agency_id" and references.get(c) in SHARED_TARGETS and c != "id"
    )
    return TablePlan(
        entry=entry,
        target_columns=tuple(columns),
        expressions=tuple(expressions),
        sql_types=tuple(sql_types),
        remap_positions=remap,
        target_has_agency="agency_id" in columns,
        references=_set_checked_references(entry.target, columns, target),
    )


def _set_checked_references(
    table: str, columns: list[str], target: Catalog
) -> tuple[tuple[str, str, bool], ...] | None:
    references = target.foreign_keys.get(table, {})
    # A foreign key left to its column's default would go unchecked: keep the triggers there.
    defaulted = any(c.has_default and c.name in references and c.name not in columns for c in target.columns[table])
    if table not in target.set_checkable or defaulted:
        return None
    tenant = target.tenant_references.get(table, frozenset())
    return tuple((c, references[c], c in tenant) for c in columns if c in references)


def migration_plan_build(*, source: Catalog, target: Catalog) -> list[TablePlan]:
    """Every mapped table, parents first (by the unified schema's foreign keys)."""
    plans = [table_plan_build(entry, source=source, target=target) for entry in TABLE_MAPS]
    targets = list(dict.fromkeys(p.target for p in plans))
    order = {t: i for i, t in enumerate(dependency_order(targets, target.foreign_keys))}
    return sorted(plans, key=lambda p: order[p.target])


def unmapped_source_tables(source: Catalog) -> list[str]:
    """RevOS tables that neither the mapping nor NOT_MIGRATED accounts for."""
    mapped = {m.source for m in TABLE_MAPS}
    return sorted(t for t in source.columns if t not in mapped and t not in NOT_MIGRATED)


def app_triggers_plan(plans: list[TablePlan], target: Catalog, *, quiet: bool) -> list[dict[str, Any]]:
    """The apps' own triggers on every target table of the migration, and what the copy does with each.

    `quiet`: the run may copy in replica mode (the role may set session_replication_role and set-wise
    checks are on), which leaves a trigger enabled for origin sessions unfired: the rows such a
    trigger makes (a profile for each new account) come from RevOS with the rest, so firing it would
    add a second one. Deleting a row that left RevOS runs in origin mode, so its cascades hold.
    """
    listed = []
    for table in dict.fromkeys(plan.target for plan in plans):
        set_checked = all(plan.references is not None for plan in plans if plan.target == table)
        for trigger in target.app_triggers.get(table, ()):
            if trigger.enabled == "D":
                handling = "disabled: it never fires"
            elif trigger.off_in_copy and quiet and set_checked:
                handling = (
                    "off for the copy's inserts and updates (session_replication_role = replica): the rows it would"
                    " make are copied from RevOS; it fires when the run deletes a row that left RevOS"
                )
            elif trigger.off_in_copy:
                why = "this role may not set session_replication_role, or MIGRATION_SET_BASED_FK_CHECKS is off"
                handling = f"FIRES for every row the copy inserts or updates ({why}): expect rows it makes"
            else:
                handling = "FIRES for every row the copy writes (ENABLE ALWAYS or REPLICA): expect rows it makes"
            listed.append(
                {
                    "table": table,
                    "trigger": trigger.name,
                    "function": trigger.function,
                    "events": trigger.events,
                    "handling": handling,
                    "fires": handling.startswith("FIRES"),
                }
            )
    return listed
