"""Supabase Auth accounts in the migration: which RevOS account or identity a unified one already is.

A person has one account in the unified project. A RevOS account whose email (any case) belongs
to an account there is that person's AudienceOS account: it is kept as it is (with its password)
and the RevOS account is not copied. The RevOS identities (Google, ...) are attached to it unless
one of the same provider is already there. An account of a person of another agency is never
merged into: the RevOS person is reported as a conflict and the run refuses to start.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import psycopg
from psycopg import sql

from migration_jobs.etl.plan import TablePlan

Match = tuple[str, str, str, str]  # source table, source id, target table, target id


@dataclass(frozen=True)
class AccountConflict:
    """A RevOS person whose email already has an account of another unified agency's person."""

    source_id: str
    email: str
    agency_id: str

    def __str__(self) -> str:
        return (
            f"user {self.email} already has an account of a person of unified agency {self.agency_id}: "
            "accounts are never merged across agencies; change the email in RevOS or move the person first"
        )


def source_emails(source: psycopg.Connection, plan: TablePlan, *, source_agency_id: UUID) -> dict[str, str]:
    """Lower-cased email -> id of the agency's rows of a table with emails (people, accounts)."""
    return dict(
        source.execute(
            sql.SQL("SELECT lower(email), id::text FROM {} WHERE email IS NOT NULL AND {}").format(
                plan.source_table, plan.scope_condition(source_agency_id)
            )
        ).fetchall()
    )


def accounts_match(
    source: psycopg.Connection,
    target: psycopg.Connection,
    plan: TablePlan,
    *,
    source_agency_id: UUID,
    target_agency_id: UUID,
) -> tuple[list[Match], list[AccountConflict]]:
    """RevOS accounts of the agency that are unified accounts already (same email, any case)."""
    by_email = source_emails(source, plan, source_agency_id=source_agency_id)
    if not by_email:
        return [], []
    found = target.execute(
        sql.SQL(
            'SELECT lower(a.email), a.id::text, u.agency_id::text FROM {} a LEFT JOIN public."user" u ON u.id = a.id'
            " WHERE lower(a.email) = ANY(%s) ORDER BY a.id"
        ).format(plan.target_table),
        [list(by_email)],
    ).fetchall()
    matches, conflicts = [], []
    for email, account_id, agency_id in found:
        source_id = by_email[email]
        if account_id == source_id:
            continue  # an earlier run of this agency inserted it
        if agency_id is not None and agency_id != str(target_agency_id):
            conflicts.append(AccountConflict(source_id, email, agency_id))
        else:
            matches.append((plan.source, source_id, plan.target, account_id))
    return matches, conflicts


def identities_match(
    source: psycopg.Connection,
    target: psycopg.Connection,
    plan: TablePlan,
    *,
    source_agency_id: UUID,
    people: dict[str, str],
) -> list[Match]:
    """RevOS identities that collide with a unified one, which is kept instead.

    `people` maps RevOS user ids to the unified accounts they were merged into. An identity
    collides when the same provider account (provider, provider_id) is already linked to anyone,
    or, for a merged person, when their account already has an identity of that provider (their
    AudienceOS email login stands for the RevOS one).
    """
    rows: list[tuple[str, str, str, str]] = source.execute(
        sql.SQL("SELECT id::text, provider, provider_id, user_id::text FROM {} WHERE {} ORDER BY id").format(
            plan.source_table, plan.scope_condition(source_agency_id)
        )
    ).fetchall()
    if not rows:
        return []
    existing = target.execute(
        sql.SQL(
            "SELECT id::text, provider, provider_id, user_id::text FROM {} WHERE user_id = ANY(%s::uuid[])"
            " OR (provider, provider_id) IN (SELECT * FROM unnest(%s::text[], %s::text[])) ORDER BY id"
        ).format(plan.target_table),
        [
            sorted({people.get(user_id, user_id) for *_, user_id in rows}),
            [provider for _, provider, _, _ in rows],
            [provider_id for _, _, provider_id, _ in rows],
        ],
    ).fetchall()
    by_provider_account = {(provider, provider_id): iid for iid, provider, provider_id, _ in existing}
    by_account_provider: dict[tuple[str, str], str] = {}
    for iid, provider, _, user_id in existing:
        by_account_provider.setdefault((user_id, provider), iid)
    matches = []
    for identity_id, provider, provider_id, user_id in rows:
        kept = by_provider_account.get((provider, provider_id))
        account = people.get(user_id, user_id)
        if kept is None and account != user_id:
            kept = by_account_provider.get((account, provider))
        if kept is not None and kept != identity_id:
            matches.append((plan.source, identity_id, plan.target, kept))
    return matches


def merged_people(
    source: psycopg.Connection, target: psycopg.Connection, *, accounts: list[Match], identities: list[Match]
) -> list[dict[str, str | list[str] | None]]:
    """For the plan: each person merged into their AudienceOS account, the password they will use
    and what happens to their RevOS identities, so staff can tell them."""
    if not accounts:
        return []
    revos_ids = [source_id for _, source_id, _, _ in accounts]
    revos = {
        row[0]: row[1:]
        for row in source.execute(
            "SELECT a.id::text, a.email, array_remove(array_agg(i.id::text || ':' || i.provider ORDER BY i.provider),"
            " NULL) FROM auth.users a LEFT JOIN auth.identities i ON i.user_id = a.id"
            " WHERE a.id = ANY(%s::uuid[]) GROUP BY a.id",
            [revos_ids],
        ).fetchall()
    }
    unified = {
        row[0]: row[1:]
        for row in target.execute(
            "SELECT a.id::text, a.email, coalesce(a.encrypted_password, '') <> '',"
            " array_remove(array_agg(DISTINCT i.provider), NULL)"
            " FROM auth.users a LEFT JOIN auth.identities i ON i.user_id = a.id"
            " WHERE a.id = ANY(%s::uuid[]) GROUP BY a.id",
            [[target_id for *_, target_id in accounts]],
        ).fetchall()
    }
    kept_identities = {source_id for _, source_id, _, _ in identities}
    people: list[dict[str, str | list[str] | None]] = []
    for _, source_id, _, target_id in accounts:
        revos_email, revos_identities = revos.get(source_id, (None, []))
        email, has_password, providers = unified[target_id]
        attached: list[str] = []
        not_attached: list[str] = []
        for item in revos_identities:
            identity_id, provider = item.split(":", 1)
            (not_attached if identity_id in kept_identities else attached).append(provider)
        people.append(
            {
                "email": email,
                "revos_email": revos_email,
                "revos_user_id": source_id,
                "unified_user_id": target_id,
                "password": "their AudienceOS password (the RevOS one stops working)"
                if has_password
                else f"none: they sign in with {', '.join(sorted(providers + attached)) or 'a password reset'}",
                "identities_attached": sorted(attached),
                "identities_already_there": sorted(not_attached),
            }
        )
    return people
