"""The data every measurement runs on: one RevOS agency of a chosen size, alone in its database."""

from __future__ import annotations

import logging
from uuid import UUID

import psycopg

from migration_jobs.demo.demo import demo_agency_seed, demo_data_reset
from migration_jobs.etl.capture import capture_remove
from migration_jobs.etl.connections import connect
from migration_jobs.models import AgencyLink
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync

logger = logging.getLogger(__name__)

# demo_agency_seed writes about this many RevOS rows per unit of scale (scale 1000 ≈ 1.07M rows).
ROWS_PER_SCALE = 1071


def bench_agency_seed(*, rows: int, seed: int, people: int | None = None) -> UUID:
    """Empty both tenant databases, then seed one RevOS agency of about `rows` rows (and `people`
    people, if given, whatever its size).

    Alone in RevOS, the agency's rows are whole tables, which is what pgloader can load. VACUUM
    sets the hint bits and statistics now, so the first reader timed does not pay for them.
    """
    revos_capture_forget()
    demo_data_reset()
    agency_id = demo_agency_seed(scale=rows / ROWS_PER_SCALE, seed=seed, name=f"Benchmark {rows:,} rows", people=people)
    database_vacuum(alias="revos")
    return agency_id


def database_vacuum(*, alias: str) -> None:
    with connect(alias, autocommit=True, purpose="benchmark") as connection:
        connection.execute("VACUUM (FREEZE, ANALYZE)")


def database_checkpoint() -> None:
    """Flush dirty buffers before a timed step, so it does not pay for the previous step's writes."""
    for alias in ("revos", "unified"):
        try:
            with connect(alias, autocommit=True, purpose="benchmark") as connection:
                connection.execute("CHECKPOINT")
        except psycopg.Error as error:  # needs superuser or pg_checkpoint; the figures stand without it
            logger.info("no CHECKPOINT before the timed step (%s)", str(error).strip())


def bench_link_confirm(*, agency_id: UUID) -> AgencyLink:
    """The agency's link, confirmed as a new unified agency (as staff would in the admin)."""
    agency_links_sync()
    link = AgencyLink.objects.get(revos_agency_id=agency_id)
    return agency_link_confirm(link=link, kind=AgencyLink.Kind.NEW, unified_agency_id=None, actor=None)


def revos_agency_count() -> int:
    with connect("revos", autocommit=True, purpose="benchmark") as connection:
        return connection.execute("SELECT count(*) FROM agencies").fetchone()[0]


def database_backends_stop(*, application_prefix: str) -> None:
    """End the project's connections a killed worker left behind (their queries would run on)."""
    for alias in ("revos", "unified"):
        with connect(alias, autocommit=True, purpose="benchmark") as connection:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND application_name LIKE %s"
                " AND application_name NOT LIKE 'controlplane-benchmark%%'",
                [f"{application_prefix}%"],
            )


def unified_reset() -> None:
    """Empty the unified tables, the accounts and the migration bookkeeping, as before the first
    migration. The reverse capture goes first: while it has an agency, captured tables refuse TRUNCATE."""
    with connect("unified", autocommit=True, purpose="benchmark") as connection:
        for condition in (
            "schemaname = 'controlplane' AND tablename IN ('capture_agency', 'change_log')",
            "schemaname = 'public' OR (schemaname = 'controlplane' AND tablename IN ('id_map', 'checkpoint'))"
            " OR (schemaname = 'auth' AND tablename IN ('users', 'identities'))",
        ):
            tables = [
                name
                for (name,) in connection.execute(
                    "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables WHERE " + condition
                )
            ]
            if tables:
                connection.execute(f"TRUNCATE {', '.join(tables)} CASCADE")


def revos_capture_forget() -> None:
    """Stop capturing the agencies an earlier measurement migrated: while any agency's changes are
    captured, RevOS refuses TRUNCATE, and the next agency size starts from empty tables."""
    with connect("revos", purpose="benchmark") as connection:
        registered = [row[0] for row in connection.execute("SELECT agency_id FROM controlplane.capture_agency")]
        connection.commit()
        for agency_id in registered:
            capture_remove(connection, agency_id=agency_id)
