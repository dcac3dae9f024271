"""Identity resolution for agencies: which unified agency each RevOS agency is, confirmed by staff."""

from __future__ import annotations

import re
from dataclasses import dataclass
from uuid import UUID

from django.contrib.auth.models import User
from django.db import connections, transaction
from django.utils import timezone

from migration_jobs.models import AgencyLink
from migration_jobs.selectors.agency_links import agency_link_busy, agency_link_held_by_rows

LEGAL_SUFFIXES = re.compile(r"\b(inc|llc|ltd|gmbh|co|corp|corporation|company|agency)\b")


class LinkError(Exception):
    """A link that cannot be made as asked; the message says why."""


def normalize_agency_name(name: str) -> str:
    """'ACME, Inc.' and 'Acme Inc' are the same agency: compare letters and digits, no suffixes."""
    words = re.sub(r"[^0-9a-z]+", " ", name.lower())
    return " ".join(LEGAL_SUFFIXES.sub(" ", words).split())


def normalize_domain(domain: str | None) -> str:
    domain = (domain or "").strip().lower()
    domain = re.sub(r"^https?://", "", domain)
    return domain.removeprefix("www.").split("/")[0]


@dataclass(frozen=True)
class Suggestion:
    kind: str
    agency_id: UUID | None
    reason: str


def _unified_agencies() -> list[tuple[UUID, str, str | None]]:
    with connections["unified"].cursor() as cursor:
        cursor.execute("SELECT id, name, domain FROM agency")
        agencies: list[tuple[UUID, str, str | None]] = cursor.fetchall()
        return agencies


def agency_link_suggest(*, name: str, domain: str | None, candidates: list[tuple[UUID, str, str | None]]) -> Suggestion:
    """Same domain first, then same normalized name; otherwise the agency is new."""
    by_domain = {normalize_domain(d): i for i, _, d in candidates if normalize_domain(d)}
    by_name = {normalize_agency_name(n): i for i, n, _ in candidates}
    if normalize_domain(domain) and normalize_domain(domain) in by_domain:
        return Suggestion(AgencyLink.Kind.EXISTING, by_domain[normalize_domain(domain)], f"same domain {domain}")
    if normalize_agency_name(name) in by_name:
        return Suggestion(AgencyLink.Kind.EXISTING, by_name[normalize_agency_name(name)], "same name (normalized)")
    return Suggestion(AgencyLink.Kind.NEW, None, "no AudienceOS agency with this domain or name")


def agency_links_sync() -> int:
    """Create a link (with a suggestion) for every RevOS agency that has none; return how many."""
    with connections["revos"].cursor() as cursor:
        cursor.execute("SELECT id, name, domain FROM agencies ORDER BY name")
        revos_agencies = cursor.fetchall()
    known = set(AgencyLink.objects.values_list("revos_agency_id", flat=True))
    candidates = _unified_agencies()
    created = 0
    for agency_id, name, domain in revos_agencies:
        if agency_id in known:
            continue
        suggestion = agency_link_suggest(name=name, domain=domain, candidates=candidates)
        AgencyLink.objects.create(
            revos_agency_id=agency_id,
            name=name,
            domain=domain or "",
            suggested_kind=suggestion.kind,
            suggested_agency_id=suggestion.agency_id,
            suggestion_reason=suggestion.reason,
        )
        created += 1
    return created


@transaction.atomic
def agency_link_confirm(
    *, link: AgencyLink, kind: str, unified_agency_id: UUID | None, actor: User | None
) -> AgencyLink:
    """Confirm the link. A new agency keeps its RevOS id in the unified database."""
    link = AgencyLink.objects.select_for_update().get(pk=link.pk)
    if busy := agency_link_busy(link=link):
        raise LinkError(busy)
    relinking = link.is_confirmed and (kind, unified_agency_id) != (link.kind, link.unified_agency_id)
    if relinking and (held := agency_link_held_by_rows(link=link)):
        raise LinkError(held)
    if kind == AgencyLink.Kind.NEW:
        unified_agency_id = link.revos_agency_id
    elif kind == AgencyLink.Kind.EXISTING:
        if unified_agency_id is None:
            raise LinkError("Choose the AudienceOS agency this RevOS agency is.")
        if unified_agency_id not in {i for i, _, _ in _unified_agencies()}:
            raise LinkError(f"No agency {unified_agency_id} exists in the unified database.")
        taken = AgencyLink.objects.filter(unified_agency_id=unified_agency_id).exclude(pk=link.pk).first()
        if taken:
            raise LinkError(f"Agency {unified_agency_id} is already the link of RevOS agency {taken.name}.")
    else:
        raise LinkError(f"Unknown link kind {kind!r}.")
    link.kind, link.unified_agency_id = kind, unified_agency_id
    link.confirmed_by, link.confirmed_at = actor, timezone.now()
    link.save(update_fields=["kind", "unified_agency_id", "confirmed_by", "confirmed_at"])
    return link


def client_link_check(*, link: AgencyLink, revos_client_id: UUID, unified_client_id: UUID) -> None:
    """An explicit client link must name a RevOS client of this agency and an existing unified client
    of the agency it becomes; otherwise the migration would silently match by name instead."""
    if not link.is_confirmed:
        raise LinkError(f"Confirm {link.name}'s link first: client links name clients of its unified agency.")
    with connections["revos"].cursor() as cursor:
        cursor.execute("SELECT agency_id FROM clients WHERE id = %s", [revos_client_id])
        row = cursor.fetchone()
    if row is None:
        raise LinkError(f"No RevOS client {revos_client_id} exists.")
    if row[0] != link.revos_agency_id:
        raise LinkError(f"RevOS client {revos_client_id} belongs to another agency, not {link.name}.")
    with connections["unified"].cursor() as cursor:
        cursor.execute("SELECT agency_id FROM client WHERE id = %s", [unified_client_id])
        row = cursor.fetchone()
    if row is None:
        raise LinkError(f"No unified client {unified_client_id} exists.")
    if row[0] != link.unified_agency_id:
        raise LinkError(
            f"Unified client {unified_client_id} belongs to another agency, "
            f"not {link.name}'s ({link.unified_agency_id})."
        )


def client_links_check(*, link: AgencyLink) -> None:
    """Every explicit client link of the agency still holds (rows may have gone since it was made)."""
    for client_link in link.client_links.all():
        try:
            client_link_check(
                link=link, revos_client_id=client_link.revos_client_id, unified_client_id=client_link.unified_client_id
            )
        except LinkError as error:
            raise LinkError(f"Explicit client link {client_link.pk}: {error} Fix or delete it.") from None
