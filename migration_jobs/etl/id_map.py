"""The id map (`controlplane.id_map`, sql/unified): which unified row each migrated RevOS row is.

One row per source row a migration of the agency touched. `inserted` when the migration wrote the
unified row (it keeps the RevOS id); false when a row AudienceOS already had stands for it (the
agency itself, a user with the same email, a client matched by name or by staff). Rollback
deletes exactly the inserted rows; verification, catch-up and the cockpit read it.

Every statement on the table lives here, so that its columns and its one index (the primary key
on source_table, source_id; sql/unified/0011) have one place to be read against. Functions that
run a statement take a cursor (psycopg's or Django's); the others return SQL for a caller that
composes it into a larger statement of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from psycopg import sql

from migration_jobs.etl.catalog import table_identifier
from migration_jobs.etl.connections import Cursor

TABLE = "controlplane.id_map"
ID_MAP = sql.SQL(TABLE)
# For Django's RawSQL (a plain string): the ids of a unified table's rows that migrations inserted.
INSERTED_IN_TABLE = f"SELECT target_id FROM {TABLE} WHERE target_table = %s AND inserted"
COLUMNS = sql.SQL("(agency_id, source_table, source_id, target_table, target_id, inserted)")


# --- questions about one agency ---------------------------------------------------------------


def agency_has_mapped_rows(cursor: Cursor, *, agency_id: UUID) -> bool:
    """Has a migration of this agency left rows behind? Even one stopped half-way fills the map; a
    rollback empties it. The one answer to "is this agency migrated (in part)?"."""
    cursor.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE agency_id = %s)").format(ID_MAP), [agency_id])
    return bool(cursor.fetchone()[0])


def agency_inserted_count(cursor: Cursor, *, agency_id: UUID) -> int:
    """How many unified rows this agency's runs inserted (what a rollback would delete)."""
    cursor.execute(sql.SQL("SELECT count(*) FROM {} WHERE agency_id = %s AND inserted").format(ID_MAP), [agency_id])
    return int(cursor.fetchone()[0])


def agency_mapped_counts(cursor: Cursor, *, agency_id: UUID) -> dict[str, int]:
    """Mapped rows per source table (inserted or reused)."""
    cursor.execute(
        sql.SQL("SELECT source_table, count(*) FROM {} WHERE agency_id = %s GROUP BY 1").format(ID_MAP), [agency_id]
    )
    return dict(cursor.fetchall())


def agency_reused_ids(cursor: Cursor, *, agency_id: UUID) -> dict[str, str]:
    """Source id -> unified id of the rows AudienceOS already had (agency, users, clients)."""
    cursor.execute(
        sql.SQL("SELECT source_id::text, target_id::text FROM {} WHERE agency_id = %s AND NOT inserted").format(ID_MAP),
        [agency_id],
    )
    return dict(cursor.fetchall())


def agency_people_merged(cursor: Cursor, *, agency_id: UUID) -> dict[str, str]:
    """RevOS person id -> the unified person (and account) they were merged into."""
    cursor.execute(
        sql.SQL(
            "SELECT source_id::text, target_id::text FROM {} WHERE agency_id = %s AND NOT inserted"
            " AND source_table IN ('users', 'auth.users')"
        ).format(ID_MAP),
        [agency_id],
    )
    return dict(cursor.fetchall())


def agency_inserted_tables() -> sql.Composed:
    """(source table, target table) of every table the agency's runs inserted rows into. Parameter: agency id."""
    return sql.SQL("SELECT DISTINCT source_table, target_table FROM {} WHERE agency_id = %s AND inserted").format(
        ID_MAP
    )


def agency_back_map(cursor: Cursor, *, agency_id: UUID) -> dict[str, str]:
    """Unified id -> RevOS id of the rows AudienceOS already had: `agency_reused_ids` turned around."""
    return {target: source for source, target in agency_reused_ids(cursor, agency_id=agency_id).items()}


def table_source_ids(cursor: Cursor, *, agency_id: UUID, source_table: str) -> set[str]:
    """The RevOS ids of one source table the map knows for the agency."""
    cursor.execute(
        sql.SQL("SELECT source_id::text FROM {} WHERE agency_id = %s AND source_table = %s").format(ID_MAP),
        [agency_id, source_table],
    )
    return {row[0] for row in cursor.fetchall()}


def table_mapped_count(cursor: Cursor, *, agency_id: UUID, source_table: str) -> int:
    """Mapped rows of one source table of the agency."""
    cursor.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE agency_id = %s AND source_table = %s").format(ID_MAP),
        [agency_id, source_table],
    )
    return int(cursor.fetchone()[0])


def table_written_ahead(
    cursor: Cursor,
    *,
    agency_id: UUID,
    source_table: str,
    last_id: UUID | None,
    id_range: tuple[UUID | None, UUID | None] = (None, None),
) -> bool:
    """Has a run of this agency inserted rows of the table beyond `last_id` (its checkpoint),
    within [low, high) of the source ids (one part of a split table)?"""
    low, high = id_range
    cursor.execute(
        sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE agency_id = %(agency)s AND source_table = %(table)s AND inserted"
            " AND (%(after)s::uuid IS NULL OR source_id > %(after)s::uuid)"
            " AND (%(low)s::uuid IS NULL OR source_id >= %(low)s::uuid)"
            " AND (%(high)s::uuid IS NULL OR source_id < %(high)s::uuid))"
        ).format(ID_MAP),
        {"agency": agency_id, "table": source_table, "after": last_id, "low": low, "high": high},
    )
    return bool(cursor.fetchone()[0])


# --- writes ------------------------------------------------------------------------------------


def identities_record(cursor: Cursor, *, agency_id: UUID, matches: Iterable[tuple[str, str, str, str]]) -> None:
    """Record (source table, source id, target table, target id) pairs of rows AudienceOS already had."""
    cursor.executemany(
        sql.SQL(
            "INSERT INTO {} {} VALUES (%s, %s, %s, %s, %s, false) ON CONFLICT (source_table, source_id) DO NOTHING"
        ).format(ID_MAP, COLUMNS),
        [(agency_id, *match) for match in matches],
    )


def rows_record(cursor: Cursor, *, agency_id: UUID, rows: Iterable[tuple[str, str, str, bool]]) -> None:
    """Record (source table, target table, id, inserted) rows that keep one id on both sides."""
    cursor.executemany(
        sql.SQL(
            "INSERT INTO {} {} VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (source_table, source_id) DO NOTHING"
        ).format(ID_MAP, COLUMNS),
        [(agency_id, source, row_id, target, row_id, inserted) for source, target, row_id, inserted in rows],
    )


def rows_forget(cursor: Cursor, *, agency_id: UUID, rows: Iterable[tuple[str, str]]) -> None:
    """Forget (source table, source id) rows of the agency."""
    cursor.executemany(
        sql.SQL("DELETE FROM {} WHERE agency_id = %s AND source_table = %s AND source_id = %s").format(ID_MAP),
        [(agency_id, source, row_id) for source, row_id in rows],
    )


def record_inserted(rows: sql.Composable, *, skip_recorded: bool = False) -> sql.Composed:
    """Record the ids of `rows` (a FROM item with an `id` column) as inserted by this run.

    Parameters: agency id, source table, target table. Inserted rows keep their RevOS id, so the
    source id and the target id are the same.
    """
    statement = sql.SQL("INSERT INTO {} {} SELECT %s, %s, id, %s, id, true FROM {}").format(ID_MAP, COLUMNS, rows)
    if skip_recorded:
        statement += sql.SQL(" ON CONFLICT (source_table, source_id) DO NOTHING")
    return statement


def first_unrecorded(stage: sql.Composable) -> sql.Composed:
    """The first row of `stage` with no map entry for the source table (parameter): written by nobody we know."""
    return sql.SQL(
        "SELECT s.id FROM {stage} s WHERE NOT EXISTS"
        " (SELECT 1 FROM {id_map} m WHERE m.source_table = %s AND m.source_id = s.id) LIMIT 1"
    ).format(id_map=ID_MAP, stage=stage)


def vanished_delete(target_table: str) -> sql.Composed:
    """Forget the agency's rows of a source table missing from temp table `seen_source_id`, and delete
    the unified rows among them that a run inserted. Parameters: agency id, source table, and the
    source ids to consider twice (NULL: all of them)."""
    return sql.SQL(
        "WITH gone AS ("
        " DELETE FROM {id_map} m WHERE m.agency_id = %s AND m.source_table = %s"
        " AND (%s::uuid[] IS NULL OR m.source_id = ANY(%s::uuid[]))"
        " AND NOT EXISTS (SELECT 1 FROM seen_source_id s WHERE s.id = m.source_id)"
        " RETURNING m.target_id, m.inserted)"
        " DELETE FROM {target} t USING gone WHERE gone.inserted AND t.id = gone.target_id"
    ).format(id_map=ID_MAP, target=table_identifier(target_table))


def inserted_rows_delete(cursor: Cursor, *, agency_id: UUID, source_table: str, target_table: str) -> int:
    """Delete the unified rows of one table the agency's runs inserted; how many."""
    cursor.execute(
        sql.SQL(
            "DELETE FROM {target} t USING {id_map} m WHERE m.agency_id = %s AND m.source_table = %s"
            " AND m.inserted AND t.id = m.target_id"
        ).format(target=table_identifier(target_table), id_map=ID_MAP),
        [agency_id, source_table],
    )
    return cursor.rowcount


def agency_forget(cursor: Cursor, *, agency_id: UUID) -> None:
    """Drop the agency's whole map (after its inserted rows are gone)."""
    cursor.execute(sql.SQL("DELETE FROM {} WHERE agency_id = %s").format(ID_MAP), [agency_id])


# --- fragments for the switch back (etl/reverse.py, etl/reverse_capture.py, mapping.py) ---------


def inserted_from(source_table: str) -> sql.Composed:
    """The unified ids any run inserted from a RevOS table (a subquery; the primary key finds them)."""
    return sql.SQL("SELECT target_id FROM {} WHERE source_table = {} AND inserted").format(
        ID_MAP, sql.Literal(source_table)
    )


def agency_targets(*, agency_id: UUID, source_table: str, reused_only: bool = False) -> sql.Composed:
    """The unified ids the agency's map rows of a source table point at (a subquery); with
    `reused_only`, only the rows AudienceOS already had."""
    return sql.SQL("SELECT target_id FROM {} WHERE agency_id = {} AND source_table = {}{}").format(
        ID_MAP,
        sql.Literal(agency_id),
        sql.Literal(source_table),
        sql.SQL(" AND NOT inserted") if reused_only else sql.SQL(""),
    )


def agency_reused_in(*, agency_id: UUID, target_table: str) -> sql.Composed:
    """The ids of a unified table's rows AudienceOS had and the agency reused (a subquery)."""
    return sql.SQL("SELECT target_id FROM {} WHERE agency_id = {} AND target_table = {} AND NOT inserted").format(
        ID_MAP, sql.Literal(agency_id), sql.Literal(target_table)
    )


def agency_target_ids(cursor: Cursor, *, agency_id: UUID, source_tables: list[str]) -> dict[str, set[str]]:
    """Source table -> the unified ids the agency's map rows of it point at (inserted or reused)."""
    cursor.execute(
        sql.SQL(
            "SELECT source_table, target_id::text FROM {} WHERE agency_id = %s AND source_table = ANY(%s::text[])"
        ).format(ID_MAP),
        [agency_id, source_tables],
    )
    found: dict[str, set[str]] = {table: set() for table in source_tables}
    for table, target_id in cursor.fetchall():
        found[table].add(target_id)
    return found


def agency_rows_back(*, agency_id: UUID, source_table: str, target_ids: list[UUID] | None) -> sql.Composed:
    """(uid, rid, reused) of the agency's map rows of a source table: the unified id, the RevOS id
    it goes back under, and whether AudienceOS had the row. `target_ids` None: the inserted rows
    only (without a capture, reused rows cannot be told changed)."""
    return sql.SQL(
        "SELECT m.target_id AS uid, m.source_id AS rid, NOT m.inserted AS reused FROM {id_map} m"
        " WHERE m.agency_id = {agency} AND m.source_table = {source}{filter}"
    ).format(
        id_map=ID_MAP,
        agency=sql.Literal(agency_id),
        source=sql.Literal(source_table),
        filter=sql.SQL(" AND m.inserted") if target_ids is None else _among(target_ids),
    )


def agency_gone(
    target_table: str, *, agency_id: UUID, source_table: str, target_ids: list[UUID] | None
) -> sql.Composed:
    """RevOS ids of the agency's map rows of a source table whose unified row is gone (a subquery);
    with `target_ids`, only among those."""
    return sql.SQL(
        "SELECT m.source_id FROM {id_map} m WHERE m.agency_id = {agency} AND m.source_table = {source}"
        " AND NOT EXISTS (SELECT 1 FROM {target} t WHERE t.id = m.target_id){filter}"
    ).format(
        id_map=ID_MAP,
        agency=sql.Literal(agency_id),
        source=sql.Literal(source_table),
        target=table_identifier(target_table),
        filter=sql.SQL("") if target_ids is None else _among(target_ids),
    )


def _among(target_ids: list[UUID]) -> sql.Composed:
    return sql.SQL(" AND m.target_id = ANY({})").format(sql.Literal(target_ids))


def unmapped_target(*, source_tables: list[str], alias: str, reused_only: bool = False) -> sql.Composed:
    """No map row of these source tables points at the unified row `alias` (with `reused_only`: as a
    row AudienceOS had); created since the cutover, not a RevOS row's."""
    return sql.SQL(
        "NOT EXISTS (SELECT 1 FROM {id_map} m WHERE m.target_id = {alias}.id{reused}"
        " AND m.source_table = ANY({sources}::text[]))"
    ).format(
        id_map=ID_MAP,
        alias=sql.Identifier(alias),
        reused=sql.SQL(" AND NOT m.inserted") if reused_only else sql.SQL(""),
        sources=sql.Literal(source_tables),
    )


def unmapped_source(*, source_tables: list[str], alias: str) -> sql.Composed:
    """No map row of these source tables has the id of the unified row `alias` as its RevOS id."""
    return sql.SQL(
        "NOT EXISTS (SELECT 1 FROM {id_map} m"
        " WHERE m.source_table = ANY({sources}::text[]) AND m.source_id = {alias}.id)"
    ).format(id_map=ID_MAP, alias=sql.Identifier(alias), sources=sql.Literal(source_tables))


# --- fragments for verification ----------------------------------------------------------------


def mapped_join(target_table: str, *, agency_id: UUID, source_table: str) -> sql.Composed:
    """`FROM` the agency's map rows of a source table, each with its unified row as `t` (NULL if gone)."""
    return sql.SQL(
        "FROM {id_map} m LEFT JOIN {target} t ON t.id = m.target_id"
        " WHERE m.agency_id = {agency} AND m.source_table = {src}"
    ).format(
        id_map=ID_MAP,
        target=table_identifier(target_table),
        agency=sql.Literal(agency_id),
        src=sql.Literal(source_table),
    )


def inserted_ids(*, agency_id: UUID, source_table: str) -> sql.Composed:
    """The ids of the unified rows the agency's runs inserted from a source table (a subquery)."""
    return sql.SQL(
        "SELECT m.target_id FROM {id_map} m WHERE m.agency_id = {agency} AND m.source_table = {source} AND m.inserted"
    ).format(id_map=ID_MAP, agency=sql.Literal(agency_id), source=sql.Literal(source_table))


def not_inserted_by(*, agency_id: UUID, source_tables: list[str], alias: str) -> sql.Composed:
    """The row `alias` was not inserted by this agency's runs (AudienceOS created it)."""
    # An inserted row kept its RevOS id, so the id map's primary key finds it (sql/unified/0011).
    return sql.SQL(
        "NOT EXISTS (SELECT 1 FROM {id_map} m WHERE m.source_table = ANY({sources}::text[])"
        " AND m.source_id = {alias}.id AND m.inserted AND m.agency_id = {source})"
    ).format(
        id_map=ID_MAP,
        sources=sql.Literal(source_tables),
        source=sql.Literal(agency_id),
        alias=sql.Identifier(alias),
    )


def moved_rows(target_table: str, *, limit: int) -> sql.Composed:
    """(agency_id, id) of inserted rows now owned by another agency. Parameters: agency id, source
    table, the agency's unified id."""
    return sql.SQL(
        "SELECT t.agency_id, t.id FROM {id_map} m JOIN {table} t ON t.id = m.target_id"
        " WHERE m.agency_id = %s AND m.source_table = %s AND m.inserted AND t.agency_id <> %s"
        " ORDER BY t.id LIMIT {limit}"
    ).format(id_map=ID_MAP, table=table_identifier(target_table), limit=sql.Literal(limit))
