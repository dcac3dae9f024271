"""Verification results in the admin: the VerificationRun list and page, and the "Verify" bulk action.

Results are evidence, so nothing here edits them: runs and their check results are view-only.
New verifications come from the agency page's Verify button, the bulk action below (which the
agency admin attaches), `verify_agency`, or automatically after every migration and rollback.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.html import format_html
from django.utils.timesince import timesince

from migration_jobs.admin.mixins import ObjectIdMixin, ViewOnlyMixin, staff_user
from migration_jobs.models import AgencyLink, CheckResult, VerificationRun
from migration_jobs.refusals import RunRefused
from migration_jobs.selectors.verification import verification_matrix
from migration_jobs.services.verification import verification_run_request
from migration_jobs.templatetags.rq_jobs import rq_job_url

COLOURS = {"pass": "#2e7d32", "fail": "#c62828", "error": "#ef6c00", "": "#757575"}
CHECK_FAMILIES = ("counts", "content", "references", "isolation", "schema")
VERIFY_PERMISSION = "migration_jobs.start_verificationrun"


def _badge(kind: str, value: str, label: str) -> str:
    return format_html(
        '<span class="{}-{}" style="color:#fff;background:{};padding:1px 7px;border-radius:3px;font-weight:bold">'
        "{}</span>",
        kind,
        value or "pending",
        COLOURS.get(value, COLOURS[""]),
        label,
    )


def verdict_badge(run: VerificationRun) -> str:
    return _badge("verdict", run.verdict, run.get_verdict_display())


@admin.display(description="Latest verification")
def latest_verification(link: AgencyLink) -> str:
    """The agency's latest verdict and how old it is, linked to its results (for the agency admin)."""
    run = link.verifications.order_by("-created_at", "-id").first()
    if run is None:
        return "never verified"
    moment = run.finished_at or run.created_at
    return format_html(
        '<a href="{}">{}</a> {} ago',
        reverse("admin:migration_jobs_verificationrun_change", args=[run.pk]),
        verdict_badge(run) if run.verdict else run.get_status_display(),
        timesince(moment),
    )


@admin.action(description="Verify selected agencies")
def verify_selected_agencies(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    """Queue a verification of each selected agency; say which were skipped, and why."""
    if not request.user.has_perm(VERIFY_PERMISSION):
        modeladmin.message_user(request, "You may not verify agencies.", messages.ERROR)
        return
    queued, skipped = [], []
    for link in queryset:
        try:
            verification_run_request(link=link, actor=staff_user(request))
            queued.append(link.name)
        except RunRefused as refusal:
            skipped.append(f"{link.name}: {refusal}")
    if queued:
        modeladmin.message_user(
            request,
            f"Verification queued for {len(queued)} agenc{pluralize(len(queued), 'y,ies')}: {', '.join(queued)}.",
            messages.SUCCESS,
        )
    if skipped:
        modeladmin.message_user(request, "Skipped — " + "; ".join(skipped), messages.WARNING)


class FailedCheckFilter(admin.SimpleListFilter):
    """Runs where a check (a family such as `isolation`, or one named check) failed or errored."""

    title = "check not passing"
    parameter_name = "failed_check"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        named = (
            CheckResult.objects.exclude(status=CheckResult.Status.PASS)
            .filter(check_name__contains=".")
            .values_list("check_name", flat=True)
            .distinct()
            .order_by("check_name")
        )
        return [(family, family) for family in CHECK_FAMILIES] + [(name, name) for name in named]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if not self.value():
            return queryset
        matching = CheckResult.objects.exclude(status=CheckResult.Status.PASS).filter(
            Q(check_name=self.value()) | Q(check_name__startswith=f"{self.value()}.")
        )
        return queryset.filter(pk__in=matching.values("verification_run_id"))


@admin.register(VerificationRun)
class VerificationRunAdmin(ObjectIdMixin, ViewOnlyMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "agency",
        "checked_run",
        "status",
        "verdict_coloured",
        "not_passing",
        "started_at",
        "finished_at",
    )
    list_filter = ("verdict", FailedCheckFilter, "status")
    list_select_related = ("agency_link", "migration_run")
    search_fields = ("agency_link__name", "=agency_link__revos_agency_id", "=agency_link__unified_agency_id")
    date_hierarchy = "created_at"
    change_form_template = "admin/migration_jobs/verificationrun/change_form.html"
    fields = (
        "agency_link",
        "migration_run",
        "status",
        "verdict_coloured",
        "requested_by",
        "job",
        "created_at",
        "started_at",
        "finished_at",
        "error",
    )
    readonly_fields = fields

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        run = self.get_object(request, object_id)
        extra_context = {**(extra_context or {}), "matrix": verification_matrix(run=run) if run else None}
        if run:
            extra_context["title"] = f"Verification #{run.pk} of {run.agency_link}"
        return super().change_view(request, object_id, form_url, extra_context)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        failing = Count("results", filter=~Q(results__status=CheckResult.Status.PASS))
        return super().get_queryset(request).annotate(not_passing_count=failing)

    @admin.display(description="Agency", ordering="agency_link__name")
    def agency(self, run: VerificationRun) -> str:
        url = reverse("admin:migration_jobs_agencylink_change", args=[run.agency_link_id])
        return format_html('<a href="{}">{}</a>', url, run.agency_link.name)

    @admin.display(description="Migration run checked")
    def checked_run(self, run: VerificationRun) -> str:
        if run.migration_run is None:
            return "on demand"
        url = reverse("admin:migration_jobs_migrationrun_change", args=[run.migration_run_id])
        return format_html('<a href="{}">{} #{}</a>', url, run.migration_run.get_kind_display(), run.migration_run_id)

    @admin.display(description="RQ job")
    def job(self, run: VerificationRun) -> str:
        """Its own job, on the verification queue's page of django-rq's dashboard."""
        url = rq_job_url(queue=run.QUEUE, job_id=run.job_id)
        return format_html('<a href="{}">{}</a>', url, run.job_id) if url else "—"

    @admin.display(description="Verdict", ordering="verdict")
    def verdict_coloured(self, run: VerificationRun) -> str:
        return verdict_badge(run)

    @admin.display(description="Checks not passing", ordering="not_passing_count")
    def not_passing(self, run: VerificationRun) -> int:
        # get_queryset annotates it; django-stubs cannot follow an annotation made there
        return run.not_passing_count  # type: ignore[attr-defined]
