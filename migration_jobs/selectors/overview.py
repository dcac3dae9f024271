"""Reads for the agencies overview: every RevOS agency with its state, in a fixed number of queries."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TypeVar

from django.db.models import Q, QuerySet

from migration_jobs.models import AgencyLink, MigrationRun, VerificationRun
from migration_jobs.models.flags import AgencyFlagOverride, FeatureFlag
from migration_jobs.run_kinds import run_kind_values
from migration_jobs.selectors.cockpit import agency_state
from migration_jobs.selectors.flags import agency_flag_id, flag_evaluate
from migration_jobs.selectors.timeline import NextAction, agency_next_action

RunT = TypeVar("RunT", MigrationRun, VerificationRun)

# The order an agency goes through, then the two ways it can stop; the overview lists them so.
AGENCY_STATES = (
    "not linked",
    "linked",
    "migrating",
    "migrated",
    "verified",
    "cut over",
    "complete",
    "failed",
    "paused",
)


@dataclass(frozen=True)
class AgencyRow:
    """One line of the overview."""

    link: AgencyLink
    state: str
    last_run: MigrationRun | None
    verification: VerificationRun | None
    cut_over: bool

    @property
    def next_action(self) -> NextAction:
        """What to do next, as the agency's page says it (without reading its verification's checks)."""
        return agency_next_action(
            state=self.state, last_run=self.last_run, verification=self.verification, with_checks=False
        )


@dataclass(frozen=True)
class AgencyOverview:
    rows: list[AgencyRow]  # the agencies shown (after the state filter)
    counts: dict[str, int]  # every state with its number of agencies (before the state filter)
    total: int


def _latest_per_agency(queryset: QuerySet[RunT]) -> dict[int, RunT]:
    """The newest row per agency link, with PostgreSQL's DISTINCT ON: one query for all agencies."""
    rows = queryset.order_by("agency_link_id", "-created_at", "-id").distinct("agency_link_id")
    return {row.agency_link_id: row for row in rows}


def _cut_over_links() -> set[int]:
    """The agency links `unified_db` is on for, evaluated as the apps see it (override, global, bucket)."""
    flag = FeatureFlag.objects.filter(name="unified_db").first()
    if flag is None:
        return set()
    overrides = dict(AgencyFlagOverride.objects.filter(flag=flag).values_list("agency_link_id", "enabled"))
    return {
        link.pk
        for link in AgencyLink.objects.all()
        if flag_evaluate(flag=flag, agency_id=agency_flag_id(agency_link=link), override=overrides.get(link.pk))
    }


def agencies_overview(*, state: str = "", search: str = "") -> AgencyOverview:
    """All RevOS agencies (matching `search` by name or domain) with their state; `state` filters the rows."""
    links = AgencyLink.objects.order_by("name", "pk")
    if search:
        links = links.filter(Q(name__icontains=search) | Q(domain__icontains=search))
    last_runs = _latest_per_agency(MigrationRun.objects.all())
    last_migrations = _latest_per_agency(MigrationRun.objects.filter(kind__in=run_kind_values(moves_rows=True)))
    verifications = _latest_per_agency(VerificationRun.objects.all())
    cut_over = _cut_over_links()
    complete = set(
        MigrationRun.objects.filter(
            kind__in=run_kind_values(completes=True), status=MigrationRun.Status.SUCCEEDED
        ).values_list("agency_link_id", flat=True)
    )
    rows = [
        AgencyRow(
            link=link,
            state=agency_state(
                link=link,
                last_migration=last_migrations.get(link.pk),
                verification=verifications.get(link.pk),
                cut_over=link.pk in cut_over,
                complete=link.pk in complete,
            ),
            last_run=last_runs.get(link.pk),
            verification=verifications.get(link.pk),
            cut_over=link.pk in cut_over,
        )
        for link in links
    ]
    tally = Counter(row.state for row in rows)
    return AgencyOverview(
        rows=[row for row in rows if not state or row.state == state],
        counts={name: tally.get(name, 0) for name in AGENCY_STATES},
        total=len(rows),
    )
