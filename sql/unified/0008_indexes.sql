-- Phase 1, step 6: index every policy column and every foreign key ("monitor query times, add
-- indexes"). The policy runs on every row read, so (agency_id, app_context) leads one index per
-- table; each foreign-key column gets its own for joins and for deletes of the parent.
DO $$
DECLARE c record;
BEGIN
    FOR c IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'agency' LOOP
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (agency_id, app_context)',
                       c.tablename || '_agency_app_idx', c.tablename);
    END LOOP;
    CREATE INDEX IF NOT EXISTS agency_id_app_idx ON agency (id, app_context);

    FOR c IN
        SELECT DISTINCT cl.relname AS tablename, a.attname AS column_name
        FROM pg_constraint k
        JOIN pg_class cl ON cl.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = cl.relnamespace AND n.nspname = 'public'
        JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum = ANY (k.conkey)
        WHERE k.contype = 'f' AND a.attname <> 'agency_id'
    LOOP
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (%I)',
                       c.tablename || '_' || c.column_name || '_idx', c.tablename, c.column_name);
    END LOOP;
END $$;
