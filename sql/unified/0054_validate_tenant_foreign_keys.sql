-- Online, step 2 of the tenant foreign keys (0053): VALIDATE reads every existing row once. It
-- holds SHARE UPDATE EXCLUSIVE on each child (reads and writes go on; DDL and VACUUM wait) and
-- ROW SHARE on its parent, until this file commits. A row that points at another agency's parent
-- stops it with PostgreSQL's message naming the key and the row's values: `manage.py
-- verify_agency` lists such rows (check `references`); fix them and apply again.
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
END $$;
