"""How the unified models compare with the unified database's schema: the drift check.

Verification records it with every run (verify/schema.py) and the test suite asserts it is empty
(tests/test_models_match_sql.py); the SQL in sql/unified is the source of truth.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, cast

from django.apps import apps
from django.db import connections, models

from migration_jobs.etl.catalog import TENANT_KEY_SQL


@dataclass(frozen=True)
class Column:
    data_type: str
    nullable: bool
    max_length: int | None
    precision: int | None
    scale: int | None


# Django internal type -> information_schema.columns.data_type.
POSTGRES_DATA_TYPES = {
    "UUIDField": "uuid",
    "CharField": "character varying",
    "TextField": "text",
    "JSONField": "jsonb",
    "DateTimeField": "timestamp with time zone",
    "DateField": "date",
    "BooleanField": "boolean",
    "IntegerField": "integer",
    "BigIntegerField": "bigint",
    "DecimalField": "numeric",
}


def unified_models() -> list[type[models.Model]]:
    """Every model that lives in the unified database."""
    return [m for m in apps.get_models() if getattr(m, "tenant_database", None) == "unified"]


def unified_model_drift(*, database: str = "unified") -> list[str]:
    """Every disagreement between the unified models and the `public` schema of `database`.

    Checks that each table has exactly one model and each model a table; and, column by column,
    that each field has its column (and each column a field) with the same type, length,
    precision and nullability, the same primary key, and ForeignKeys where the SQL has them.
    An empty list means the models describe the schema exactly.
    """
    columns = _public_columns(database)
    primary_keys, foreign_keys = _public_keys(database)
    by_table: dict[str, list[type[models.Model]]] = defaultdict(list)
    for model in unified_models():
        by_table[model._meta.db_table].append(model)

    problems = [f"table {table} has no model" for table in sorted(columns.keys() - by_table.keys())]
    for table, table_models in sorted(by_table.items()):
        names = ", ".join(sorted(m.__name__ for m in table_models))
        if len(table_models) > 1:
            problems.append(f"table {table} has several models: {names}")
        if table not in columns:
            problems.append(f"{names}: table {table} does not exist")
            continue
        for model in table_models:
            problems += _model_drift(model, columns[table], primary_keys.get(table), foreign_keys.get(table, {}))
    return problems


def _model_drift(
    model: type[models.Model], columns: dict[str, Column], primary_key: str | None, foreign_keys: dict[str, str]
) -> list[str]:
    table = model._meta.db_table
    fields = {field.column: field for field in model._meta.concrete_fields}
    problems = [f"{table}.{column} has no field on {model.__name__}" for column in columns.keys() - fields]
    for column_name, field in sorted(fields.items()):
        where = f"{model.__name__}.{field.name} ({table}.{column_name})"
        column = columns.get(column_name)
        if column is None:
            problems.append(f"{where}: no such column")
            continue
        problems += [f"{where}: {problem}" for problem in _field_drift(field, column)]
        referenced = foreign_keys.get(column_name)
        # A concrete many-to-one field is a ForeignKey, its related model a class once the app registry is ready.
        related = cast("type[models.Model]", field.related_model)
        if field.many_to_one and referenced != related._meta.db_table:
            problems.append(f"{where}: ForeignKey to {related._meta.db_table}, SQL: {referenced}")
        if referenced and not field.many_to_one:
            problems.append(f"{where}: SQL has a foreign key to {referenced}, the model a plain field")
    if model._meta.pk.column != primary_key:
        problems.append(f"{model.__name__}: primary key {model._meta.pk.column}, SQL: {primary_key}")
    return problems


def _field_drift(field: models.Field[Any, Any], column: Column) -> list[str]:
    """How one field disagrees with its column: type, size and nullability."""
    # The field whose type the column has; its attributes (max_digits, ...) follow its internal type,
    # a string the type checker cannot follow.
    target: Any = cast("models.ForeignKey[Any, Any]", field).target_field if field.many_to_one else field
    internal_type = target.get_internal_type()
    expected = POSTGRES_DATA_TYPES.get(internal_type)
    problems = []
    if expected is None:
        problems.append(f"{internal_type} has no known PostgreSQL type")
    elif expected != column.data_type:
        problems.append(f"{internal_type} is {expected}, SQL: {column.data_type}")
    elif internal_type == "CharField" and target.max_length != column.max_length:
        problems.append(f"max_length {target.max_length}, SQL: {column.max_length}")
    elif internal_type == "DecimalField" and (target.max_digits, target.decimal_places) != (
        column.precision,
        column.scale,
    ):
        problems.append(
            f"numeric({target.max_digits}, {target.decimal_places}), SQL: numeric({column.precision}, {column.scale})"
        )
    if field.null != column.nullable:
        problems.append(f"null={field.null}, SQL: {'NULL' if column.nullable else 'NOT NULL'}")
    return problems


def _public_columns(database: str) -> dict[str, dict[str, Column]]:
    with connections[database].cursor() as cursor:
        cursor.execute(
            """
            SELECT c.table_name, c.column_name, c.data_type, c.is_nullable = 'YES',
                   c.character_maximum_length, c.numeric_precision, c.numeric_scale
            FROM information_schema.columns c
            JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
            WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
            """
        )
        rows = cursor.fetchall()
    columns: dict[str, dict[str, Column]] = defaultdict(dict)
    for table, column, *info in rows:
        columns[table][column] = Column(*info)
    return dict(columns)


def _public_keys(database: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Single-column primary keys by table, and foreign keys as {table: {column: referenced table}}.

    A tenant foreign key (reference, agency_id) -> (id, agency_id) is the reference's key.
    """
    with connections[database].cursor() as cursor:
        cursor.execute(
            f"""
            SELECT k.contype, src.relname, a.attname, dst.relname
            FROM pg_constraint k
            JOIN pg_class src ON src.oid = k.conrelid
            JOIN pg_namespace n ON n.oid = src.relnamespace AND n.nspname = 'public'
            JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
            LEFT JOIN pg_class dst ON dst.oid = k.confrelid
            WHERE k.contype IN ('p', 'f') AND (cardinality(k.conkey) = 1 OR (k.contype = 'f' AND {TENANT_KEY_SQL}))
            """
        )
        rows = cursor.fetchall()
    primary_keys: dict[str, str] = {}
    foreign_keys: dict[str, dict[str, str]] = defaultdict(dict)
    for kind, table, column, referenced in rows:
        if kind == "p":
            primary_keys[table] = column
        else:
            foreign_keys[table][column] = referenced
    return primary_keys, dict(foreign_keys)
