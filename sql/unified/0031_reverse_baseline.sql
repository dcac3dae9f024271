-- The rows AudienceOS already had and a RevOS agency reused (the agency, users, clients), as they
-- were at that agency's cutover. A switch back sends back only the columns the apps changed since,
-- so RevOS keeps its own values where the unified row carried AudienceOS's (etl/reverse.py).
-- agency_id is the RevOS agency, as in controlplane.id_map.
CREATE TABLE controlplane.reverse_baseline (
    agency_id uuid NOT NULL,
    table_name text NOT NULL,
    row_id uuid NOT NULL,
    row_data jsonb NOT NULL,
    PRIMARY KEY (agency_id, table_name, row_id)
);
