"""The read API both apps call: which flags are on for an agency, behind a shared service token."""

from __future__ import annotations

import hmac
import uuid

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from migration_jobs.selectors.agency_state import (
    agency_revos_read_only,
    agency_unified_copy_read_only,
    agency_unified_read_only,
)
from migration_jobs.selectors.flags import (
    APP_CONTEXTS,
    agency_resolve,
    ai_providers_for_agency_cached,
    flags_for_agency_cached,
)
from migration_jobs.selectors.sessions import agency_sessions_reset_at


def _error(status: int, message: str, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    for name, value in headers.items():
        response[name] = value
    return response


def _token_error(request: HttpRequest) -> JsonResponse | None:
    """The answer to a request without the right service token, or None when it has it."""
    expected = settings.FLAGS_API_TOKEN
    if not expected:
        return _error(503, "The flag API is disabled: FLAGS_API_TOKEN is not set on the control plane.")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _error(
            401,
            "Send the service token as `Authorization: Bearer <token>`.",
            **{"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        return _error(403, "The service token is wrong.")
    return None


@never_cache
@require_GET
def agency_flags(request: HttpRequest, agency_id: str) -> JsonResponse:
    """GET /api/flags/<agency id>/?app_context=revos|audience → {agency_id, app_context, flags,
    the read-only states, sessions_reset_at, ai_providers (the HGC backend per app), ai_provider
    (this app's, when app_context is given)}."""
    if (refusal := _token_error(request)) is not None:
        return refusal
    try:
        parsed_id = uuid.UUID(agency_id)
    except ValueError:
        return _error(400, f"{agency_id!r} is not an agency id (a UUID).")
    app_context = request.GET.get("app_context") or None
    if app_context is not None and app_context not in APP_CONTEXTS:
        return _error(400, f"app_context must be one of {', '.join(APP_CONTEXTS)} (or left out).")
    agency = agency_resolve(agency_id=parsed_id)
    if agency is None:
        return _error(404, f"No agency {parsed_id} in the unified database or among the RevOS agencies.")
    flags = flags_for_agency_cached(agency=agency, app_context=app_context)
    # True while RevOS refuses the agency's writes (a cutover fenced it): the apps show it read-only.
    read_only = agency.link is not None and agency_revos_read_only(link=agency.link)
    # True while the unified database refuses them (a switch back fenced it).
    unified_read_only = agency.link is not None and agency_unified_read_only(link=agency.link)
    # True while RevOS holds the agency's truth: the unified copies of its RevOS rows take no app writes.
    unified_copy_read_only = agency.link is not None and agency_unified_copy_read_only(link=agency.link)
    # When the agency's people last had to sign in again (unified_db changed; the projects' JWT
    # secrets differ): tokens issued before it are the other project's.
    reset_at = agency_sessions_reset_at(link=agency.link) if agency.link is not None else None
    providers = ai_providers_for_agency_cached(agency=agency)
    answer = {
        "agency_id": str(parsed_id),
        "app_context": app_context,
        "flags": flags,
        "revos_read_only": read_only,
        "unified_read_only": unified_read_only,
        "unified_copy_read_only": unified_copy_read_only,
        "sessions_reset_at": reset_at.isoformat() if reset_at is not None else None,
        "ai_providers": providers,
    }
    if app_context is not None:
        answer["ai_provider"] = providers[app_context]  # what the shared HGC component loads here
    return JsonResponse(answer)
