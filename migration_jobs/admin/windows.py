"""Nights (bulk windows) and the fleet rehearsal's latest report, in the admin.

The Bulk windows list shows each window's plan (waves, done, running, next). Its "Plan a night"
page is the bulk action's form with a window: the agencies, migrate or cut over, the wave size
and the night's end (services/windows.py). The Rehearsal page shows the newest report of
`manage.py rehearse_fleet` with its plots (selectors/rehearsal.py).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from migration_jobs.admin.mixins import ObjectIdMixin, ViewOnlyMixin
from migration_jobs.models import AgencyLink, BulkWindow
from migration_jobs.refusals import RunRefused
from migration_jobs.selectors.rehearsal import rehearsal_charts, rehearsal_latest, rehearsal_summary
from migration_jobs.selectors.windows import bulk_window_plan
from migration_jobs.services.windows import bulk_window_open, stop_at_parse

# The permission each kind of window needs, as its single-agency button does.
KIND_PERMISSIONS = {
    BulkWindow.Kind.MIGRATE: "migration_jobs.start_migrationrun",
    BulkWindow.Kind.CUTOVER: "migration_jobs.cutover_migrationrun",
}


class NightForm(forms.Form):
    agencies = forms.ModelMultipleChoiceField(
        queryset=AgencyLink.objects.exclude(confirmed_at=None).order_by("name"),
        widget=forms.SelectMultiple(attrs={"size": 12}),
        help_text="In this order, by name; waves are slices of it.",
    )
    kind = forms.ChoiceField(choices=BulkWindow.Kind.choices)
    wave_size = forms.IntegerField(min_value=1, initial=10, help_text="--wave-size: agencies per wave.")
    stop_at = forms.CharField(
        initial="06:00", help_text="--stop-at: HH:MM (UTC, the next one) or an ISO date and time."
    )
    reason = forms.CharField(required=False, max_length=300, help_text="Required for a cutover.")


@admin.register(BulkWindow)
class BulkWindowAdmin(ObjectIdMixin, ViewOnlyMixin, admin.ModelAdmin):
    list_display = ("__str__", "kind", "nights", "stop_at", "plan")
    readonly_fields = ("plan",)  # added only through "Plan a night", which checks the kind's own permission
    change_list_template = "admin/migration_jobs/bulkwindow/change_list.html"

    @admin.display(description="Plan")
    def plan(self, window: BulkWindow) -> str:
        return str(bulk_window_plan(window=window))

    def get_urls(self):
        return [
            path("night/", self.admin_site.admin_view(self.night_view), name="migration_jobs_bulkwindow_night"),
            path("rehearsal/", self.admin_site.admin_view(self.rehearsal_view), name="migration_jobs_rehearsal"),
            *super().get_urls(),
        ]

    def night_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = NightForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            if not request.user.has_perm(KIND_PERMISSIONS[data["kind"]]):
                raise PermissionDenied
            try:
                window = bulk_window_open(
                    links=data["agencies"], kind=data["kind"], wave_size=data["wave_size"],
                    stop_at=stop_at_parse(data["stop_at"]), actor=request.user, reason=data["reason"],
                )  # fmt: skip
            except RunRefused as refusal:
                form.add_error(None, str(refusal))
            else:
                self.log_addition(request, window, f"Planned: {window}")
                self.message_user(request, str(bulk_window_plan(window=window)), messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:migration_jobs_bulkwindow_changelist"))
        context = {**self.admin_site.each_context(request), "title": "Plan a night", "opts": self.opts, "form": form}
        return TemplateResponse(request, "admin/migration_jobs/bulkwindow/night.html", context)

    def rehearsal_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        report = rehearsal_latest()
        context = {
            **self.admin_site.each_context(request),
            "title": "Fleet rehearsal",
            "opts": self.opts,
            "report": report,
            "summary": rehearsal_summary(report=report) if report else [],
            "charts": rehearsal_charts(report=report) if report else {},
        }
        return TemplateResponse(request, "admin/migration_jobs/bulkwindow/rehearsal.html", context)
