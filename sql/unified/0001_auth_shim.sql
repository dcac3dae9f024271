-- Supabase-compatible auth shim: the roles and auth.jwt() that the RLS policies use.
-- On Supabase all of this already exists and nothing here changes it; on plain PostgreSQL 15+
-- it supplies the same behaviour: auth.jwt() reads the claims PostgREST puts in
-- request.jwt.claims, and no claims means NULL, so every policy comparison is false.
-- Grants are made only on what the shim made: on Supabase `auth` belongs to its bootstrap
-- superuser, so `postgres` could not grant on it ("no privileges were granted"), nor needs to.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    END IF;
END $$;

CREATE SCHEMA IF NOT EXISTS auth;
DO $$
BEGIN
    IF NOT (has_schema_privilege('anon', 'auth', 'USAGE') AND has_schema_privilege('authenticated', 'auth', 'USAGE')
            AND has_schema_privilege('service_role', 'auth', 'USAGE')) THEN
        GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
    END IF;
END $$;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'auth' AND p.proname = 'jwt'
    ) THEN
        CREATE FUNCTION auth.jwt() RETURNS jsonb
        LANGUAGE sql STABLE
        AS $fn$
            SELECT coalesce(
                nullif(current_setting('request.jwt.claim', true), ''),
                nullif(current_setting('request.jwt.claims', true), '')
            )::jsonb
        $fn$;
        GRANT EXECUTE ON FUNCTION auth.jwt() TO anon, authenticated, service_role;
    END IF;
END $$;

GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
