"""Which tenant databases the demo commands may wipe or open up.

`seed_demo --reset` TRUNCATEs every tenant table and `--with-phase0-problems` turns RLS off: pointed
at production by mistake, one command would wipe or expose both live databases. So a database is
marked (controlplane.database_mark, sql/*/..._database_mark.sql) as a demo or test database when the
control plane seeds it while it holds no tenant rows, or builds it for the tests, and those commands
refuse any database without the mark. With DEBUG off (the production profile) they refuse outright
unless DEMO_COMMANDS_ALLOWED is set.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connections

from migration_jobs.etl.connections import fetch_value

TENANT_DATABASES = ("revos", "unified")
# The root tenant table of each database: any tenant row belongs to an agency.
AGENCY_TABLES = {"revos": "agencies", "unified": "agency"}


class DatabaseNotMarked(Exception):
    """A destructive demo command met a database it may not touch; nothing was changed."""


def _name(database: str) -> str:
    return f"the {database} database ({settings.DATABASES[database]['NAME']})"


def database_mark_read(*, database: str) -> str | None:
    """'demo' or 'test', or None for an unmarked database."""
    with connections[database].cursor() as cursor:
        cursor.execute("SELECT to_regclass('controlplane.database_mark') IS NOT NULL")
        if not fetch_value(cursor):
            return None
        cursor.execute("SELECT purpose FROM controlplane.database_mark")
        row = cursor.fetchone()
    return row[0] if row else None


def database_has_tenant_rows(*, database: str) -> bool:
    with connections[database].cursor() as cursor:
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM public.{AGENCY_TABLES[database]})")
        has_rows: bool = fetch_value(cursor)
        return has_rows


def database_mark(*, database: str, purpose: str, reason: str) -> None:
    """Mark `database` as a demo or test database (the first mark stays)."""
    with connections[database].cursor() as cursor:
        cursor.execute(
            "INSERT INTO controlplane.database_mark (purpose, reason) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            [purpose, reason],
        )


def demo_databases_claim(*, destructive: str | None) -> None:
    """Before seeding: mark each empty tenant database as a demo one, and refuse unmarked ones that
    hold tenant rows. `destructive` names the option that would wipe or open them (--reset,
    --with-phase0-problems): then the production profile refuses outright, unless allowed.
    """
    if not settings.DEBUG and not settings.DEMO_COMMANDS_ALLOWED:
        what = destructive or "seeding demo data"
        raise DatabaseNotMarked(
            f"Refusing {what}: DEBUG is off (the production profile). Set DEMO_COMMANDS_ALLOWED=true "
            "to run demo commands on these databases anyway."
        )
    for database in TENANT_DATABASES:
        if database_mark_read(database=database) is not None:
            continue
        if database_has_tenant_rows(database=database):
            what = f"{destructive} on" if destructive else "seeding demo data into"
            raise DatabaseNotMarked(
                f"Refusing {what} {_name(database)}: it holds tenant rows and is not marked as a demo or "
                "test database. Nothing was changed. Point the URLs at a demo database."
            )
    for database in TENANT_DATABASES:
        database_mark(database=database, purpose="demo", reason="seeded by seed_demo while it held no tenant rows")
