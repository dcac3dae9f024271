-- Shared auth (Phase 3): Supabase Auth's accounts, the access-token hook that puts agency_id and
-- app_context into every JWT, and the app switch.
--
-- On a Supabase project auth.users, auth.identities, auth.uid() and supabase_auth_admin already
-- exist (GoTrue owns them) and the blocks below leave them exactly as they are. On plain
-- PostgreSQL (CI, the embedded default) they create the same tables, with the columns, generated
-- columns and unique keys of GoTrue's own migrations, so the migration and the tests work against
-- what production has. public."user".id is the auth user's id, as on Supabase.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_auth_admin') THEN
        CREATE ROLE supabase_auth_admin NOLOGIN NOINHERIT;
    END IF;
END $$;

DO $$
BEGIN
    IF to_regclass('auth.users') IS NULL THEN
        -- GoTrue's role owns its tables; the foreign-key checks run as the owner. Giving it a
        -- table needs it to have CREATE on the schema, unless a superuser runs this (on a new
        -- database beside a Supabase project, `postgres` runs it, and the shim made `auth`).
        GRANT USAGE, CREATE ON SCHEMA auth TO supabase_auth_admin;
        CREATE TABLE auth.users (
            instance_id uuid,
            id uuid PRIMARY KEY,
            aud varchar(255),
            role varchar(255),
            email varchar(255),
            encrypted_password varchar(255),
            email_confirmed_at timestamptz,
            invited_at timestamptz,
            confirmation_token varchar(255),
            confirmation_sent_at timestamptz,
            recovery_token varchar(255),
            recovery_sent_at timestamptz,
            email_change_token_new varchar(255),
            email_change varchar(255),
            email_change_sent_at timestamptz,
            last_sign_in_at timestamptz,
            raw_app_meta_data jsonb,
            raw_user_meta_data jsonb,
            is_super_admin boolean,
            created_at timestamptz,
            updated_at timestamptz,
            phone text UNIQUE DEFAULT NULL,
            phone_confirmed_at timestamptz,
            phone_change text DEFAULT '',
            phone_change_token varchar(255) DEFAULT '',
            phone_change_sent_at timestamptz,
            confirmed_at timestamptz GENERATED ALWAYS AS (least(email_confirmed_at, phone_confirmed_at)) STORED,
            email_change_token_current varchar(255) DEFAULT '',
            email_change_confirm_status smallint DEFAULT 0
                CHECK (email_change_confirm_status >= 0 AND email_change_confirm_status <= 2),
            banned_until timestamptz,
            reauthentication_token varchar(255) DEFAULT '',
            reauthentication_sent_at timestamptz,
            is_sso_user boolean NOT NULL DEFAULT false,
            deleted_at timestamptz,
            is_anonymous boolean NOT NULL DEFAULT false
        );
        CREATE UNIQUE INDEX users_email_partial_key ON auth.users (email) WHERE is_sso_user = false;
        CREATE INDEX users_instance_id_email_idx ON auth.users (instance_id, lower(email::text));
        ALTER TABLE auth.users OWNER TO supabase_auth_admin;
    END IF;
    IF to_regclass('auth.identities') IS NULL THEN
        CREATE TABLE auth.identities (
            provider_id text NOT NULL,
            user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
            identity_data jsonb NOT NULL,
            provider text NOT NULL,
            last_sign_in_at timestamptz,
            created_at timestamptz,
            updated_at timestamptz,
            email text GENERATED ALWAYS AS (lower(identity_data ->> 'email')) STORED,
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            CONSTRAINT identities_provider_id_provider_unique UNIQUE (provider_id, provider)
        );
        CREATE INDEX identities_user_id_idx ON auth.identities (user_id);
        CREATE INDEX identities_email_idx ON auth.identities (email text_pattern_ops);
        ALTER TABLE auth.identities OWNER TO supabase_auth_admin;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'auth' AND p.proname = 'uid'
    ) THEN
        -- Supabase's definition: the JWT's sub, from either way PostgREST passes claims.
        CREATE FUNCTION auth.uid() RETURNS uuid
        LANGUAGE sql STABLE
        AS $fn$
            SELECT coalesce(
                nullif(current_setting('request.jwt.claim.sub', true), ''),
                (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
            )::uuid
        $fn$;
        GRANT EXECUTE ON FUNCTION auth.uid() TO anon, authenticated, service_role;
    END IF;
END $$;

-- The app each person last chose. In its own schema, which the API does not expose: only
-- switch_app writes it and only the hook reads it. Deleting an account forgets its choice.
CREATE SCHEMA IF NOT EXISTS private;
REVOKE ALL ON SCHEMA private FROM PUBLIC;
CREATE TABLE private.app_choice (
    user_id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    app_context text NOT NULL CONSTRAINT app_choice_app_context_check CHECK (app_context IN ('audience', 'revos')),
    chosen_at timestamptz NOT NULL DEFAULT now()
);

-- Supabase's Custom Access Token Hook contract: GoTrue calls it as supabase_auth_admin with
-- {"user_id", "claims", "authentication_method"} and signs the "claims" it returns. The hook
-- only adds agency_id and app_context; every other claim (sub, role, aal, session_id, ...) stays
-- as GoTrue made it, so a refreshed token keeps its session. A person without a public."user"
-- row gets no agency_id, and every policy comparison with a missing claim is false: no rows.
-- SECURITY DEFINER (owned by the schema's owner) reads public."user" and private.app_choice
-- without giving supabase_auth_admin its own policies on tenant tables.
CREATE OR REPLACE FUNCTION public.custom_access_token_hook(event jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    account uuid := (event ->> 'user_id')::uuid;
    claims jsonb := coalesce(event -> 'claims', '{}'::jsonb) - 'agency_id' - 'app_context';
    agency uuid;
    chosen text;
BEGIN
    SELECT u.agency_id INTO agency FROM public."user" u WHERE u.id = account;
    SELECT c.app_context INTO chosen FROM private.app_choice c WHERE c.user_id = account;
    -- Default: the app the account came from (the migration marks RevOS accounts).
    chosen := coalesce(chosen, claims -> 'app_metadata' ->> 'app_origin', 'audience');
    IF agency IS NOT NULL THEN
        claims := claims || jsonb_build_object('agency_id', agency);
    END IF;
    claims := claims || jsonb_build_object('app_context', chosen);
    RETURN jsonb_set(event, '{claims}', claims);
END;
$$;
REVOKE EXECUTE ON FUNCTION public.custom_access_token_hook(jsonb) FROM PUBLIC, anon, authenticated, service_role;
GRANT USAGE ON SCHEMA public TO supabase_auth_admin;
GRANT EXECUTE ON FUNCTION public.custom_access_token_hook(jsonb) TO supabase_auth_admin;

-- The app toggle: records the signed-in person's choice; the app then refreshes its session and
-- the hook issues a token for the same session with the new app_context.
CREATE OR REPLACE FUNCTION public.switch_app(app_context text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    account uuid := auth.uid();
BEGIN
    IF account IS NULL THEN
        RAISE EXCEPTION 'switch_app needs a signed-in user: the request carries no JWT sub'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF app_context IS NULL OR app_context NOT IN ('audience', 'revos') THEN
        RAISE EXCEPTION 'app_context must be ''audience'' or ''revos'', not %', coalesce(quote_literal(app_context), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM auth.users u WHERE u.id = account) THEN
        RAISE EXCEPTION 'switch_app: no account % in auth.users', account USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO private.app_choice AS c (user_id, app_context) VALUES (account, switch_app.app_context)
    ON CONFLICT (user_id) DO UPDATE SET app_context = EXCLUDED.app_context, chosen_at = now();
    RETURN switch_app.app_context;
END;
$$;
REVOKE EXECUTE ON FUNCTION public.switch_app(text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.switch_app(text) TO authenticated;
