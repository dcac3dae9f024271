-- schema: no-transaction
-- The indexes the tenant foreign keys (0053) need, built without blocking the live apps.
--
-- Each statement runs on its own (CREATE INDEX CONCURRENTLY cannot run in a transaction) and takes
-- a SHARE UPDATE EXCLUSIVE lock on its table: reads and writes go on while it builds; only DDL and
-- VACUUM wait. An interrupted build leaves an INVALID index; applying again drops it first
-- (services/schema.py) and rebuilds it.
--
-- Parents: a unique (id, agency_id) key for the tenant foreign keys to reference. id alone is
-- unique already, so this never refuses a row; it only lets a child name (parent, agency) together.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS campaign_id_agency_key ON campaign (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS campaign_skill_id_agency_key ON campaign_skill (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS chat_session_id_agency_key ON chat_session (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS client_id_agency_key ON client (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS comment_id_agency_key ON comment (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS console_workflow_id_agency_key ON console_workflow (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS dm_sequence_id_agency_key ON dm_sequence (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS intake_form_field_id_agency_key ON intake_form_field (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS lead_id_agency_key ON lead (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS lead_magnet_id_agency_key ON lead_magnet (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS linkedin_account_id_agency_key ON linkedin_account (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS onboarding_instance_id_agency_key ON onboarding_instance (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS onboarding_journey_id_agency_key ON onboarding_journey (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS permission_id_agency_key ON permission (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS pod_id_agency_key ON pod (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS pod_member_id_agency_key ON pod_member (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS post_id_agency_key ON post (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS role_id_agency_key ON role (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS user_id_agency_key ON "user" (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS webhook_config_id_agency_key ON webhook_config (id, agency_id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS webhook_endpoint_id_agency_key ON webhook_endpoint (id, agency_id);

-- Children: (reference, agency_id), which the tenant foreign key checks on a parent's delete and
-- the apps' joins use (every app query carries agency_id through the policy). It replaces the
-- single-column index 0008 made, which 0055 drops.
CREATE INDEX CONCURRENTLY IF NOT EXISTS ad_performance_client_id_agency_idx ON ad_performance (client_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS alert_client_id_agency_idx ON alert (client_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_log_actor_id_agency_idx ON audit_log (actor_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS campaign_client_id_agency_idx ON campaign (client_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS campaign_skill_campaign_id_agency_idx ON campaign_skill (campaign_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS cartridge_user_id_agency_idx ON cartridge (user_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS chat_message_session_id_agency_idx ON chat_message (session_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS chat_session_client_id_agency_idx ON chat_session (client_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS chat_session_user_id_agency_idx ON chat_session (user_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS client_assignment_client_id_agency_idx ON client_assignment (client_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS client_assignment_user_id_agency_idx ON client_assignment (user_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS comment_post_id_agency_idx ON comment (post_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS communication_client_id_agency_idx ON communication (client_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS connected_account_user_id_agency_idx ON connected_account (user_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS console_prompt_workflow_id_agency_idx ON console_prompt (workflow_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS dm_delivery_lead_id_agency_idx ON dm_delivery (lead_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS dm_delivery_sequence_id_agency_idx ON dm_delivery (sequence_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS dm_message_lead_id_agency_idx ON dm_message (lead_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS dm_message_sequence_id_agency_idx ON dm_message (sequence_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS dm_sequence_campaign_id_agency_idx ON dm_sequence (campaign_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS document_client_id_agency_idx ON document (client_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS email_extraction_review_lead_id_agency_idx ON email_extraction_review (lead_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS email_queue_lead_id_agency_idx ON email_queue (lead_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS intake_response_client_id_agency_idx ON intake_response (client_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS intake_response_field_id_agency_idx ON intake_response (field_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS kpi_snapshot_client_id_agency_idx ON kpi_snapshot (client_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS lead_campaign_id_agency_idx ON lead (campaign_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS lead_lead_magnet_id_agency_idx ON lead (lead_magnet_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS lead_magnet_campaign_id_agency_idx ON lead_magnet (campaign_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS linkedin_account_user_id_agency_idx ON linkedin_account (user_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS member_client_access_client_id_agency_idx ON member_client_access (client_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS member_client_access_user_id_agency_idx ON member_client_access (user_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS memory_user_id_agency_idx ON memory (user_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS notification_user_id_agency_idx ON notification (user_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS onboarding_instance_client_id_agency_idx ON onboarding_instance (client_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS onboarding_instance_journey_id_agency_idx ON onboarding_instance (journey_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS onboarding_stage_status_instance_id_agency_idx ON onboarding_stage_status (instance_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS pending_connection_linkedin_account_id_agency_idx ON pending_connection (linkedin_account_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS pod_activity_pod_id_agency_idx ON pod_activity (pod_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS pod_activity_pod_member_id_agency_idx ON pod_activity (pod_member_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS pod_activity_post_id_agency_idx ON pod_activity (post_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS pod_member_linkedin_account_id_agency_idx ON pod_member (linkedin_account_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS pod_member_pod_id_agency_idx ON pod_member (pod_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS post_campaign_id_agency_idx ON post (campaign_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS post_linkedin_account_id_agency_idx ON post (linkedin_account_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS processed_comment_comment_id_agency_idx ON processed_comment (comment_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS role_permission_permission_id_agency_idx ON role_permission (permission_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS role_permission_role_id_agency_idx ON role_permission (role_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS skill_execution_campaign_skill_id_agency_idx ON skill_execution (campaign_skill_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS stage_event_actor_id_agency_idx ON stage_event (actor_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS stage_event_client_id_agency_idx ON stage_event (client_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS task_assignee_id_agency_idx ON task (assignee_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS task_client_id_agency_idx ON task (client_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS triggered_comment_campaign_id_agency_idx ON triggered_comment (campaign_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS triggered_comment_comment_id_agency_idx ON triggered_comment (comment_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS user_role_role_id_agency_idx ON user_role (role_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS user_role_user_id_agency_idx ON user_role (user_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_delivery_webhook_config_id_agency_idx ON webhook_delivery (webhook_config_id, agency_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_log_webhook_endpoint_id_agency_idx ON webhook_log (webhook_endpoint_id, agency_id);
