-- Online, steps 2 and 3 of the tenant foreign keys (0053).
--
-- Step 2: VALIDATE reads every existing row once. It holds SHARE UPDATE EXCLUSIVE on the child
-- (reads and writes go on; DDL and VACUUM wait) and ROW SHARE on the parent. A row that points at
-- another agency's parent stops it with PostgreSQL's message naming the key and the row's values:
-- `manage.py verify_agency` lists such rows (check `references`); fix them, apply again.
--
-- Step 3: the old single-column keys are implied by the new ones (same reference, plus the
-- agency), so they go, and each successor takes its predecessor's name, so the apps' error
-- messages keep naming e.g. lead_campaign_id_fkey. DROP and RENAME take ACCESS EXCLUSIVE on
-- child and parent, for a moment each, after every validation has finished.
SET LOCAL lock_timeout = '5s';

DO $$
DECLARE
    k record;
BEGIN
    FOR k IN
        SELECT con.conrelid::regclass AS child, con.conname
        FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace AND n.nspname = 'public'
        WHERE con.contype = 'f' AND NOT con.convalidated AND con.conname LIKE '%\_tenant'
        ORDER BY 1, 2
    LOOP
        EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', k.child, k.conname);
    END LOOP;

    FOR k IN
        SELECT con.conrelid::regclass AS child, con.conname, left(con.conname, -length('_tenant')) AS old_name
        FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace AND n.nspname = 'public'
        WHERE con.contype = 'f' AND con.conname LIKE '%\_tenant'
        ORDER BY 1, 2
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', k.child, k.old_name);
        EXECUTE format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', k.child, k.conname, k.old_name);
    END LOOP;
END $$;
