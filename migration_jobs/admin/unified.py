"""Browse the unified database's tenant data: read-only, and fast on tables of millions of rows.

Nothing here can add or delete a tenant row or edit its data: the unified database belongs to the
apps and to the migration engine, never to a click in the admin. One thing staff decide on a row
is which app sees it (its app_context, which the apps themselves cannot change): a button on each
row's page, with a reason, through services/app_context.py.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.text import capfirst

from migration_jobs.admin.mixins import ObjectIdMixin, ViewOnlyMixin, post_only_page
from migration_jobs.etl import id_map
from migration_jobs.models.unified import (
    Agency,
    AppContext,
    Campaign,
    Cartridge,
    ChatMessage,
    ChatSession,
    Client,
    Lead,
    LinkedinAccount,
    Post,
    UnifiedUser,
)
from migration_jobs.paginators import EstimatedCountPaginator
from migration_jobs.refusals import RunRefused
from migration_jobs.selectors import AGENCY_COUNTED_MODELS, agency_app_context_counts
from migration_jobs.services.app_context import unified_row_app_context_set

SET_APP_CONTEXT_PERMISSION = "migration_jobs.set_app_context"


class VisibilityFilter(admin.SimpleListFilter):
    """What staff mean by "the RevOS clients": what each app sees, and where a row came from.

    The exact app_context value stays beside it; shared rows are 'both', so "revos" alone misses them.
    """

    title = "visibility"
    parameter_name = "visible"
    CHOICES = {
        "revos": "Visible in RevOS",
        "audience": "Visible in AudienceOS",
        "migrated": "Came from RevOS (migrated)",
    }

    def lookups(self, request, model_admin):
        return list(self.CHOICES.items())

    def queryset(self, request, queryset):
        value = self.value()
        if value in (AppContext.REVOS, AppContext.AUDIENCE):
            # The RLS rule (sql/unified/0007_rls.sql): an app sees its own rows and the shared ones.
            return queryset.filter(app_context__in=(value, AppContext.BOTH))
        if value == "migrated":
            # The id map says which unified rows the migration inserted (reused AudienceOS rows are not).
            inserted = RawSQL(id_map.INSERTED_IN_TABLE, [queryset.model._meta.db_table])
            return queryset.filter(pk__in=inserted)
        return queryset


class ReadOnlyUnifiedAdmin(ObjectIdMixin, ViewOnlyMixin, admin.ModelAdmin):
    """List, filter, search and view; never add, change or delete.

    Without change permission Django renders the change page read-only and answers a POST to it
    with 403. Counts avoid full COUNT(*) scans (EstimatedCountPaginator, no full result count),
    and subclasses name the foreign keys they display in list_select_related, so a page costs
    the same few queries however many rows the table has.
    """

    actions = None
    list_filter: tuple = (VisibilityFilter, "app_context")
    list_per_page = 50
    paginator = EstimatedCountPaginator
    search_help_text = "Or paste a UUID: the row with that id, or the rows that refer to it."
    show_full_result_count = False
    view_on_site = False
    change_form_template = "admin/migration_jobs/unified/change_form.html"

    def get_urls(self):
        opts = self.model._meta
        return [
            path(
                "<path:object_id>/app-context/",
                self.admin_site.admin_view(self.app_context_view),
                name=f"{opts.app_label}_{opts.model_name}_app_context",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "app_context_form": self.app_context_form(request, object_id)}
        return super().change_view(request, object_id, form_url, extra_context)

    def app_context_form(self, request: HttpRequest, object_id: str) -> dict | None:
        """The row's app_context button, for staff who may use it."""
        if not request.user.has_perm(SET_APP_CONTEXT_PERMISSION):
            return None
        row = self.model._default_manager.filter(pk=self._row_id(object_id)).values("app_context").first()
        if row is None:
            return None  # Not a row: Django's change view answers it.
        opts = self.model._meta
        return {
            "url": reverse(f"admin:{opts.app_label}_{opts.model_name}_app_context", args=[object_id]),
            "choices": AppContext.choices,
            "current": row["app_context"],
        }

    def app_context_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: set which app sees this row (services/app_context.py refuses with the reason)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        row = self.object_or_404(request, object_id)
        back = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[object_id])
        if request.method != "POST":
            return post_only_page(request, admin_site=self.admin_site, back=back, back_label=str(row))
        if not request.user.has_perm(SET_APP_CONTEXT_PERMISSION):
            self.message_user(request, "You may not change which app sees a row.", messages.ERROR)
            return HttpResponseRedirect(back)
        try:
            message = unified_row_app_context_set(
                table=self.opts.db_table,
                row_id=str(row.pk),
                app_context=request.POST.get("app_context", ""),
                reason=request.POST.get("reason", ""),
                actor=request.user.get_username(),
            )
        except RunRefused as refusal:
            self.message_user(request, f"Refused: {refusal}", messages.ERROR)
        else:
            self.message_user(request, message, messages.SUCCESS)
        return HttpResponseRedirect(back)

    @staticmethod
    def _row_id(object_id: str) -> uuid.UUID | None:
        try:
            return uuid.UUID(object_id)
        except ValueError:
            return None

    def get_search_results(self, request, queryset, search_term):
        """A pasted UUID finds the row with that id or any row referring to it, through indexes."""
        try:
            value = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        keys = [f.name for f in self.model._meta.concrete_fields if f.primary_key or f.many_to_one]
        matches = Q()
        for name in keys:
            matches |= Q(**{name: value})
        return queryset.filter(matches), False


@admin.register(Agency)
class AgencyAdmin(ReadOnlyUnifiedAdmin):
    list_display = ("name", "slug", "domain", "app_context", "created_at")
    search_fields = ("name", "slug", "domain")
    ordering = ("name",)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "app_context_table": self.app_context_table(object_id)}
        return super().change_view(request, object_id, form_url, extra_context)

    def app_context_table(self, object_id: str) -> dict | None:
        """The agency's clients, cartridges, chats and leads per app_context, each count a link."""
        try:
            agency_id = uuid.UUID(object_id)
        except ValueError:
            return None  # Not an agency id: Django's change view answers it.
        counts = agency_app_context_counts(agency_id=agency_id)
        rows = []
        for key, model in AGENCY_COUNTED_MODELS.items():
            url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
            cells = [
                (counts[key][context], f"{url}?{urlencode({'agency': agency_id, 'app_context__exact': context})}")
                for context in AppContext.values
            ]
            cells.append((counts[key]["total"], f"{url}?{urlencode({'agency': agency_id})}"))
            rows.append({"label": capfirst(model._meta.verbose_name_plural), "cells": cells})
        return {"headers": [*AppContext.labels, "Total"], "rows": rows}


@admin.register(UnifiedUser)
class UnifiedUserAdmin(ReadOnlyUnifiedAdmin):
    list_display = ("email", "first_name", "last_name", "role", "agency", "app_context")
    list_select_related = ("agency",)
    search_fields = ("email", "first_name", "last_name")


@admin.register(Client)
class ClientAdmin(ReadOnlyUnifiedAdmin):
    list_display = ("name", "agency", "stage", "health_status", "app_context", "created_at")
    list_select_related = ("agency",)
    search_fields = ("name", "contact_email", "website")


@admin.register(Cartridge)
class CartridgeAdmin(ReadOnlyUnifiedAdmin):
    list_display = ("name", "type", "agency", "user", "is_active", "app_context", "updated_at")
    list_filter = (VisibilityFilter, "app_context", "type", "is_active")
    list_select_related = ("agency", "user")
    search_fields = ("name",)


@admin.register(ChatSession)
class ChatSessionAdmin(ReadOnlyUnifiedAdmin):
    list_display = ("__str__", "agency", "user", "client", "app_context", "created_at")
    list_select_related = ("agency", "user", "client")
    search_fields = ("title",)


@admin.register(ChatMessage)
class ChatMessageAdmin(ReadOnlyUnifiedAdmin):
    list_display = ("__str__", "session", "ai_provider", "agency", "app_context", "created_at")
    list_filter = (VisibilityFilter, "app_context", "ai_provider")
    list_select_related = ("session", "agency")
    search_fields = ("content",)


@admin.register(Lead)
class LeadAdmin(ReadOnlyUnifiedAdmin):
    list_display = ("__str__", "email", "status", "campaign", "agency", "app_context", "created_at")
    list_filter = (VisibilityFilter, "app_context", "status")
    list_select_related = ("campaign", "agency")
    search_fields = ("name", "email", "linkedin_url")


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyUnifiedAdmin):
    list_display = ("name", "trigger_word", "status", "client", "agency", "app_context", "created_at")
    list_select_related = ("client", "agency")
    search_fields = ("name", "trigger_word")


@admin.register(LinkedinAccount)
class LinkedinAccountAdmin(ReadOnlyUnifiedAdmin):
    list_display = ("__str__", "profile_url", "status", "user", "agency", "app_context")
    list_select_related = ("user", "agency")
    search_fields = ("display_name", "profile_url", "unipile_account_id")


@admin.register(Post)
class PostAdmin(ReadOnlyUnifiedAdmin):
    list_display = ("__str__", "status", "linkedin_account", "campaign", "agency", "published_at", "app_context")
    list_select_related = ("linkedin_account", "campaign", "agency")
    search_fields = ("content",)
