-- Phase 1, step 2: app_context on every table, defaulting by the seed's categorisation:
-- shared tables 'both', AudienceOS-only 'audience', RevOS-only 'revos'.
-- permission and training_cartridge are not in the seed's lists: RBAC serves both apps, and
-- training cartridges are AudienceOS's own (they become cartridge rows in 0005).
DO $$
DECLARE
    t record;
    shared text[] := ARRAY['agency', 'user', 'client', 'chat_session', 'chat_message', 'permission'];
    audience text[] := ARRAY['client_assignment', 'stage_event', 'task', 'integration', 'communication',
        'alert', 'document', 'intake_form_field', 'intake_response', 'kpi_snapshot', 'ad_performance',
        'onboarding_instance', 'onboarding_journey', 'onboarding_stage_status', 'member_client_access',
        'training_cartridge'];
    context text;
BEGIN
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename LOOP
        context := CASE
            WHEN t.tablename = ANY (shared) THEN 'both'
            WHEN t.tablename = ANY (audience) THEN 'audience'
            ELSE 'revos'
        END;
        EXECUTE format(
            'ALTER TABLE %I ADD COLUMN app_context varchar(20) NOT NULL DEFAULT %L '
            'CONSTRAINT %I CHECK (app_context IN (''audience'', ''revos'', ''both''))',
            t.tablename, context, t.tablename || '_app_context_check');
    END LOOP;
END $$;
