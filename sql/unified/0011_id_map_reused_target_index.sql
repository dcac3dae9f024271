-- A row the migration inserted keeps its RevOS id (its target_id equals its source_id), so a lookup
-- by unified id goes through the primary key (source_table, source_id). Only reused rows (the
-- agency, users and clients AudienceOS already had) carry another unified id; they alone need an
-- index on target_id. Indexing every row cost about 40 % of the id map's write time in a migration.
DROP INDEX IF EXISTS controlplane.id_map_target_idx;
CREATE INDEX IF NOT EXISTS id_map_reused_target_idx ON controlplane.id_map (target_id) WHERE NOT inserted;
