"""Route tenant models to the database that owns them; Django migrations touch only `default`.

Unmanaged models over the unified tables declare `tenant_database = "unified"` on the class; the
RevOS source has no models (the migration engine reads it with plain SQL).
"""

TENANT_ALIASES = frozenset({"unified", "revos"})


def _alias_for(model) -> str:
    return getattr(model, "tenant_database", "default")


class TenantDatabaseRouter:
    def db_for_read(self, model, **hints):
        return _alias_for(model)

    def db_for_write(self, model, **hints):
        return _alias_for(model)

    def allow_relation(self, obj1, obj2, **hints):
        return _alias_for(type(obj1)) == _alias_for(type(obj2))

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db not in TENANT_ALIASES
