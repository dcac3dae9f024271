-- The database's mark as a demo or test database (as Rails records its environment in
-- ar_internal_metadata). The control plane writes it when it seeds a database that holds no tenant
-- rows or builds one for the tests; seed_demo --reset and --with-phase0-problems run only on a
-- database that has it. One row at most.
CREATE TABLE controlplane.database_mark (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    purpose text NOT NULL CHECK (purpose IN ('demo', 'test')),
    marked_at timestamptz NOT NULL DEFAULT now(),
    reason text NOT NULL
);
