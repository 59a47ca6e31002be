-- The version of each application's runs list (SQLite only). The server keeps the
-- pages of GET /api/runs it rendered (routes/runs/page_cache.rs) and serves one again
-- only while its application's version is the one it was rendered at. So every write
-- that can change a listed page bumps the version, from any connection or process:
-- a run inserted or deleted, a listed column of a run updated (the column list below
-- is every column the page shows, filters or sorts on; a unit test in list_json.rs
-- checks it against the page's SQL), and what is shown beside a run (the names of its
-- user, end-user and API key, and their ids as the joins read them), which bumps
-- every application. Updates of unlisted columns (the event sequence, heartbeats,
-- claims) bump nothing. Every application with runs has a row (seeded below for the
-- runs written before this migration); one without has version 0 and an empty list.
CREATE TABLE run_list_versions (
    application_id TEXT PRIMARY KEY,
    version        INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO run_list_versions (application_id, version)
    SELECT DISTINCT application_id, 1 FROM runs;

CREATE TRIGGER run_list_insert AFTER INSERT ON runs BEGIN
    INSERT INTO run_list_versions (application_id, version) VALUES (NEW.application_id, 1)
        ON CONFLICT (application_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER run_list_delete AFTER DELETE ON runs BEGIN
    INSERT INTO run_list_versions (application_id, version) VALUES (OLD.application_id, 1)
        ON CONFLICT (application_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER run_list_update AFTER UPDATE OF
    id, org_id, application_id, package_id, agent_scope, agent_name, kind, run_number,
    status, input, result, error, error_code, error_details, version_label, version_ref,
    model_label, model_source, proxy_label, generation, user_id, end_user_id, api_key_id,
    schedule_id, schedule_name, runner_kind, runner_name, token_usage, duration_ms, unread,
    created_at, completed_at, origin, context_snapshot
ON runs BEGIN
    INSERT INTO run_list_versions (application_id, version) VALUES (NEW.application_id, 1)
        ON CONFLICT (application_id) DO UPDATE SET version = version + 1;
    UPDATE run_list_versions SET version = version + 1
        WHERE application_id = OLD.application_id AND OLD.application_id <> NEW.application_id;
END;

CREATE TRIGGER run_list_user_name AFTER UPDATE OF id, name ON users BEGIN
    UPDATE run_list_versions SET version = version + 1;
END;

CREATE TRIGGER run_list_user_delete AFTER DELETE ON users BEGIN
    UPDATE run_list_versions SET version = version + 1;
END;

CREATE TRIGGER run_list_end_user_name AFTER UPDATE OF id, name, external_id ON end_users BEGIN
    UPDATE run_list_versions SET version = version + 1;
END;

CREATE TRIGGER run_list_end_user_delete AFTER DELETE ON end_users BEGIN
    UPDATE run_list_versions SET version = version + 1;
END;

CREATE TRIGGER run_list_api_key_name AFTER UPDATE OF id, name ON api_keys BEGIN
    UPDATE run_list_versions SET version = version + 1;
END;

CREATE TRIGGER run_list_api_key_delete AFTER DELETE ON api_keys BEGIN
    UPDATE run_list_versions SET version = version + 1;
END;
