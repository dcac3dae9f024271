-- No cross-tenant references: every foreign key from a tenant table to another tenant table's id
-- gets a successor over (reference, agency_id) -> parent (id, agency_id). A row can then only
-- point at a parent of its own agency, for every role (foreign keys bind the owner and
-- service_role too, which RLS does not), and another agency's ids can no longer be probed by
-- inserting references to them.
--
-- Online, step 1 of 3: the new keys are added NOT VALID, which checks new and updated rows from
-- this commit on without reading the existing ones. Each ADD takes a SHARE ROW EXCLUSIVE lock on
-- the child and its parent (reads go on, writes wait) for the moment of the ALTER, all of them
-- until this file commits; lock_timeout bounds the wait behind a long transaction. Step 2 (0054)
-- validates the existing rows without blocking writes, step 3 (0054) retires the old keys.
--
-- Written as a loop over the catalog, so a table the migration files do not name gets the same
-- treatment (its parent's (id, agency_id) key is then built here, blocking writes to the parent
-- while it builds; 0052 builds the known ones concurrently beforehand).
SET LOCAL lock_timeout = '5s';

DO $$
DECLARE
    k record;
    on_delete text;
BEGIN
    FOR k IN
        SELECT con.conname, child.relname AS child, col.attname AS column_name, parent.relname AS parent,
               con.confdeltype
        FROM pg_constraint con
        JOIN pg_class child ON child.oid = con.conrelid
        JOIN pg_namespace n ON n.oid = child.relnamespace AND n.nspname = 'public'
        JOIN pg_class parent ON parent.oid = con.confrelid AND parent.relnamespace = n.oid
        JOIN pg_attribute col ON col.attrelid = con.conrelid AND col.attnum = con.conkey[1]
        JOIN pg_attribute ref ON ref.attrelid = con.confrelid AND ref.attnum = con.confkey[1]
        WHERE con.contype = 'f' AND cardinality(con.conkey) = 1
          AND col.attname <> 'agency_id' AND ref.attname = 'id'
          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = child.oid AND a.attname = 'agency_id'
                      AND NOT a.attisdropped)
          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = parent.oid AND a.attname = 'agency_id'
                      AND NOT a.attisdropped)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint t WHERE t.conrelid = con.conrelid
                          AND t.conname = con.conname || '_tenant')
        ORDER BY child.relname, col.attname
    LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_index i
            WHERE i.indrelid = format('public.%I', k.parent)::regclass AND i.indisunique AND i.indisvalid
              AND i.indpred IS NULL AND i.indexprs IS NULL
              AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a
                   WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)) = ARRAY['agency_id', 'id']
        ) THEN
            EXECUTE format('CREATE UNIQUE INDEX %I ON public.%I (id, agency_id)', k.parent || '_id_agency_key', k.parent);
        END IF;
        -- Keep the old key's ON DELETE; SET NULL must spare agency_id, which is NOT NULL.
        on_delete := CASE k.confdeltype
            WHEN 'c' THEN 'CASCADE' WHEN 'r' THEN 'RESTRICT' WHEN 'd' THEN 'SET DEFAULT'
            WHEN 'n' THEN format('SET NULL (%I)', k.column_name) ELSE 'NO ACTION' END;
        EXECUTE format(
            'ALTER TABLE public.%I ADD CONSTRAINT %I FOREIGN KEY (%I, agency_id) '
            'REFERENCES public.%I (id, agency_id) ON DELETE %s NOT VALID',
            k.child, k.conname || '_tenant', k.column_name, k.parent, on_delete);
    END LOOP;
END $$;
