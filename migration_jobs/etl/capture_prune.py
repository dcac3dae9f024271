"""Keeping the capture small: records every reader has applied are deleted, repeats are folded.

A RevOS that serves traffic for weeks records every write of every migrated agency
(etl/capture.py); without pruning, controlplane.change_log grows with the writes, not with the
data. Who reads a record, and what each needs kept:

1. A catch-up reads the records its position (capture_agency.applied_snapshot) did not see. A
   record the position saw is applied: no catch-up reads it again (positions only grow; a full
   read clears the position, and then nothing counts as applied until it finishes).
2. The cutover's check before the fence reads the rows written since the last passing full
   verification (`changes_since`, by captured_at), and the check inside its fence reads what the
   position it started with had not seen. The first needs, per row, only whether one record is
   at or after that time: keeping each row's newest record keeps every answer of `changes_since`
   exact. The second runs under the agency's lock, which the pruner takes too (services/
   catch_up_stream.py), so no position older than the current one is in use while it prunes.
3. A switch back reads which unified rows the apps wrote since the cutover (reverse capture,
   `changes_since(since=None)`): a set of rows, which each row's newest record keeps exact.
4. The capture trigger reads the delete records of its own, uncommitted transaction (cascades):
   no other session can see, let alone delete, those.

So a prune deletes, of one agency's records, only those that are committed, applied (when the
capture has positions) and either older than what the cutover's check needs (`keep_since`) or
not the newest record of their row. What is left is bounded by the rows written since the last
full verification (since the cutover, for the reverse capture), and by the writes not yet
applied, which the continuous catch-up keeps to seconds. A reader whose snapshot predates the
prune's commit still sees the deleted records (MVCC), so a prune racing a catch-up changes
neither the rows that catch-up reads nor the position it stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import psycopg

# One statement, so that the position and the records are read in one snapshot. `applied` is NULL
# (nothing deleted) for an agency whose capture has no position, when positions count.
PRUNE = """
WITH position AS (
    SELECT applied_snapshot FROM controlplane.capture_agency WHERE agency_id = %(agency)s
), ranked AS (
    SELECT seq, xid, captured_at,
           row_number() OVER (PARTITION BY table_name, row_id ORDER BY captured_at DESC, seq DESC) AS rank
      FROM controlplane.change_log WHERE agency_id = %(agency)s
)
DELETE FROM controlplane.change_log c
 USING ranked r, position p
 WHERE c.agency_id = %(agency)s AND c.seq = r.seq  -- the agency's index, then seq (change_log has no key)
   AND (NOT %(applied_only)s OR pg_visible_in_snapshot(r.xid, p.applied_snapshot))
   AND (r.rank > 1 OR r.captured_at < %(keep_since)s::timestamptz)
"""


@dataclass(frozen=True)
class Backlog:
    """One captured agency's capture, as the overview and the metrics show it."""

    agency_id: UUID
    pending_records: int  # recorded writes its position has not seen
    pending_rows: int  # distinct rows among them: the next catch-up's work
    oldest_pending_at: datetime | None  # when the oldest of them was written
    applied_at: datetime | None  # when the position last moved
    records: int  # every record kept, applied or not
    fenced: bool


def capture_prune(
    connection: psycopg.Connection, *, agency_id: UUID, keep_since: datetime | None, applied_only: bool = True
) -> int:
    """Delete the agency's records no reader needs any more (see the module docstring); return how many.

    `keep_since`: records from then on stay unless a newer one of the same row stays (None: only
    the repeats go). `applied_only`: only records the agency's position saw (a capture read by
    catch-ups); False for the reverse capture, which has no position and is read as a set.
    """
    deleted = connection.execute(
        PRUNE, {"agency": agency_id, "keep_since": keep_since, "applied_only": applied_only}
    ).rowcount
    connection.commit()
    return deleted


def capture_backlogs(connection: psycopg.Connection, *, agency_id: UUID | None = None) -> dict[UUID, Backlog]:
    """Every captured agency (or only `agency_id`, for its page) -> its backlog, in one query."""
    rows = connection.execute(
        "SELECT a.agency_id,"
        " count(c.seq) FILTER (WHERE NOT coalesce(pg_visible_in_snapshot(c.xid, a.applied_snapshot), false)),"
        # An agency with no record joins one row of NULLs, and (NULL, NULL) is a value count() counts.
        " count(DISTINCT (c.table_name, c.row_id))"
        "   FILTER (WHERE c.seq IS NOT NULL"
        "     AND NOT coalesce(pg_visible_in_snapshot(c.xid, a.applied_snapshot), false)),"
        " min(c.captured_at) FILTER (WHERE NOT coalesce(pg_visible_in_snapshot(c.xid, a.applied_snapshot), false)),"
        " a.applied_at, count(c.seq), a.fenced_at IS NOT NULL"
        " FROM controlplane.capture_agency a LEFT JOIN controlplane.change_log c ON c.agency_id = a.agency_id"
        # Two texts rather than "IS NULL OR": a plan cached for one must not serve the other.
        + (" WHERE a.agency_id = %(agency)s" if agency_id else "")
        + " GROUP BY a.agency_id",
        {"agency": agency_id} if agency_id else None,
    ).fetchall()
    connection.commit()
    return {row[0]: Backlog(*row) for row in rows}
