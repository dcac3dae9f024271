"""Switch back and Complete from the admin: the agency page's buttons and the bulk action.

Each view is a POST with its own permission check (admin_view only checks is_staff) and calls one
service (services/switch_back.py), which refuses with the reason whatever the caller.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from migration_jobs.admin.flags import runs_bulk_with_reason
from migration_jobs.admin.mixins import post_only_page
from migration_jobs.models import AgencyLink
from migration_jobs.refusals import RunRefused
from migration_jobs.services.switch_back import (
    agency_complete,
    switch_back_plan,
    switch_back_run_request,
    switch_back_runs_request_bulk,
)

SWITCH_BACK_PERMISSION = "migration_jobs.switchback_migrationrun"
COMPLETE_PERMISSION = "migration_jobs.complete_migrationrun"


def _back(link: AgencyLink) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("admin:migration_jobs_agencylink_change", args=[link.pk]))


def _post_only(modeladmin: admin.ModelAdmin, request: HttpRequest, link: AgencyLink) -> HttpResponse:
    back = reverse("admin:migration_jobs_agencylink_change", args=[link.pk])
    return post_only_page(request, admin_site=modeladmin.admin_site, back=back, back_label=link.name)


def _switch_back(link: AgencyLink, user: User, reason: str) -> str:
    run = switch_back_run_request(link=link, reason=reason, actor=user)
    return (
        f"Switch back of {link.name} queued (run {run.pk}): unified writes are fenced, the apps' changes since the"
        " cutover applied to RevOS and verified, then unified_db is off for it."
    )


def _complete(link: AgencyLink, user: User, reason: str) -> str:
    run = agency_complete(link=link, reason=reason, actor=user)
    return f"{link.name}'s move is complete (run {run.pk}): RevOS stays read-only for it; no switching back."


# name -> (permission, what the button does, service caller)
REASONED_ACTIONS = {
    "switchback": (SWITCH_BACK_PERMISSION, "switch agencies back", _switch_back),
    "complete": (COMPLETE_PERMISSION, "complete agencies' moves", _complete),
}


def reasoned_action_view(
    modeladmin: admin.ModelAdmin, request: HttpRequest, link: AgencyLink, action: str
) -> HttpResponse:
    """A per-agency button that needs a typed reason: switch back or complete."""
    if request.method != "POST":
        return _post_only(modeladmin, request, link)
    permission, what, perform = REASONED_ACTIONS[action]
    if not request.user.has_perm(permission):
        modeladmin.message_user(request, f"You may not {what}.", messages.ERROR)
        return _back(link)
    try:
        message = perform(link, request.user, request.POST.get("reason", ""))
    except RunRefused as refusal:
        modeladmin.message_user(request, f"Refused: {refusal}", messages.ERROR)
    else:
        modeladmin.log_change(request, link, message)
        modeladmin.message_user(request, message, messages.SUCCESS)
    return _back(link)


def switch_back_plan_view(modeladmin: admin.ModelAdmin, request: HttpRequest, link: AgencyLink) -> HttpResponse:
    """The switch-back plan (dry run) of one agency: rows per RevOS table, and what RevOS cannot hold."""
    if request.method != "POST":
        return _post_only(modeladmin, request, link)
    if not request.user.has_perm(SWITCH_BACK_PERMISSION):
        modeladmin.message_user(request, "You may not switch agencies back.", messages.ERROR)
        return _back(link)
    try:
        plan = switch_back_plan(link=link)
    except RunRefused as refusal:
        modeladmin.message_user(request, f"Refused: {refusal}", messages.ERROR)
        return _back(link)
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": f"Switch-back plan of {link.name}",
        "opts": modeladmin.opts,
        "link": link,
        "plan": plan,
        "changed_tables": {k: v for k, v in plan["tables"].items() if v["insert"] or v["update"] or v["delete"]},
    }
    return TemplateResponse(request, "admin/migration_jobs/agencylink/switch_back_plan.html", context)


@admin.action(description="Switch selected agencies back to RevOS… (with what the apps wrote since cutover)")
def switch_back_selected(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[AgencyLink]
) -> HttpResponse | None:
    """Bulk switch back: asks for a reason, then queues a switch-back run per agency, saying why for the others."""
    if not request.user.has_perm(SWITCH_BACK_PERMISSION):
        modeladmin.message_user(request, "You may not switch agencies back.", messages.ERROR)
        return None
    return runs_bulk_with_reason(
        modeladmin,
        request,
        queryset,
        what="Switch back",
        title="Switch agencies back to RevOS",
        template="admin/migration_jobs/agencylink/switch_back_selected.html",
        request_bulk=switch_back_runs_request_bulk,
    )
