-- RevOS source database as it stands after Phase 0 (seed: DATABASE-MERGE, 2026-01-20).
--
-- Plural table names, as RevOS has them. The ABBY tables (outfit_history, swatches,
-- swipe_cartridges) and the empty singular chat tables are gone; the backup tables have RLS on.
--
-- The seed disagrees with itself about the RevOS tables: its NEW TABLES list names dm_message,
-- campaign_skill, skill_execution and queue_job, its REVOS-ONLY list names dm_delivery,
-- lead_magnet_library, webhook_endpoint, console_prompt and more. This file holds the union.
-- RevOS itself never pluralised lead_magnet_library and email_queue; they keep their names.


CREATE TABLE agencies (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name varchar(200) NOT NULL,
    domain varchar(200),
    plan varchar(50) NOT NULL DEFAULT 'starter',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    email varchar(320) NOT NULL,
    full_name varchar(200),
    role varchar(50) NOT NULL DEFAULT 'member',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE clients (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    name varchar(200) NOT NULL,
    website varchar(300),
    status varchar(50) NOT NULL DEFAULT 'active',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- HGC on AgentKit. RevOS had both chat_* (the live ones after Phase 0) and hgc_*.
CREATE TABLE chat_sessions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    user_id uuid REFERENCES users(id),
    client_id uuid REFERENCES clients(id),
    title varchar(300),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE chat_messages (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id uuid NOT NULL REFERENCES chat_sessions(id),
    role varchar(20) NOT NULL,
    content text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE hgc_sessions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    user_id uuid REFERENCES users(id),
    title varchar(300),
    metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE hgc_messages (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id uuid NOT NULL REFERENCES hgc_sessions(id),
    role varchar(20) NOT NULL,
    content text NOT NULL,
    tool_calls jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE brand_cartridges (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    user_id uuid REFERENCES users(id),
    name varchar(200) NOT NULL,
    company_name varchar(200),
    industry varchar(100),
    tone varchar(100),
    logo_url varchar(500),
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE style_cartridges (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    user_id uuid REFERENCES users(id),
    name varchar(200) NOT NULL,
    writing_style text,
    examples jsonb NOT NULL DEFAULT '[]',
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- LinkedIn integration
CREATE TABLE linkedin_accounts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    user_id uuid REFERENCES users(id),
    profile_url varchar(500) NOT NULL,
    display_name varchar(200),
    unipile_account_id varchar(100),
    status varchar(50) NOT NULL DEFAULT 'connected',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Lead generation
CREATE TABLE campaigns (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    client_id uuid REFERENCES clients(id),
    name varchar(200) NOT NULL,
    trigger_word varchar(100),
    status varchar(50) NOT NULL DEFAULT 'draft',
    settings jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE posts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    linkedin_account_id uuid NOT NULL REFERENCES linkedin_accounts(id),
    campaign_id uuid REFERENCES campaigns(id),
    content text NOT NULL,
    status varchar(50) NOT NULL DEFAULT 'draft',
    published_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE comments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    post_id uuid NOT NULL REFERENCES posts(id),
    author_name varchar(200),
    author_profile_url varchar(500),
    content text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE lead_magnets (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    campaign_id uuid REFERENCES campaigns(id),
    title varchar(300) NOT NULL,
    url varchar(500),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE lead_magnet_library (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    title varchar(300) NOT NULL,
    description text,
    file_url varchar(500),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE leads (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    campaign_id uuid REFERENCES campaigns(id),
    lead_magnet_id uuid REFERENCES lead_magnets(id),
    name varchar(200),
    email varchar(320),
    linkedin_url varchar(500),
    status varchar(50) NOT NULL DEFAULT 'new',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- DM automation
CREATE TABLE dm_sequences (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    campaign_id uuid REFERENCES campaigns(id),
    name varchar(200) NOT NULL,
    steps jsonb NOT NULL DEFAULT '[]',
    status varchar(50) NOT NULL DEFAULT 'active',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dm_messages (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sequence_id uuid NOT NULL REFERENCES dm_sequences(id),
    lead_id uuid REFERENCES leads(id),
    direction varchar(10) NOT NULL DEFAULT 'outbound',
    body text NOT NULL,
    sent_at timestamptz
);

CREATE TABLE dm_deliveries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sequence_id uuid NOT NULL REFERENCES dm_sequences(id),
    lead_id uuid REFERENCES leads(id),
    step integer NOT NULL DEFAULT 0,
    status varchar(50) NOT NULL DEFAULT 'pending',
    delivered_at timestamptz
);

-- Webhooks
CREATE TABLE webhook_configs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    url varchar(500) NOT NULL,
    secret varchar(200),
    events jsonb NOT NULL DEFAULT '[]',
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    webhook_config_id uuid NOT NULL REFERENCES webhook_configs(id),
    payload jsonb NOT NULL,
    status_code integer,
    delivered_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_endpoints (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    url varchar(500) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_logs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    webhook_endpoint_id uuid NOT NULL REFERENCES webhook_endpoints(id),
    payload jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Engagement pods
CREATE TABLE pods (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    name varchar(200) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pod_members (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    pod_id uuid NOT NULL REFERENCES pods(id),
    linkedin_account_id uuid NOT NULL REFERENCES linkedin_accounts(id),
    joined_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pod_activities (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    pod_id uuid NOT NULL REFERENCES pods(id),
    pod_member_id uuid REFERENCES pod_members(id),
    post_id uuid REFERENCES posts(id),
    activity_type varchar(50) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- AI system
CREATE TABLE console_workflows (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    name varchar(200) NOT NULL,
    definition jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE console_prompts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    workflow_id uuid REFERENCES console_workflows(id),
    name varchar(200) NOT NULL,
    prompt text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaign_skills (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    campaign_id uuid NOT NULL REFERENCES campaigns(id),
    skill_name varchar(100) NOT NULL,
    config jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE skill_executions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    campaign_skill_id uuid NOT NULL REFERENCES campaign_skills(id),
    status varchar(50) NOT NULL DEFAULT 'queued',
    input jsonb,
    output jsonb,
    started_at timestamptz,
    finished_at timestamptz
);

CREATE TABLE memories (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    user_id uuid REFERENCES users(id),
    content text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE queue_jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    job_type varchar(100) NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    status varchar(50) NOT NULL DEFAULT 'queued',
    run_at timestamptz
);

CREATE TABLE notifications (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    user_id uuid REFERENCES users(id),
    title varchar(300) NOT NULL,
    body text,
    read_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Comment / message processing
CREATE TABLE processed_comments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    comment_id uuid REFERENCES comments(id),
    processed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE processed_messages (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    external_message_id varchar(200) NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE triggered_comments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    comment_id uuid REFERENCES comments(id),
    campaign_id uuid REFERENCES campaigns(id),
    triggered_at timestamptz NOT NULL DEFAULT now()
);

-- Connections
CREATE TABLE pending_connections (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    linkedin_account_id uuid REFERENCES linkedin_accounts(id),
    profile_url varchar(500) NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE connected_accounts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    user_id uuid REFERENCES users(id),
    provider varchar(50) NOT NULL,
    external_id varchar(200) NOT NULL,
    connected_at timestamptz NOT NULL DEFAULT now()
);

-- Scraping and email
CREATE TABLE scrape_jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    target_url varchar(500) NOT NULL,
    status varchar(50) NOT NULL DEFAULT 'queued',
    result jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE email_queue (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    lead_id uuid REFERENCES leads(id),
    to_email varchar(320) NOT NULL,
    subject varchar(300) NOT NULL,
    body text,
    status varchar(50) NOT NULL DEFAULT 'queued',
    scheduled_at timestamptz
);

CREATE TABLE email_extraction_reviews (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    lead_id uuid REFERENCES leads(id),
    extracted_email varchar(320),
    status varchar(50) NOT NULL DEFAULT 'pending',
    reviewed_at timestamptz
);

CREATE TABLE unipile_webhook_logs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agencies(id),
    event varchar(100) NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Backups kept by RevOS ops; not migrated. No foreign keys, so they hold orphans.
CREATE TABLE backup_dm_sequences (
    id uuid PRIMARY KEY,
    agency_id uuid,
    campaign_id uuid,
    name varchar(200),
    steps jsonb,
    status varchar(50),
    created_at timestamptz,
    backed_up_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaigns_trigger_word_backup (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    campaign_id uuid,
    trigger_word varchar(100),
    backed_up_at timestamptz NOT NULL DEFAULT now()
);

-- Phase 0 turned RLS on for the backup tables; the rest of RevOS already had it.
DO $$
DECLARE t record;
BEGIN
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t.tablename);
    END LOOP;
END $$;

-- RevOS indexes its tenant and foreign-key columns; the migration's reads rely on them.
DO $$
DECLARE c record;
BEGIN
    FOR c IN
        SELECT cl.relname AS tablename, a.attname AS column_name
        FROM pg_attribute a
        JOIN pg_class cl ON cl.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = cl.relnamespace AND n.nspname = 'public'
        WHERE cl.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
          AND (a.attname = 'agency_id' OR EXISTS (
              SELECT 1 FROM pg_constraint k
              WHERE k.conrelid = cl.oid AND k.contype = 'f' AND a.attnum = ANY (k.conkey)))
    LOOP
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (%I)',
                       c.tablename || '_' || c.column_name || '_idx', c.tablename, c.column_name);
    END LOOP;
END $$;
