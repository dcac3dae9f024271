"""Sign-ins across a switch: what the agency's people see when unified_db changes for it.

Sessions and refresh tokens do not move with an account (migration_jobs/mapping.py moves the
accounts, identities and second factors): they belong to the Supabase project that issued them.
When the two projects sign their tokens with different JWT secrets (each Supabase project has its
own unless set otherwise), a token from one is refused by the other, so the agency's people sign in
again at the moment unified_db changes for their agency (a cutover, or a switch back). The flags API
tells the apps when that was (`sessions_reset_at`), so they can drop the tokens they hold rather
than send ones the other project refuses.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from migration_jobs.models.flags import FlagChange
from migration_jobs.models.runs import AgencyLink
from migration_jobs.selectors.flags import UNIFIED_DB


def sessions_notice(*, people: int | None = None) -> str:
    """What a cutover means for the agency's sign-ins, for the plan and the cutover page."""
    who = "The agency's people" if people is None else f"The agency's {people} people with an account"
    if settings.AUTH_JWT_SECRET_SHARED:
        return (
            f"{who} keep their access token until it expires (the two projects share their JWT secret, "
            "AUTH_JWT_SECRET_SHARED); their sessions and refresh tokens stay in RevOS's project, so each "
            "signs in again at their next token refresh."
        )
    return (
        f"{who} sign in again at the cutover (and at a switch back): sessions and refresh tokens stay in the "
        "project that issued them, and the two projects' JWT secrets differ. Passwords, identities and "
        "second factors (TOTP) move with the accounts. The flags API's sessions_reset_at says when it happened."
    )


def agency_sessions_reset_at(*, link: AgencyLink) -> datetime | None:
    """When the agency's people last had to sign in again: the latest change of unified_db for it,
    or None (never switched, or the projects share their JWT secret, so the tokens stay valid)."""
    if settings.AUTH_JWT_SECRET_SHARED:
        return None
    change = (
        FlagChange.objects.filter(flag__name=UNIFIED_DB, agency_link=link, field=FlagChange.Field.OVERRIDE)
        .order_by("-created_at", "-id")
        .first()
    )
    return change.created_at if change is not None else None
