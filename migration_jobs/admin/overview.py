"""The agencies overview: every RevOS agency's migration state at a glance, and a bulk path through them.

It is one more page of the RevOS agency admin, at `agencylink/overview/` (AgencyLinkAdmin.get_urls),
behind the site's staff check and the RevOS agency view permission. Its bulk buttons run the RevOS agency admin's own
actions (each checks its own permission and reports with the messages framework), so there is one
implementation of "migrate / verify / cut over these agencies", whichever page it starts from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from migration_jobs.models import AgencyLink
from migration_jobs.selectors import AGENCY_STATES, agencies_overview
from migration_jobs.selectors.capture import capture_backlogs_shown
from migration_jobs.selectors.windows import bulk_windows_open_plans
from migration_jobs.services.runs import migration_runs_reconcile_running

# Action name on the RevOS agency admin -> the overview's button.
BULK_ACTIONS = {
    "migrate_selected": "Migrate selected",
    "verify_selected_agencies": "Verify selected",
    "enable_unified_db_for_selected": "Cut over selected…",
}


def agency_overview_view(request: HttpRequest, agency_admin: admin.ModelAdmin) -> HttpResponse:
    """GET: the overview, filtered by `?state=` and `?q=`. POST: one bulk action on the selected agencies."""
    if not agency_admin.has_view_permission(request):
        raise PermissionDenied
    if request.method == "POST":
        return _bulk_action(request, agency_admin)
    # As the agency page and `migration_status` do: a run whose worker is gone is failed (its agency
    # freed) before it is listed, not shown "running 40%" until someone requests another run.
    migration_runs_reconcile_running()
    state = request.GET.get("state", "")
    state = state if state in AGENCY_STATES else ""
    search = request.GET.get("q", "").strip()
    available = agency_admin.get_actions(request)
    context = {
        **agency_admin.admin_site.each_context(request),
        "title": "RevOS agencies at a glance",
        "opts": AgencyLink._meta,
        "overview": agencies_overview(state=state, search=search),
        "state": state,
        "search": search,
        "bulk_actions": [(name, label) for name, label in BULK_ACTIONS.items() if name in available],
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        # The nights' plans and each agency's capture backlog (docs/fleet.md).
        "windows": bulk_windows_open_plans(),
        "backlogs": capture_backlogs_shown(),
    }
    return TemplateResponse(request, "admin/migration_jobs/agencylink/overview.html", context)


def _bulk_action(request: HttpRequest, agency_admin: admin.ModelAdmin) -> HttpResponse:
    """Run the named admin action on the selected agencies; an intermediate page (a reason) is returned as is."""
    back = HttpResponseRedirect(request.get_full_path())
    name = request.POST.get("action", "")
    available = agency_admin.get_actions(request)
    if name not in BULK_ACTIONS or name not in available:
        agency_admin.message_user(request, f"There is no bulk action {name!r} for you here.", messages.ERROR)
        return back
    selected = [pk for pk in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME) if pk.isdigit()]
    if not selected:
        agency_admin.message_user(request, "Select at least one agency first; nothing was done.", messages.WARNING)
        return back
    # get_actions leaves out what the user may not run; what it returns is (function, name, description)
    action = cast("tuple[Callable[..., HttpResponse | None], str, str]", available[name])[0]
    response = action(agency_admin, request, AgencyLink.objects.filter(pk__in=selected).order_by("name"))
    return response or back
