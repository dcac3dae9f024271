-- RevOS's Supabase Auth accounts: auth.users and auth.identities as GoTrue defines them, auth.uid()
-- and supabase_auth_admin. On the RevOS Supabase project they exist already and nothing here
-- touches them; on plain PostgreSQL they are created the same as in sql/unified/0040, so the
-- migration moves accounts between the two shapes production has. public.users.id is the auth
-- user's id. The API roles are created here too when missing (RevOS may be its own cluster).
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
