-- The capture and fence trigger's function, made cheaper for the apps' writes: most captured
-- tables carry the agency id on the row, and most writes are of agencies nobody is moving.
--
-- What went, measured as the trigger's own time per row (EXPLAIN ANALYZE of an update of one
-- agency's leads; docs/zero-loss.md has the figures): a copy of OLD and NEW as jsonb where the row
-- names its agency itself (read the two fields instead); the call of capture_agency_of for such a
-- row; the EXISTS query ahead of every write while any agency is captured (the agency's own lookup
-- answers it); reading the whole capture_agency row (two columns are needed); the bypass setting
-- read before it can matter (only a write of a captured agency can be the control plane's own);
-- capture_table_name, a function call per record, written out. The change_log primary key goes
-- too: nothing reads change_log by seq, and its index was a third of a record's cost.
--
-- The function decides exactly as before (0003's notes 1-4 hold): the same records, the same
-- fence, the same error.
--
-- sql/revos/0031_capture_fast_path.sql is this file; this copy is for the reverse capture.

ALTER TABLE controlplane.change_log DROP CONSTRAINT change_log_pkey;

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
            RETURN NULL;  -- sign-in bookkeeping alone (0003's note 4)
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
