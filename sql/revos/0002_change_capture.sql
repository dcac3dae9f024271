-- Change capture and the write fence, per agency, on the database an agency moves out of.
--
-- Why triggers rather than logical decoding: decoding needs wal_level = logical and a replication
-- slot (a server restart on plain PostgreSQL, a privilege Supabase grants only to some roles, and
-- an unread slot holds WAL forever), and it sees every tenant's changes; the embedded server has
-- no wal2json either. A trigger runs on PostgreSQL 15 and 16 and on Supabase with the core only,
-- commits or rolls back with the write it records, can attribute a child row to its agency
-- through its parents, and is the same trigger that refuses a fenced agency's writes.
--
-- The objects here do not know any tenant table: controlplane.capture_row() is attached to each
-- captured table by the control plane (migration_jobs/etl/capture.py, from the migration map),
-- with the path from the row to its agency id as trigger arguments. Nothing is captured for an
-- agency until it has a row in controlplane.capture_agency.
--
-- What one row of change_log means: "row `row_id` of `table_name`, of agency `agency_id`, was
-- inserted, updated or deleted by transaction `xid`". It holds no values: a catch-up re-reads
-- the row's current state by id (absent: it was deleted), so applying a change twice, or out of
-- order, or after later changes of the same row, gives the same result. See capture.py for the
-- argument that nothing committed around the first copy's snapshot is missed.

CREATE SCHEMA IF NOT EXISTS controlplane;

-- One row per agency whose changes are captured (from its first migration until its move is
-- completed). The position is the snapshot the last completed application read from: every change
-- of a transaction visible to it is in the target. pending_snapshot is the snapshot of the first
-- attempt of an application that has not finished yet; it becomes the position when one does.
CREATE TABLE controlplane.capture_agency (
    agency_id uuid PRIMARY KEY,
    agency_name text NOT NULL DEFAULT '',
    registered_at timestamptz NOT NULL DEFAULT now(),
    applied_snapshot pg_snapshot,
    applied_at timestamptz,
    pending_snapshot pg_snapshot,
    -- The fence: while set, the agency's rows refuse every write except the control plane's own.
    fenced_at timestamptz,
    fence_owner text NOT NULL DEFAULT '',  -- the run that holds the fence and must finish or lift it
    fence_message text NOT NULL DEFAULT ''
);

CREATE TABLE controlplane.change_log (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agency_id uuid NOT NULL,
    table_name text NOT NULL,
    row_id uuid NOT NULL,
    op "char" NOT NULL CHECK (op IN ('I', 'U', 'D')),
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    captured_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- A catch-up reads one agency's changes from a transaction id on.
CREATE INDEX change_log_agency_xid_idx ON controlplane.change_log (agency_id, xid);

-- The control plane's own writes to a fenced agency (a switch back replaying changes) set
-- controlplane.fence_bypass to this key for their transaction. The API roles cannot read it, so
-- an app cannot pass the fence by setting the same name.
CREATE TABLE controlplane.fence_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key text NOT NULL DEFAULT gen_random_uuid()::text
);
INSERT INTO controlplane.fence_key DEFAULT VALUES;


-- The agency a row belongs to: path is the row's column, then (parent table, parent column)
-- pairs up to the agency id, e.g. {post_id, posts, agency_id} for a comment.
CREATE FUNCTION controlplane.capture_agency_of(row_data jsonb, path text[], table_schema text)
RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    steps text[] := path[array_lower(path, 1):array_upper(path, 1)];  -- TG_ARGV counts from 0; this from 1
    value text := row_data ->> steps[1];
    hop int := 2;
BEGIN
    WHILE value IS NOT NULL AND hop < coalesce(array_length(steps, 1), 0) LOOP
        EXECUTE format('SELECT %I::text FROM %I.%I WHERE id = $1::uuid', steps[hop + 1], table_schema, steps[hop])
            INTO value USING value;
        hop := hop + 2;
    END LOOP;
    RETURN value::uuid;
END
$$;


-- BEFORE ROW trigger of every captured table. It runs as its owner (SECURITY DEFINER) so that the
-- API roles need no rights on this schema, and it fires for every role (service_role and the
-- table owner included); only session_replication_role = replica, which needs a superuser (or
-- Supabase's postgres), skips it. Recording in a BEFORE trigger is safe: if the write fails
-- later, the record rolls back with it; a record of a write that changed nothing costs one
-- re-read.
CREATE FUNCTION controlplane.capture_row()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_row jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
    new_row jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
    -- [1]: the row before the write, [2]: after; an update can move a row to another agency.
    agencies uuid[] := '{NULL, NULL}';
    row_ids uuid[] := '{NULL, NULL}';
    agency controlplane.capture_agency;
    bypass text := current_setting('controlplane.fence_bypass', true);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM controlplane.capture_agency) THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF bypass IS NOT NULL AND bypass <> '' AND bypass = (SELECT key FROM controlplane.fence_key) THEN
        -- The control plane's own write (a switch back replaying changes): neither fenced nor captured.
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF old_row IS NOT NULL THEN
        agencies[1] := controlplane.capture_agency_of(old_row, TG_ARGV, TG_TABLE_SCHEMA);
        row_ids[1] := (old_row ->> 'id')::uuid;
    END IF;
    IF new_row IS NOT NULL THEN
        agencies[2] := CASE WHEN old_row IS NOT NULL AND (old_row -> TG_ARGV[0]) = (new_row -> TG_ARGV[0])
                            THEN agencies[1]  -- same parent: same agency, no second lookup
                            ELSE controlplane.capture_agency_of(new_row, TG_ARGV, TG_TABLE_SCHEMA) END;
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
        VALUES (agencies[i], TG_TABLE_NAME, row_ids[i], left(TG_OP, 1));
    END LOOP;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;


-- BEFORE TRUNCATE of every captured table: a truncate would remove captured agencies' rows
-- without a row trigger seeing it.
CREATE FUNCTION controlplane.capture_truncate()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bypass text := current_setting('controlplane.fence_bypass', true);
BEGIN
    IF EXISTS (SELECT 1 FROM controlplane.capture_agency)
       AND (bypass IS NULL OR bypass = '' OR bypass IS DISTINCT FROM (SELECT key FROM controlplane.fence_key)) THEN
        RAISE EXCEPTION 'TRUNCATE of %.% refused: agencies are moving to another database and their changes are captured.',
            TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = 'read_only_sql_transaction',
                  HINT = 'Delete the rows instead, so that the move sees it.';
    END IF;
    RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION controlplane.capture_agency_of(jsonb, text[], text) FROM PUBLIC;
REVOKE ALL ON FUNCTION controlplane.capture_row() FROM PUBLIC;
REVOKE ALL ON FUNCTION controlplane.capture_truncate() FROM PUBLIC;
