-- The guard (0062) at the cost of one index probe for the apps' writes to agencies RevOS does not
-- hold, which is nearly all of the unified database's traffic while a few agencies move.
--
-- 0062 copied every written row to jsonb and called two functions (guard_refusal, then
-- capture_agency_of) before it knew whether the row's agency is guarded at all. Where the row
-- names its agency itself (the 'agency_id' path of every public tenant table), the function now
-- reads that field and asks agency_guard first; the copy and the rest are for guarded agencies'
-- rows, and for the accounts, whose agency is a step away. guard_row runs as its owner, so the
-- separate SECURITY DEFINER guard_refusal goes.
--
-- Which writes are refused is unchanged (0062's notes hold).

CREATE OR REPLACE FUNCTION controlplane.guard_row()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    path text[] := TG_ARGV[0:TG_NARGS - 1];  -- TG_ARGV counts from 0; a slice counts from 1
    volatile text[];
    stored jsonb;
    agency uuid;
    message text;  -- agency_guard.message is NOT NULL: NULL here means not looked up yet
BEGIN
    IF path = '{agency_id}' THEN
        IF TG_OP = 'INSERT' THEN
            agency := NEW.agency_id;
        ELSE
            agency := OLD.agency_id;
        END IF;
        SELECT g.message INTO message FROM controlplane.agency_guard g WHERE g.agency_id = agency;
        IF NOT FOUND THEN
            RETURN NULL;  -- an agency RevOS does not hold: the common case
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM controlplane.agency_guard) THEN
        RETURN NULL;
    END IF;
    stored := to_jsonb(CASE WHEN TG_OP = 'INSERT' THEN NEW ELSE OLD END);
    IF TG_OP = 'INSERT' AND stored ->> 'app_context' IS DISTINCT FROM 'revos' THEN
        RETURN NULL;  -- a new AudienceOS or shared row: the apps' own
    END IF;
    -- The arguments: the row's path to its agency, then "volatile:<column>" as for the capture.
    IF TG_ARGV[TG_NARGS - 1] LIKE 'volatile:%' THEN
        SELECT coalesce(array_agg(a) FILTER (WHERE a NOT LIKE 'volatile:%'), '{}'),
               coalesce(array_agg(substr(a, 10)) FILTER (WHERE a LIKE 'volatile:%'), '{}')
          INTO path, volatile FROM unnest(TG_ARGV) a;
        IF TG_OP = 'UPDATE' AND (stored - volatile) = (to_jsonb(NEW) - volatile) THEN
            RETURN NULL;  -- a sign-in's bookkeeping alone
        END IF;
    END IF;
    IF message IS NULL THEN
        SELECT g.message INTO message FROM controlplane.agency_guard g
         WHERE g.agency_id = controlplane.capture_agency_of(stored, path, 'public');
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    IF TG_OP <> 'INSERT' AND NOT EXISTS (
        SELECT 1 FROM controlplane.id_map m
         WHERE m.target_id = (stored ->> 'id')::uuid AND m.inserted
           AND m.target_table = CASE WHEN TG_TABLE_SCHEMA = 'public' THEN TG_TABLE_NAME
                                     ELSE TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME END
    ) THEN
        RETURN NULL;  -- a row AudienceOS had (reused) or the apps created: theirs to write
    END IF;
    RAISE EXCEPTION '%', message
        USING ERRCODE = 'read_only_sql_transaction',
              DETAIL = format('%s of %s.%s %s refused: RevOS holds the agency''s data until its cutover.',
                              TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME, stored ->> 'id'),
              HINT = 'Write it in RevOS; the flags API tells the apps where to write.';
END
$$;
REVOKE ALL ON FUNCTION controlplane.guard_row() FROM PUBLIC;

DROP FUNCTION controlplane.guard_refusal(jsonb, text[], text, boolean);
