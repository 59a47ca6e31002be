-- Realtime (SPEC §10) and webhooks (SPEC §11).
--
-- Every change a viewer can see (a run's status or usage, a new log entry) appends a
-- row to `realtime_events` in the same transaction, numbered by a per-organization
-- counter. The counter row is locked until commit, so within an organization the
-- numbers are gap-free and commit-ordered: a reader that asks for "everything after
-- N" never misses a row that commits later with a smaller number. The notification
-- carries ids only; the reader fetches the rows (a log body never travels in NOTIFY).
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
    id                BIGSERIAL PRIMARY KEY,
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
    id            BIGSERIAL PRIMARY KEY,
    delivery_id   BIGINT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt       BIGINT NOT NULL,
    status_code   BIGINT,
    latency_ms    BIGINT NOT NULL,
    error         TEXT,
    response      TEXT,                          -- the first KiB of the answer
    created_at    BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, attempt);

CREATE FUNCTION corral_now_ms() RETURNS BIGINT AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT
$$ LANGUAGE SQL VOLATILE;

CREATE FUNCTION corral_realtime_append(p_org TEXT, p_app TEXT, p_run TEXT, p_end_user TEXT, p_package TEXT,
                                       p_kind TEXT, p_log BIGINT, p_data TEXT, p_status TEXT)
RETURNS VOID AS $$
DECLARE
    s BIGINT;
BEGIN
    INSERT INTO realtime_counters AS c (org_id, seq) VALUES (p_org, 1)
        ON CONFLICT (org_id) DO UPDATE SET seq = c.seq + 1
        RETURNING c.seq INTO s;
    INSERT INTO realtime_events (org_id, seq, run_id, application_id, end_user_id, package_id, kind, log_id, data, created_at)
        VALUES (p_org, s, p_run, p_app, p_end_user, p_package, p_kind, p_log, p_data, corral_now_ms());
    PERFORM pg_notify('corral_events',
        json_build_object('o', p_org, 's', s, 'r', p_run, 'k', p_kind, 'st', p_status)::text);
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION corral_runs_changed() RETURNS TRIGGER AS $$
DECLARE
    evt   TEXT;
    nowms BIGINT := corral_now_ms();
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        PERFORM corral_realtime_append(NEW.org_id, NEW.application_id, NEW.id, NEW.end_user_id, NEW.package_id,
            'run_update', NULL,
            json_build_object('status', NEW.status, 'error_code', NEW.error_code)::text,
            NEW.status);
        evt := CASE
            WHEN NEW.status = 'running' THEN 'run.started'
            WHEN NEW.status = 'failed' AND NEW.error_code = 'connection_missing' THEN 'run.connection_missing'
            WHEN NEW.status IN ('success', 'failed', 'timeout', 'cancelled') THEN 'run.' || NEW.status
            ELSE NULL END;
        -- Runs are inserted `pending`; only a change is an event for receivers.
        IF evt IS NOT NULL AND TG_OP = 'UPDATE' THEN
            -- A run enters each status once (a re-queued run re-enters `running`, and
            -- the unique key keeps its `run.started` single), so the id is stable.
            INSERT INTO webhook_deliveries (webhook_id, org_id, event_id, event_type, run_id, status,
                                            attempts, next_attempt_at, event_created_at, created_at, updated_at)
            SELECT w.id, NEW.org_id, 'evt_' || substr(NEW.id, 5) || '_' || NEW.status, evt, NEW.id, 'pending',
                   0, nowms, nowms, nowms, nowms
              FROM webhooks w
             WHERE w.org_id = NEW.org_id AND w.enabled = 1
               AND (w.application_id IS NULL OR w.application_id = NEW.application_id)
               AND w.events LIKE '%,' || evt || ',%'
            ON CONFLICT (webhook_id, event_id) DO NOTHING;
        END IF;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.token_usage IS DISTINCT FROM OLD.token_usage THEN
        PERFORM corral_realtime_append(NEW.org_id, NEW.application_id, NEW.id, NEW.end_user_id, NEW.package_id,
            'run_metric', NULL,
            json_build_object('token_usage', NEW.token_usage::json)::text,
            NEW.status);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER runs_changed AFTER INSERT OR UPDATE ON runs
    FOR EACH ROW EXECUTE FUNCTION corral_runs_changed();

CREATE FUNCTION corral_run_logs_inserted() RETURNS TRIGGER AS $$
DECLARE
    r RECORD;
BEGIN
    SELECT org_id, application_id, end_user_id, package_id, status INTO r FROM runs WHERE id = NEW.run_id;
    PERFORM corral_realtime_append(r.org_id, r.application_id, NEW.run_id, r.end_user_id, r.package_id,
        'run_log', NEW.id, '{}', r.status);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER run_logs_inserted AFTER INSERT ON run_logs
    FOR EACH ROW EXECUTE FUNCTION corral_run_logs_inserted();
