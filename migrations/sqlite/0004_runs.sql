-- Runs (SPEC §7): one row per run, its ordered logs, the events that arrived ahead
-- of a gap, the server instances executing runs, and named leader leases.
CREATE TABLE runs (
    id                 TEXT PRIMARY KEY,
    org_id             TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    application_id     TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    package_id         TEXT REFERENCES packages(id) ON DELETE SET NULL,
    agent_scope        TEXT,
    agent_name         TEXT,
    kind               TEXT NOT NULL DEFAULT 'package' CHECK (kind IN ('package', 'inline')),
    run_number         BIGINT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('pending', 'running', 'success', 'failed', 'timeout', 'cancelled')),
    input              TEXT,                        -- JSON
    result             TEXT,                        -- JSON {"output": …}
    error              TEXT,                        -- message
    error_code         TEXT,
    error_details      TEXT,                        -- JSON
    version_label      TEXT,
    version_ref        TEXT NOT NULL,
    definition         TEXT NOT NULL,               -- JSON: what the executor runs (prompt, schemas, skills, limits, resolved dependencies)
    model_label        TEXT,
    model_source       TEXT,
    generation         TEXT,                        -- JSON
    user_id            TEXT REFERENCES users(id) ON DELETE SET NULL,
    end_user_id        TEXT REFERENCES end_users(id) ON DELETE SET NULL,
    api_key_id         TEXT REFERENCES api_keys(id) ON DELETE SET NULL,
    schedule_id        TEXT,
    timeout_secs       BIGINT NOT NULL,
    runner_kind        TEXT,
    runner_name        TEXT,
    server_id          TEXT,                        -- instance executing it
    sandbox_id         TEXT,
    sink_secret        TEXT NOT NULL,
    sink_expires_at    BIGINT NOT NULL,
    run_token_hash     TEXT NOT NULL,
    last_sequence      BIGINT NOT NULL DEFAULT 0,
    token_usage        TEXT,                        -- JSON
    duration_ms        BIGINT,
    unread             BIGINT NOT NULL DEFAULT 0,
    created_at         BIGINT NOT NULL,
    started_at         BIGINT,                      -- sandbox leased
    first_event_at     BIGINT,
    last_heartbeat_at  BIGINT,
    completed_at       BIGINT
);
CREATE INDEX runs_app_created ON runs(org_id, application_id, created_at DESC, id DESC);
CREATE INDEX runs_package ON runs(package_id, created_at DESC);
CREATE INDEX runs_active ON runs(status) WHERE status IN ('pending', 'running');

CREATE TABLE run_logs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    sequence    BIGINT,
    type        TEXT NOT NULL,
    level       TEXT NOT NULL,
    message     TEXT,
    data        TEXT,                               -- JSON
    created_at  BIGINT NOT NULL
);
CREATE INDEX run_logs_run ON run_logs(run_id, id);

CREATE TABLE run_event_buffer (
    run_id      TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    sequence    BIGINT NOT NULL,
    body        TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, sequence)
);

CREATE TABLE server_instances (
    id            TEXT PRIMARY KEY,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL
);

CREATE TABLE leader_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
