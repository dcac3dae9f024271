"""The RevOS -> unified map, as data: one entry per RevOS table, nothing else says it.

Each `TableMap` names the unified table a RevOS table goes to and how its columns get there.
A unified column is filled, in this order of precedence, from:
  - `agency_id`: always the run's unified agency (children inherit it through `scope`);
  - `app_context`: the entry's app_context ('revos' for RevOS-only tables, 'both' for shared);
  - `constants`: a literal (cartridge.type, chat_message.ai_provider);
  - `expressions`: an SQL expression over the source row (renames, casts, splits);
  - `config`, when `config_from_rest`: a JSON object of every source column not used otherwise;
  - the source column of the same name.
Unified columns none of these fill are left to their defaults, and generated columns to PostgreSQL.
Foreign keys to the shared tables (agency, user, client, auth.users) are rewritten through the id
map; every other row keeps its UUID.

Tables outside the public schema are named "schema.table" (Supabase Auth's auth.users,
auth.identities and auth.mfa_factors): a person's account moves with the agency, so their password
and their second factors keep working.

The same entry says how a unified row goes back to its RevOS table (a switch back after cutover).
A RevOS column is filled, in this order, from:
  - `id`: the RevOS id the id map names for the unified row, else the unified row's own id;
  - `agency_id`: always the RevOS agency being switched back;
  - `inverse`: an SQL expression over the unified row (the renames and splits undone);
  - `config`, when `config_from_rest`: the column's key unfolded from the unified `config`;
  - the unified column of the same name (references to agency, user and client rewritten back
    through the id map).
A unified row the apps created after cutover has no id map entry; it goes back to the entry whose
`new_rows` condition it meets (`None`: never to this table), under its own id. In a condition,
`{<RevOS table>}` stands for the unified ids the migrations inserted from that table (the id map's
SQL is etl/id_map.py's), so no other braces may appear in it.

Adding a RevOS table to the migration means adding one entry to TABLE_MAPS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class Identity(StrEnum):
    """How a source row finds the unified row it already is, for the shared tables."""

    AGENCY_LINK = "agency_link"  # the AgencyLink staff confirmed
    EMAIL = "email"  # users: case-insensitive email
    CLIENT_NAME = "client_name"  # clients: normalized name within the agency, or a staff link
    # auth.users: the account with the same email (any case) is the person's one account. An account
    # of another agency's person is never merged into: the run refuses, naming the person.
    ACCOUNT = "account"
    # auth.identities: an identity already there (same provider and provider id, or the same
    # provider on the account it would join) is kept; the RevOS one is not attached.
    PROVIDER = "provider"


@dataclass(frozen=True)
class TableMap:
    source: str
    target: str
    app_context: str = "revos"
    # Foreign-key hops (column, parent table) from a table without agency_id up to one with it.
    scope: tuple[tuple[str, str], ...] = ()
    constants: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    expressions: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    config_from_rest: bool = False
    identity: Identity | None = None
    # An extra SQL condition on the source rows; rows it excludes are not migrated.
    where: str | None = None
    # The way back: RevOS column -> SQL expression over the unified row, where a name differs.
    inverse: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Which unified rows created after cutover go back to this RevOS table (SQL over the unified
    # row); None: none do. Rows from RevOS always go back to the table they came from.
    new_rows: str | None = "true"
    # For a target without agency_id: an SQL expression over its row `{t}` giving the row's agency.
    target_agency: str | None = None
    # Whether the change capture records the table's writes, on RevOS (a catch-up then reads only
    # what changed) and on the unified database after cutover (a switch back sends back what
    # changed). False: every catch-up re-reads the agency's rows (writing those that differ from
    # their unified copy: etl/engine.py `_rows_as_they_are`), and a switch back compares them
    # all with RevOS and sends back the differences (see the Supabase Auth entries).
    captured: bool = True
    # Columns written as a side effect of use (GoTrue's sign-in bookkeeping): they go back with a
    # row that changed, but a difference in them alone changes nothing and fails no verification.
    volatile: tuple[str, ...] = ()


# A chat message whose session came from RevOS's hgc_sessions (SQL over the unified chat_message).
FROM_HGC_SESSION = "session_id IN ({hgc_sessions})"
# GoTrue writes these on every sign-in (mapping.TableMap.volatile).
SIGN_IN_COLUMNS = ("last_sign_in_at", "updated_at")
# And these on every MFA challenge of a factor.
MFA_CHALLENGE_COLUMNS = ("last_challenged_at", "updated_at")


def _map(source: str, target: str, **options: Any) -> TableMap:
    for key in ("constants", "expressions", "inverse"):
        if key in options:
            options[key] = MappingProxyType(options[key])
    return TableMap(source=source, target=target, **options)


TABLE_MAPS: tuple[TableMap, ...] = (
    # Shared tables: matched against what AudienceOS already has, never duplicated.
    _map(
        "agencies",
        "agency",
        app_context="both",
        identity=Identity.AGENCY_LINK,
        expressions={
            "slug": "lower(trim(both '-' from regexp_replace(name, '[^a-zA-Z0-9]+', '-', 'g')))"
            " || '-' || left(id::text, 8)",
            "settings": "jsonb_build_object('revos_plan', plan)",
        },
        inverse={"plan": "settings ->> 'revos_plan'"},
        new_rows=None,  # the agency row itself always comes from RevOS
    ),
    _map(
        "users",
        "user",
        app_context="both",
        identity=Identity.EMAIL,
        expressions={
            "first_name": "nullif(split_part(full_name, ' ', 1), '')",
            "last_name": "nullif(substr(full_name, length(split_part(full_name, ' ', 1)) + 2), '')",
            "updated_at": "created_at",
        },
        inverse={"full_name": "nullif(concat_ws(' ', first_name, last_name), '')"},
    ),
    _map(
        "clients",
        "client",
        app_context="both",
        identity=Identity.CLIENT_NAME,
        expressions={"stage": "status"},
        inverse={"status": "stage"},
    ),
    # Supabase Auth: each person's account (auth.users.id is users.id) with its bcrypt hash,
    # confirmation state and metadata as they are; app_origin tells the access-token hook which
    # app the account came from. A person AudienceOS already has keeps their AudienceOS account.
    # Captured on RevOS like every table, so a catch-up applies the accounts that changed (not a
    # comparison of every account) and the fence holds them too, GoTrue's own writes included. A
    # sign-in only writes the volatile columns (last_sign_in_at, updated_at): such an update is
    # neither recorded nor fenced (sql/revos/0003_capture_final_values.sql), and losing it loses
    # nothing the unified account needs. On the unified side the accounts are not captured: a
    # switch back compares the agency's accounts with RevOS's and sends back the differences
    # (etl/reverse_accounts.py): new passwords, emails, metadata, identities added or removed,
    # accounts of people created since the cutover.
    _map(
        "auth.users",
        "auth.users",
        app_context="both",
        scope=(("id", "users"),),
        identity=Identity.ACCOUNT,
        expressions={
            "raw_app_meta_data": "coalesce(raw_app_meta_data, '{}'::jsonb) || '{\"app_origin\": \"revos\"}'::jsonb"
        },
        inverse={"raw_app_meta_data": "nullif(raw_app_meta_data - 'app_origin', '{}'::jsonb)"},
        target_agency='(SELECT u.agency_id FROM public."user" u WHERE u.id = {t}.id)',
        volatile=SIGN_IN_COLUMNS,
    ),
    _map(
        "auth.identities",
        "auth.identities",
        app_context="both",
        scope=(("user_id", "users"),),
        identity=Identity.PROVIDER,
        target_agency='(SELECT u.agency_id FROM public."user" u WHERE u.id = {t}.user_id)',
        volatile=SIGN_IN_COLUMNS,
    ),
    # A person's second factors (TOTP secrets, phone, WebAuthn) move with their account, so their
    # authenticator keeps working; a merged person's join the AudienceOS account they keep. A
    # challenge only writes last_challenged_at and updated_at. Their sessions and refresh tokens do
    # not move: the agency's people sign in again where the projects' JWT secrets differ (docs/accounts.md).
    _map(
        "auth.mfa_factors",
        "auth.mfa_factors",
        scope=(("user_id", "users"),),
        target_agency='(SELECT u.agency_id FROM public."user" u WHERE u.id = {t}.user_id)',
        volatile=MFA_CHALLENGE_COLUMNS,
    ),
    # HGC: both RevOS chat generations become unified chat, answered by AgentKit.
    _map("chat_sessions", "chat_session", app_context="both"),
    # New sessions go back to chat_sessions, the live generation; a new message follows its session.
    _map(
        "chat_messages",
        "chat_message",
        app_context="both",
        scope=(("session_id", "chat_sessions"),),
        constants={"ai_provider": "agentkit"},
        new_rows=f"NOT ({FROM_HGC_SESSION})",
    ),
    _map(
        "hgc_sessions",
        "chat_session",
        app_context="both",
        expressions={"context": "metadata"},
        inverse={"metadata": "context"},
        new_rows=None,
    ),
    _map(
        "hgc_messages",
        "chat_message",
        app_context="both",
        scope=(("session_id", "hgc_sessions"),),
        constants={"ai_provider": "agentkit"},
        new_rows=FROM_HGC_SESSION,
    ),
    # Cartridges: brand and style become typed rows of the one cartridge table.
    _map(
        "brand_cartridges",
        "cartridge",
        app_context="both",
        constants={"type": "brand"},
        config_from_rest=True,
        new_rows="type = 'brand'",
    ),
    _map(
        "style_cartridges",
        "cartridge",
        app_context="both",
        constants={"type": "style"},
        config_from_rest=True,
        new_rows="type = 'style'",
    ),
    # RevOS-only tables.
    _map("linkedin_accounts", "linkedin_account"),
    _map("campaigns", "campaign"),
    _map("posts", "post"),
    _map("comments", "comment", scope=(("post_id", "posts"),)),
    _map("lead_magnets", "lead_magnet"),
    _map("lead_magnet_library", "lead_magnet_library"),
    _map("leads", "lead"),
    _map("dm_sequences", "dm_sequence"),
    _map("dm_messages", "dm_message", scope=(("sequence_id", "dm_sequences"),)),
    _map("dm_deliveries", "dm_delivery", scope=(("sequence_id", "dm_sequences"),)),
    _map("webhook_configs", "webhook_config"),
    _map("webhook_deliveries", "webhook_delivery", scope=(("webhook_config_id", "webhook_configs"),)),
    _map("webhook_endpoints", "webhook_endpoint"),
    _map("webhook_logs", "webhook_log", scope=(("webhook_endpoint_id", "webhook_endpoints"),)),
    _map("pods", "pod"),
    _map("pod_members", "pod_member", scope=(("pod_id", "pods"),)),
    _map("pod_activities", "pod_activity", scope=(("pod_id", "pods"),)),
    _map("console_workflows", "console_workflow"),
    _map("console_prompts", "console_prompt"),
    _map("campaign_skills", "campaign_skill", scope=(("campaign_id", "campaigns"),)),
    _map(
        "skill_executions",
        "skill_execution",
        scope=(("campaign_skill_id", "campaign_skills"), ("campaign_id", "campaigns")),
    ),
    _map("memories", "memory"),
    _map("queue_jobs", "queue_job"),
    _map("notifications", "notification"),
    _map("processed_comments", "processed_comment"),
    _map("processed_messages", "processed_message"),
    _map("triggered_comments", "triggered_comment"),
    _map("pending_connections", "pending_connection"),
    _map("connected_accounts", "connected_account"),
    _map("scrape_jobs", "scrape_job"),
    _map("email_queue", "email_queue"),
    _map("email_extraction_reviews", "email_extraction_review"),
    _map("unipile_webhook_logs", "unipile_webhook_log"),
)

# RevOS tables deliberately left behind, with the reason staff will read.
NOT_MIGRATED: MappingProxyType[str, str] = MappingProxyType(
    {
        "backup_dm_sequences": "Ops backup of dm_sequences with orphaned rows; the live dm_sequences is migrated.",
        "campaigns_trigger_word_backup": "Ops backup of campaigns.trigger_word; campaigns carries the live value.",
        "outfit_history": "ABBY contamination (Phase 0); not RevOS data.",
        "swatches": "ABBY contamination (Phase 0); not RevOS data.",
        "swipe_cartridges": "ABBY contamination (Phase 0); not RevOS data.",
        "chat_message": "Empty singular duplicate of chat_messages (Phase 0).",
        "chat_session": "Empty singular duplicate of chat_sessions (Phase 0).",
    }
)

# Unified tables whose rows the migration may reuse instead of insert (see Identity).
SHARED_TARGETS = frozenset(m.target for m in TABLE_MAPS if m.identity is not None)

# Mapped tables outside the public schema, "schema.table", on either side.
QUALIFIED_TABLES = frozenset(t for m in TABLE_MAPS for t in (m.source, m.target) if "." in t)


def entries_for_target(target: str) -> tuple[TableMap, ...]:
    """Every entry that fills one unified table (chat_session has two origins, cartridge two types)."""
    return tuple(entry for entry in TABLE_MAPS if entry.target == target)


def table_map(source: str) -> TableMap:
    """The entry for one RevOS table; KeyError names the table if there is none."""
    for entry in TABLE_MAPS:
        if entry.source == source:
            return entry
    raise KeyError(f"RevOS table {source!r} has no entry in TABLE_MAPS (nor in NOT_MIGRATED).")
