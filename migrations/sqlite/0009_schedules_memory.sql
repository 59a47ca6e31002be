-- Schedules (SPEC §13): a cron timetable in an IANA timezone that fires normal runs
-- of an agent as its actor. `next_run_at` is the next fire time (ms). SQLite has one
-- scheduler; `schedule_fires`' primary key (schedule, fire time) still makes each
-- fire happen once.
CREATE TABLE schedules (
    id                          TEXT PRIMARY KEY,
    org_id                      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    application_id              TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    package_id                  TEXT NOT NULL REFERENCES packages(id) ON DELETE CASCADE,
    name                        TEXT,
    enabled                     BIGINT NOT NULL DEFAULT 1,
    cron_expression             TEXT NOT NULL,
    timezone                    TEXT NOT NULL,
    input                       TEXT,
    generation_config_override  TEXT,
    model_id_override           TEXT,
    proxy_id_override           TEXT,
    version_override            TEXT,
    connection_overrides        TEXT,
    dependency_overrides        TEXT,
    user_id                     TEXT REFERENCES users(id) ON DELETE CASCADE,
    end_user_id                 TEXT REFERENCES end_users(id) ON DELETE CASCADE,
    next_run_at                 BIGINT NOT NULL,
    last_run_at                 BIGINT,
    last_run_id                 TEXT,
    last_error_code             TEXT,
    last_error                  TEXT,
    last_error_at               BIGINT,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL
);
CREATE INDEX schedules_due ON schedules(next_run_at, id) WHERE enabled = 1;
CREATE INDEX schedules_app ON schedules(org_id, application_id, created_at);

CREATE TABLE schedule_fires (
    schedule_id  TEXT NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    fire_at      BIGINT NOT NULL,
    claimed_at   BIGINT NOT NULL,
    claimed_by   TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('claimed', 'fired', 'refused', 'lost')),
    run_id       TEXT,
    error_code   TEXT,
    error        TEXT,
    PRIMARY KEY (schedule_id, fire_at)
);
CREATE INDEX schedule_fires_claimed ON schedule_fires(claimed_at) WHERE status = 'claimed';

ALTER TABLE runs ADD COLUMN schedule_name TEXT;
CREATE INDEX runs_schedule ON runs(schedule_id, created_at DESC) WHERE schedule_id IS NOT NULL;

-- Agent memory: archive memories (`note`) and pinned slots (`pin`), per agent,
-- application and actor. Archive memories are searched with FTS5 (bm25-ranked),
-- kept in step by triggers.
CREATE TABLE agent_memories (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    application_id  TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    package_id      TEXT NOT NULL,
    actor_type      TEXT NOT NULL CHECK (actor_type IN ('user', 'end_user', 'shared')),
    actor_id        TEXT NOT NULL DEFAULT '',
    content         TEXT NOT NULL,
    run_id          TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX agent_memories_scope ON agent_memories(org_id, application_id, package_id, actor_type, actor_id, id);

CREATE VIRTUAL TABLE agent_memories_fts USING fts5(
    content, content='agent_memories', content_rowid='id', tokenize='porter unicode61'
);
CREATE TRIGGER agent_memories_ai AFTER INSERT ON agent_memories BEGIN
    INSERT INTO agent_memories_fts(rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER agent_memories_ad AFTER DELETE ON agent_memories BEGIN
    INSERT INTO agent_memories_fts(agent_memories_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;

CREATE TABLE agent_pinned (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    application_id  TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    package_id      TEXT NOT NULL,
    actor_type      TEXT NOT NULL CHECK (actor_type IN ('user', 'end_user', 'shared')),
    actor_id        TEXT NOT NULL DEFAULT '',
    key             TEXT NOT NULL,
    content         TEXT NOT NULL,
    run_id          TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (org_id, application_id, package_id, actor_type, actor_id, key)
);
