-- Supabase Auth second factors in the unified project: auth.mfa_factors as GoTrue defines it,
-- where the project does not have it (plain PostgreSQL; on Supabase GoTrue owns it and the block
-- leaves it as it is). The migration copies each RevOS person's factors with their account, so a
-- TOTP authenticator keeps working (migration_jobs/mapping.py).
--
-- The copies are read-only for the apps while RevOS holds the agency's truth, as the accounts are
-- (0062_migrated_rows_guard.sql): GoTrue's challenge bookkeeping (last_challenged_at, updated_at)
-- passes, as through the capture.
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

CREATE TRIGGER controlplane_guard AFTER INSERT OR UPDATE OR DELETE ON auth.mfa_factors FOR EACH ROW
    WHEN (current_user IN ('anon', 'authenticated', 'service_role', 'supabase_auth_admin'))
    EXECUTE FUNCTION controlplane.guard_row('user_id', 'user', 'agency_id', 'volatile:last_challenged_at', 'volatile:updated_at');
ALTER TABLE auth.mfa_factors ENABLE ALWAYS TRIGGER controlplane_guard;
