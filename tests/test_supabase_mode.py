"""The Supabase role mode (`bin/stack --supabase`) is what a hosted project is: checked, not assumed.

In the default mode these skip: the control plane is a superuser on its own servers there.
"""

from __future__ import annotations

import pytest
from django.db import connections

from tests.conftest import SUPABASE_PROJECT_TEMPLATE

pytestmark = [
    pytest.mark.django_db(databases=["default", "unified", "revos"], transaction=True),
    pytest.mark.skipif(not SUPABASE_PROJECT_TEMPLATE, reason="the Supabase role mode is off (bin/stack --supabase)"),
]

MEMBERSHIPS = {
    "anon",
    "authenticated",
    "service_role",
    "supabase_auth_admin",
    "pg_monitor",
    "pg_read_all_data",
    "pg_signal_backend",
}


def query(alias: str, statement: str, params=()) -> list[tuple]:
    with connections[alias].cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


@pytest.mark.parametrize("alias", ["default", "unified", "revos"])
def test_the_control_plane_connects_as_postgres_which_is_not_a_superuser(alias):
    [(user, superuser, createrole, createdb, replication, bypassrls)] = query(
        alias,
        "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls"
        " FROM pg_roles WHERE rolname = current_user",
    )
    assert (user, superuser, createrole, createdb, replication, bypassrls) == (
        "postgres",
        False,
        True,
        True,
        True,
        True,
    )
    granted = query(
        alias,
        "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
        " WHERE m.member = 'postgres'::regrole",
    )
    assert {name for (name,) in granted} == MEMBERSHIPS


@pytest.mark.parametrize("alias", ["unified", "revos"])
def test_auth_is_gotrues_and_belongs_to_it_not_to_postgres(alias):
    owners = dict(
        query(
            alias,
            "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c"
            " WHERE c.relnamespace = 'auth'::regnamespace AND c.relkind = 'r'",
        )
    )
    assert {"users", "identities", "sessions", "refresh_tokens", "mfa_factors", "mfa_challenges"} <= set(owners)
    assert set(owners.values()) == {"supabase_auth_admin"}
    assert query(alias, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'auth'") == [
        ("supabase_admin",)
    ]
    columns = dict(
        query(
            alias,
            "SELECT attrelid::regclass::text || '.' || attname, concat(attgenerated, CASE WHEN attnotnull THEN '!' END)"
            " FROM pg_attribute WHERE attrelid IN ('auth.users'::regclass, 'auth.identities'::regclass)"
            " AND attnum > 0 AND NOT attisdropped",
        )
    )
    assert columns["auth.users.confirmed_at"] == "s"  # generated, stored
    assert columns["auth.identities.email"] == "s"
    assert columns["auth.identities.provider_id"] == "!"  # NOT NULL
    assert {columns[f"auth.users.{c}"] for c in ("is_sso_user", "is_anonymous")} == {"!"}
    assert "auth.users.deleted_at" in columns


def test_the_api_roles_get_every_privilege_on_a_new_public_table_by_default():
    query("unified", "CREATE TABLE public.supabase_mode_probe (id int)")
    try:
        granted = query(
            "unified",
            "SELECT r, bool_and(has_table_privilege(r, 'public.supabase_mode_probe', p)) FROM unnest(ARRAY['anon',"
            " 'authenticated', 'service_role']) r, unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',"
            " 'REFERENCES', 'TRIGGER']) p GROUP BY r ORDER BY r",
        )
    finally:
        query("unified", "DROP TABLE public.supabase_mode_probe")
    assert granted == [("anon", True), ("authenticated", True), ("service_role", True)]
