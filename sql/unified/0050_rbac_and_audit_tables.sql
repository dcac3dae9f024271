-- AudienceOS tables the plan counts (26+ where the first plan said 19) that the baseline lacked:
-- role-based access control beside `permission` (roles, who holds which, what each role may do)
-- and the audit trail. On the production AudienceOS they exist already, so every statement is
-- IF NOT EXISTS: on a database that has them this file only records the version.
--
-- They serve both apps (app_context 'both', category "shared" in migration_jobs/tenancy.py) and,
-- like every tenant table, carry agency_id so that one policy pattern and one tenant foreign key
-- pattern (0053) cover them.
CREATE TABLE IF NOT EXISTS role (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    name varchar(50) NOT NULL,
    description text,
    app_context varchar(20) NOT NULL DEFAULT 'both'
        CONSTRAINT role_app_context_check CHECK (app_context IN ('audience', 'revos', 'both')),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT role_agency_name_key UNIQUE (agency_id, name)
);

CREATE TABLE IF NOT EXISTS user_role (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    user_id uuid NOT NULL REFERENCES "user"(id),
    role_id uuid NOT NULL REFERENCES role(id),
    app_context varchar(20) NOT NULL DEFAULT 'both'
        CONSTRAINT user_role_app_context_check CHECK (app_context IN ('audience', 'revos', 'both')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS role_permission (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    role_id uuid NOT NULL REFERENCES role(id),
    permission_id uuid NOT NULL REFERENCES permission(id),
    app_context varchar(20) NOT NULL DEFAULT 'both'
        CONSTRAINT role_permission_app_context_check CHECK (app_context IN ('audience', 'revos', 'both')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Who did what to which row; written by the apps, read by agency admins.
CREATE TABLE IF NOT EXISTS audit_log (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    actor_id uuid REFERENCES "user"(id),
    action varchar(100) NOT NULL,
    entity_table varchar(100),
    entity_id uuid,
    details jsonb NOT NULL DEFAULT '{}',
    app_context varchar(20) NOT NULL DEFAULT 'both'
        CONSTRAINT audit_log_app_context_check CHECK (app_context IN ('audience', 'revos', 'both')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- RLS on from the start (deny-all until 0051 gives each table its policy), the policy column
-- indexed as 0008 does for every table, and the API roles' privileges as on Supabase.
ALTER TABLE role ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_role ENABLE ROW LEVEL SECURITY;
ALTER TABLE role_permission ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
CREATE INDEX IF NOT EXISTS user_role_agency_app_idx ON user_role (agency_id, app_context);
CREATE INDEX IF NOT EXISTS role_permission_agency_app_idx ON role_permission (agency_id, app_context);
CREATE INDEX IF NOT EXISTS audit_log_agency_app_idx ON audit_log (agency_id, app_context);
-- role's UNIQUE (agency_id, name) does not lead with app_context; the policy filters on both.
CREATE INDEX IF NOT EXISTS role_agency_app_idx ON role (agency_id, app_context);
GRANT SELECT, INSERT, UPDATE, DELETE ON role, user_role, role_permission, audit_log
    TO anon, authenticated, service_role;
