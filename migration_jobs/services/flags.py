"""Feature flags: the audited, interlocked ways to change what is on for an agency.

The reads (evaluation, who an agency is, the cutover interlock's reason) are
migration_jobs.selectors.flags.

Verification-gated flags are never on globally or by percentage: each agency is turned on by its own
override, and only once its latest verification passed after its latest data change. `unified_db` is
stricter still: only the cutover and switch-back runs change it (`unified_db_switch`), because they
fence the side that stops taking writes first; set by hand, an agency would switch with the writes
of its last seconds lost. Staff who try are sent to "Cut over" / "Switch back" on the agency page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Model

from migration_jobs.models.flags import (
    DEFAULT_AI_PROVIDERS,
    AgencyAiProvider,
    AgencyFlagOverride,
    AiProvider,
    AiProviderChange,
    FeatureFlag,
    FlagChange,
)
from migration_jobs.models.runs import AgencyLink, MigrationRun
from migration_jobs.refusals import CutoverRefused
from migration_jobs.run_kinds import run_kind_get
from migration_jobs.selectors.agency_state import agency_cutover_refusal
from migration_jobs.selectors.flags import (
    CACHE_VERSION_KEY,
    UNIFIED_DB,
    agency_flag_id,
    flag_evaluate,
    flags_cache_version,
)

logger = logging.getLogger(__name__)


def flags_cache_invalidate() -> None:
    """Retire every cached answer at once by moving to a new version."""
    try:
        cache.incr(CACHE_VERSION_KEY)
    except ValueError:  # no version yet: nothing cached under one either
        flags_cache_version()


def flags_cache_invalidate_on_commit() -> None:
    """Invalidate once the change is visible: earlier, a reader could re-cache the old state."""
    transaction.on_commit(flags_cache_invalidate, robust=True)


ChangeT = TypeVar("ChangeT", FlagChange, AiProviderChange)  # the two audit trails

# --- audited changes ---------------------------------------------------------------------------


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("A reason is required for every flag change.")
    return reason


def _record(
    *,
    flag: FeatureFlag,
    field: str,
    old: str,
    new: str,
    reason: str,
    actor: User | None,
    agency_link: AgencyLink | None = None,
) -> FlagChange:
    return _audited(
        FlagChange,
        log_on=flag,
        reason=reason,
        actor=actor,
        flag=flag,
        agency_link=agency_link,
        field=field,
        old_value=old,
        new_value=new,
    )


def _audited(
    trail: type[ChangeT], *, log_on: Model, reason: str, actor: User | None, log_prefix: str = "", **fields: Any
) -> ChangeT:
    """One change in its audit trail (`trail`: a change model) and in the admin's history of `log_on`;
    the cached flag answers retire once it commits."""
    change = trail.objects.create(reason=reason, actor=actor, **fields)
    _admin_log(actor=actor, obj=log_on, message=f"{log_prefix}{change}. Reason: {reason}")
    flags_cache_invalidate_on_commit()
    return change


def _admin_log(*, actor: User | None, obj: Model, message: str) -> None:
    """The change in the admin's own history of `obj` too, when a person made it."""
    if actor is not None:
        LogEntry.objects.log_actions(user_id=actor.pk, queryset=[obj], action_flag=CHANGE, change_message=message)


def _on_off(value: bool | None) -> str:
    return "default" if value is None else ("on" if value else "off")


def unified_db_refusal(*, agency_link: AgencyLink | None = None) -> str:
    """Why staff may not set `unified_db` by hand, and where to go instead."""
    where = f"on {agency_link}'s page" if agency_link else "on each agency's page (or “Cut over selected…”)"
    return (
        f"{UNIFIED_DB} is switched only by a cutover or switch-back run, which stops writes on the side being"
        f" left before it switches, so none is lost; use “Cut over” or “Switch back” {where} under RevOS agencies."
    )


def flag_set_global(*, flag: FeatureFlag, enabled: bool, reason: str, actor: User | None) -> FlagChange | None:
    """Turn a flag on or off for every agency without an override; None if it already was."""
    return _flag_setting_change(
        flag=flag,
        attribute="enabled_globally",
        value=enabled,
        gated_reason="use the agency overrides instead of the global switch" if enabled else None,
        field="global",
        shown=_on_off,
        reason=reason,
        actor=actor,
    )


def flag_set_percentage(*, flag: FeatureFlag, percentage: int, reason: str, actor: User | None) -> FlagChange | None:
    """Roll a flag out to `percentage`% of agencies (by bucket); None if it already was."""
    if not 0 <= percentage <= 100:
        raise ValidationError("The rollout percentage is a whole number from 0 to 100.")
    return _flag_setting_change(
        flag=flag,
        attribute="rollout_percentage",
        value=percentage,
        gated_reason="a percentage rollout would skip that check" if percentage else None,
        field="percentage",
        shown=lambda value: f"{value}%",
        reason=reason,
        actor=actor,
    )


def _flag_setting_change(
    *,
    flag: FeatureFlag,
    attribute: str,
    value: bool | int,
    gated_reason: str | None,
    field: str,
    shown: Callable[[Any], str],
    reason: str,
    actor: User | None,
) -> FlagChange | None:
    """Change one flag-wide setting under a row lock and record it; None when nothing changes.

    A flag that needs verification is turned on agency by agency, so a setting that would turn it
    on for agencies at large (`gated_reason` says how) is refused. `unified_db` has no flag-wide
    setting at all: on for every agency would switch each one not cut over without its fence.
    """
    if flag.name == UNIFIED_DB:
        raise CutoverRefused(
            f"{UNIFIED_DB} has no global switch or rollout percentage (it would switch every agency without"
            f" fencing its writes). {unified_db_refusal()}"
        )
    reason = _require_reason(reason)
    with transaction.atomic():
        flag = FeatureFlag.objects.select_for_update().get(pk=flag.pk)
        old = getattr(flag, attribute)
        if old == value:
            return None
        if gated_reason and flag.requires_verification:
            raise CutoverRefused(
                f"{flag.name} is turned on agency by agency, each after its verification passed; {gated_reason}"
            )
        setattr(flag, attribute, value)
        flag.save(update_fields=[attribute, "updated_at"])
        return _record(flag=flag, field=field, old=shown(old), new=shown(value), reason=reason, actor=actor)


def flag_set_for_agency(
    *, flag: FeatureFlag, agency_link: AgencyLink, enabled: bool | None, reason: str, actor: User | None
) -> FlagChange | None:
    """Force a flag on or off for one agency (None: follow the global switch and percentage again).

    Raises CutoverRefused for `unified_db`, whichever way (see `unified_db_refusal`), and when the
    agency would end up with another verification-gated flag on without a passing verification newer
    than its latest migration or rollback. Turning off is never gated.
    """
    if flag.name == UNIFIED_DB:
        raise CutoverRefused(unified_db_refusal(agency_link=agency_link))
    return _override_set(flag=flag, agency_link=agency_link, enabled=enabled, reason=reason, actor=actor)


def unified_db_switch(*, run: MigrationRun) -> FlagChange | None:
    """`unified_db` on (a cutover run) or off (a switch-back run) for the run's agency: the only way it changes.

    The run calls it in its switch step, once the fence holds and the last changes are applied and
    verified. Any other caller, or a run that is not running (finished, or taken over by the reconcile),
    is refused: nothing but a live fenced run may switch an agency.
    """
    enabled = run_kind_get(run.kind).unified_db  # which way its kind switches, if it does
    if enabled is None or not MigrationRun.objects.filter(pk=run.pk, status=MigrationRun.Status.RUNNING).exists():
        raise CutoverRefused(f"only a running cutover or switch-back run switches {UNIFIED_DB}; #{run.pk} is not one")
    return _override_set(
        flag=FeatureFlag.objects.get(name=UNIFIED_DB),
        agency_link=run.agency_link,
        enabled=enabled,
        reason=run.reason or run.get_kind_display().lower(),
        actor=run.requested_by,
    )


def _override_set(
    *, flag: FeatureFlag, agency_link: AgencyLink, enabled: bool | None, reason: str, actor: User | None
) -> FlagChange | None:
    """The override itself, under the flag's row lock, behind the verification interlock, recorded."""
    reason = _require_reason(reason)
    with transaction.atomic():
        flag = FeatureFlag.objects.select_for_update().get(pk=flag.pk)
        override = AgencyFlagOverride.objects.filter(flag=flag, agency_link=agency_link).first()
        old = override.enabled if override else None
        if old == enabled:
            return None
        agency_id = agency_flag_id(agency_link=agency_link)
        if flag.requires_verification and flag_evaluate(flag=flag, agency_id=agency_id, override=enabled):
            refusal = agency_cutover_refusal(agency_link=agency_link)
            if refusal:
                raise CutoverRefused(f"{flag.name} stays off for {agency_link}: {refusal}.")
        if enabled is None:  # there was one: `old` differs
            AgencyFlagOverride.objects.filter(flag=flag, agency_link=agency_link).delete()
        else:
            AgencyFlagOverride.objects.update_or_create(
                flag=flag, agency_link=agency_link, defaults={"enabled": enabled, "updated_by": actor}
            )
        return _record(
            flag=flag,
            field="override",
            old=_on_off(old),
            new=_on_off(enabled),
            reason=reason,
            actor=actor,
            agency_link=agency_link,
        )


# --- the HGC backend per app ---------------------------------------------------------------------


def ai_provider_set(
    *, agency_link: AgencyLink, app_context: str, provider: str, reason: str, actor: User | None
) -> AiProviderChange | None:
    """Choose the HGC backend an agency's app uses; recorded with the reason. None if it already was."""
    reason = _require_reason(reason)
    if app_context not in AgencyAiProvider.App.values:
        raise ValidationError(
            f"app_context must be one of {', '.join(AgencyAiProvider.App.values)}, not {app_context!r}."
        )
    if provider not in AiProvider.values:
        raise ValidationError(f"The HGC backend must be one of {', '.join(AiProvider.values)}, not {provider!r}.")
    with transaction.atomic():
        current = AgencyAiProvider.objects.select_for_update().filter(agency_link=agency_link, app_context=app_context)
        old = current.values_list("provider", flat=True).first() or str(DEFAULT_AI_PROVIDERS[app_context])
        if old == provider:
            return None
        AgencyAiProvider.objects.update_or_create(
            agency_link=agency_link, app_context=app_context, defaults={"provider": provider, "updated_by": actor}
        )
        return _audited(
            AiProviderChange,
            log_on=agency_link,
            log_prefix="HGC backend ",
            reason=reason,
            actor=actor,
            agency_link=agency_link,
            app_context=app_context,
            old_value=old,
            new_value=provider,
        )
