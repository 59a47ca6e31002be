-- Scale-out (worker role). SQLite (tier 0) keeps the single-process executor; the
-- columns exist so that both backends share one schema.
ALTER TABLE server_instances ADD COLUMN role TEXT NOT NULL DEFAULT 'all';
ALTER TABLE server_instances ADD COLUMN name TEXT;
ALTER TABLE server_instances ADD COLUMN capacity INTEGER NOT NULL DEFAULT 0;
ALTER TABLE server_instances ADD COLUMN in_use INTEGER NOT NULL DEFAULT 0;
ALTER TABLE server_instances ADD COLUMN sandbox_kind TEXT;
ALTER TABLE server_instances ADD COLUMN draining INTEGER NOT NULL DEFAULT 0;

ALTER TABLE runs ADD COLUMN claimed_at INTEGER;
ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
