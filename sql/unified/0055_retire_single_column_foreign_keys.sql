-- Online, step 3 of the tenant foreign keys (0053, 0054): the old single-column keys are implied
-- by the validated new ones (same reference, plus the agency), so they go, and each successor
-- takes its predecessor's name, so the apps' error messages keep naming e.g. lead_campaign_id_fkey.
-- DROP and RENAME take ACCESS EXCLUSIVE on child and parent: metadata only, no row is read, so it
-- is held for milliseconds; lock_timeout keeps it from queueing behind a long transaction.
SET LOCAL lock_timeout = '5s';

DO $$
DECLARE
    k record;
BEGIN
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
