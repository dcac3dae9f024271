-- Phase 1, step 4: one HGC. chat_session already has app_context (default 'both', from 0004);
-- messages record which backend answered (AudienceOS: gemini, RevOS: agentkit) and keep
-- AgentKit's tool calls.
ALTER TABLE chat_message
    ADD COLUMN ai_provider varchar(20) CHECK (ai_provider IN ('gemini', 'agentkit')),
    ADD COLUMN tool_calls jsonb;

UPDATE chat_message SET ai_provider = 'gemini' WHERE ai_provider IS NULL;
