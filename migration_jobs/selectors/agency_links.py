"""Reads of the RevOS agencies the control plane knows (their links to unified agencies)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from migration_jobs.models import AgencyLink
from migration_jobs.refusals import RunRefused


def agency_link_resolve(reference: str) -> AgencyLink:
    """Find the RevOS agency by its RevOS id or its unified id, as typed by a person."""
    try:
        agency_id = UUID(str(reference).strip())
    except ValueError:
        raise RunRefused(f"{reference!r} is not an agency id (a UUID such as 4f0c...-...).") from None
    link = AgencyLink.objects.filter(revos_agency_id=agency_id).first()
    link = link or AgencyLink.objects.filter(unified_agency_id=agency_id).first()
    if link is None:
        raise RunRefused(f"No RevOS agency {agency_id} is known. Sync agencies from RevOS first.")
    return link


@dataclass(frozen=True)
class LinkedAgency:
    """A linked agency's two ids and its name: what a run's work reads once its link is confirmed.

    `AgencyLink.unified_agency_id` is None until staff link the agency, and every run that touches
    the unified database is refused before then; this carries that fact in its type.
    """

    revos_agency_id: UUID
    unified_agency_id: UUID
    name: str


def agency_linked(*, link: AgencyLink) -> LinkedAgency:
    """The agency as linked, or RunRefused when it has no unified agency yet."""
    if link.unified_agency_id is None:
        raise RunRefused(f"{link.name} is not linked to a unified agency; confirm its link first.")
    return LinkedAgency(revos_agency_id=link.revos_agency_id, unified_agency_id=link.unified_agency_id, name=link.name)
