-- Realtime (SPEC §10) and webhooks (SPEC §11).
--
-- The same tables and triggers as on PostgreSQL (see its 0005 for the reasoning).
-- SQLite serializes writers, so the per-organization counter is trivially gap-free
-- and commit-ordered; the in-process bus tells readers to look (no NOTIFY).
--
-- A run state change that a webhook subscribes to writes its outbox rows (one per
-- matching endpoint) in the same transaction too.

CREATE TABLE realtime_counters (
    org_id  TEXT PRIMARY KEY REFERENCES organizations(id) ON DELETE CASCADE,
    seq     BIGINT NOT NULL
);

CREATE TABLE realtime_events (
    org_id          TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    run_id          TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    application_id  TEXT NOT NULL,
    end_user_id     TEXT,                        -- runs of an end user are theirs alone
    package_id      TEXT,
    kind            TEXT NOT NULL CHECK (kind IN ('run_update', 'run_log', 'run_metric')),
    log_id          BIGINT,
    data            TEXT NOT NULL,               -- JSON: small (status, error code, usage)
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (org_id, seq)
);
CREATE INDEX realtime_events_run ON realtime_events(run_id, seq);
CREATE INDEX realtime_events_created ON realtime_events(created_at);

CREATE TABLE webhooks (
    id                          TEXT PRIMARY KEY,
    org_id                      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    application_id              TEXT REFERENCES applications(id) ON DELETE CASCADE,  -- NULL: org level
    url                         TEXT NOT NULL,
    description                 TEXT,
    events                      TEXT NOT NULL,   -- ",run.success,run.failed," (matched with LIKE)
    payload_mode                TEXT NOT NULL CHECK (payload_mode IN ('full', 'summary')),
    enabled                     BIGINT NOT NULL DEFAULT 1,
    disabled_reason             TEXT,
    secret                      TEXT NOT NULL,   -- sealed envelope
    previous_secret             TEXT,            -- sealed; signs too until it expires
    previous_secret_expires_at  BIGINT,
    created_by                  TEXT,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL
);
CREATE INDEX webhooks_org ON webhooks(org_id, application_id);

CREATE TABLE webhook_deliveries (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id        TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    org_id            TEXT NOT NULL,
    event_id          TEXT NOT NULL,             -- stable across retries (webhook-id header)
    event_type        TEXT NOT NULL,
    run_id            TEXT,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'success', 'failed')),
    attempts          BIGINT NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT NOT NULL,
    claimed_until     BIGINT,                    -- a worker is attempting it until then
    payload           TEXT,                      -- the body, frozen at the first attempt
    last_status_code  BIGINT,
    last_error        TEXT,
    event_created_at  BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries(webhook_id, id DESC);

CREATE TABLE webhook_attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id   BIGINT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt       BIGINT NOT NULL,
    status_code   BIGINT,
    latency_ms    BIGINT NOT NULL,
    error         TEXT,
    response      TEXT,                          -- the first KiB of the answer
    created_at    BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, attempt);

CREATE TRIGGER runs_inserted AFTER INSERT ON runs
BEGIN
    INSERT OR IGNORE INTO realtime_counters (org_id, seq) VALUES (NEW.org_id, 0);
    UPDATE realtime_counters SET seq = seq + 1 WHERE org_id = NEW.org_id;
    INSERT INTO realtime_events (org_id, seq, run_id, application_id, end_user_id, package_id, kind, log_id, data, created_at)
    SELECT NEW.org_id, c.seq, NEW.id, NEW.application_id, NEW.end_user_id, NEW.package_id, 'run_update', NULL, json_object('status', NEW.status, 'error_code', NEW.error_code), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
      FROM realtime_counters c WHERE c.org_id = NEW.org_id;
END;

CREATE TRIGGER runs_status_changed AFTER UPDATE OF status ON runs
WHEN NEW.status IS NOT OLD.status
BEGIN
    INSERT OR IGNORE INTO realtime_counters (org_id, seq) VALUES (NEW.org_id, 0);
    UPDATE realtime_counters SET seq = seq + 1 WHERE org_id = NEW.org_id;
    INSERT INTO realtime_events (org_id, seq, run_id, application_id, end_user_id, package_id, kind, log_id, data, created_at)
    SELECT NEW.org_id, c.seq, NEW.id, NEW.application_id, NEW.end_user_id, NEW.package_id, 'run_update', NULL, json_object('status', NEW.status, 'error_code', NEW.error_code), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
      FROM realtime_counters c WHERE c.org_id = NEW.org_id;
    -- A run enters each status once (a re-queued run re-enters `running`, and the
    -- unique key keeps its `run.started` single), so the event id is stable.
    INSERT OR IGNORE INTO webhook_deliveries (webhook_id, org_id, event_id, event_type, run_id, status,
                                              attempts, next_attempt_at, event_created_at, created_at, updated_at)
    SELECT w.id, NEW.org_id, 'evt_' || substr(NEW.id, 5) || '_' || NEW.status, CASE
            WHEN NEW.status = 'running' THEN 'run.started'
            WHEN NEW.status = 'failed' AND NEW.error_code = 'connection_missing' THEN 'run.connection_missing'
            ELSE 'run.' || NEW.status END, NEW.id, 'pending',
           0, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
      FROM webhooks w
     WHERE NEW.status <> 'pending' AND w.org_id = NEW.org_id AND w.enabled = 1
       AND (w.application_id IS NULL OR w.application_id = NEW.application_id)
       AND w.events LIKE '%,' || (CASE
            WHEN NEW.status = 'running' THEN 'run.started'
            WHEN NEW.status = 'failed' AND NEW.error_code = 'connection_missing' THEN 'run.connection_missing'
            ELSE 'run.' || NEW.status END) || ',%';
END;

CREATE TRIGGER runs_usage_changed AFTER UPDATE OF token_usage ON runs
WHEN NEW.token_usage IS NOT OLD.token_usage
BEGIN
    INSERT OR IGNORE INTO realtime_counters (org_id, seq) VALUES (NEW.org_id, 0);
    UPDATE realtime_counters SET seq = seq + 1 WHERE org_id = NEW.org_id;
    INSERT INTO realtime_events (org_id, seq, run_id, application_id, end_user_id, package_id, kind, log_id, data, created_at)
    SELECT NEW.org_id, c.seq, NEW.id, NEW.application_id, NEW.end_user_id, NEW.package_id, 'run_metric', NULL, json_object('token_usage', json(NEW.token_usage)), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
      FROM realtime_counters c WHERE c.org_id = NEW.org_id;
END;

CREATE TRIGGER run_logs_inserted AFTER INSERT ON run_logs
BEGIN
    INSERT OR IGNORE INTO realtime_counters (org_id, seq)
        SELECT org_id, 0 FROM runs WHERE id = NEW.run_id;
    UPDATE realtime_counters SET seq = seq + 1
     WHERE org_id = (SELECT org_id FROM runs WHERE id = NEW.run_id);
    INSERT INTO realtime_events (org_id, seq, run_id, application_id, end_user_id, package_id, kind, log_id, data, created_at)
    SELECT r.org_id, c.seq, NEW.run_id, r.application_id, r.end_user_id, r.package_id, 'run_log', NEW.id, '{}', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
      FROM runs r JOIN realtime_counters c ON c.org_id = r.org_id
     WHERE r.id = NEW.run_id;
END;
