"""Schema audits in the admin: the runs with their severity counts, each run's findings with the SQL
that would fix them (shown, never applied), and "Run audit" buttons that queue one per database.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Case, IntegerField, Model, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from migration_jobs.admin.mixins import ObjectIdMixin, ViewOnlyMixin, post_only_page, staff_user
from migration_jobs.models.audit import SchemaAuditRun, SchemaFinding
from migration_jobs.services.schema_audit import AuditQueueUnavailable, schema_audit_start

RUN_PERMISSION = "migration_jobs.run_schemaauditrun"
SEVERITY_COLOURS: dict[str, str] = {
    SchemaFinding.Severity.ERROR: "#ba2121",
    SchemaFinding.Severity.WARN: "#b8860b",
    SchemaFinding.Severity.INFO: "#417690",
}


def _badge(severity: str, text: str | int) -> str:
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 6px;border-radius:3px;font-weight:bold">{}</span>',
        SEVERITY_COLOURS[severity],
        text,
    )


class SchemaFindingInline(ViewOnlyMixin, admin.TabularInline):
    model = SchemaFinding
    fields = ("severity_badge", "rule", "location", "detail", "fix")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "Findings (errors first; the fix SQL is shown, never applied)"

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        # Findings are part of the run: whoever may see a run sees all of it.
        return request.user.has_perm("migration_jobs.view_schemaauditrun")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        order = Case(
            When(severity=SchemaFinding.Severity.ERROR, then=Value(0)),
            When(severity=SchemaFinding.Severity.WARN, then=Value(1)),
            default=Value(2),
            output_field=IntegerField(),
        )
        return super().get_queryset(request).order_by(order, "schema", "table", "rule")

    @admin.display(description="Severity")
    def severity_badge(self, finding: SchemaFinding) -> str:
        return _badge(finding.severity, finding.get_severity_display())

    @admin.display(description="Table")
    def location(self, finding: SchemaFinding) -> str:
        return f"{finding.schema}.{finding.table}" if finding.table else finding.schema

    @admin.display(description="Suggested fix")
    def fix(self, finding: SchemaFinding) -> str:
        if not finding.suggested_fix:
            return "—"
        return format_html('<pre style="margin:0;white-space:pre-wrap">{}</pre>', finding.suggested_fix)


@admin.register(SchemaAuditRun)
class SchemaAuditRunAdmin(ObjectIdMixin, ViewOnlyMixin, admin.ModelAdmin):
    list_display = ("__str__", "database", "status", "errors", "warnings", "info_count", "requested_by", "created_at")
    list_filter = ("database", "status")
    readonly_fields = (
        "database",
        "status",
        "job_id",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
        "error_count",
        "warn_count",
        "info_count",
        "error",
    )
    inlines = [SchemaFindingInline]

    # Runs are created by the "Run audit" buttons, through the service.
    @admin.display(description="Errors", ordering="error_count")
    def errors(self, run: SchemaAuditRun) -> str:
        if run.error_count:
            return _badge(SchemaFinding.Severity.ERROR, run.error_count)
        return "0"

    @admin.display(description="Warnings", ordering="warn_count")
    def warnings(self, run: SchemaAuditRun) -> str:
        if run.warn_count:
            return _badge(SchemaFinding.Severity.WARN, run.warn_count)
        return "0"

    def get_urls(self) -> list[URLPattern]:
        run = path("run/", self.admin_site.admin_view(self.run_view), name="migration_jobs_schemaauditrun_run")
        return [run, *super().get_urls()]

    def _extra_context(self, request: HttpRequest, extra_context: dict | None) -> dict:
        return {
            **(extra_context or {}),
            "can_run_audit": request.user.has_perm(RUN_PERMISSION),
            "audit_databases": SchemaAuditRun.Database.choices,
        }

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, self._extra_context(request, extra_context))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().change_view(request, object_id, form_url, self._extra_context(request, extra_context))

    def run_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            back = reverse("admin:migration_jobs_schemaauditrun_changelist")
            return post_only_page(request, admin_site=self.admin_site, back=back, back_label="schema audits")
        if not request.user.has_perm(RUN_PERMISSION):
            raise PermissionDenied
        database = request.POST.get("database", "")
        if database not in SchemaAuditRun.Database.values:
            messages.error(request, f"Unknown database {database!r}: choose RevOS, AudienceOS or Unified.")
            return HttpResponseRedirect(reverse("admin:migration_jobs_schemaauditrun_changelist"))
        try:
            run = schema_audit_start(database=database, requested_by=staff_user(request))
        except AuditQueueUnavailable as error:
            messages.error(request, f"The audit was not started. {error}")
            return HttpResponseRedirect(reverse("admin:migration_jobs_schemaauditrun_changelist"))
        messages.success(request, f"Audit of the {run.get_database_display()} database queued; this page refreshes.")
        return HttpResponseRedirect(reverse("admin:migration_jobs_schemaauditrun_change", args=[run.pk]))
