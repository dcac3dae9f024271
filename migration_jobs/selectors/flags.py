"""Feature flag reads: who an agency is and what is on for it (may it be cut over: selectors/agency_state.py).

Evaluation for one agency and flag: its override if it has one, else the global switch, else its
rollout bucket. The bucket is a hash of flag name and agency id into 0..99 and the agency is in iff
bucket < percentage, so raising the percentage only ever adds agencies. A verification-gated flag
(`unified_db`) is its override alone: the services refuse to turn one on globally or by percentage,
and a value put in the table past them (SQL, an old row) must not switch agencies never cut over.
The audited changes live in migration_jobs.services.flags.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import connections
from redis.exceptions import RedisError

from migration_jobs.models.flags import DEFAULT_AI_PROVIDERS, AgencyAiProvider, AgencyFlagOverride, FeatureFlag
from migration_jobs.models.runs import AgencyLink
from migration_jobs.selectors.agency_state import agency_cutover_refusal

logger = logging.getLogger(__name__)

APP_CONTEXTS = ("revos", "audience")
# The flag the cutover and switch-back runs switch (services/flags.py `unified_db_switch`).
UNIFIED_DB = "unified_db"
CACHE_VERSION_KEY = "flags:version"
# Bounds how long an entry written under a lost version key can live; changes invalidate at once.
CACHE_TIMEOUT = 300


@dataclass(frozen=True)
class Agency:
    """An agency as the apps name it: the id its buckets hash, and its RevOS link when it has one."""

    agency_id: uuid.UUID
    link: AgencyLink | None = None


# --- who the agency is -------------------------------------------------------------------------


def agency_flag_id(*, agency_link: AgencyLink) -> uuid.UUID:
    """The id a linked agency's buckets hash: the unified id once confirmed, the RevOS id before."""
    return agency_link.unified_agency_id or agency_link.revos_agency_id


def agency_resolve(*, agency_id: uuid.UUID) -> Agency | None:
    """Find the agency either app names: a RevOS or unified id of a link, or a unified-only agency."""
    link = AgencyLink.objects.filter(revos_agency_id=agency_id).first()
    # Several RevOS agencies may merge into one unified agency; the oldest link then speaks for it.
    link = link or AgencyLink.objects.filter(unified_agency_id=agency_id).order_by("id").first()
    if link is not None:
        return Agency(agency_id=agency_flag_id(agency_link=link), link=link)
    with connections["unified"].cursor() as cursor:
        cursor.execute("SELECT 1 FROM agency WHERE id = %s", [agency_id])
        if cursor.fetchone():
            return Agency(agency_id=agency_id)
    return None


# --- evaluation --------------------------------------------------------------------------------


def flag_bucket(*, flag_name: str, agency_id: uuid.UUID) -> int:
    """A stable 0..99 for this flag and agency; salted by the flag so flags roll out to different agencies."""
    digest = hashlib.sha256(f"{flag_name}:{agency_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def flag_evaluate(*, flag: FeatureFlag, agency_id: uuid.UUID, override: bool | None) -> bool:
    if override is not None or flag.requires_verification:
        return bool(override)
    if flag.enabled_globally:
        return True
    return flag_bucket(flag_name=flag.name, agency_id=agency_id) < flag.rollout_percentage


def flags_for_agency(*, agency: Agency, app_context: str | None = None) -> dict[str, bool]:
    """Every flag in force for the agency, left out those meant only for the other app."""
    flags = FeatureFlag.objects.all()
    if app_context:
        flags = flags.filter(app_context__in=[FeatureFlag.AppContext.BOTH, app_context])
    overrides = {}
    if agency.link is not None:
        overrides = dict(AgencyFlagOverride.objects.filter(agency_link=agency.link).values_list("flag_id", "enabled"))
    return {
        flag.name: flag_evaluate(flag=flag, agency_id=agency.agency_id, override=overrides.get(flag.pk))
        for flag in flags
    }


def flags_for_agency_cached(*, agency: Agency, app_context: str | None = None) -> dict[str, bool]:
    """`flags_for_agency` through the cache; an unreachable Redis costs speed, never the answer."""
    key = f"{agency.agency_id}:{app_context or 'all'}"
    return _through_cache("flags", key, lambda: flags_for_agency(agency=agency, app_context=app_context))


def ai_providers_for_agency(*, agency: Agency) -> dict[str, str]:
    """app_context -> the HGC backend the agency uses there: staff's choice, else the default."""
    chosen = {}
    if agency.link is not None:
        chosen = dict(AgencyAiProvider.objects.filter(agency_link=agency.link).values_list("app_context", "provider"))
    return {str(app): chosen.get(app, str(provider)) for app, provider in DEFAULT_AI_PROVIDERS.items()}


def ai_providers_for_agency_cached(*, agency: Agency) -> dict[str, str]:
    return _through_cache("ai", str(agency.agency_id), lambda: ai_providers_for_agency(agency=agency))


AnswerT = TypeVar("AnswerT")  # what a cached evaluation answers


def _through_cache(kind: str, key: str, compute: Callable[[], AnswerT]) -> AnswerT:
    """The cached answer under the current version (every change moves it), else `compute()`."""
    try:
        full_key = f"{kind}:v{flags_cache_version()}:{key}"
        cached: AnswerT | None = cache.get(full_key)
    except RedisError:
        logger.warning("flag cache unreachable; evaluating %s %s uncached", kind, key, exc_info=True)
        return compute()
    if cached is not None:
        return cached
    answer = compute()
    try:
        cache.set(full_key, answer, CACHE_TIMEOUT)
    except RedisError:
        logger.warning("flag cache unreachable; %s answer for %s not cached", kind, key, exc_info=True)
    return answer


def flags_cache_version() -> int:
    version: int | None = cache.get(CACHE_VERSION_KEY)
    if version is None:
        # A lost version key restarts from the clock, so it never meets a version it already used.
        cache.add(CACHE_VERSION_KEY, time.time_ns(), timeout=None)
        version = cache.get(CACHE_VERSION_KEY)
    return version


def agency_flag_enabled(*, flag_name: str, agency_link: AgencyLink) -> bool:
    """Whether a flag is on for a linked agency now (False for an unknown flag), uncached."""
    flag = FeatureFlag.objects.filter(name=flag_name).first()
    if flag is None:
        return False
    override = AgencyFlagOverride.objects.filter(flag=flag, agency_link=agency_link).first()
    return flag_evaluate(
        flag=flag,
        agency_id=agency_flag_id(agency_link=agency_link),
        override=override.enabled if override else None,
    )


def flag_agency_rows(*, flag: FeatureFlag) -> list[dict[str, Any]]:
    """Each RevOS agency with its override, the state in force, and (if gated) why it may not be on."""
    overrides = dict(AgencyFlagOverride.objects.filter(flag=flag).values_list("agency_link_id", "enabled"))
    rows = []
    for link in AgencyLink.objects.order_by("name"):
        agency_id = agency_flag_id(agency_link=link)
        override = overrides.get(link.pk)
        rows.append(
            {
                "link": link,
                "agency_id": agency_id,
                "bucket": flag_bucket(flag_name=flag.name, agency_id=agency_id),
                "override": override,
                "enabled": flag_evaluate(flag=flag, agency_id=agency_id, override=override),
                "refusal": agency_cutover_refusal(agency_link=link) if flag.requires_verification else None,
            }
        )
    return rows
