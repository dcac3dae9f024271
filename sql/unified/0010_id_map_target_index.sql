-- Verification and rollback look rows up in the id map by their unified id (does this unified row
-- come from the agency's migration?); without this index each lookup scans the agency's id map.
CREATE INDEX IF NOT EXISTS id_map_target_idx ON controlplane.id_map (target_id);
