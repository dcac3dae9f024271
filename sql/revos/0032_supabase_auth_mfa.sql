-- RevOS's Supabase Auth second factors: auth.mfa_factors as GoTrue defines it (TOTP secrets,
-- phone and WebAuthn factors), so that a person's factors move with their account and their
-- authenticator app keeps working (migration_jobs/mapping.py). On a Supabase project the table
-- and its types exist already (GoTrue owns them) and this file leaves them as they are; on plain
-- PostgreSQL it creates them with GoTrue's columns, enums and unique keys.
--
-- Challenges (auth.mfa_challenges) and sessions do not move: they belong to sign-ins, which the
-- people make again in the unified project when its JWT secret differs.
DO $$
BEGIN
    IF to_regtype('auth.factor_type') IS NULL THEN
        CREATE TYPE auth.factor_type AS ENUM ('totp', 'webauthn', 'phone');
        ALTER TYPE auth.factor_type OWNER TO supabase_auth_admin;
    END IF;
    IF to_regtype('auth.factor_status') IS NULL THEN
        CREATE TYPE auth.factor_status AS ENUM ('unverified', 'verified');
        ALTER TYPE auth.factor_status OWNER TO supabase_auth_admin;
    END IF;
    IF to_regclass('auth.mfa_factors') IS NULL THEN
        CREATE TABLE auth.mfa_factors (
            id uuid PRIMARY KEY,
            user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
            friendly_name text,
            factor_type auth.factor_type NOT NULL,
            status auth.factor_status NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            secret text,
            phone text,
            last_challenged_at timestamptz UNIQUE,
            web_authn_credential jsonb,
            web_authn_aaguid uuid
        );
        CREATE INDEX factor_id_created_at_idx ON auth.mfa_factors (user_id, created_at);
        CREATE INDEX mfa_factors_user_id_idx ON auth.mfa_factors (user_id);
        CREATE UNIQUE INDEX mfa_factors_user_friendly_name_unique ON auth.mfa_factors (friendly_name, user_id)
            WHERE trim(friendly_name) <> '';
        CREATE UNIQUE INDEX unique_phone_factor_per_user ON auth.mfa_factors (user_id, phone);
        ALTER TABLE auth.mfa_factors OWNER TO supabase_auth_admin;
    END IF;
END $$;
