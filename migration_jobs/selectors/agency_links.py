"""Reads of the RevOS agencies the control plane knows (their links to unified agencies)."""

from __future__ import annotations

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
