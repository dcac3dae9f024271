"""Every table of the unified database, declared once: its category and its tenant key.

The categories are the seed's lists ("Table Categorization"): shared tables are visible to both
apps (app_context 'both'), AudienceOS-only tables to AudienceOS ('audience'), RevOS-only tables
to RevOS ('revos'). The tenant key is the column the RLS policy and the tenant foreign keys scope
by: `agency_id` everywhere except on `agency`, whose own id is the tenant.

sql/unified/ loops over the live tables (0004 sets app_context defaults, 0007 and 0051 write one
policy per table), so a table this declaration does not know, or one without its tenant key,
stops `apply_unified_schema` (and its `--plan`) before any file runs: see `tenancy_problems`.
A table of the real AudienceOS that lacks agency_id is given one (filled from its parent) rather
than scoped through its parent at query time: one indexable column keeps the policy a plain
comparison and lets a composite foreign key carry the agency down every reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

DECLARATION = "migration_jobs/tenancy.py"


class Category(StrEnum):
    SHARED = "shared"
    AUDIENCE = "audience"
    REVOS = "revos"

    @property
    def app_context(self) -> str:
        """The app_context a row of this category has by default."""
        return "both" if self is Category.SHARED else self.value


@dataclass(frozen=True)
class TenantTable:
    category: Category
    tenant_key: str = "agency_id"


def _tables(category: Category, names: str) -> dict[str, TenantTable]:
    return {name: TenantTable(category) for name in names.split()}


TABLES: MappingProxyType[str, TenantTable] = MappingProxyType(
    {
        "agency": TenantTable(Category.SHARED, tenant_key="id"),
        # Shared by both apps (the seed's list, plus RBAC and the audit trail, which serve both).
        **_tables(
            Category.SHARED,
            "user client chat_session chat_message cartridge permission role user_role role_permission audit_log",
        ),
        **_tables(
            Category.AUDIENCE,
            "client_assignment stage_event task integration communication alert document intake_form_field"
            " intake_response kpi_snapshot ad_performance onboarding_instance onboarding_journey"
            " onboarding_stage_status member_client_access training_cartridge",
        ),
        **_tables(
            Category.REVOS,
            "linkedin_account post comment campaign lead_magnet lead lead_magnet_library dm_sequence dm_message"
            " dm_delivery webhook_config webhook_delivery webhook_endpoint webhook_log pod pod_member pod_activity"
            " console_workflow console_prompt campaign_skill skill_execution memory queue_job notification"
            " processed_comment processed_message triggered_comment pending_connection connected_account"
            " scrape_job email_queue email_extraction_review unipile_webhook_log",
        ),
    }
)


def tenancy_problems(live_columns: dict[str, list[str]]) -> list[str]:
    """What stops the schema files on a database with these public tables (table -> columns).

    Tables the declaration knows but the database lacks are fine: the files create them.
    """
    problems = []
    for table, columns in sorted(live_columns.items()):
        declared = TABLES.get(table)
        if declared is None:
            problems.append(
                f"table {table} is not declared: add it to TABLES in {DECLARATION} as shared, audience or "
                "revos (which app sees its rows), with its tenant key"
            )
        elif declared.tenant_key not in columns:
            problems.append(
                f"table {table} has no tenant key column {declared.tenant_key}: add {declared.tenant_key} "
                f"uuid REFERENCES agency(id), filled from the row's parent, or declare its tenant key in {DECLARATION}"
            )
    return problems
