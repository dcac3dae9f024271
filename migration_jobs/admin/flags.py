"""Feature flags in the admin: the flag list, an on/off and agency-overrides page, and the audit trail.

Flag state never changes through the plain change form: it changes on the state page, which needs
`change_flag_state` and a typed reason and goes through `migration_jobs.services.flags`, where the
cutover interlock and the audit live. The bulk cutover the RevOS agency admin attaches needs what
the Cut over button needs, `cutover_migrationrun`. `unified_db`
is not set here at all: its page says so and sends staff to the agency page's Cut over / Switch back,
and a forged POST gets the service's refusal as a message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import InlineModelAdmin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from migration_jobs.admin.mixins import ObjectIdMixin, ViewOnlyMixin, staff_user
from migration_jobs.models.flags import AgencyAiProvider, AiProviderChange, FeatureFlag, FlagChange
from migration_jobs.models.runs import AgencyLink
from migration_jobs.refusals import CutoverRefused
from migration_jobs.selectors.flags import UNIFIED_DB, flag_agency_rows
from migration_jobs.services.flags import (
    ai_provider_set,
    flag_set_for_agency,
    flag_set_global,
    flag_set_percentage,
    flags_cache_invalidate_on_commit,
    unified_db_refusal,
)
from migration_jobs.services.kinds.cutover import CUTOVER, cutover_runs_request_bulk
from migration_jobs.services.runs import BulkOutcome

FLAG_STATE_PERMISSION = "migration_jobs.change_flag_state"
REASON_HELP = "Why — kept in the audit trail with your name and the time."


def _reason_field() -> forms.CharField:
    return forms.CharField(widget=forms.Textarea(attrs={"rows": 2, "cols": 60}), help_text=REASON_HELP)


class FlagGlobalForm(forms.Form):
    enabled_globally = forms.BooleanField(required=False, label="On for every agency")
    rollout_percentage = forms.IntegerField(min_value=0, max_value=100, label="Rollout percentage")
    reason = _reason_field()


class AgencyOverrideForm(forms.Form):
    STATES = [("on", "On for this agency"), ("off", "Off for this agency"), ("default", "No override")]

    agency_link = forms.ModelChoiceField(AgencyLink.objects.order_by("name"), label="RevOS agency")
    state = forms.ChoiceField(choices=STATES)
    reason = _reason_field()

    def enabled(self) -> bool | None:
        return {"on": True, "off": False, "default": None}[self.cleaned_data["state"]]


class ReasonForm(forms.Form):
    reason = _reason_field()


class FlagChangeInline(ViewOnlyMixin, admin.TabularInline):
    model = FlagChange
    fields = ("created_at", "field", "agency_link", "old_value", "new_value", "reason", "actor")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "Change history"

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        # Whoever may see a flag may see its history, without a separate permission on the trail.
        return request.user.has_perm("migration_jobs.view_featureflag")


@admin.register(FeatureFlag)
class FeatureFlagAdmin(ObjectIdMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "app_context",
        "enabled_globally",
        "rollout_percentage",
        "requires_verification",
        "overrides_on",
        "updated_at",
    )
    search_fields = ("name", "description")
    fields = ("name", "description", "app_context", "requires_verification", "enabled_globally", "rollout_percentage")
    inlines = [FlagChangeInline]

    def get_inlines(self, request: HttpRequest, obj: FeatureFlag | None) -> list[type[InlineModelAdmin]]:
        return self.inlines if obj else []

    def get_readonly_fields(self, request: HttpRequest, obj: FeatureFlag | None = None) -> tuple[str, ...]:
        state = ("enabled_globally", "rollout_percentage")
        # The name is hashed into rollout buckets, and ungating a live flag would bypass the interlock.
        return (*state, "name", "requires_verification") if obj else state

    def has_delete_permission(self, request: HttpRequest, obj: FeatureFlag | None = None) -> bool:
        # Deleting unified_db would take every cut-over agency's override with it: each one switched
        # back to RevOS at once, with no fence and without the writes made since its cutover.
        return super().has_delete_permission(request, obj) and not (obj and obj.name == UNIFIED_DB)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        flag = self.get_object(request, object_id)
        if flag is not None and flag.name == UNIFIED_DB:
            return self._refuse_unified_db_delete(request)
        return super().delete_view(request, object_id, extra_context)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # The bulk delete stays on offer for the other flags; with unified_db among those selected it
        # says why it will not, instead of a bare 403.
        if request.method == "POST" and request.POST.get("action") == "delete_selected":
            selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
            if FeatureFlag.objects.filter(pk__in=[s for s in selected if s.isdigit()], name=UNIFIED_DB).exists():
                return self._refuse_unified_db_delete(request)
        return super().changelist_view(request, extra_context)

    def _refuse_unified_db_delete(self, request: HttpRequest) -> HttpResponseRedirect:
        self.message_user(
            request,
            f"{UNIFIED_DB} cannot be deleted: every cut-over agency's override would go with it, switching each"
            " back to RevOS at once, unfenced, without its writes since the cutover. Nothing was deleted.",
            messages.ERROR,
        )
        return HttpResponseRedirect(reverse("admin:migration_jobs_featureflag_changelist"))

    @admin.display(description="Agencies forced on")
    def overrides_on(self, obj: FeatureFlag) -> int:
        return obj.overrides.filter(enabled=True).count()

    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        flags_cache_invalidate_on_commit()

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        super().delete_model(request, obj)
        flags_cache_invalidate_on_commit()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        super().delete_queryset(request, queryset)
        flags_cache_invalidate_on_commit()

    def get_urls(self) -> list[URLPattern]:
        state = self.admin_site.admin_view(self.state_view)
        return [path("<path:object_id>/state/", state, name="migration_jobs_featureflag_state"), *super().get_urls()]

    def state_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Global switch, percentage and agency overrides of one flag; POSTs need `change_flag_state`."""
        flag = self.object_or_404(request, object_id)
        if not self.has_view_permission(request, flag):
            raise PermissionDenied
        can_toggle = request.user.has_perm(FLAG_STATE_PERMISSION)
        initial = {"enabled_globally": flag.enabled_globally, "rollout_percentage": flag.rollout_percentage}
        global_form, override_form = FlagGlobalForm(initial=initial), AgencyOverrideForm()
        if request.method == "POST":
            if not can_toggle:
                raise PermissionDenied
            if request.POST.get("form") == "global":
                global_form = FlagGlobalForm(request.POST)
                if global_form.is_valid() and self._apply_global(request, flag, global_form):
                    return HttpResponseRedirect(request.path)
            else:
                override_form = AgencyOverrideForm(request.POST)
                if override_form.is_valid() and self._apply_override(request, flag, override_form):
                    return HttpResponseRedirect(request.path)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{flag.name}: on, off and agency overrides",
            "opts": self.opts,
            "original": flag,
            "can_toggle": can_toggle,
            "run_only": unified_db_refusal() if flag.name == UNIFIED_DB else "",
            "agencies_url": reverse("admin:migration_jobs_agencylink_overview"),
            "global_form": global_form,
            "override_form": override_form,
            "rows": flag_agency_rows(flag=flag),
            "changes": flag.changes.select_related("agency_link", "actor")[:50],
        }
        return TemplateResponse(request, "admin/migration_jobs/featureflag/state.html", context)

    def _apply_global(self, request: HttpRequest, flag: FeatureFlag, form: FlagGlobalForm) -> bool:
        data = form.cleaned_data
        try:
            with transaction.atomic():
                changes = [
                    flag_set_global(
                        flag=flag, enabled=data["enabled_globally"], reason=data["reason"], actor=staff_user(request)
                    ),
                    flag_set_percentage(
                        flag=flag,
                        percentage=data["rollout_percentage"],
                        reason=data["reason"],
                        actor=staff_user(request),
                    ),
                ]
        except CutoverRefused as refusal:
            self.message_user(request, f"Refused: {refusal}", messages.ERROR)
            return False
        self._report(request, [change for change in changes if change])
        return True

    def _apply_override(self, request: HttpRequest, flag: FeatureFlag, form: AgencyOverrideForm) -> bool:
        data = form.cleaned_data
        try:
            change = flag_set_for_agency(
                flag=flag,
                agency_link=data["agency_link"],
                enabled=form.enabled(),
                reason=data["reason"],
                actor=staff_user(request),
            )
        except CutoverRefused as refusal:
            self.message_user(request, f"Refused: {refusal}", messages.ERROR)
            return False
        self._report(request, [change] if change else [])
        return True

    def _report(self, request: HttpRequest, changes: list[FlagChange]) -> None:
        if not changes:
            self.message_user(request, "Nothing changed: the flag already was in that state.", messages.WARNING)
        for change in changes:
            self.message_user(request, f"Changed: {change}.", messages.SUCCESS)


@admin.register(FlagChange)
class FlagChangeAdmin(ObjectIdMixin, ViewOnlyMixin, admin.ModelAdmin):
    """The audit trail, read-only: changes are made on a flag's state page."""

    list_display = ("created_at", "flag", "field", "agency_link", "old_value", "new_value", "actor", "reason")
    list_filter = ("flag", "field")
    search_fields = ("reason", "agency_link__name", "actor__username")
    list_select_related = ("flag", "agency_link", "actor")
    date_hierarchy = "created_at"


class AiProviderForm(forms.ModelForm):
    reason = _reason_field()

    class Meta:
        model = AgencyAiProvider
        fields = ("agency_link", "app_context", "provider")


@admin.register(AgencyAiProvider)
class AgencyAiProviderAdmin(ObjectIdMixin, admin.ModelAdmin):
    """The HGC backend per agency and app (the flags API serves it). Saving goes through
    `ai_provider_set`, which records the change and its reason; the defaults need no row."""

    form = AiProviderForm
    list_display = ("agency_link", "app_context", "provider", "updated_by", "updated_at")
    list_filter = ("app_context", "provider")
    search_fields = ("agency_link__name",)
    list_select_related = ("agency_link", "updated_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(FLAG_STATE_PERMISSION)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.has_perm(FLAG_STATE_PERMISSION)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # back to the default is a change too, with its reason

    def get_readonly_fields(self, request: HttpRequest, obj: AgencyAiProvider | None = None) -> tuple[str, ...]:
        return ("agency_link", "app_context") if obj else ()

    def save_model(self, request: HttpRequest, obj: AgencyAiProvider, form: Any, change: bool) -> None:
        data = form.cleaned_data
        recorded = ai_provider_set(
            agency_link=obj.agency_link,
            app_context=obj.app_context,
            provider=data["provider"],
            reason=data["reason"],
            actor=staff_user(request),
        )
        if recorded is None:
            self.message_user(request, "Nothing changed: the agency's app already used that backend.", messages.WARNING)
        if not obj.pk:  # the service saved the row; the admin's redirect needs its id
            obj.pk = AgencyAiProvider.objects.get(agency_link=obj.agency_link, app_context=obj.app_context).pk

    # Django ignores what log_addition returns; django-stubs has it return the LogEntry it writes.
    def log_addition(self, request: HttpRequest, obj: Model, message: Any) -> None:  # type: ignore[override]
        return None  # ai_provider_set logged it, with the reason

    log_change = log_addition  # type: ignore[assignment]  # as log_addition


@admin.register(AiProviderChange)
class AiProviderChangeAdmin(ObjectIdMixin, ViewOnlyMixin, admin.ModelAdmin):
    """The HGC backends' audit trail, read-only."""

    list_display = ("created_at", "agency_link", "app_context", "old_value", "new_value", "actor", "reason")
    list_filter = ("app_context", "new_value")
    search_fields = ("reason", "agency_link__name", "actor__username")
    list_select_related = ("agency_link", "actor")
    date_hierarchy = "created_at"


@admin.action(description="Cut over selected agencies… (fence RevOS, catch up, verify, turn unified_db on)")
def enable_unified_db_for_selected(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[AgencyLink]
) -> HttpResponse | None:
    """Bulk cutover for the RevOS agency admin: asks for a reason, then queues a cutover run per agency.

    Each agency is checked by the interlock on its own; the result lists which were queued and, for
    the others, why not. The runs take slots like migrations, so at most
    MIGRATION_MAX_CONCURRENT_AGENCIES agencies are cut over at once.
    """
    if not request.user.has_perm(CUTOVER.permission):
        modeladmin.message_user(request, f"You may not {CUTOVER.shown_button.may_not}.", messages.ERROR)
        return None
    flag = FeatureFlag.objects.filter(name="unified_db").first()
    if flag is None:
        modeladmin.message_user(request, "There is no unified_db flag; add it first.", messages.ERROR)
        return None
    return runs_bulk_with_reason(
        modeladmin,
        request,
        queryset,
        what="Cutover",
        title="Cut over agencies to the unified database",
        template="admin/migration_jobs/featureflag/enable_unified_db.html",
        request_bulk=cutover_runs_request_bulk,
    )


class BulkRequest(Protocol):
    """A service that queues one run per agency with a reason (cutover_runs_request_bulk, ...)."""

    def __call__(self, *, links: Iterable[AgencyLink], reason: str, actor: User | None) -> BulkOutcome: ...


def runs_bulk_with_reason(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[AgencyLink],
    *,
    what: str,
    title: str,
    template: str,
    request_bulk: BulkRequest,
) -> HttpResponse | None:
    """A bulk action that asks for a typed reason on a page of its own, then queues one run per agency
    (`request_bulk(links=, reason=, actor=)`) and says which were queued and, for the others, why not."""
    form = ReasonForm(request.POST if "apply" in request.POST else None)
    if not form.is_valid():
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": title,
            "opts": modeladmin.opts,
            "queryset": queryset,
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "action_name": request.POST.get("action", ""),
        }
        return TemplateResponse(request, template, context)
    bulk = request_bulk(links=queryset, reason=form.cleaned_data["reason"], actor=staff_user(request))
    for run in bulk.queued:
        modeladmin.log_change(request, run.agency_link, f"Queued: {what.lower()} (bulk {bulk.bulk_request}).")
    if bulk.queued:
        names = ", ".join(str(run.agency_link) for run in bulk.queued)
        modeladmin.message_user(
            request,
            f"{what} queued for {len(bulk.queued)} (they run within the concurrency limit): {names}.",
            messages.SUCCESS,
        )
    for _, why in bulk.skipped:
        modeladmin.message_user(request, f"Refused: {why}", messages.ERROR)
    return None


__all__ = ["FeatureFlagAdmin", "FlagChangeAdmin", "enable_unified_db_for_selected"]
