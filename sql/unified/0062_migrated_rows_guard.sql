-- While RevOS holds an agency's truth (from its first copy until its cutover, and again after a
-- switch back), the unified copies of its RevOS rows are read-only for the apps. A write there
-- would be acknowledged and then overwritten by the next catch-up, or never reach RevOS: lost.
--
-- Which agencies: controlplane.agency_guard, kept by the control plane (etl/unified_guard.py).
-- Which rows: updates and deletes of the rows the migration inserted (controlplane.id_map,
-- inserted), and inserts into the RevOS-only tables (app_context 'revos': RevOS's data, which
-- would never reach RevOS). Rows AudienceOS already had and the agency reuses (its agency row,
-- people and clients matched by name or email) stay writable, and so do the AudienceOS and shared
-- tables' new rows: no catch-up overwrites them.
-- Which writers: the API roles (anon, authenticated, service_role) and GoTrue's
-- supabase_auth_admin. The control plane's own role (the owner) writes through: the catch-up is
-- what brings these rows level.
--
-- AFTER INSERT OR UPDATE OR DELETE: the stored row decides (OLD for an update or delete, the final
-- NEW for an insert); ENABLE ALWAYS, for replica-mode sessions too; WHEN the writer is one of those
-- roles, so the control plane's own writes (a first load) call nothing. The check runs as its owner
-- (the API roles cannot read the bookkeeping) and costs one probe of an empty table while nothing
-- is guarded.

CREATE TABLE controlplane.agency_guard (
    agency_id uuid PRIMARY KEY,
    guarded_at timestamptz NOT NULL DEFAULT now(),
    message text NOT NULL
);

CREATE FUNCTION controlplane.guard_refusal(row_data jsonb, path text[], table_name text, migrated_only boolean)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    guard controlplane.agency_guard;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM controlplane.agency_guard) THEN
        RETURN NULL;
    END IF;
    SELECT * INTO guard FROM controlplane.agency_guard
     WHERE agency_id = controlplane.capture_agency_of(row_data, path, 'public');
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF NOT migrated_only OR EXISTS (
        SELECT 1 FROM controlplane.id_map m
        WHERE m.target_id = (row_data ->> 'id')::uuid AND m.target_table = table_name AND m.inserted
    ) THEN
        RETURN guard.message;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION controlplane.guard_refusal(jsonb, text[], text, boolean) FROM PUBLIC;
GRANT USAGE ON SCHEMA controlplane TO anon, authenticated, service_role, supabase_auth_admin;
GRANT EXECUTE ON FUNCTION controlplane.guard_refusal(jsonb, text[], text, boolean)
    TO anon, authenticated, service_role, supabase_auth_admin;

CREATE FUNCTION controlplane.guard_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    stored jsonb := to_jsonb(CASE WHEN TG_OP = 'INSERT' THEN NEW ELSE OLD END);
    path text[];
    volatile text[];
    refusal text;
BEGIN
    IF TG_OP = 'INSERT' AND stored ->> 'app_context' IS DISTINCT FROM 'revos' THEN
        RETURN NULL;  -- a new AudienceOS or shared row: the apps' own
    END IF;
    -- The arguments: the row's path to its agency, then "volatile:<column>" as for the capture.
    path := TG_ARGV;
    volatile := '{}';
    IF TG_ARGV[TG_NARGS - 1] LIKE 'volatile:%' THEN
        SELECT coalesce(array_agg(a) FILTER (WHERE a NOT LIKE 'volatile:%'), '{}'),
               coalesce(array_agg(substr(a, 10)) FILTER (WHERE a LIKE 'volatile:%'), '{}')
          INTO path, volatile FROM unnest(TG_ARGV) a;
    END IF;
    IF TG_OP = 'UPDATE' AND cardinality(volatile) > 0 AND (stored - volatile) = (to_jsonb(NEW) - volatile) THEN
        RETURN NULL;  -- a sign-in's bookkeeping alone
    END IF;
    refusal := controlplane.guard_refusal(
        stored, path, controlplane.capture_table_name(TG_TABLE_SCHEMA, TG_TABLE_NAME), TG_OP <> 'INSERT');
    IF refusal IS NOT NULL THEN
        RAISE EXCEPTION '%', refusal
            USING ERRCODE = 'read_only_sql_transaction',
                  DETAIL = format('%s of %s.%s %s refused: RevOS holds the agency''s data until its cutover.',
                                  TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME, stored ->> 'id'),
                  HINT = 'Write it in RevOS; the flags API tells the apps where to write.';
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION controlplane.guard_row() FROM PUBLIC;

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT n.nspname, c.relname,
               CASE WHEN n.nspname = 'public' AND c.relname = 'agency' THEN ARRAY['id']
                    WHEN n.nspname = 'public' THEN ARRAY['agency_id']
                    -- GoTrue's sign-in bookkeeping (mapping.SIGN_IN_COLUMNS) passes, as through the capture
                    WHEN c.relname = 'users'
                        THEN ARRAY['id', 'user', 'agency_id', 'volatile:last_sign_in_at', 'volatile:updated_at']
                    ELSE ARRAY['user_id', 'user', 'agency_id', 'volatile:last_sign_in_at', 'volatile:updated_at']
                    END AS path
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r'
          AND ((n.nspname = 'public' AND (c.relname = 'agency' OR EXISTS (
                   SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'agency_id' AND NOT a.attisdropped)))
               OR (n.nspname = 'auth' AND c.relname IN ('users', 'identities')))
        ORDER BY 1, 2
    LOOP
        EXECUTE format('CREATE TRIGGER controlplane_guard AFTER INSERT OR UPDATE OR DELETE ON %I.%I FOR EACH ROW'
                       ' WHEN (current_user IN (''anon'', ''authenticated'', ''service_role'', ''supabase_auth_admin''))'
                       ' EXECUTE FUNCTION controlplane.guard_row(%s)',
                       t.nspname, t.relname, (SELECT string_agg(quote_literal(p), ', ') FROM unnest(t.path) p));
        EXECUTE format('ALTER TABLE %I.%I ENABLE ALWAYS TRIGGER controlplane_guard', t.nspname, t.relname);
    END LOOP;
END $$;
