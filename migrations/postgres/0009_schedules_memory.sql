-- Schedules (SPEC §13): a cron timetable in an IANA timezone that fires normal runs
-- of an agent as its actor. `next_run_at` is the next fire time (ms); a replica
-- claims a due row with FOR UPDATE SKIP LOCKED and records the fire in
-- `schedule_fires`, whose primary key (schedule, fire time) makes each fire happen
-- once whatever the replicas and clocks do.
CREATE TABLE schedules (
    id                          TEXT PRIMARY KEY,
    org_id                      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    application_id              TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    package_id                  TEXT NOT NULL REFERENCES packages(id) ON DELETE CASCADE,
    name                        TEXT,
    enabled                     BIGINT NOT NULL DEFAULT 1,
    cron_expression             TEXT NOT NULL,
    timezone                    TEXT NOT NULL,
    input                       TEXT,                -- JSON object
    generation_config_override  TEXT,                -- JSON
    model_id_override           TEXT,
    proxy_id_override           TEXT,
    version_override            TEXT,
    connection_overrides        TEXT,                -- JSON
    dependency_overrides        TEXT,                -- JSON
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
    fire_at      BIGINT NOT NULL,                   -- the timetable's instant (ms)
    claimed_at   BIGINT NOT NULL,
    claimed_by   TEXT NOT NULL,                     -- server instance
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
-- application and actor (`user`, `end_user`, or `shared`), with the run that wrote
-- them. Archive memories are searched with full-text (tsvector, ranked).
CREATE TABLE agent_memories (
    id              BIGSERIAL PRIMARY KEY,
    org_id          TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    application_id  TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    package_id      TEXT NOT NULL,
    actor_type      TEXT NOT NULL CHECK (actor_type IN ('user', 'end_user', 'shared')),
    actor_id        TEXT NOT NULL DEFAULT '',
    content         TEXT NOT NULL,
    run_id          TEXT,
    created_at      BIGINT NOT NULL,
    tsv             tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED
);
CREATE INDEX agent_memories_scope ON agent_memories(org_id, application_id, package_id, actor_type, actor_id, id);
CREATE INDEX agent_memories_tsv ON agent_memories USING GIN (tsv);

CREATE TABLE agent_pinned (
    id              BIGSERIAL PRIMARY KEY,
    org_id          TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    application_id  TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    package_id      TEXT NOT NULL,
    actor_type      TEXT NOT NULL CHECK (actor_type IN ('user', 'end_user', 'shared')),
    actor_id        TEXT NOT NULL DEFAULT '',          -- '' for shared (part of the key)
    key             TEXT NOT NULL,
    content         TEXT NOT NULL,                     -- JSON
    run_id          TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (org_id, application_id, package_id, actor_type, actor_id, key)
);
