"""Unmanaged models over the unified (AudienceOS) database's `public` schema.

The source of truth is the SQL in sql/unified/, applied by `manage.py apply_unified_schema`; these
models only describe it, and Django never migrates it (see migration_jobs.routers). One model per
table, field names and types as the SQL has them, nullability included.
tests/test_models_match_sql.py compares every model with the freshly migrated database, so an edit
to one side without the other fails the suite.

Python-side defaults mirror the SQL defaults so that rows created through the ORM (tests, demo
data) look like rows the apps create. The models are grouped as the seed groups the tables:
shared (app_context 'both'), AudienceOS-only ('audience') and RevOS-only ('revos').
"""

# Nullable string columns are NULL in the SQL, so the fields must say null=True to match it.
# ruff: noqa: DJ001

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class AppContext(models.TextChoices):
    """Which app a row belongs to; the RLS policy shows 'both' rows to either app."""

    AUDIENCE = "audience", "AudienceOS"
    REVOS = "revos", "RevOS"
    BOTH = "both", "Both apps"


class UnifiedModel(models.Model):
    """Base of every unified table: a UUID key, app_context, and routing to the unified database."""

    # Read by migration_jobs.routers.TenantDatabaseRouter.
    tenant_database = "unified"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app_context = models.CharField(max_length=20, choices=AppContext.choices, default=AppContext.BOTH)

    class Meta:
        abstract = True
        managed = False


class AudienceModel(UnifiedModel):
    """An AudienceOS-only table (the seed's AUDIENCEOS-ONLY list): app_context defaults to 'audience'."""

    app_context = models.CharField(max_length=20, choices=AppContext.choices, default=AppContext.AUDIENCE)

    class Meta(UnifiedModel.Meta):
        abstract = True


class RevosModel(UnifiedModel):
    """A RevOS table added in Phase 1 (the seed's REVOS-ONLY list): app_context defaults to 'revos'."""

    app_context = models.CharField(max_length=20, choices=AppContext.choices, default=AppContext.REVOS)

    class Meta(UnifiedModel.Meta):
        abstract = True


def agency_fk(related_name: str) -> models.ForeignKey:
    """The tenant key every table but agency carries (it is what the RLS policy compares)."""
    return models.ForeignKey("Agency", models.DO_NOTHING, related_name=related_name)


def optional_fk(to: str, related_name: str) -> models.ForeignKey:
    return models.ForeignKey(to, models.DO_NOTHING, null=True, blank=True, related_name=related_name)


def required_fk(to: str, related_name: str) -> models.ForeignKey:
    return models.ForeignKey(to, models.DO_NOTHING, related_name=related_name)


def timestamp() -> models.DateTimeField:
    """A `timestamptz NOT NULL DEFAULT now()` column."""
    return models.DateTimeField(default=timezone.now)


def optional_timestamp() -> models.DateTimeField:
    return models.DateTimeField(null=True, blank=True)


# --- Shared tables (app_context 'both') --------------------------------------------------------


class Agency(UnifiedModel):
    """The tenant root; every other row belongs to exactly one agency."""

    name = models.CharField(max_length=200)
    slug = models.CharField(max_length=100, unique=True)
    domain = models.CharField(max_length=200, null=True, blank=True)
    settings = models.JSONField(default=dict, blank=True)
    created_at = timestamp()
    updated_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "agency"
        # "Unified": not the RevOS agencies the control plane moves (AgencyLink), the tenants themselves.
        verbose_name = "unified agency"
        verbose_name_plural = "unified agencies"

    def __str__(self) -> str:
        return self.name


class UnifiedUser(UnifiedModel):
    """An auth user of either app (table "user"; named so as not to clash with django.contrib.auth)."""

    agency = agency_fk("users")
    email = models.CharField(max_length=320)
    first_name = models.CharField(max_length=100, null=True, blank=True)
    last_name = models.CharField(max_length=100, null=True, blank=True)
    role = models.CharField(max_length=50, default="member")
    created_at = timestamp()
    updated_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "user"
        verbose_name = "unified user"
        verbose_name_plural = "unified users"

    def __str__(self) -> str:
        return self.email


class Client(UnifiedModel):
    """An agency's client; both apps need clients."""

    agency = agency_fk("clients")
    name = models.CharField(max_length=200)
    website = models.CharField(max_length=300, null=True, blank=True)
    contact_email = models.CharField(max_length=320, null=True, blank=True)
    stage = models.CharField(max_length=50, default="onboarding")
    health_status = models.CharField(max_length=20, null=True, blank=True)
    created_at = timestamp()
    updated_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "client"

    def __str__(self) -> str:
        return self.name


class ChatSession(UnifiedModel):
    """A unified HGC session: AudienceOS chat sessions and RevOS hgc_sessions alike."""

    agency = agency_fk("chat_sessions")
    user = optional_fk("UnifiedUser", "chat_sessions")
    client = optional_fk("Client", "chat_sessions")
    title = models.CharField(max_length=300, null=True, blank=True)
    context = models.JSONField(default=dict, blank=True)
    created_at = timestamp()
    updated_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "chat_session"
        verbose_name = "HGC chat session"

    def __str__(self) -> str:
        return self.title or f"Chat session {self.pk}"


class ChatMessage(UnifiedModel):
    """A unified HGC message; ai_provider records which backend answered."""

    class AIProvider(models.TextChoices):
        GEMINI = "gemini", "Gemini (AudienceOS)"
        AGENTKIT = "agentkit", "AgentKit (RevOS)"

    agency = agency_fk("chat_messages")
    session = required_fk("ChatSession", "messages")
    role = models.CharField(max_length=20)
    content = models.TextField()
    ai_provider = models.CharField(max_length=20, choices=AIProvider.choices, null=True, blank=True)
    tool_calls = models.JSONField(null=True, blank=True)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "chat_message"
        verbose_name = "HGC chat message"

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"


class Permission(UnifiedModel):
    """An RBAC grant of an action on a resource to a role; RBAC serves both apps."""

    agency = agency_fk("permissions")
    role = models.CharField(max_length=50)
    resource = models.CharField(max_length=100)
    action = models.CharField(max_length=50)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "permission"

    def __str__(self) -> str:
        return f"{self.role}: {self.action} {self.resource}"


class Role(UnifiedModel):
    """A named role of one agency (RBAC beside `permission`, sql/unified/0050)."""

    agency = agency_fk("roles")
    name = models.CharField(max_length=50)
    description = models.TextField(null=True, blank=True)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "role"

    def __str__(self) -> str:
        return self.name


class UserRole(UnifiedModel):
    """A user holds a role."""

    agency = agency_fk("user_roles")
    user = required_fk("UnifiedUser", "user_roles")
    role = required_fk("Role", "user_roles")
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "user_role"

    def __str__(self) -> str:
        return f"{self.user_id} as {self.role_id}"


class RolePermission(UnifiedModel):
    """A role is granted a permission."""

    agency = agency_fk("role_permissions")
    role = required_fk("Role", "role_permissions")
    permission = required_fk("Permission", "role_permissions")
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "role_permission"

    def __str__(self) -> str:
        return f"{self.role_id}: {self.permission_id}"


class AuditLog(UnifiedModel):
    """Who did what to which row, in either app."""

    agency = agency_fk("audit_logs")
    actor = optional_fk("UnifiedUser", "audit_logs")
    action = models.CharField(max_length=100)
    entity_table = models.CharField(max_length=100, null=True, blank=True)
    entity_id = models.UUIDField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "audit_log"

    def __str__(self) -> str:
        return f"{self.action} at {self.created_at}"


class Cartridge(UnifiedModel):
    """The unified cartridge: AudienceOS training cartridges and RevOS brand and style cartridges."""

    class Type(models.TextChoices):
        TRAINING = "training", "Training"
        BRAND = "brand", "Brand"
        STYLE = "style", "Style"
        VOICE = "voice", "Voice"
        PREFERENCES = "preferences", "Preferences"
        INSTRUCTIONS = "instructions", "Instructions"

    agency = agency_fk("cartridges")
    user = optional_fk("UnifiedUser", "cartridges")
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=50, choices=Type.choices)
    config = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = timestamp()
    updated_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "cartridge"

    def __str__(self) -> str:
        return f"{self.name} ({self.type})"


# --- AudienceOS-only tables (app_context 'audience') -------------------------------------------


class ClientAssignment(AudienceModel):
    """A user assigned to a client, with a role."""

    agency = agency_fk("client_assignments")
    client = required_fk("Client", "assignments")
    user = required_fk("UnifiedUser", "client_assignments")
    role = models.CharField(max_length=50, default="owner")
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "client_assignment"

    def __str__(self) -> str:
        return f"{self.role} of client {self.client_id}"


class StageEvent(AudienceModel):
    """A client's move from one pipeline stage to another."""

    agency = agency_fk("stage_events")
    client = required_fk("Client", "stage_events")
    from_stage = models.CharField(max_length=50, null=True, blank=True)
    to_stage = models.CharField(max_length=50)
    actor = optional_fk("UnifiedUser", "stage_events")
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "stage_event"

    def __str__(self) -> str:
        return f"{self.from_stage or '-'} -> {self.to_stage}"


class Task(AudienceModel):
    """A to-do for a client, optionally assigned to a user."""

    agency = agency_fk("tasks")
    client = optional_fk("Client", "tasks")
    assignee = optional_fk("UnifiedUser", "assigned_tasks")
    title = models.CharField(max_length=300)
    status = models.CharField(max_length=50, default="todo")
    due_date = models.DateField(null=True, blank=True)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "task"

    def __str__(self) -> str:
        return self.title


class Integration(AudienceModel):
    """A connected third-party provider and its configuration."""

    agency = agency_fk("integrations")
    provider = models.CharField(max_length=50)
    status = models.CharField(max_length=50, default="connected")
    config = models.JSONField(default=dict, blank=True)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "integration"

    def __str__(self) -> str:
        return f"{self.provider} ({self.status})"


class Communication(AudienceModel):
    """A message sent to a client on some channel."""

    agency = agency_fk("communications")
    client = optional_fk("Client", "communications")
    channel = models.CharField(max_length=50)
    subject = models.CharField(max_length=300, null=True, blank=True)
    body = models.TextField(null=True, blank=True)
    sent_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "communication"

    def __str__(self) -> str:
        return self.subject or f"{self.channel} message"


class Alert(AudienceModel):
    """A client health alert, open until resolved."""

    agency = agency_fk("alerts")
    client = optional_fk("Client", "alerts")
    severity = models.CharField(max_length=20, default="info")
    message = models.TextField()
    resolved_at = optional_timestamp()
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "alert"

    def __str__(self) -> str:
        return f"{self.severity}: {self.message[:60]}"


class Document(AudienceModel):
    """A document shared with or about a client."""

    agency = agency_fk("documents")
    client = optional_fk("Client", "documents")
    title = models.CharField(max_length=300)
    url = models.CharField(max_length=500, null=True, blank=True)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "document"

    def __str__(self) -> str:
        return self.title


class IntakeFormField(AudienceModel):
    """One question of the agency's client intake form."""

    agency = agency_fk("intake_form_fields")
    label = models.CharField(max_length=200)
    field_type = models.CharField(max_length=50, default="text")
    position = models.IntegerField(default=0)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "intake_form_field"

    def __str__(self) -> str:
        return self.label


class IntakeResponse(AudienceModel):
    """A client's answer to one intake form field."""

    agency = agency_fk("intake_responses")
    client = required_fk("Client", "intake_responses")
    field = required_fk("IntakeFormField", "responses")
    value = models.TextField(null=True, blank=True)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "intake_response"

    def __str__(self) -> str:
        return f"Answer to {self.field_id}"


class KpiSnapshot(AudienceModel):
    """One KPI's value for a client on one day."""

    agency = agency_fk("kpi_snapshots")
    client = optional_fk("Client", "kpi_snapshots")
    metric = models.CharField(max_length=100)
    value = models.DecimalField(max_digits=14, decimal_places=2)
    captured_on = models.DateField()

    class Meta(UnifiedModel.Meta):
        db_table = "kpi_snapshot"
        verbose_name = "KPI snapshot"

    def __str__(self) -> str:
        return f"{self.metric} = {self.value} on {self.captured_on}"


class AdPerformance(AudienceModel):
    """A client's ad spend and results on one platform for one day."""

    agency = agency_fk("ad_performance")
    client = optional_fk("Client", "ad_performance")
    platform = models.CharField(max_length=50)
    spend = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    impressions = models.BigIntegerField(default=0)
    clicks = models.BigIntegerField(default=0)
    day = models.DateField()

    class Meta(UnifiedModel.Meta):
        db_table = "ad_performance"
        verbose_name = "ad performance"
        verbose_name_plural = "ad performance"

    def __str__(self) -> str:
        return f"{self.platform} on {self.day}"


class OnboardingJourney(AudienceModel):
    """A template of onboarding stages."""

    agency = agency_fk("onboarding_journeys")
    name = models.CharField(max_length=200)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "onboarding_journey"

    def __str__(self) -> str:
        return self.name


class OnboardingInstance(AudienceModel):
    """One client going through one onboarding journey."""

    agency = agency_fk("onboarding_instances")
    client = required_fk("Client", "onboarding_instances")
    journey = required_fk("OnboardingJourney", "instances")
    status = models.CharField(max_length=50, default="in_progress")
    started_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "onboarding_instance"

    def __str__(self) -> str:
        return f"Onboarding of client {self.client_id} ({self.status})"


class OnboardingStageStatus(AudienceModel):
    """Where one onboarding instance stands on one stage."""

    agency = agency_fk("onboarding_stage_statuses")
    instance = required_fk("OnboardingInstance", "stage_statuses")
    stage = models.CharField(max_length=100)
    status = models.CharField(max_length=50, default="pending")
    updated_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "onboarding_stage_status"
        verbose_name_plural = "onboarding stage statuses"

    def __str__(self) -> str:
        return f"{self.stage}: {self.status}"


class MemberClientAccess(AudienceModel):
    """A team member's access level to one client."""

    agency = agency_fk("member_client_accesses")
    user = required_fk("UnifiedUser", "client_accesses")
    client = required_fk("Client", "member_accesses")
    access_level = models.CharField(max_length=20, default="read")
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "member_client_access"
        verbose_name = "member client access"
        verbose_name_plural = "member client access"

    def __str__(self) -> str:
        return f"{self.access_level} access to client {self.client_id}"


# --- RevOS tables (app_context 'revos') --------------------------------------------------------


class LinkedinAccount(RevosModel):
    """A LinkedIn account connected through Unipile."""

    agency = agency_fk("linkedin_accounts")
    user = optional_fk("UnifiedUser", "linkedin_accounts")
    profile_url = models.CharField(max_length=500)
    display_name = models.CharField(max_length=200, null=True, blank=True)
    unipile_account_id = models.CharField(max_length=100, null=True, blank=True)
    status = models.CharField(max_length=50, default="connected")
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "linkedin_account"
        verbose_name = "LinkedIn account"

    def __str__(self) -> str:
        return self.display_name or self.profile_url


class Campaign(RevosModel):
    """A lead-generation campaign, usually fired by a trigger word in comments."""

    agency = agency_fk("campaigns")
    client = optional_fk("Client", "campaigns")
    name = models.CharField(max_length=200)
    trigger_word = models.CharField(max_length=100, null=True, blank=True)
    status = models.CharField(max_length=50, default="draft")
    settings = models.JSONField(default=dict, blank=True)
    created_at = timestamp()
    updated_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "campaign"

    def __str__(self) -> str:
        return self.name


class Post(RevosModel):
    """A LinkedIn post, drafted or published."""

    agency = agency_fk("posts")
    linkedin_account = required_fk("LinkedinAccount", "posts")
    campaign = optional_fk("Campaign", "posts")
    content = models.TextField()
    status = models.CharField(max_length=50, default="draft")
    published_at = optional_timestamp()
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "post"

    def __str__(self) -> str:
        return self.content[:60]


class Comment(RevosModel):
    """A comment on a LinkedIn post."""

    agency = agency_fk("comments")
    post = required_fk("Post", "comments")
    author_name = models.CharField(max_length=200, null=True, blank=True)
    author_profile_url = models.CharField(max_length=500, null=True, blank=True)
    content = models.TextField()
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "comment"

    def __str__(self) -> str:
        return f"{self.author_name or 'Someone'}: {self.content[:60]}"


class LeadMagnet(RevosModel):
    """The asset a campaign offers in exchange for a lead's details."""

    agency = agency_fk("lead_magnets")
    campaign = optional_fk("Campaign", "lead_magnets")
    title = models.CharField(max_length=300)
    url = models.CharField(max_length=500, null=True, blank=True)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "lead_magnet"

    def __str__(self) -> str:
        return self.title


class LeadMagnetLibrary(RevosModel):
    """An entry of the agency's library of reusable lead magnets."""

    agency = agency_fk("lead_magnet_library")
    title = models.CharField(max_length=300)
    description = models.TextField(null=True, blank=True)
    file_url = models.CharField(max_length=500, null=True, blank=True)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "lead_magnet_library"
        verbose_name = "lead magnet library entry"
        verbose_name_plural = "lead magnet library"

    def __str__(self) -> str:
        return self.title


class Lead(RevosModel):
    """A person a campaign captured."""

    class Status(models.TextChoices):
        NEW = "new", "New"
        CONTACTED = "contacted", "Contacted"
        REPLIED = "replied", "Replied"
        QUALIFIED = "qualified", "Qualified"
        CONVERTED = "converted", "Converted"
        LOST = "lost", "Lost"

    agency = agency_fk("leads")
    campaign = optional_fk("Campaign", "leads")
    lead_magnet = optional_fk("LeadMagnet", "leads")
    name = models.CharField(max_length=200, null=True, blank=True)
    email = models.CharField(max_length=320, null=True, blank=True)
    linkedin_url = models.CharField(max_length=500, null=True, blank=True)
    status = models.CharField(max_length=50, choices=Status.choices, default=Status.NEW)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "lead"

    def __str__(self) -> str:
        return self.name or self.email or self.linkedin_url or f"Lead {self.pk}"


class DmSequence(RevosModel):
    """An automated LinkedIn DM sequence; its steps are JSON."""

    agency = agency_fk("dm_sequences")
    campaign = optional_fk("Campaign", "dm_sequences")
    name = models.CharField(max_length=200)
    steps = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=50, default="active")
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "dm_sequence"
        verbose_name = "DM sequence"

    def __str__(self) -> str:
        return self.name


class DmMessage(RevosModel):
    """One DM sent or received within a sequence."""

    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"

    agency = agency_fk("dm_messages")
    sequence = required_fk("DmSequence", "messages")
    lead = optional_fk("Lead", "dm_messages")
    direction = models.CharField(max_length=10, choices=Direction.choices, default=Direction.OUTBOUND)
    body = models.TextField()
    sent_at = optional_timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "dm_message"
        verbose_name = "DM message"

    def __str__(self) -> str:
        return f"{self.direction}: {self.body[:60]}"


class DmDelivery(RevosModel):
    """The delivery of one step of a DM sequence to one lead."""

    agency = agency_fk("dm_deliveries")
    sequence = required_fk("DmSequence", "deliveries")
    lead = optional_fk("Lead", "dm_deliveries")
    step = models.IntegerField(default=0)
    status = models.CharField(max_length=50, default="pending")
    delivered_at = optional_timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "dm_delivery"
        verbose_name = "DM delivery"
        verbose_name_plural = "DM deliveries"

    def __str__(self) -> str:
        return f"Step {self.step} ({self.status})"


class WebhookConfig(RevosModel):
    """An outgoing webhook: where RevOS posts which events."""

    agency = agency_fk("webhook_configs")
    url = models.CharField(max_length=500)
    secret = models.CharField(max_length=200, null=True, blank=True)
    events = models.JSONField(default=list, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "webhook_config"

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(RevosModel):
    """One post of an outgoing webhook and the status it got back."""

    agency = agency_fk("webhook_deliveries")
    webhook_config = required_fk("WebhookConfig", "deliveries")
    payload = models.JSONField()
    status_code = models.IntegerField(null=True, blank=True)
    delivered_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "webhook_delivery"
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"Delivery at {self.delivered_at} ({self.status_code})"


class WebhookEndpoint(RevosModel):
    """An incoming webhook URL."""

    agency = agency_fk("webhook_endpoints")
    url = models.CharField(max_length=500)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "webhook_endpoint"

    def __str__(self) -> str:
        return self.url


class WebhookLog(RevosModel):
    """One payload received on an incoming webhook."""

    agency = agency_fk("webhook_logs")
    webhook_endpoint = required_fk("WebhookEndpoint", "logs")
    payload = models.JSONField()
    received_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "webhook_log"

    def __str__(self) -> str:
        return f"Received at {self.received_at}"


class Pod(RevosModel):
    """An engagement pod: LinkedIn accounts that engage with each other's posts."""

    agency = agency_fk("pods")
    name = models.CharField(max_length=200)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "pod"

    def __str__(self) -> str:
        return self.name


class PodMember(RevosModel):
    """A LinkedIn account's membership of an engagement pod."""

    agency = agency_fk("pod_members")
    pod = required_fk("Pod", "members")
    linkedin_account = required_fk("LinkedinAccount", "pod_memberships")
    joined_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "pod_member"

    def __str__(self) -> str:
        return f"Member {self.linkedin_account_id} of pod {self.pod_id}"


class PodActivity(RevosModel):
    """One engagement (like, comment, ...) by a pod member on a post."""

    agency = agency_fk("pod_activities")
    pod = required_fk("Pod", "activities")
    pod_member = optional_fk("PodMember", "activities")
    post = optional_fk("Post", "pod_activities")
    activity_type = models.CharField(max_length=50)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "pod_activity"
        verbose_name_plural = "pod activities"

    def __str__(self) -> str:
        return f"{self.activity_type} in pod {self.pod_id}"


class ConsoleWorkflow(RevosModel):
    """An AI console workflow definition."""

    agency = agency_fk("console_workflows")
    name = models.CharField(max_length=200)
    definition = models.JSONField(default=dict, blank=True)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "console_workflow"

    def __str__(self) -> str:
        return self.name


class ConsolePrompt(RevosModel):
    """A prompt of the AI console, optionally part of a workflow."""

    agency = agency_fk("console_prompts")
    workflow = optional_fk("ConsoleWorkflow", "prompts")
    name = models.CharField(max_length=200)
    prompt = models.TextField()
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "console_prompt"

    def __str__(self) -> str:
        return self.name


class CampaignSkill(RevosModel):
    """An AI skill enabled on a campaign, with its configuration."""

    agency = agency_fk("campaign_skills")
    campaign = required_fk("Campaign", "skills")
    skill_name = models.CharField(max_length=100)
    config = models.JSONField(default=dict, blank=True)

    class Meta(UnifiedModel.Meta):
        db_table = "campaign_skill"

    def __str__(self) -> str:
        return self.skill_name


class SkillExecution(RevosModel):
    """One run of a campaign skill, with its input and output."""

    agency = agency_fk("skill_executions")
    campaign_skill = required_fk("CampaignSkill", "executions")
    status = models.CharField(max_length=50, default="queued")
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    started_at = optional_timestamp()
    finished_at = optional_timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "skill_execution"

    def __str__(self) -> str:
        return f"Execution of {self.campaign_skill_id} ({self.status})"


class Memory(RevosModel):
    """Something the AI remembers for a user."""

    agency = agency_fk("memories")
    user = optional_fk("UnifiedUser", "memories")
    content = models.TextField()
    metadata = models.JSONField(default=dict, blank=True)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "memory"
        verbose_name_plural = "memories"

    def __str__(self) -> str:
        return self.content[:60]


class QueueJob(RevosModel):
    """A background job in RevOS's own queue."""

    agency = agency_fk("queue_jobs")
    job_type = models.CharField(max_length=100)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=50, default="queued")
    run_at = optional_timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "queue_job"

    def __str__(self) -> str:
        return f"{self.job_type} ({self.status})"


class Notification(RevosModel):
    """An in-app notification for a user."""

    agency = agency_fk("notifications")
    user = optional_fk("UnifiedUser", "notifications")
    title = models.CharField(max_length=300)
    body = models.TextField(null=True, blank=True)
    read_at = optional_timestamp()
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "notification"

    def __str__(self) -> str:
        return self.title


class ProcessedComment(RevosModel):
    """A comment the trigger-word scanner has already handled."""

    agency = agency_fk("processed_comments")
    comment = optional_fk("Comment", "processed_records")
    processed_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "processed_comment"

    def __str__(self) -> str:
        return f"Comment {self.comment_id} processed at {self.processed_at}"


class ProcessedMessage(RevosModel):
    """An external (Unipile) message already handled, kept so it is not handled twice."""

    agency = agency_fk("processed_messages")
    external_message_id = models.CharField(max_length=200)
    processed_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "processed_message"

    def __str__(self) -> str:
        return self.external_message_id


class TriggeredComment(RevosModel):
    """A comment whose trigger word fired a campaign."""

    agency = agency_fk("triggered_comments")
    comment = optional_fk("Comment", "triggers")
    campaign = optional_fk("Campaign", "triggered_comments")
    triggered_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "triggered_comment"

    def __str__(self) -> str:
        return f"Comment {self.comment_id} triggered campaign {self.campaign_id}"


class PendingConnection(RevosModel):
    """A LinkedIn connection request not yet accepted."""

    agency = agency_fk("pending_connections")
    linkedin_account = optional_fk("LinkedinAccount", "pending_connections")
    profile_url = models.CharField(max_length=500)
    requested_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "pending_connection"

    def __str__(self) -> str:
        return self.profile_url


class ConnectedAccount(RevosModel):
    """A user's account on an external provider."""

    agency = agency_fk("connected_accounts")
    user = optional_fk("UnifiedUser", "connected_accounts")
    provider = models.CharField(max_length=50)
    external_id = models.CharField(max_length=200)
    connected_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "connected_account"

    def __str__(self) -> str:
        return f"{self.provider}: {self.external_id}"


class ScrapeJob(RevosModel):
    """A scrape of a web page and its result."""

    agency = agency_fk("scrape_jobs")
    target_url = models.CharField(max_length=500)
    status = models.CharField(max_length=50, default="queued")
    result = models.JSONField(null=True, blank=True)
    created_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "scrape_job"

    def __str__(self) -> str:
        return f"{self.target_url} ({self.status})"


class EmailQueue(RevosModel):
    """An email waiting in (or sent from) the outgoing queue."""

    agency = agency_fk("email_queue")
    lead = optional_fk("Lead", "email_queue")
    to_email = models.CharField(max_length=320)
    subject = models.CharField(max_length=300)
    body = models.TextField(null=True, blank=True)
    status = models.CharField(max_length=50, default="queued")
    scheduled_at = optional_timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "email_queue"
        verbose_name = "email queue entry"
        verbose_name_plural = "email queue"

    def __str__(self) -> str:
        return f"{self.subject} to {self.to_email}"


class EmailExtractionReview(RevosModel):
    """An email address extracted for a lead, awaiting a person's review."""

    agency = agency_fk("email_extraction_reviews")
    lead = optional_fk("Lead", "email_extraction_reviews")
    extracted_email = models.CharField(max_length=320, null=True, blank=True)
    status = models.CharField(max_length=50, default="pending")
    reviewed_at = optional_timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "email_extraction_review"

    def __str__(self) -> str:
        return f"{self.extracted_email or '(none)'} ({self.status})"


class UnipileWebhookLog(RevosModel):
    """One event received from Unipile's webhooks."""

    agency = agency_fk("unipile_webhook_logs")
    event = models.CharField(max_length=100)
    payload = models.JSONField(default=dict, blank=True)
    received_at = timestamp()

    class Meta(UnifiedModel.Meta):
        db_table = "unipile_webhook_log"

    def __str__(self) -> str:
        return f"{self.event} at {self.received_at}"
