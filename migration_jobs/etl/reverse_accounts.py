"""Accounts on the way back: which Supabase Auth accounts, identities and second factors a switch
back compares.

The accounts are captured on both databases (their sign-in bookkeeping alone is neither recorded
nor fenced: mapping.TableMap.volatile), which holds them behind a switch back's fence. A switch
back still compares the agency's accounts whole (one or two rows per person) rather than by the
unified capture alone: an account AudienceOS already had is the person's, whoever wrote it, and
the comparison sends back exactly what differs; the sign-in bookkeeping alone is no difference.

Which accounts are the agency's: those of its people who go back to RevOS — every person of its
id map (inserted, or merged into the AudienceOS account they already had) and the people the apps
created since the cutover (captured `user` rows of the agency the map does not know) — found
through the agency's own id map and `user` rows, so never another agency's account.

Which identities (and, alike, which second factors, auth.mfa_factors): those of these accounts,
and those of the agency's id map (one removed since is gone from the unified database and is
deleted from RevOS), but not the ones a merged person's AudienceOS account had at the cutover and
RevOS never had: those are AudienceOS's. The cutover keeps the agency's identities and factors as
they were (controlplane.reverse_baseline, with the merged accounts, whose columns go back only
where they changed since, as for every reused row).
"""

from __future__ import annotations

from uuid import UUID

from psycopg import sql

from migration_jobs.etl import id_map
from migration_jobs.etl.connections import Cursor

ACCOUNTS, IDENTITIES, FACTORS = "auth.users", "auth.identities", "auth.mfa_factors"
# The rows an account owns (their user_id): its sign-in identities and its second factors.
ACCOUNT_ROWS = (IDENTITIES, FACTORS)
BASELINE = sql.SQL("controlplane.reverse_baseline")


def accounts_in_question(
    cursor: Cursor, *, source_agency_id: UUID, target_agency_id: UUID, changed_people: frozenset[UUID]
) -> dict[str, frozenset[UUID]]:
    """auth table -> ids of the agency's accounts and identities a switch back compares with RevOS."""
    mapped = id_map.agency_target_ids(
        cursor, agency_id=source_agency_id, source_tables=["users", ACCOUNTS, *ACCOUNT_ROWS]
    )
    cursor.execute(
        'SELECT a.id::text FROM auth.users a JOIN public."user" u ON u.id = a.id WHERE u.agency_id = %(agency)s'
        " AND (a.id = ANY(%(people)s::uuid[]) OR (a.id = ANY(%(new)s::uuid[]) AND u.app_context <> 'audience'))",
        {
            "agency": target_agency_id,
            "people": sorted(mapped["users"]),
            "new": sorted(str(i) for i in changed_people if str(i) not in mapped["users"]),
        },
    )
    accounts = {row[0] for row in cursor.fetchall()}
    in_question = {ACCOUNTS: frozenset(UUID(i) for i in accounts | mapped[ACCOUNTS])}
    for table in ACCOUNT_ROWS:
        cursor.execute(
            sql.SQL(
                "SELECT i.id::text FROM {table} i WHERE i.user_id = ANY(%(accounts)s::uuid[])"
                " AND (i.id = ANY(%(mapped)s::uuid[]) OR NOT EXISTS (SELECT 1 FROM {baseline} b"
                " WHERE b.agency_id = %(agency)s AND b.table_name = %(table)s AND b.row_id = i.id))"
            ).format(baseline=BASELINE, table=sql.SQL(table)),
            {"accounts": sorted(accounts), "mapped": sorted(mapped[table]), "agency": source_agency_id, "table": table},
        )
        in_question[table] = frozenset(UUID(row[0]) for row in cursor.fetchall()) | frozenset(
            UUID(i) for i in mapped[table]
        )
    return in_question


def accounts_baseline_record(cursor: Cursor, *, source_agency_id: UUID) -> None:
    """At the cutover: keep the merged accounts and every identity and factor of the agency's
    accounts as they are, for a switch back to tell what the apps changed since from what AudienceOS had."""
    accounts = id_map.agency_targets(agency_id=source_agency_id, source_table=ACCOUNTS)
    for table, rows in (
        (ACCOUNTS, id_map.agency_targets(agency_id=source_agency_id, source_table=ACCOUNTS, reused_only=True)),
        *(
            (table, sql.SQL("SELECT id FROM {} WHERE user_id IN ({})").format(sql.SQL(table), accounts))
            for table in ACCOUNT_ROWS
        ),
    ):
        cursor.execute(
            sql.SQL(
                "INSERT INTO {baseline} (agency_id, table_name, row_id, row_data)"
                " SELECT %s, %s, t.id, to_jsonb(t) FROM {table} t WHERE t.id IN ({rows})"
            ).format(baseline=BASELINE, table=sql.SQL(table), rows=rows),
            [source_agency_id, table],
        )
