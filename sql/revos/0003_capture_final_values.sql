-- The capture and fence triggers decide on a row's final values, see cascades, and fire in every
-- session (etl/capture.py installs them; this file changes the functions they call).
--
-- 1. Final values. A BEFORE trigger whose name sorts after controlplane_capture could change a row
--    after the fence had looked at it (move it into a fenced agency). Inserts and updates are now
--    recorded by an AFTER row trigger, which sees the row as it is stored. Deletes stay BEFORE: OLD
--    cannot change, and the record must exist before a cascade deletes the row's children (2).
-- 2. Cascades. ON DELETE CASCADE and SET NULL change a child row after its parent is gone, so its
--    agency cannot be looked up through the parent any more. The parent's delete was recorded
--    first, with its agency, in the same transaction: capture_agency_of finds it there (one index
--    probe on the deleted rows' ids, at any depth: a grandchild finds its parent's record).
-- 3. Every session. The triggers are ENABLE ALWAYS (set by etl/capture.py), so that a session with
--    session_replication_role = replica, which Supabase's postgres role may set, is fenced and
--    recorded too. capture_row therefore returns early and cheaply when nothing is captured.
-- 4. Accounts. Supabase Auth's tables (auth.users, auth.identities) are captured like the others:
--    their records are named "auth.users", and a path step may name a table "schema.table" (a
--    bare name is in public, as the catalog names them). An update that changes only the columns
--    given as "volatile:<column>" arguments (GoTrue's sign-in bookkeeping, last_sign_in_at and
--    updated_at) is neither recorded nor fenced: those columns carry nothing the other database
--    needs (mapping.TableMap.volatile), and a person who signs in to the old app is not refused.
--
-- sql/unified/0032_reverse_capture_final_values.sql is this file, for the reverse capture.

CREATE INDEX change_log_deleted_row_idx ON controlplane.change_log (row_id) WHERE op = 'D';

-- A table as change_log names it: bare in public, "schema.table" elsewhere.
CREATE FUNCTION controlplane.capture_table_name(table_schema text, table_name text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN table_schema = 'public' THEN table_name ELSE table_schema || '.' || table_name END $$;

-- The agency a row belongs to: path is the row's column, then (parent table, parent column)
-- pairs up to the agency id, e.g. {post_id, posts, agency_id} for a comment; a bare parent name
-- is in `table_schema`. VOLATILE: it must see the delete records written earlier in the same
-- statement (a cascade's parent).
CREATE OR REPLACE FUNCTION controlplane.capture_agency_of(row_data jsonb, path text[], table_schema text)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    steps text[] := path[array_lower(path, 1):array_upper(path, 1)];  -- TG_ARGV counts from 0; this from 1
    value text := row_data ->> steps[1];
    parent text[];
    parent_value text;
    found_rows bigint;
    hop int := 2;
BEGIN
    WHILE value IS NOT NULL AND hop < coalesce(array_length(steps, 1), 0) LOOP
        parent := CASE WHEN strpos(steps[hop], '.') > 0 THEN string_to_array(steps[hop], '.')
                       ELSE ARRAY[table_schema, steps[hop]] END;
        EXECUTE format('SELECT %I::text FROM %I.%I WHERE id = $1::uuid', steps[hop + 1], parent[1], parent[2])
            INTO parent_value USING value;
        GET DIAGNOSTICS found_rows = ROW_COUNT;
        IF found_rows = 0 THEN
            -- The parent is gone. Deleted by this transaction (a cascade, at any depth): its record
            -- names the agency. Gone earlier: the row belongs to no agency.
            SELECT agency_id::text INTO value FROM controlplane.change_log
             WHERE op = 'D' AND row_id = value::uuid AND xid = pg_current_xact_id()
               AND table_name = controlplane.capture_table_name(parent[1], parent[2])
             LIMIT 1;
            RETURN value::uuid;
        END IF;
        value := parent_value;
        hop := hop + 2;
    END LOOP;
    RETURN value::uuid;
END
$$;


-- The capture and fence trigger: AFTER INSERT OR UPDATE and BEFORE DELETE of every captured
-- table, for every role and in every session (see above). Its arguments are the row's path to
-- its agency, then "volatile:<column>" for each column an update may change alone unrecorded. It
-- runs as its owner (SECURITY DEFINER) so that the API roles need no rights on this schema. A
-- record of a write that is cancelled later rolls back with it, and a record of a write that
-- changed nothing costs one re-read.
CREATE OR REPLACE FUNCTION controlplane.capture_row()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_row jsonb;
    new_row jsonb;
    path text[];
    volatile text[];
    -- [1]: the row before the write, [2]: after; an update can move a row to another agency.
    agencies uuid[] := '{NULL, NULL}';
    row_ids uuid[] := '{NULL, NULL}';
    agency controlplane.capture_agency;
    bypass text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM controlplane.capture_agency) THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    bypass := current_setting('controlplane.fence_bypass', true);
    IF bypass IS NOT NULL AND bypass <> '' AND bypass = (SELECT key FROM controlplane.fence_key) THEN
        -- The control plane's own write (a switch back replaying changes): neither fenced nor captured.
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_ARGV[TG_NARGS - 1] LIKE 'volatile:%' THEN  -- a query per row only where there are such columns
        SELECT coalesce(array_agg(a) FILTER (WHERE a NOT LIKE 'volatile:%'), '{}'),
               coalesce(array_agg(substr(a, 10)) FILTER (WHERE a LIKE 'volatile:%'), '{}')
          INTO path, volatile FROM unnest(TG_ARGV) a;
    ELSE
        path := TG_ARGV;
        volatile := '{}';
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_row := to_jsonb(OLD);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_row := to_jsonb(NEW);
    END IF;
    IF TG_OP = 'UPDATE' AND cardinality(volatile) > 0 AND (old_row - volatile) = (new_row - volatile) THEN
        RETURN NULL;  -- sign-in bookkeeping alone (see 4. above)
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
    IF agencies[2] = agencies[1] AND row_ids[2] = row_ids[1] THEN
        agencies[1] := NULL;  -- an update within one agency: one record
    END IF;
    FOR i IN 1..2 LOOP
        CONTINUE WHEN agencies[i] IS NULL;
        SELECT * INTO agency FROM controlplane.capture_agency WHERE agency_id = agencies[i];
        CONTINUE WHEN NOT FOUND;
        IF agency.fenced_at IS NOT NULL THEN
            RAISE EXCEPTION '%', agency.fence_message
                USING ERRCODE = 'read_only_sql_transaction',
                      DETAIL = format('%s of %s.%s %s refused: agency %s is fenced since %s.',
                                      TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME, row_ids[i], agencies[i], agency.fenced_at),
                      HINT = 'Its data is read-only here; the flags API tells the apps where to write.';
        END IF;
        INSERT INTO controlplane.change_log (agency_id, table_name, row_id, op)
        VALUES (agencies[i], controlplane.capture_table_name(TG_TABLE_SCHEMA, TG_TABLE_NAME), row_ids[i], left(TG_OP, 1));
    END LOOP;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

REVOKE ALL ON FUNCTION controlplane.capture_agency_of(jsonb, text[], text) FROM PUBLIC;
REVOKE ALL ON FUNCTION controlplane.capture_row() FROM PUBLIC;
