"""Read-only verification of one migrated agency: is it complete, intact and isolated?

- counts: per RevOS table, rows the mapping selects vs unified rows that stand for them;
- content: the transformed source rows vs the unified rows, by checksums over id ranges, narrowed
  down to the differing ids (bisection, as data-diff does);
- references: no row of the agency points at a missing parent;
- isolation: the seed's five RLS cases and two sweeps, run as `authenticated` / `anon` with JWT claims;
- schema: RLS and policies on every table, policy columns indexed, models matching the SQL.

`runner.agency_verify` runs them all and hands over one `CheckOutcome` per check and table;
`migration_jobs.services.verification` records them as CheckResult rows.
"""

from migration_jobs.verify.outcome import ERROR, FAIL, PASS, AgencyScope, CheckOutcome

__all__ = ["ERROR", "FAIL", "PASS", "AgencyScope", "CheckOutcome"]
