-- The apps cannot change an existing row's app_context. Its RLS policy lets a signed-in user of
-- either app update a shared ('both') row of its agency, and app_context is a column like any
-- other: an AudienceOS user could set it to 'audience' and so hide a shared client from RevOS (or
-- a RevOS user the reverse), without deleting anything. Which app sees a row is the migration's
-- and the staff's decision: the control plane (connected as the owner) may change it; the API
-- roles may not. New rows keep the choice the policy's WITH CHECK allows.
--
-- AFTER UPDATE, on the final row (no other BEFORE trigger can change it afterwards), only when
-- the value changed (the WHEN clause costs no function call otherwise), and ENABLE ALWAYS so a
-- replica-mode session is held too. Every public table with app_context gets it, as 0004 gave
-- every table the column; migration_jobs/etl/catalog.py knows the trigger's name (a first load's
-- set-wise checks may run beside it: it never fires for an insert).

CREATE FUNCTION controlplane.app_context_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_user IN ('anon', 'authenticated') THEN
        RAISE EXCEPTION 'app_context of %.% % cannot be changed by the apps (% to %)',
            TG_TABLE_SCHEMA, TG_TABLE_NAME, OLD.id, OLD.app_context, NEW.app_context
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Which app sees a row is decided by staff, through the control plane.';
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION controlplane.app_context_guard() FROM PUBLIC;

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'app_context' AND NOT a.attisdropped
        WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1
    LOOP
        EXECUTE format(
            'CREATE TRIGGER app_context_guard AFTER UPDATE ON public.%I FOR EACH ROW'
            ' WHEN (OLD.app_context IS DISTINCT FROM NEW.app_context)'
            ' EXECUTE FUNCTION controlplane.app_context_guard()', t.relname);
        EXECUTE format('ALTER TABLE public.%I ENABLE ALWAYS TRIGGER app_context_guard', t.relname);
    END LOOP;
END $$;
