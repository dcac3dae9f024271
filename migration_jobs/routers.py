"""Route tenant models to the database that owns them; Django migrations touch only `default`.

Unmanaged models over the unified tables declare `tenant_database = "unified"` on the class; the
RevOS source has no models (the migration engine reads it with plain SQL).
"""

from typing import Any

from django.db.models import Model

TENANT_ALIASES = frozenset({"unified", "revos"})


def _alias_for(model: type[Model]) -> str:
    alias: str = getattr(model, "tenant_database", "default")
    return alias


class TenantDatabaseRouter:
    def db_for_read(self, model: type[Model], **hints: Any) -> str:
        return _alias_for(model)

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        return _alias_for(model)

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool:
        return _alias_for(type(obj1)) == _alias_for(type(obj2))

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        return db not in TENANT_ALIASES
