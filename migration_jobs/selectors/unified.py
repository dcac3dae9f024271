"""Reads: the unified database's per-agency counts (how its models compare with its schema is
migration_jobs.verify.model_drift)."""

from __future__ import annotations

import uuid

from django.db import models

from migration_jobs.models.unified import AppContext, Cartridge, ChatMessage, ChatSession, Client, Lead

# What an agency's admin page counts per app_context, in display order.
AGENCY_COUNTED_MODELS: dict[str, type[models.Model]] = {
    "clients": Client,
    "cartridges": Cartridge,
    "chat_sessions": ChatSession,
    "chat_messages": ChatMessage,
    "leads": Lead,
}


def agency_app_context_counts(*, agency_id: uuid.UUID | str) -> dict[str, dict[str, int]]:
    """Rows of the agency per table and app_context (plus 'total'), one GROUP BY query per table.

    Every app_context appears, with 0 where the agency has none, so callers can lay out a table.
    """
    counts = {}
    for key, model in AGENCY_COUNTED_MODELS.items():
        grouped = dict(
            model._default_manager.filter(agency_id=agency_id)
            .values_list("app_context")
            .annotate(rows=models.Count("*"))
            .order_by()
        )
        per_context = {context: grouped.get(context, 0) for context in AppContext.values}
        per_context["total"] = sum(grouped.values())
        counts[key] = per_context
    return counts
