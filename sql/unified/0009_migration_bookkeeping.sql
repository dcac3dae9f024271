-- The migration's own bookkeeping, kept in the unified database so that it commits in the same
-- transaction as the rows it describes. Schema controlplane is not exposed to the API roles.
--
-- id_map: one row per migrated source row; it makes foreign-key rewriting deterministic, tells
-- a catch-up run which unified rows came from RevOS, and tells a rollback exactly what to delete
-- (inserted = false marks a row that already existed in AudienceOS and was only reused).
CREATE TABLE controlplane.id_map (
    agency_id uuid NOT NULL,
    source_table text NOT NULL,
    source_id uuid NOT NULL,
    target_table text NOT NULL,
    target_id uuid NOT NULL,
    inserted boolean NOT NULL,
    PRIMARY KEY (source_table, source_id)
);
CREATE INDEX id_map_agency_idx ON controlplane.id_map (agency_id, source_table);

-- checkpoint: the last source id a committed batch reached, per run attempt and table.
CREATE TABLE controlplane.checkpoint (
    agency_id uuid NOT NULL,
    source_table text NOT NULL,
    last_source_id uuid,
    rows_done bigint NOT NULL DEFAULT 0,
    completed boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agency_id, source_table)
);
