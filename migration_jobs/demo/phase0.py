"""The seed's Phase 0 problems, put back on demand so the schema audit has something real to find.

The checked-in schemas describe RevOS and AudienceOS *after* Phase 0. `phase0_problems_plant`
re-creates what Phase 0 cleaned up (seed: DATABASE-MERGE, "PHASE 0 COMPLETE"), and
`phase0_problems_clear` runs the seed's own Phase 0 cleanup SQL. Both are idempotent. They are
for demo and test databases only: the audit itself never writes.
"""

from __future__ import annotations

from django.db import connections, transaction

# RevOS before Phase 0: three tables left over from the ABBY project (with a few rows), the empty
# singular chat tables beside the live plural ones, and the two backup tables with RLS off. The
# leftovers keep RLS on, as the rest of RevOS had it, so each finding points at one seed problem.
REVOS_PLANT_SQL = """
CREATE TABLE IF NOT EXISTS public.outfit_history (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_ref text,
    outfit jsonb NOT NULL DEFAULT '{}',
    worn_on date,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS public.swatches (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    hex char(7) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS public.swipe_cartridges (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    direction varchar(5) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO public.outfit_history (user_ref, outfit, worn_on)
SELECT 'abby-user-' || n, jsonb_build_object('items', n), current_date - n
FROM generate_series(1, 3) AS n WHERE NOT EXISTS (SELECT 1 FROM public.outfit_history);
INSERT INTO public.swatches (name, hex)
SELECT name, hex FROM (VALUES ('Sand', '#c2b280'), ('Navy', '#000080')) AS v (name, hex)
WHERE NOT EXISTS (SELECT 1 FROM public.swatches);
INSERT INTO public.swipe_cartridges (name, direction)
SELECT 'deck ' || n, CASE WHEN n % 2 = 0 THEN 'left' ELSE 'right' END
FROM generate_series(1, 4) AS n WHERE NOT EXISTS (SELECT 1 FROM public.swipe_cartridges);

CREATE TABLE IF NOT EXISTS public.chat_session (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid,
    title varchar(300),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS public.chat_message (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id uuid REFERENCES public.chat_session (id),
    role varchar(20),
    content text,
    created_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE public.outfit_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.swatches ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.swipe_cartridges ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.chat_session ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.chat_message ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.backup_dm_sequences DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.campaigns_trigger_word_backup DISABLE ROW LEVEL SECURITY;
"""

# AudienceOS before Phase 0: "user" had policies but RLS off, permission was unrestricted.
# The policies stay in place, so turning RLS back on restores exactly what Phase 0 left.
UNIFIED_PLANT_SQL = """
ALTER TABLE public."user" DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.permission DISABLE ROW LEVEL SECURITY;
"""

# The seed's Phase 0 cleanup, as executed on 2026-01-20.
REVOS_CLEAR_SQL = """
DROP TABLE IF EXISTS public.outfit_history;
DROP TABLE IF EXISTS public.swatches;
DROP TABLE IF EXISTS public.swipe_cartridges;
DROP TABLE IF EXISTS public.chat_message;
DROP TABLE IF EXISTS public.chat_session;
ALTER TABLE public.backup_dm_sequences ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.campaigns_trigger_word_backup ENABLE ROW LEVEL SECURITY;
"""

UNIFIED_CLEAR_SQL = """
ALTER TABLE public."user" ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.permission ENABLE ROW LEVEL SECURITY;
"""

PLANT_SQL = {"revos": REVOS_PLANT_SQL, "unified": UNIFIED_PLANT_SQL}
CLEAR_SQL = {"revos": REVOS_CLEAR_SQL, "unified": UNIFIED_CLEAR_SQL}


def _execute(sql_by_alias: dict[str, str], database: str) -> None:
    if database not in sql_by_alias:
        raise ValueError(f"database must be one of {', '.join(sorted(sql_by_alias))}, not {database!r}")
    with transaction.atomic(using=database), connections[database].cursor() as cursor:
        cursor.execute(sql_by_alias[database])


def phase0_problems_plant(*, database: str) -> None:
    """Re-create the Phase 0 problems in the `revos` or `unified` database (demo and tests only)."""
    _execute(PLANT_SQL, database)


def phase0_problems_clear(*, database: str) -> None:
    """Run the seed's Phase 0 cleanup on the `revos` or `unified` database."""
    _execute(CLEAR_SQL, database)
