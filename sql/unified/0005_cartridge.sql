-- Phase 1, step 3: one cartridge table for AudienceOS training cartridges and RevOS brand and
-- style cartridges, as the seed defines it. agency_id is NOT NULL (the RLS pattern needs it) and
-- the type is checked; everything type-specific lives in config.
CREATE TABLE cartridge (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agency_id uuid NOT NULL REFERENCES agency(id),
    user_id uuid REFERENCES "user"(id),
    name varchar(200) NOT NULL,
    type varchar(50) NOT NULL
        CHECK (type IN ('training', 'brand', 'style', 'voice', 'preferences', 'instructions')),
    app_context varchar(20) NOT NULL DEFAULT 'both'
        CONSTRAINT cartridge_app_context_check CHECK (app_context IN ('audience', 'revos', 'both')),
    config jsonb NOT NULL DEFAULT '{}',
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- AudienceOS's training cartridges keep their ids and become app_context 'audience' rows.
INSERT INTO cartridge (id, agency_id, user_id, name, type, app_context, config, is_active, created_at, updated_at)
SELECT id, agency_id, user_id, name,
       CASE WHEN kind IN ('voice', 'style', 'preferences', 'instructions', 'brand') THEN kind ELSE 'training' END,
       'audience', content, is_active, created_at, updated_at
FROM training_cartridge;

-- Moved, not copied: one table, one truth.
DROP TABLE training_cartridge;
