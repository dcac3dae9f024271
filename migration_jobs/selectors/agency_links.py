"""Reads of the RevOS agencies the control plane knows (their links to unified agencies)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from django.db import connections

from migration_jobs.etl import id_map
from migration_jobs.models import AgencyLink, MigrationRun
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


def agency_link_busy(*, link: AgencyLink) -> str:
    """Why the link cannot be confirmed or changed while a run goes on; "" when none does."""
    if link.runs.filter(status__in=MigrationRun.ACTIVE_STATUSES).exists():
        return f"{link.name} has a migration in progress; change the link after it ends."
    return ""


def agency_link_held_by_rows(*, link: AgencyLink) -> str:
    """Why a confirmed link cannot be changed for another: rows were migrated under it; "" otherwise."""
    if not link.is_confirmed:
        return ""
    with connections["unified"].cursor() as cursor:
        if not id_map.agency_has_mapped_rows(cursor, agency_id=link.revos_agency_id):
            return ""
    return f"{link.name} has migrated rows under its current link; roll it back first."


def agency_relink_refusal(*, link: AgencyLink) -> str:
    """Why the agency cannot be re-linked now, in the words agency_link_confirm refuses it with (the
    page's Re-link button and `link_agency` say the same); "" when it can."""
    return agency_link_busy(link=link) or agency_link_held_by_rows(link=link)


def agency_link_problem(*, link: AgencyLink) -> str:
    """Why the agency's confirmed link no longer holds, in one line: the AudienceOS agency it names is
    gone, or an explicit client link names a client that is gone or moved; "" while it holds (an
    unconfirmed link is the "not linked" state's own next action)."""
    if not link.is_confirmed:
        return ""
    if link.kind == AgencyLink.Kind.EXISTING:
        with connections["unified"].cursor() as cursor:
            cursor.execute("SELECT 1 FROM agency WHERE id = %s", [link.unified_agency_id])
            if cursor.fetchone() is None:
                return f"the AudienceOS agency it is linked to ({link.unified_agency_id}) no longer exists"
    # Below services, the explicit client links are read here as services/agency_links.py checks them.
    for client_link in link.client_links.all():
        with connections["unified"].cursor() as cursor:
            cursor.execute("SELECT agency_id FROM client WHERE id = %s", [client_link.unified_client_id])
            row = cursor.fetchone()
        if row is None or row[0] != link.unified_agency_id:
            return (
                f"explicit client link {client_link.pk} names unified client {client_link.unified_client_id},"
                " which is no longer a client of its agency"
            )
    return ""


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
