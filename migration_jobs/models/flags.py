"""Feature flags the two apps read per agency: a global switch, a rollout percentage, per-agency overrides.

Written by hand rather than with django-flags or django-waffle: the agency (not a request or a user) is
the subject, the percentage must be deterministic by agency id, `unified_db` is gated on verification,
and every change carries a typed reason. The evaluation lives in `migration_jobs.services.flags`.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, RegexValidator
from django.db import models

from migration_jobs.models.runs import AgencyLink


class FeatureFlag(models.Model):
    """One named flag. Precedence for an agency: its override, else the global switch, else its bucket."""

    class AppContext(models.TextChoices):
        BOTH = "both", "Both apps"
        REVOS = "revos", "RevOS"
        AUDIENCE = "audience", "AudienceOS"

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(r"^[a-z][a-z0-9_]*$", "Use lower_snake_case, e.g. shared_hgc.")],
        help_text="What the apps ask for, e.g. unified_db. Part of the rollout hash: never rename it.",
    )
    description = models.CharField(max_length=300, blank=True)
    app_context = models.CharField(
        max_length=10,
        choices=AppContext.choices,
        default=AppContext.BOTH,
        help_text="Which app reads this flag; the API leaves it out of the other app's answer.",
    )
    enabled_globally = models.BooleanField(default=False)
    rollout_percentage = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(100)],
        help_text="Agencies whose bucket (0-99, a hash of flag name and agency id) is below this get it.",
    )
    requires_verification = models.BooleanField(
        default=False,
        help_text="Turned on agency by agency only, and only after that agency's data passed verification.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("change_flag_state", "Can turn feature flags on or off, globally or per agency")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(rollout_percentage__lte=100), name="flag_rollout_percentage_at_most_100"
            )
        ]

    def __str__(self) -> str:
        return self.name


class AgencyFlagOverride(models.Model):
    """A flag forced on or off for one agency, whatever the global switch and the percentage say."""

    flag = models.ForeignKey(FeatureFlag, on_delete=models.CASCADE, related_name="overrides")
    agency_link = models.ForeignKey(AgencyLink, on_delete=models.CASCADE, related_name="flag_overrides")
    enabled = models.BooleanField()
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["flag", "agency_link"]
        verbose_name = "agency override"
        constraints = [models.UniqueConstraint(fields=["flag", "agency_link"], name="one_override_per_flag_and_agency")]

    def __str__(self) -> str:
        return f"{self.flag} {'on' if self.enabled else 'off'} for {self.agency_link}"


class AuditedChange(models.Model):
    """What every audit trail of a staff decision records: the value before and after, the reason
    typed, who and when. Each trail adds what was changed (a flag's field, an agency's app)."""

    old_value = models.CharField(max_length=20)
    new_value = models.CharField(max_length=20)
    reason = models.TextField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]


class FlagChange(AuditedChange):
    """The audit trail: one row per change of a flag's state, with the reason the staff member typed."""

    class Field(models.TextChoices):
        GLOBAL = "global", "Global switch"
        PERCENTAGE = "percentage", "Rollout percentage"
        OVERRIDE = "override", "Agency override"

    # PROTECT: the audit trail outlives nothing it describes; a flag with history cannot be deleted.
    flag = models.ForeignKey(FeatureFlag, on_delete=models.PROTECT, related_name="changes")
    agency_link = models.ForeignKey(
        AgencyLink, null=True, blank=True, on_delete=models.PROTECT, related_name="flag_changes"
    )
    field = models.CharField(max_length=12, choices=Field.choices)

    class Meta(AuditedChange.Meta):
        get_latest_by = "created_at"
        constraints = [models.CheckConstraint(condition=~models.Q(reason=""), name="flag_change_has_reason")]

    def __str__(self) -> str:
        target = f" for {self.agency_link}" if self.agency_link_id else ""
        return f"{self.flag} {self.get_field_display().lower()}{target}: {self.old_value} → {self.new_value}"


class AiProvider(models.TextChoices):
    """The HGC backends (chat_message.ai_provider's CHECK lists the same two)."""

    GEMINI = "gemini", "Gemini"
    AGENTKIT = "agentkit", "AgentKit"


# Which backend the shared HGC component loads in each app when staff chose nothing else (seed case 3).
DEFAULT_AI_PROVIDERS: dict[str, str] = {
    FeatureFlag.AppContext.AUDIENCE: AiProvider.GEMINI,
    FeatureFlag.AppContext.REVOS: AiProvider.AGENTKIT,
}


class AgencyAiProvider(models.Model):
    """The HGC backend one agency uses in one app, where staff changed it from the default."""

    class App(models.TextChoices):
        AUDIENCE = "audience", "AudienceOS"
        REVOS = "revos", "RevOS"

    agency_link = models.ForeignKey(AgencyLink, on_delete=models.CASCADE, related_name="ai_providers")
    app_context = models.CharField(max_length=10, choices=App.choices)
    provider = models.CharField(max_length=20, choices=AiProvider.choices)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["agency_link", "app_context"]
        verbose_name = "HGC backend"
        constraints = [
            models.UniqueConstraint(fields=["agency_link", "app_context"], name="one_ai_provider_per_agency_and_app")
        ]

    def __str__(self) -> str:
        return f"{self.agency_link}: {self.get_app_context_display()} uses {self.get_provider_display()}"


class AiProviderChange(AuditedChange):
    """The audit trail of HGC backends: who changed which agency's app to what, when and why."""

    agency_link = models.ForeignKey(AgencyLink, on_delete=models.PROTECT, related_name="ai_provider_changes")
    app_context = models.CharField(max_length=10, choices=AgencyAiProvider.App.choices)

    class Meta(AuditedChange.Meta):
        verbose_name = "HGC backend change"
        constraints = [models.CheckConstraint(condition=~models.Q(reason=""), name="ai_provider_change_has_reason")]

    def __str__(self) -> str:
        return f"{self.agency_link} {self.app_context}: {self.old_value} → {self.new_value}"
