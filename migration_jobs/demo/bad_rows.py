"""`seed_demo --with-bad-rows`: RevOS rows the unified schema refuses, so the plan has some to find.

Each is valid in RevOS and refused by one unified constraint: a CHECK value, a length, a foreign
key to a row that will not exist, a unique email. All go into one RevOS-only agency (not in
AudienceOS), so the rest of the demo migrates cleanly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from django.db import connections, transaction

from migration_jobs.etl.connections import fetch_value


@dataclass(frozen=True)
class BadRow:
    table: str
    source_id: UUID
    constraint: str  # the unified constraint that refuses it


def demo_bad_rows_plant(*, agency_id: UUID) -> list[BadRow]:
    """Make four of the agency's RevOS rows ones the unified schema refuses; return them."""
    with transaction.atomic(using="revos"), connections["revos"].cursor() as cursor:

        def first(query: str, params: Sequence[str | UUID] = ()) -> UUID:
            cursor.execute(query, params)
            row = cursor.fetchone()
            if row is None:
                raise LookupError(f"the demo agency {agency_id} has no row for: {query}")
            return row[0]

        lead = first("SELECT id FROM leads WHERE agency_id = %s ORDER BY id LIMIT 1", [agency_id])
        cursor.execute("UPDATE leads SET status = 'maybe later' WHERE id = %s", [lead])
        long_name = first("SELECT id FROM users WHERE agency_id = %s ORDER BY id LIMIT 1", [agency_id])
        cursor.execute("UPDATE users SET full_name = repeat('Maximilian', 12) || ' Long' WHERE id = %s", [long_name])
        # A second account for the same mailbox, spelled in capitals: RevOS allows it, unified emails are unique.
        twin = first("SELECT id FROM users WHERE agency_id = %s ORDER BY id OFFSET 1 LIMIT 1", [agency_id])
        cursor.execute(
            "INSERT INTO users (agency_id, email, full_name, role) SELECT agency_id, upper(email), full_name, role"
            " FROM users WHERE id = %s RETURNING id",
            [twin],
        )
        duplicate = fetch_value(cursor)
        # A post of this agency on another agency's campaign: valid in RevOS, an orphan once migrated.
        post = first("SELECT id FROM posts WHERE agency_id = %s ORDER BY id LIMIT 1", [agency_id])
        elsewhere = first("SELECT id FROM campaigns WHERE agency_id <> %s ORDER BY id LIMIT 1", [agency_id])
        cursor.execute("UPDATE posts SET campaign_id = %s WHERE id = %s", [elsewhere, post])
    return [
        BadRow("leads", lead, "lead_status_check"),
        BadRow("users", long_name, "user.first_name varchar(100)"),
        BadRow("users", duplicate, "user_email_lower_key"),
        BadRow("posts", post, "post_campaign_id_fkey"),
    ]
