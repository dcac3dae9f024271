"""The cutover's verification, split around its fence so that the write downtime follows what
changed meanwhile, not the agency's size.

Ahead of the fence, with RevOS still writable, `delta_verify_ahead` runs what the cutover used to
run inside it (runner.agency_verify_changes): counts of every table, the content of every row
changed since the last full verification, every isolation case and sweep. Inside the fence,
`delta_verify_in_fence` runs again only the checks whose answer can have changed since.

Why the two together prove what the same checks inside the fence would
---------------------------------------------------------------------
The cutover (services/kinds/cutover.py) does, holding the agency's lock (so no other run writes its
unified rows or the id map), in this order:

  a. catch up RevOS -> unified; the capture's position becomes P (etl/capture.py);
  b. start recording the agency's unified writes, waiting out older unified transactions
     (etl/reverse_capture.py `unified_watch_start`): from here on every write to the agency's rows
     of a unified table a RevOS table goes to is recorded, W;
  c. digest the rules of visibility (isolation.policies_fingerprint), D1;
  d. check ahead: RevOS read in snapshot Sv, unified in snapshot Uv, both taken after a, b and c;
  e. catch up again (what came during d), fence, drain (no RevOS write to the agency's rows
     commits after it), final catch-up; C is every RevOS row of the agency written by a
     transaction P did not see, read from the capture inside the fence (it is complete then);
  f. inside the fence: the digest again, D2, and the checks below, at the fenced state F.

Take a table T whose counts passed ahead, with no row of T or of a table on T's path to its
agency (its parents) in C, T's unified table not in W, T captured, T's reused rows inside the
agency (not a shared target): RevOS's count of T is the same at P, Sv and F (the capture records
every write to the agency's rows, a row entering or leaving the agency included, and a child
leaves with its parent, which is recorded on the parent's table); the unified side is the same
at Uv and F (W records every write to the agency's unified rows of T, the final catch-up's own
included, and only this run writes the id map). So the count ahead is the count at F. Every other
table is counted again inside the fence: those with changes, those not captured (re-read whole
by every catch-up, and unrecorded on the unified side), the shared targets (a reused row may
belong to another agency, whose writes are not recorded) and those that did not pass ahead (a
write between P and Sv can make them differ ahead without any divergence).

Content of a row changed since the last full verification V: if the row is neither in C nor in W,
neither side wrote it after Sv / Uv, so the comparison ahead holds at F; rows in C or W are
compared inside the fence (the unified ids in W are the source ids the migration inserted them
under; others, AudienceOS's own, match no source row and are compared on neither side). Tables
whose content did not pass ahead are compared again in full (their rows changed since V). A row
not changed since V was equal at V and is still equal, as before (the capture says it was not
written). That is ghostferry's reverify, ahead and then for what changed since.

Isolation: a case's verdict depends on the rules of visibility and on the rows it reads. If D1
differs from D2, or a policy decides on more than its own row and the request's claims (it reads
another table or calls a function that might: isolation.policies_row_local), every case and
sweep runs again inside the fence, in full. Otherwise RLS decides row by row, on the row and the
claims alone: a row nobody wrote since the check ahead is visible to the same claims exactly as
it was then. A case runs again if it reads a table whose agency rows may have changed (in W, or
one W does not cover, or rows nothing records: case 5's auth tables), and of a table W covers it
reads only the rows W names: every case compares what the owner stores with what a role sees
through RLS, which only filters, so equal counts ahead meant every stored row was seen (and none
other), row by row, and that still holds of the rows outside W. The sweeps run over every
table but the watched ones W shows unchanged (a table holding a row this agency's migration
inserted that belongs to another agency now is swept anyway: that agency's writes are not
recorded). Such a row can only have moved by an update W records (under the agency it left), so
the sweep looks for moved rows in the changed tables and in those where the check ahead found
some. Case 5 runs again always (it signs a person in, through auth tables nothing records),
counting what its tokens see only in the tables not proven unchanged, and of those W covers only
W's rows: it checks as before that the tokens carry the agency and each app's app_context, which
with the same rules and rows see what they saw ahead. Cases that did not pass ahead run again,
reading every row. Other agencies' rows are recorded by nothing and fenced by nothing, before
the fence or after the switch, so neither this nor a full sweep inside the fence can say more
about them than "at the moment read".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from uuid import UUID

from migration_jobs.etl import capture
from migration_jobs.etl.connections import connect
from migration_jobs.etl.plan import TablePlan
from migration_jobs.etl.reverse_capture import unified_captured_tables
from migration_jobs.mapping import QUALIFIED_TABLES, SHARED_TARGETS, TABLE_MAPS
from migration_jobs.verify import isolation
from migration_jobs.verify.outcome import PASS, AgencyScope, CheckOutcome
from migration_jobs.verify.runner import Record, agency_verify_changes


@dataclass
class Ahead:
    """What the check ahead of the fence found, and what the check inside it builds on."""

    outcomes: list[CheckOutcome]
    content_ids: dict[str, list[str]]  # source table -> rows changed since the last full verification
    policies: str  # isolation.policies_fingerprint before the checks
    position: str | None  # the capture's applied position the unified side stood at (P)

    def moved_tables(self) -> frozenset[str]:
        """Tables where the sweep found rows this agency's migration inserted in another agency now."""
        return frozenset(
            table
            for o in self.outcomes
            if o.check_name == "isolation.other_agency_sees_nothing"
            for table in o.details.get("moved_tables", ())
        )

    def not_passed(self, check_name: str) -> frozenset[str]:
        """Tables (or, for isolation, check names) whose `check_name` checks did not pass."""
        return frozenset(
            o.check_name if check_name == "isolation" else o.table_name
            for o in self.outcomes
            if o.status != PASS and (o.check_name == check_name or o.check_name.startswith(f"{check_name}."))
        )


def delta_verify_ahead(*, scope: AgencyScope, content_ids: dict[str, list[str]], position: str | None) -> Ahead:
    """Every check of the cutover's verification, before the fence; nothing raised for a failure
    (the check inside the fence runs it again and decides). See the module docstring."""
    with connect("unified", purpose="verification-rls") as connection:
        policies = isolation.policies_fingerprint(connection)
    outcomes: list[CheckOutcome] = []
    agency_verify_changes(scope=scope, changed_ids=content_ids, record=outcomes.append)
    return Ahead(outcomes, content_ids, policies, position)


def delta_verify_in_fence(
    *,
    scope: AgencyScope,
    ahead: Ahead,
    unified_changed: Mapping[str, frozenset[UUID]],
    record: Record,
) -> None:
    """The checks whose answer may have changed since `ahead`: RevOS rows written by transactions
    its position did not see (read here, from the capture), unified rows written since the watch
    started (`unified_changed`). See the module docstring for why the rest still holds.

    Without a position (nothing to read the capture from), every check of `ahead` runs again.
    """
    revos_changed = None
    if ahead.position is not None:
        with connect("revos", purpose="verification") as connection:
            capture.capture_triggers_verify(connection, tables=capture.revos_captured_tables(), database="RevOS")
            revos_changed = capture.changes_read(connection, agency_id=scope.source_agency_id, since=ahead.position)
    if revos_changed is None:
        agency_verify_changes(scope=scope, changed_ids=ahead.content_ids, record=record)
        return
    with connect("unified", purpose="verification-rls") as connection:
        same_rules = isolation.policies_fingerprint(connection) == ahead.policies
        row_local = isolation.policies_row_local(connection)
    # The isolation cases and sweeps are about the public tables' policies; the accounts have none.
    watched = frozenset(t.name for t in unified_captured_tables()) - QUALIFIED_TABLES
    unchanged = watched - frozenset(unified_changed)
    written = {table: ids for table, ids in unified_changed.items() if table in watched and ids}
    agency_verify_changes(
        scope=scope,
        changed_ids=_content_ids(ahead, revos_changed, unified_changed),
        record=record,
        counted=_recount(ahead, revos_changed, unchanged),
        isolation_only=isolation.isolation_only(
            unchanged=unchanged,
            again=ahead.not_passed("isolation"),
            moved=ahead.moved_tables(),
            rows=written,
        )
        if same_rules and row_local
        else None,
    )


def _recount(
    ahead: Ahead, revos_changed: Mapping[str, list[str]], unchanged: frozenset[str]
) -> Callable[[TablePlan], bool]:
    changed = frozenset(table for table, ids in revos_changed.items() if ids)
    parents = _parents()
    failed = ahead.not_passed("counts")
    counted_ahead = frozenset(o.table_name for o in ahead.outcomes if o.check_name == "counts")

    def recount(plan: TablePlan) -> bool:
        return (
            not plan.entry.captured
            or plan.target in SHARED_TARGETS
            or plan.target not in unchanged
            or plan.source not in counted_ahead
            or plan.source in failed
            or bool(({plan.source} | parents.get(plan.source, frozenset())) & changed)
        )

    return recount


def _parents() -> dict[str, frozenset[str]]:
    """Source table -> the tables on its path to its agency (a child leaves the agency with them)."""
    return {table.name: frozenset(table.agency_path[1::2]) for table in capture.revos_captured_tables()}


def _content_ids(
    ahead: Ahead, revos_changed: Mapping[str, list[str]], unified_changed: Mapping[str, frozenset[UUID]]
) -> dict[str, list[str]]:
    failed = ahead.not_passed("content")
    ids: dict[str, set[str]] = {}
    for entry in TABLE_MAPS:
        wanted = set(revos_changed.get(entry.source, ()))
        wanted |= {str(i) for i in unified_changed.get(entry.target, ())}
        if entry.source in failed:
            wanted |= set(ahead.content_ids.get(entry.source, ()))
        if wanted:
            ids.setdefault(entry.source, set()).update(wanted)
    return {table: sorted(values) for table, values in ids.items()}
