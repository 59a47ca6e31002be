-- Per-application settings of an installed package: a version pin (by version id),
-- model and proxy choices, generation settings.
ALTER TABLE application_packages ADD COLUMN version_id BIGINT;
ALTER TABLE application_packages ADD COLUMN model_id TEXT;
ALTER TABLE application_packages ADD COLUMN proxy_id TEXT;
ALTER TABLE application_packages ADD COLUMN generation_config TEXT;
