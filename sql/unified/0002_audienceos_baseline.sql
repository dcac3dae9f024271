-- AudienceOS as it stands before the merge, after Phase 0 (RLS on for "user" and permission).
-- On the production AudienceOS project this version already exists: record it with
-- `apply_unified_schema --baseline` instead of running it.
--
-- Every tenant table carries agency_id and one policy that scopes rows by the JWT's agency.


CREATE TABLE agency (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name varchar(200) NOT NULL,
    slug varchar(100) NOT NULL UNIQUE,
    domain varchar(200),
    settings jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE "user" (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    email varchar(320) NOT NULL,
    first_name varchar(100),
    last_name varchar(100),
    role varchar(50) NOT NULL DEFAULT 'member',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- One person, one login: emails are unique whatever their case.
CREATE UNIQUE INDEX user_email_lower_key ON "user" (lower(email));

CREATE TABLE client (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    name varchar(200) NOT NULL,
    website varchar(300),
    contact_email varchar(320),
    stage varchar(50) NOT NULL DEFAULT 'onboarding',
    health_status varchar(20),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE chat_session (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    user_id uuid REFERENCES "user"(id),
    client_id uuid REFERENCES client(id),
    title varchar(300),
    context jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE chat_message (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    session_id uuid NOT NULL REFERENCES chat_session(id),
    role varchar(20) NOT NULL,
    content text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE permission (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    role varchar(50) NOT NULL,
    resource varchar(100) NOT NULL,
    action varchar(50) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Training cartridges (voice, style, preferences, instructions, brand); folded into the unified
-- cartridge table by 0005.
CREATE TABLE training_cartridge (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    user_id uuid REFERENCES "user"(id),
    name varchar(200) NOT NULL,
    kind varchar(50) NOT NULL,
    content jsonb NOT NULL DEFAULT '{}',
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE client_assignment (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    client_id uuid NOT NULL REFERENCES client(id),
    user_id uuid NOT NULL REFERENCES "user"(id),
    role varchar(50) NOT NULL DEFAULT 'owner',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stage_event (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    client_id uuid NOT NULL REFERENCES client(id),
    from_stage varchar(50),
    to_stage varchar(50) NOT NULL,
    actor_id uuid REFERENCES "user"(id),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE task (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    client_id uuid REFERENCES client(id),
    assignee_id uuid REFERENCES "user"(id),
    title varchar(300) NOT NULL,
    status varchar(50) NOT NULL DEFAULT 'todo',
    due_date date,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE integration (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    provider varchar(50) NOT NULL,
    status varchar(50) NOT NULL DEFAULT 'connected',
    config jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE communication (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    client_id uuid REFERENCES client(id),
    channel varchar(50) NOT NULL,
    subject varchar(300),
    body text,
    sent_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alert (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    client_id uuid REFERENCES client(id),
    severity varchar(20) NOT NULL DEFAULT 'info',
    message text NOT NULL,
    resolved_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE document (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    client_id uuid REFERENCES client(id),
    title varchar(300) NOT NULL,
    url varchar(500),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE intake_form_field (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    label varchar(200) NOT NULL,
    field_type varchar(50) NOT NULL DEFAULT 'text',
    position integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE intake_response (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    client_id uuid NOT NULL REFERENCES client(id),
    field_id uuid NOT NULL REFERENCES intake_form_field(id),
    value text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE kpi_snapshot (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    client_id uuid REFERENCES client(id),
    metric varchar(100) NOT NULL,
    value numeric(14, 2) NOT NULL,
    captured_on date NOT NULL
);

CREATE TABLE ad_performance (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    client_id uuid REFERENCES client(id),
    platform varchar(50) NOT NULL,
    spend numeric(14, 2) NOT NULL DEFAULT 0,
    impressions bigint NOT NULL DEFAULT 0,
    clicks bigint NOT NULL DEFAULT 0,
    day date NOT NULL
);

CREATE TABLE onboarding_journey (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    name varchar(200) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE onboarding_instance (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    client_id uuid NOT NULL REFERENCES client(id),
    journey_id uuid NOT NULL REFERENCES onboarding_journey(id),
    status varchar(50) NOT NULL DEFAULT 'in_progress',
    started_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE onboarding_stage_status (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    instance_id uuid NOT NULL REFERENCES onboarding_instance(id),
    stage varchar(100) NOT NULL,
    status varchar(50) NOT NULL DEFAULT 'pending',
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE member_client_access (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    user_id uuid NOT NULL REFERENCES "user"(id),
    client_id uuid NOT NULL REFERENCES client(id),
    access_level varchar(20) NOT NULL DEFAULT 'read',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- RLS as AudienceOS has it after Phase 0: scoped by agency only. 0007 replaces these policies
-- with the app_context-aware pattern.
DO $$
DECLARE t record;
BEGIN
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t.tablename);
        EXECUTE format(
            'CREATE POLICY %I ON %I FOR ALL USING (%I = (auth.jwt() ->> %L)::uuid)',
            t.tablename || '_agency_rls', t.tablename,
            CASE WHEN t.tablename = 'agency' THEN 'id' ELSE 'agency_id' END, 'agency_id');
    END LOOP;
END $$;
