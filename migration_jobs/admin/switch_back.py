"""The agency page's buttons that take a typed reason (cutover, switch back, complete), and the bulk switch back.

Each view is a POST with its own permission check (admin_view only checks is_staff) and calls one
service (its kind's `request`, services/kinds/), which refuses with the reason whatever the caller.
Which buttons there are, their permissions and messages, is what the kinds declare (run_kinds.py).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from migration_jobs.admin.flags import runs_bulk_with_reason
from migration_jobs.admin.mixins import post_only_page, staff_user
from migration_jobs.models import AgencyLink
from migration_jobs.refusals import CutoverRefused, RunRefused
from migration_jobs.run_kinds import run_kinds
from migration_jobs.services.kinds.switch_back import SWITCH_BACK, switch_back_plan, switch_back_runs_request_bulk
from migration_jobs.services.runs import migration_run_request

SWITCH_BACK_PERMISSION = SWITCH_BACK.permission


def _back(link: AgencyLink) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("admin:migration_jobs_agencylink_change", args=[link.pk]))


def _post_only(modeladmin: admin.ModelAdmin, request: HttpRequest, link: AgencyLink) -> HttpResponse:
    back = reverse("admin:migration_jobs_agencylink_change", args=[link.pk])
    return post_only_page(request, admin_site=modeladmin.admin_site, back=back, back_label=link.name)


# name -> the kind its button asks for: the kinds whose button takes a reason.
REASONED_ACTIONS = {kind.value: kind for kind in run_kinds() if kind.button and kind.shown_button.reasoned}


def reasoned_action_view(
    modeladmin: admin.ModelAdmin, request: HttpRequest, link: AgencyLink, action: str
) -> HttpResponse:
    """A per-agency button that needs a typed reason: cutover, switch back or complete."""
    if request.method != "POST":
        return _post_only(modeladmin, request, link)
    kind = REASONED_ACTIONS[action]
    if not request.user.has_perm(kind.permission):
        modeladmin.message_user(request, f"You may not {kind.shown_button.may_not}.", messages.ERROR)
        return _back(link)
    reason = request.POST.get("reason", "")
    try:
        if kind.request is not None:
            run = kind.request(link, staff_user(request), reason)
        else:
            run = migration_run_request(link=link, kind=kind.value, actor=staff_user(request), reason=reason)
    except (RunRefused, CutoverRefused) as refusal:
        modeladmin.message_user(request, f"{kind.shown_button.refused}: {refusal}", messages.ERROR)
    except ValidationError as error:  # a reason the flag service will not take
        modeladmin.message_user(request, " ".join(error.messages), messages.ERROR)
    else:
        message = kind.shown_button.done.format(name=link.name, pk=run.pk, label=kind.label)
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
