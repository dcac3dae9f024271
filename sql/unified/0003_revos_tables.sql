-- Phase 1, step 1: the RevOS tables under AudienceOS's singular names.
--
-- Unlike RevOS, every table carries agency_id, children included (comment, chat_message, ...):
-- one indexable policy column per table keeps the RLS pattern identical everywhere, costs no
-- join per row checked, and lets verification prove isolation table by table. The migration
-- fills it from the row's parent.
--
-- The seed's two RevOS lists disagree (NEW TABLES: dm_message, campaign_skill, skill_execution,
-- queue_job; REVOS-ONLY: dm_delivery, lead_magnet_library, webhook_endpoint, ...): this is
-- their union. Where the unified schema is stricter than RevOS (lead.status, email formats),
-- a RevOS row that breaks it fails the migration with the row named, instead of being altered.

CREATE TABLE linkedin_account (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    user_id uuid REFERENCES "user"(id),
    profile_url varchar(500) NOT NULL,
    display_name varchar(200),
    unipile_account_id varchar(100),
    status varchar(50) NOT NULL DEFAULT 'connected',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaign (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    client_id uuid REFERENCES client(id),
    name varchar(200) NOT NULL,
    trigger_word varchar(100),
    status varchar(50) NOT NULL DEFAULT 'draft',
    settings jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE post (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    linkedin_account_id uuid NOT NULL REFERENCES linkedin_account(id),
    campaign_id uuid REFERENCES campaign(id),
    content text NOT NULL,
    status varchar(50) NOT NULL DEFAULT 'draft',
    published_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE comment (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    post_id uuid NOT NULL REFERENCES post(id),
    author_name varchar(200),
    author_profile_url varchar(500),
    content text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE lead_magnet (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    campaign_id uuid REFERENCES campaign(id),
    title varchar(300) NOT NULL,
    url varchar(500),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE lead_magnet_library (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    title varchar(300) NOT NULL,
    description text,
    file_url varchar(500),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE lead (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    campaign_id uuid REFERENCES campaign(id),
    lead_magnet_id uuid REFERENCES lead_magnet(id),
    name varchar(200),
    email varchar(320),
    linkedin_url varchar(500),
    status varchar(50) NOT NULL DEFAULT 'new'
        CHECK (status IN ('new', 'contacted', 'replied', 'qualified', 'converted', 'lost')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dm_sequence (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    campaign_id uuid REFERENCES campaign(id),
    name varchar(200) NOT NULL,
    steps jsonb NOT NULL DEFAULT '[]',
    status varchar(50) NOT NULL DEFAULT 'active',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dm_message (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    sequence_id uuid NOT NULL REFERENCES dm_sequence(id),
    lead_id uuid REFERENCES lead(id),
    direction varchar(10) NOT NULL DEFAULT 'outbound' CHECK (direction IN ('inbound', 'outbound')),
    body text NOT NULL,
    sent_at timestamptz
);

CREATE TABLE dm_delivery (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    sequence_id uuid NOT NULL REFERENCES dm_sequence(id),
    lead_id uuid REFERENCES lead(id),
    step integer NOT NULL DEFAULT 0,
    status varchar(50) NOT NULL DEFAULT 'pending',
    delivered_at timestamptz
);

CREATE TABLE webhook_config (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    url varchar(500) NOT NULL,
    secret varchar(200),
    events jsonb NOT NULL DEFAULT '[]',
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_delivery (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    webhook_config_id uuid NOT NULL REFERENCES webhook_config(id),
    payload jsonb NOT NULL,
    status_code integer,
    delivered_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_endpoint (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    url varchar(500) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_log (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    webhook_endpoint_id uuid NOT NULL REFERENCES webhook_endpoint(id),
    payload jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pod (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    name varchar(200) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pod_member (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    pod_id uuid NOT NULL REFERENCES pod(id),
    linkedin_account_id uuid NOT NULL REFERENCES linkedin_account(id),
    joined_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pod_activity (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    pod_id uuid NOT NULL REFERENCES pod(id),
    pod_member_id uuid REFERENCES pod_member(id),
    post_id uuid REFERENCES post(id),
    activity_type varchar(50) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE console_workflow (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    name varchar(200) NOT NULL,
    definition jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE console_prompt (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    workflow_id uuid REFERENCES console_workflow(id),
    name varchar(200) NOT NULL,
    prompt text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaign_skill (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    campaign_id uuid NOT NULL REFERENCES campaign(id),
    skill_name varchar(100) NOT NULL,
    config jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE skill_execution (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    campaign_skill_id uuid NOT NULL REFERENCES campaign_skill(id),
    status varchar(50) NOT NULL DEFAULT 'queued',
    input jsonb,
    output jsonb,
    started_at timestamptz,
    finished_at timestamptz
);

CREATE TABLE memory (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    user_id uuid REFERENCES "user"(id),
    content text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE queue_job (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    job_type varchar(100) NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    status varchar(50) NOT NULL DEFAULT 'queued',
    run_at timestamptz
);

CREATE TABLE notification (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    user_id uuid REFERENCES "user"(id),
    title varchar(300) NOT NULL,
    body text,
    read_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE processed_comment (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    comment_id uuid REFERENCES comment(id),
    processed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE processed_message (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    external_message_id varchar(200) NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE triggered_comment (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    comment_id uuid REFERENCES comment(id),
    campaign_id uuid REFERENCES campaign(id),
    triggered_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pending_connection (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    linkedin_account_id uuid REFERENCES linkedin_account(id),
    profile_url varchar(500) NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE connected_account (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    user_id uuid REFERENCES "user"(id),
    provider varchar(50) NOT NULL,
    external_id varchar(200) NOT NULL,
    connected_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE scrape_job (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    target_url varchar(500) NOT NULL,
    status varchar(50) NOT NULL DEFAULT 'queued',
    result jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE email_queue (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    lead_id uuid REFERENCES lead(id),
    to_email varchar(320) NOT NULL,
    subject varchar(300) NOT NULL,
    body text,
    status varchar(50) NOT NULL DEFAULT 'queued',
    scheduled_at timestamptz
);

CREATE TABLE email_extraction_review (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    lead_id uuid REFERENCES lead(id),
    extracted_email varchar(320),
    status varchar(50) NOT NULL DEFAULT 'pending',
    reviewed_at timestamptz
);

CREATE TABLE unipile_webhook_log (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    event varchar(100) NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    received_at timestamptz NOT NULL DEFAULT now()
);
