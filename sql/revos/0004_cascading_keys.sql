-- The foreign keys a Supabase app declares for rows that live and die with their parent: a post's
-- comments, a chat's messages, a pod's members and activity, a campaign's skills and their runs
-- (two levels deep), a webhook's deliveries; and SET NULL where the child outlives its parent
-- (a processed comment keeps its row when the comment goes, a DM when its lead is deleted).
-- A delete here changes rows no statement named: the change capture must see every one of them
-- (sql/revos/0003_capture_final_values.sql), and every test runs over these keys.

ALTER TABLE comments DROP CONSTRAINT comments_post_id_fkey,
    ADD CONSTRAINT comments_post_id_fkey FOREIGN KEY (post_id) REFERENCES posts (id) ON DELETE CASCADE;
ALTER TABLE chat_messages DROP CONSTRAINT chat_messages_session_id_fkey,
    ADD CONSTRAINT chat_messages_session_id_fkey FOREIGN KEY (session_id) REFERENCES chat_sessions (id) ON DELETE CASCADE;
ALTER TABLE hgc_messages DROP CONSTRAINT hgc_messages_session_id_fkey,
    ADD CONSTRAINT hgc_messages_session_id_fkey FOREIGN KEY (session_id) REFERENCES hgc_sessions (id) ON DELETE CASCADE;
ALTER TABLE pod_members DROP CONSTRAINT pod_members_pod_id_fkey,
    ADD CONSTRAINT pod_members_pod_id_fkey FOREIGN KEY (pod_id) REFERENCES pods (id) ON DELETE CASCADE;
ALTER TABLE pod_activities DROP CONSTRAINT pod_activities_pod_id_fkey,
    ADD CONSTRAINT pod_activities_pod_id_fkey FOREIGN KEY (pod_id) REFERENCES pods (id) ON DELETE CASCADE;
ALTER TABLE pod_activities DROP CONSTRAINT pod_activities_pod_member_id_fkey,
    ADD CONSTRAINT pod_activities_pod_member_id_fkey FOREIGN KEY (pod_member_id) REFERENCES pod_members (id)
        ON DELETE SET NULL;
ALTER TABLE campaign_skills DROP CONSTRAINT campaign_skills_campaign_id_fkey,
    ADD CONSTRAINT campaign_skills_campaign_id_fkey FOREIGN KEY (campaign_id) REFERENCES campaigns (id)
        ON DELETE CASCADE;
ALTER TABLE skill_executions DROP CONSTRAINT skill_executions_campaign_skill_id_fkey,
    ADD CONSTRAINT skill_executions_campaign_skill_id_fkey FOREIGN KEY (campaign_skill_id)
        REFERENCES campaign_skills (id) ON DELETE CASCADE;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_webhook_config_id_fkey,
    ADD CONSTRAINT webhook_deliveries_webhook_config_id_fkey FOREIGN KEY (webhook_config_id)
        REFERENCES webhook_configs (id) ON DELETE CASCADE;
ALTER TABLE webhook_logs DROP CONSTRAINT webhook_logs_webhook_endpoint_id_fkey,
    ADD CONSTRAINT webhook_logs_webhook_endpoint_id_fkey FOREIGN KEY (webhook_endpoint_id)
        REFERENCES webhook_endpoints (id) ON DELETE CASCADE;
ALTER TABLE processed_comments DROP CONSTRAINT processed_comments_comment_id_fkey,
    ADD CONSTRAINT processed_comments_comment_id_fkey FOREIGN KEY (comment_id) REFERENCES comments (id)
        ON DELETE SET NULL;
ALTER TABLE triggered_comments DROP CONSTRAINT triggered_comments_comment_id_fkey,
    ADD CONSTRAINT triggered_comments_comment_id_fkey FOREIGN KEY (comment_id) REFERENCES comments (id)
        ON DELETE SET NULL;
ALTER TABLE dm_messages DROP CONSTRAINT dm_messages_lead_id_fkey,
    ADD CONSTRAINT dm_messages_lead_id_fkey FOREIGN KEY (lead_id) REFERENCES leads (id) ON DELETE SET NULL;
ALTER TABLE dm_deliveries DROP CONSTRAINT dm_deliveries_lead_id_fkey,
    ADD CONSTRAINT dm_deliveries_lead_id_fkey FOREIGN KEY (lead_id) REFERENCES leads (id) ON DELETE SET NULL;
