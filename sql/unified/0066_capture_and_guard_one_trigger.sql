-- The reverse capture and the guard in one trigger call, for the apps' writes to the agencies
-- nobody is moving: the unified database carries all of AudienceOS's live traffic.
--
-- Two AFTER row triggers per write (controlplane_capture and controlplane_guard, each a
-- SECURITY DEFINER function with its own search_path) cost an app's single-row write about as
-- much as the rest of the server's work on it together, even when both answer "not this agency"
-- after one index probe: each queues its own after-trigger event, re-reads the row for it and
-- switches user and search_path around the call (docs/zero-loss.md has the measurements). Here
-- the capture's function also makes the guard's decision, on the same row, in the same call, and
-- where a table carries the capture triggers its guard trigger is disabled: the capture install
-- (etl/capture.py) disables it in the transaction that creates them, and a removal enables it
-- again, so every such table always has exactly one of the two doing the guard's work.
--
-- What the guard refuses is 0062's (and 0064's) rule, decided on the row as stored: OLD for an
-- update or delete, the final NEW for an insert. Which writers it refuses: the trigger fires for
-- every role (the capture needs that), so the writer is read inside, where current_user is the
-- function's owner. It is the role SET ROLE chose (PostgREST's authenticated, anon or
-- service_role), or else the role that signed in (GoTrue's supabase_auth_admin). That also holds
-- the apps' own SECURITY DEFINER functions and the cascades their deletes start to the guard,
-- which 0062's `WHEN current_user ...` let through: both are the apps' writes to rows RevOS
-- holds, which a catch-up would undo. The guard's own trigger takes the same rule (below).
--
-- The guard's deletes are decided BEFORE the row goes (the capture's delete trigger), which for
-- OLD, a row no trigger can change any more, is the same decision.
--
-- The capture half is 0063's, unchanged: the same records, the same fence, the same error.
-- sql/revos/0031_capture_fast_path.sql stays RevOS's function (RevOS has no guard).

CREATE OR REPLACE FUNCTION controlplane.capture_row()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_row jsonb;
    new_row jsonb;
    path text[] := TG_ARGV[0:TG_NARGS - 1];  -- TG_ARGV counts from 0; a slice counts from 1
    volatile text[];
    -- [1]: the row before the write, [2]: after; an update can move a row to another agency.
    agencies uuid[] := '{NULL, NULL}';
    row_ids uuid[] := '{NULL, NULL}';
    stored_agency uuid;  -- the guard's: the agency of the row as stored (OLD, or an insert's NEW)
    stored_id uuid;
    writer text;
    guard_message text;
    fenced_at timestamptz;
    fence_message text;
    bypass text;
BEGIN
    IF TG_ARGV[TG_NARGS - 1] LIKE 'volatile:%' THEN  -- a query per row only where there are such columns
        SELECT coalesce(array_agg(a) FILTER (WHERE a NOT LIKE 'volatile:%'), '{}'),
               coalesce(array_agg(substr(a, 10)) FILTER (WHERE a LIKE 'volatile:%'), '{}')
          INTO path, volatile FROM unnest(TG_ARGV) a;
    END IF;
    IF volatile IS NULL AND path = '{agency_id}' THEN
        -- The common shape, the agency id on the row: read the fields, no copy of the row as jsonb.
        IF TG_OP <> 'INSERT' THEN
            agencies[1] := OLD.agency_id;
            row_ids[1] := OLD.id;
        END IF;
        IF TG_OP <> 'DELETE' THEN
            agencies[2] := NEW.agency_id;
            row_ids[2] := NEW.id;
        END IF;
    ELSE
        IF TG_OP <> 'INSERT' THEN
            old_row := to_jsonb(OLD);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            new_row := to_jsonb(NEW);
        END IF;
        IF volatile IS NOT NULL AND TG_OP = 'UPDATE' AND (old_row - volatile) = (new_row - volatile) THEN
            RETURN NULL;  -- sign-in bookkeeping alone (0003's note 4): neither recorded nor guarded
        END IF;
        IF old_row IS NOT NULL THEN
            agencies[1] := controlplane.capture_agency_of(old_row, path, 'public');
            row_ids[1] := (old_row ->> 'id')::uuid;
        END IF;
        IF new_row IS NOT NULL THEN
            agencies[2] := CASE WHEN old_row IS NOT NULL AND (old_row -> path[1]) = (new_row -> path[1])
                                    THEN agencies[1]  -- same parent: same agency, no second lookup
                                ELSE controlplane.capture_agency_of(new_row, path, 'public') END;
            row_ids[2] := (new_row ->> 'id')::uuid;
        END IF;
    END IF;

    -- The guard (0062): the apps' writes to the unified copies of rows RevOS still holds.
    writer := current_setting('role');  -- 'none' unless the session SET ROLE
    IF writer = 'none' THEN
        writer := session_user;
    END IF;
    IF writer IN ('anon', 'authenticated', 'service_role', 'supabase_auth_admin') THEN
        IF TG_OP = 'INSERT' THEN
            stored_agency := agencies[2];
            stored_id := row_ids[2];
        ELSE
            stored_agency := agencies[1];
            stored_id := row_ids[1];
        END IF;
        SELECT g.message INTO guard_message FROM controlplane.agency_guard g WHERE g.agency_id = stored_agency;
        -- Nested, not one condition: an IF holding a subquery runs as a query for every write.
        IF FOUND AND (TG_OP <> 'INSERT' OR (to_jsonb(NEW) ->> 'app_context') IS NOT DISTINCT FROM 'revos') THEN
            IF TG_OP = 'INSERT' OR EXISTS (
                SELECT 1 FROM controlplane.id_map m
                 WHERE m.target_id = stored_id AND m.inserted
                   AND m.target_table = CASE WHEN TG_TABLE_SCHEMA = 'public' THEN TG_TABLE_NAME
                                             ELSE TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME END
            ) THEN
                RAISE EXCEPTION '%', guard_message
                    USING ERRCODE = 'read_only_sql_transaction',
                          DETAIL = format('%s of %s.%s %s refused: RevOS holds the agency''s data until its cutover.',
                                          TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME, stored_id),
                          HINT = 'Write it in RevOS; the flags API tells the apps where to write.';
            END IF;
        END IF;
        -- Otherwise: an agency RevOS does not hold (the common case), a new AudienceOS or shared
        -- row, or a row AudienceOS had (reused) or the apps created: theirs to write.
    END IF;

    -- The capture and its fence (0063).
    IF agencies[2] = agencies[1] AND row_ids[2] = row_ids[1] THEN
        agencies[1] := NULL;  -- an update within one agency: one record
    END IF;
    FOR i IN 1..2 LOOP
        CONTINUE WHEN agencies[i] IS NULL;
        SELECT c.fenced_at, c.fence_message INTO fenced_at, fence_message
          FROM controlplane.capture_agency c WHERE c.agency_id = agencies[i];
        CONTINUE WHEN NOT FOUND;  -- an agency nobody is moving: the common case
        bypass := current_setting('controlplane.fence_bypass', true);
        IF bypass <> '' AND bypass = (SELECT key FROM controlplane.fence_key) THEN
            -- The control plane's own write (a switch back replaying changes): neither fenced nor captured.
            EXIT;
        END IF;
        IF fenced_at IS NOT NULL THEN
            RAISE EXCEPTION '%', fence_message
                USING ERRCODE = 'read_only_sql_transaction',
                      DETAIL = format('%s of %s.%s %s refused: agency %s is fenced since %s.',
                                      TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME, row_ids[i], agencies[i], fenced_at),
                      HINT = 'Its data is read-only here; the flags API tells the apps where to write.';
        END IF;
        INSERT INTO controlplane.change_log (agency_id, table_name, row_id, op)
        VALUES (agencies[i], CASE WHEN TG_TABLE_SCHEMA = 'public' THEN TG_TABLE_NAME ELSE TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME END, row_ids[i], left(TG_OP, 1));
    END LOOP;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

REVOKE ALL ON FUNCTION controlplane.capture_row() FROM PUBLIC;

-- The guard's own trigger decides on the writer by the same rule, so that a table's guard does
-- not depend on which of the two triggers does its work. Each is created again as 0062 made it,
-- but for its WHEN; where the table carries the capture triggers already, it is left disabled.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT n.nspname, c.relname, encode(g.tgargs, 'escape') AS arguments,
               EXISTS (SELECT 1 FROM pg_trigger k WHERE k.tgrelid = c.oid AND k.tgname = 'controlplane_capture') AS captured
          FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE g.tgname = 'controlplane_guard'
         ORDER BY 1, 2
    LOOP
        EXECUTE format('CREATE OR REPLACE TRIGGER controlplane_guard AFTER INSERT OR UPDATE OR DELETE ON %I.%I FOR EACH ROW'
                       ' WHEN (CASE current_setting(''role'') WHEN ''none'' THEN session_user::text ELSE current_setting(''role'') END'
                       '       IN (''anon'', ''authenticated'', ''service_role'', ''supabase_auth_admin''))'
                       ' EXECUTE FUNCTION controlplane.guard_row(%s)',
                       t.nspname, t.relname,
                       (SELECT string_agg(quote_literal(a), ', ')
                          FROM unnest(array_remove(string_to_array(t.arguments, '\000'), '')) a));  -- each ends in NUL
        EXECUTE format('ALTER TABLE %I.%I %s TRIGGER controlplane_guard', t.nspname, t.relname,
                       CASE WHEN t.captured THEN 'DISABLE' ELSE 'ENABLE ALWAYS' END);
    END LOOP;
END $$;
