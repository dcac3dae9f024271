"""The ops cockpit: RevOS agencies with their link, runs and buttons, and the MigrationRun list.

Every button is a POST to a view that checks its own permission (admin_view only checks
is_staff), calls one service, records the action in Django's admin log and says what happened
with the messages framework. Nothing here writes tenant data itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import Model, OuterRef, QuerySet, Subquery
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from redis.exceptions import RedisError

from migration_jobs.admin.flags import enable_unified_db_for_selected
from migration_jobs.admin.mixins import ObjectIdMixin, ViewOnlyMixin, post_only_page, staff_user
from migration_jobs.admin.overview import agency_overview_view
from migration_jobs.admin.switch_back import (
    REASONED_ACTIONS,
    reasoned_action_view,
    switch_back_plan_view,
    switch_back_selected,
)
from migration_jobs.admin.verification import verify_selected_agencies
from migration_jobs.models import AgencyLink, ClientLink, MigrationRun, VerificationRun
from migration_jobs.refusals import RunRefused
from migration_jobs.run_kinds import RunKind, run_kind_get, run_kind_values, run_kinds
from migration_jobs.selectors import agency_migrated_rows
from migration_jobs.selectors.agency_page import agency_cockpit_read
from migration_jobs.selectors.agency_state import (
    agency_completed,
    agency_cut_over,
)
from migration_jobs.selectors.flags import (
    Agency,
    agency_flag_id,
    flags_for_agency,
)
from migration_jobs.selectors.plan import plan_latest, plan_refused_csv, plan_rows_planned
from migration_jobs.selectors.run_report import run_report
from migration_jobs.selectors.sessions import sessions_notice
from migration_jobs.selectors.timeline import (
    TableProgress,
    run_counters,
    run_kind_shape,
    run_progress_tables,
    run_shows_progress,
    run_summary,
    run_took,
)
from migration_jobs.services.agency_links import (
    LinkError,
    agency_link_confirm,
    agency_links_sync,
    client_link_check,
)
from migration_jobs.services.bulk import bulk_requests_stopped
from migration_jobs.services.full_reread import migration_full_reread_request
from migration_jobs.services.kinds.migrate import migration_runs_request_bulk
from migration_jobs.services.lock_holders import HEARTBEAT_INTERVAL_SECONDS, HEARTBEAT_TIMEOUT_SECONDS, run_heartbeat
from migration_jobs.services.run_control import migration_run_control
from migration_jobs.services.runs import migration_run_request, migration_runs_reconcile_running
from migration_jobs.services.verification import verification_run_request
from migration_jobs.templatetags.rq_jobs import rq_job_url

if TYPE_CHECKING:  # the type checker's alone: django-stubs' plugin reads it
    from django_stubs_ext import WithAnnotations


class LatestRun(TypedDict):
    """What AgencyLinkAdmin.get_queryset annotates each agency with: its latest run's kind and status."""

    latest_run_kind: str | None
    latest_run_status: str | None


def _run_action(kind: RunKind) -> Callable[[AgencyLink, User], str]:
    def start(link: AgencyLink, user: User) -> str:
        if kind.request is not None:
            run = kind.request(link, user, "")
        else:
            run = migration_run_request(link=link, kind=kind.value, actor=user)
        message = kind.shown_button.done.format(name=link.name, pk=run.pk, label=run.get_kind_display())
        plan = plan_latest(link=link) if kind.loads else None
        if plan and plan.refused_total:
            message += (
                f" Warning: the last plan (#{plan.run.pk}) found {plan.refused_total} row(s) the unified schema"
                " would refuse; the run will stop at the first of them."
            )
        return message

    return start


def _control_action(control: str) -> Callable[[AgencyLink, User], str]:
    def apply(link: AgencyLink, user: User) -> str:
        stoppable = MigrationRun.ACTIVE_STATUSES + ((MigrationRun.Status.PAUSED,) if control == "cancel" else ())
        run = link.runs.filter(status__in=stoppable).first()
        if run is None:
            raise RunRefused(f"{link.name} has no run in progress.")
        run = migration_run_control(run=run, control=control, actor=user)
        return f"Run {run.pk} of {link.name}: {control} requested; it stops at the next batch boundary."

    return apply


def _verify(link: AgencyLink, user: User) -> str:
    verification = verification_run_request(link=link, migration_run=None, actor=user)
    return f"Verification of {link.name} queued (verification {verification.pk})."


# name -> (permission, service caller): the kinds whose button takes no reason, then the controls.
AGENCY_ACTIONS = {
    **{
        kind.value: (kind.permission, _run_action(kind))
        for kind in run_kinds()
        if kind.button and not kind.button.reasoned
    },
    "pause": ("migration_jobs.resume_migrationrun", _control_action("pause")),
    "cancel": ("migration_jobs.resume_migrationrun", _control_action("cancel")),
    "verify": ("migration_jobs.start_verificationrun", _verify),
}


def _progress_bar(run: MigrationRun | None) -> str:
    if run is None:
        return "—"
    percent = run_counters(run=run).percent
    return format_html('<progress max="100" value="{}" title="{}%"></progress> {}%', percent, percent, percent)


class ClientLinkFormSet(BaseInlineFormSet):
    """Each link must name a RevOS client of this agency and a unified client of the agency it becomes."""

    def clean(self) -> None:
        super().clean()
        for form in self.forms:
            data = getattr(form, "cleaned_data", None) or {}
            if data.get("DELETE") or not (data.get("revos_client_id") and data.get("unified_client_id")):
                continue
            try:
                client_link_check(
                    link=self.instance,
                    revos_client_id=data["revos_client_id"],
                    unified_client_id=data["unified_client_id"],
                )
            except LinkError as error:
                form.add_error(None, str(error))


class ClientLinkInline(admin.TabularInline):
    """Staff's explicit client matches, for clients whose names differ between the apps."""

    model = ClientLink
    formset = ClientLinkFormSet
    fields = ("revos_client_id", "unified_client_id", "created_by", "created_at")
    readonly_fields = ("created_by", "created_at")
    extra = 0
    verbose_name = "explicit client link"

    def _may_link(self, request: HttpRequest) -> bool:
        return request.user.has_perm("migration_jobs.confirm_agencylink")

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._may_link(request)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._may_link(request)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._may_link(request)


@admin.register(AgencyLink)
class AgencyLinkAdmin(ObjectIdMixin, admin.ModelAdmin):
    list_display = ("name", "domain", "suggestion", "link", "latest_run")
    list_filter = ("kind", "suggested_kind")
    search_fields = ("name", "domain", "=revos_agency_id", "=unified_agency_id")
    readonly_fields = [f.name for f in AgencyLink._meta.fields]
    actions = ["migrate_selected", verify_selected_agencies, enable_unified_db_for_selected, switch_back_selected]
    change_form_template = "admin/migration_jobs/agencylink/change_form.html"
    change_list_template = "admin/migration_jobs/agencylink/change_list.html"
    inlines = [ClientLinkInline]

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        for client_link in formset.save(commit=False):
            client_link.created_by = client_link.created_by or request.user
            client_link.save()
        for removed in formset.deleted_objects:
            removed.delete()

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        latest = MigrationRun.objects.filter(agency_link=OuterRef("pk")).order_by("-created_at")
        return (
            super()
            .get_queryset(request)
            .annotate(
                latest_run_kind=Subquery(latest.values("kind")[:1]),
                latest_run_status=Subquery(latest.values("status")[:1]),
            )
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # agencies come from RevOS: "Sync from RevOS"

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    @admin.display(description="Suggested")
    def suggestion(self, obj: AgencyLink) -> str:
        if obj.suggested_kind == AgencyLink.Kind.EXISTING:
            return f"existing ({obj.suggestion_reason})"
        return "new"

    @admin.display(description="Link")
    def link(self, obj: AgencyLink) -> str:
        if not obj.is_confirmed:
            return "not confirmed"
        return f"{obj.get_kind_display()} → {obj.unified_agency_id}"

    @admin.display(description="Latest run")
    def latest_run(self, obj: WithAnnotations[AgencyLink, LatestRun]) -> str:
        if not obj.latest_run_kind or not obj.latest_run_status:  # no run: both None
            return "—"
        return f"{run_kind_get(obj.latest_run_kind).label}: {MigrationRun.Status(obj.latest_run_status).label}"

    @admin.action(description="Migrate selected agencies")
    def migrate_selected(self, request: HttpRequest, queryset: QuerySet[AgencyLink]) -> None:
        if not request.user.has_perm("migration_jobs.start_migrationrun"):
            self.message_user(request, "You may not start migrations.", messages.ERROR)
            return
        bulk = migration_runs_request_bulk(links=queryset, actor=staff_user(request))
        for run in bulk.queued:
            self.log_change(request, run.agency_link, f"Queued a migration (bulk {bulk.bulk_request}).")
        if bulk.queued:
            names = ", ".join(run.agency_link.name for run in bulk.queued)
            self.message_user(request, f"Queued {len(bulk.queued)}: {names}.", messages.SUCCESS)
        for link, refusal in bulk.skipped:
            self.message_user(request, f"Skipped {link.name}: {refusal}", messages.WARNING)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        _warn_stopped_bulks(self, request)
        migration_runs_reconcile_running()
        return super().changelist_view(request, extra_context)

    # Per-agency pages and buttons ---------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            # Before the object URLs, so `overview` is not taken for an agency's id.
            path("overview/", view(self.overview_view), name="migration_jobs_agencylink_overview"),
            path("sync/", view(self.sync_view), name="migration_jobs_agencylink_sync"),
            path("<path:object_id>/confirm/", view(self.confirm_view), name="migration_jobs_agencylink_confirm"),
            path("<path:object_id>/progress/", view(self.progress_view), name="migration_jobs_agencylink_progress"),
            path(
                "<path:object_id>/full-reread/",
                view(self.full_reread_view),
                name="migration_jobs_agencylink_full_reread",
            ),
            path("<path:object_id>/plan.csv", view(self.plan_csv_view), name="migration_jobs_agencylink_plan_csv"),
            path(
                "<path:object_id>/switch-back-plan/",
                view(self.switch_back_plan_view),
                name="migration_jobs_agencylink_switch_back_plan",
            ),
            path(
                "<path:object_id>/reasoned/<str:action>/",
                view(self.reasoned_view),
                name="migration_jobs_agencylink_reasoned",
            ),
            # After `reasoned/<action>/`, whose cutover this is too: a <path:> id would take "1/reasoned".
            path("<path:object_id>/cutover/", view(self.cutover_view), name="migration_jobs_agencylink_cutover"),
            path(
                "<path:object_id>/action/<str:action>/",
                view(self.action_view),
                name="migration_jobs_agencylink_action",
            ),
            *super().get_urls(),
        ]

    def overview_view(self, request: HttpRequest) -> HttpResponse:
        return agency_overview_view(request, self)

    def _link(self, object_id: str) -> AgencyLink:
        if not str(object_id).isdigit():
            raise Http404("No such agency.")
        return get_object_or_404(AgencyLink, pk=unquote(object_id))

    def _post_only(self, request: HttpRequest, link: AgencyLink | None) -> HttpResponse:
        back = (
            reverse("admin:migration_jobs_agencylink_change", args=[link.pk])
            if link
            else reverse("admin:migration_jobs_agencylink_changelist")
        )
        label = link.name if link else "RevOS agencies"
        return post_only_page(request, admin_site=self.admin_site, back=back, back_label=label)

    def _back(self, link: AgencyLink) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:migration_jobs_agencylink_change", args=[link.pk]))

    def action_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        if request.method != "POST":
            return self._post_only(request, self._link(object_id))
        if action not in AGENCY_ACTIONS:
            raise Http404(f"No action {action!r}.")
        link = self._link(object_id)
        permission, perform = AGENCY_ACTIONS[action]
        if not request.user.has_perm(permission):
            self.message_user(request, f"You do not have permission to {action} agencies.", messages.ERROR)
            return self._back(link)
        try:
            message = perform(link, staff_user(request))
        except (RunRefused, LinkError) as refusal:
            self.message_user(request, str(refusal), messages.ERROR)
        except RedisError as error:
            self.message_user(
                request, f"Redis (the job queue) cannot be reached: {error}. Nothing was queued.", messages.ERROR
            )
        else:
            self.log_change(request, link, f"{action}: {message}")
            self.message_user(request, message, messages.SUCCESS)
        return self._back(link)

    def cutover_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The Cut over button's own address: the reasoned action of the cutover kind."""
        return self.reasoned_view(request, object_id, "cutover")

    def full_reread_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A migration that reads every row again, with a typed reason: what repairs rows edited in the
        unified database behind the tool's back (services/full_reread.py)."""
        link = self._link(object_id)
        if request.method != "POST":
            return self._post_only(request, link)
        if not request.user.has_perm("migration_jobs.start_migrationrun"):
            self.message_user(request, "You do not have permission to migrate agencies.", messages.ERROR)
            return self._back(link)
        try:
            run = migration_full_reread_request(
                link=link, reason=request.POST.get("reason", ""), actor=staff_user(request)
            )
        except RunRefused as refusal:
            self.message_user(request, f"Full re-read refused: {refusal}", messages.ERROR)
        except RedisError as error:
            self.message_user(
                request, f"Redis (the job queue) cannot be reached: {error}. Nothing was queued.", messages.ERROR
            )
        else:
            message = (
                f"Full re-read of {link.name} queued (run {run.pk}): every row is read from RevOS again, then the"
                " agency is verified."
            )
            self.log_change(request, link, message)
            self.message_user(request, message, messages.SUCCESS)
        return self._back(link)

    def reasoned_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        """Cut over, Switch back or Complete: buttons that need a typed reason (admin/switch_back.py)."""
        if action not in REASONED_ACTIONS:
            raise Http404(f"No action {action!r}.")
        return reasoned_action_view(self, request, self._link(object_id), action)

    def switch_back_plan_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return switch_back_plan_view(self, request, self._link(object_id))

    def confirm_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        link = self._link(object_id)
        if request.method != "POST":
            return self._post_only(request, link)
        if not request.user.has_perm("migration_jobs.confirm_agencylink"):
            self.message_user(request, "You do not have permission to confirm agency links.", messages.ERROR)
            return self._back(link)
        kind = request.POST.get("kind", "")
        raw_id = request.POST.get("unified_agency_id", "").strip()
        try:
            unified_id = uuid.UUID(raw_id) if raw_id else None
        except ValueError:
            self.message_user(request, f"{raw_id!r} is not an agency id (a UUID).", messages.ERROR)
            return self._back(link)
        try:
            link = agency_link_confirm(link=link, kind=kind, unified_agency_id=unified_id, actor=staff_user(request))
        except LinkError as refusal:
            self.message_user(request, str(refusal), messages.ERROR)
        else:
            message = f"Link confirmed: {link.get_kind_display()} ({link.unified_agency_id})."
            self.log_change(request, link, message)
            self.message_user(request, message, messages.SUCCESS)
        return self._back(link)

    def sync_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return self._post_only(request, None)
        if not request.user.has_perm("migration_jobs.confirm_agencylink"):
            self.message_user(request, "You do not have permission to sync agencies.", messages.ERROR)
        else:
            created = agency_links_sync()
            self.message_user(request, f"{created} new RevOS agencies found.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:migration_jobs_agencylink_changelist"))

    def progress_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """The latest run and verification as JSON, polled by the agency page while either is under way.

        It shows what the change page shows (status, counts, error text, verdict): the same permission.
        """
        link = self._link(object_id)
        if not self.has_view_permission(request, link):
            raise PermissionDenied
        migration_runs_reconcile_running(link=link)
        run = link.runs.first()
        verification = link.verifications.order_by("-created_at", "-id").first()
        if run is None:
            return JsonResponse({"run": None, "verification": _verification_json(verification)})
        counters = run_counters(run=run)
        return JsonResponse(
            {
                "verification": _verification_json(verification),
                "migrated_rows": agency_migrated_rows(link=link),
                "eta": run.eta_display,
                "heartbeat": _heartbeat_text(run),
                "run": run.pk,
                "kind": run.get_kind_display(),
                "status": run.status,
                "status_display": run.get_status_display(),
                "active": run.is_active,
                "percent": counters.percent,
                "table": run.current_table,
                "tables_done": counters.tables_done,
                "tables_total": counters.tables_total,
                "rows_done": counters.rows_done,
                "rows_total": counters.rows_total,
                "rows_per_second": counters.rows_per_second,
                "tables_progress": [vars(t) | {"percent": t.percent} for t in _tables_progress(run, link)],
                "note": run.status_note,
                "error": run.error,
            }
        )

    def plan_csv_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The latest plan's refused rows as CSV."""
        link = self._link(object_id)
        if not self.has_view_permission(request, link):
            raise PermissionDenied
        plan = plan_latest(link=link)
        if plan is None:
            raise Http404("This agency has no plan yet.")
        response = HttpResponse(plan_refused_csv(plan=plan), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="plan-{plan.run.pk}-refused-rows.csv"'
        return response

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        link = self._link(object_id)
        if not self.has_view_or_change_permission(request, link):
            raise PermissionDenied  # before the cockpit reads the unified database for it
        migration_runs_reconcile_running()
        last_run = link.runs.first()
        extra_context = {
            **(extra_context or {}),
            "title": "Migration cockpit",
            "heartbeat": _heartbeat_text(last_run),
            "counters": run_counters(run=last_run) if last_run else None,
            "run_shape": run_kind_shape(last_run.kind) if last_run else None,
            "shows_progress": run_shows_progress(run=last_run) if last_run else False,
            "tables_progress": _tables_progress(last_run, link),
            "run_took": run_took(run=last_run) if last_run else "",
            "plan": plan_latest(link=link),
            "run_report": run_report(
                run=link.runs.exclude(kind__in=run_kind_values(dry_run=True)).exclude(report={}).first()
            ),
            "cockpit": agency_cockpit_read(link=link),
            "agency_actions": AGENCY_ACTIONS,
            "agency_flags": _flags_for(link),
            "cutover_run": agency_cut_over(link=link),
            "complete_run": agency_completed(link=link),
            "sessions_notice": sessions_notice(),
        }
        return super().change_view(request, object_id, form_url, extra_context)


def _tables_progress(run: MigrationRun | None, link: AgencyLink) -> list[TableProgress]:
    """The active run's per-table progress: a migration's tables in flight against the latest plan's
    rows, a rollback's or a plan's tables done so far."""
    return run_progress_tables(run=run, planned=lambda: plan_rows_planned(plan=plan_latest(link=link)))


def _flags_for(link: AgencyLink) -> dict[str, bool]:
    return flags_for_agency(agency=Agency(agency_id=agency_flag_id(agency_link=link), link=link))


def _heartbeat_text(run: MigrationRun | None) -> str:
    """Which worker runs it and when it last said so: the bound after which a dead one's agency is freed."""
    if run is None or run.status != MigrationRun.Status.RUNNING:
        return ""
    try:
        heartbeat = run_heartbeat(job_id=run.job_id)
    except RedisError:
        return ""
    if heartbeat is None:
        return ""
    if heartbeat.seconds_ago is None:
        return f"worker {heartbeat.worker_name}: no heartbeat any more; the agency is freed when this page reloads"
    # A worker says it is alive every HEARTBEAT_INTERVAL_SECONDS, so the age climbs to about that
    # and drops back; only past the timeout is the worker taken for dead.
    if heartbeat.seconds_ago > HEARTBEAT_TIMEOUT_SECONDS:
        return (
            f"worker {heartbeat.worker_name} · silent for {heartbeat.seconds_ago} s, past the"
            f" {HEARTBEAT_TIMEOUT_SECONDS} s after which it is taken for dead: its run fails at the next check"
        )
    return (
        f"worker {heartbeat.worker_name} · alive, heard from {heartbeat.seconds_ago} s ago (it reports every"
        f" {HEARTBEAT_INTERVAL_SECONDS} s; silent for {HEARTBEAT_TIMEOUT_SECONDS} s, it is taken for dead and"
        " the agency freed)"
    )


def _verification_json(verification: VerificationRun | None) -> dict[str, Any] | None:
    if verification is None:
        return None
    active = verification.status in (verification.Status.QUEUED, verification.Status.RUNNING)
    return {"id": verification.pk, "verdict": verification.verdict, "active": active}


def _warn_stopped_bulks(model_admin: admin.ModelAdmin, request: HttpRequest) -> None:
    """Staff learn of an auto-stopped bulk migration on the next list they open, until they act on it."""
    for line in bulk_requests_stopped():
        model_admin.message_user(request, line, messages.WARNING)


@admin.register(MigrationRun)
class MigrationRunAdmin(ObjectIdMixin, ViewOnlyMixin, admin.ModelAdmin):
    list_display = (
        "pk",
        "agency_link",
        "kind",
        "status",
        "progress",
        "finished_at",
        "duration_display",
        "rows_per_second",
        "status_note",
        "job",
    )
    list_filter = ("status", "kind")
    list_select_related = ("agency_link",)
    search_fields = ("agency_link__name", "=revos_agency_id")
    readonly_fields = [f.name for f in MigrationRun._meta.fields if f.name != "report"] + ["progress", "report_table"]
    fields = tuple(readonly_fields)
    # A summary of what means something for the run's kind instead of every field (selectors/timeline.py).
    change_form_template = "admin/migration_jobs/migrationrun/change_form.html"

    @admin.display(description="Report")
    def report_table(self, run: MigrationRun) -> str:
        report = run_report(run=run)
        if report is None:
            return "see the agency's page" if run_kind_get(run.kind).dry_run else "—"
        return render_to_string("admin/migration_jobs/migrationrun/report.html", {"report": report})

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        _warn_stopped_bulks(self, request)
        migration_runs_reconcile_running()
        return super().changelist_view(request, extra_context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        run = self.get_object(request, object_id)
        if run:
            extra_context = {
                **(extra_context or {}),
                "title": f"{run.get_kind_display()} #{run.pk} of {run.agency_link}",
                "run_summary": run_summary(run=run),
                "run_shape": run_kind_shape(run.kind),
                "report": run_report(run=run),
                "job_url": _job_url(run),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="Progress")
    def progress(self, run: MigrationRun) -> str:
        if not run_shows_progress(run=run):
            return "—"  # a switch has no rows to count, nor a plan from before plans counted: no "0 %"
        return _progress_bar(run)

    @admin.display(description="Duration")
    def duration_display(self, run: MigrationRun) -> str:
        duration = run.duration
        return str(duration).split(".")[0] if duration else "—"

    @admin.display(description="RQ job")
    def job(self, run: MigrationRun) -> str:
        url = _job_url(run)
        if not url:
            return "—"
        # The link says what it is, the tooltip has the id (migration-<run>-<tail>).
        return format_html('<a href="{}" title="{}">job</a>', url, run.job_id)


def _job_url(run: MigrationRun) -> str:
    """The run's own RQ job page, under the queue the run was queued on; "" without a job."""
    return rq_job_url(queue=run.QUEUE, job_id=run.job_id)
