-- Phase 1, step 5: the seed's RLS pattern on every table, replacing AudienceOS's agency-only
-- policies. A row is visible when it belongs to the JWT's agency and is either shared ('both')
-- or belongs to the JWT's app. agency has no agency_id: its own id is the tenant key.
-- No claims (anon, a missing JWT) makes auth.jwt() NULL, so every comparison fails: no rows.
DO $$
DECLARE
    t record;
    p record;
BEGIN
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename LOOP
        FOR p IN SELECT policyname FROM pg_policies WHERE schemaname = 'public' AND tablename = t.tablename LOOP
            EXECUTE format('DROP POLICY %I ON %I', p.policyname, t.tablename);
        END LOOP;
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t.tablename);
        EXECUTE format(
            'CREATE POLICY %I ON %I FOR ALL USING ('
            '%I = (auth.jwt() ->> ''agency_id'')::uuid '
            'AND (app_context = ''both'' OR app_context = (auth.jwt() ->> ''app_context'')))',
            t.tablename || '_app_rls', t.tablename,
            CASE WHEN t.tablename = 'agency' THEN 'id' ELSE 'agency_id' END);
    END LOOP;
END $$;

-- As on Supabase: the API roles hold table privileges and RLS decides the rows.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO anon, authenticated, service_role;
