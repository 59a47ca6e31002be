-- Accounts, tenancy, API keys and the idempotency store.
-- Booleans are BIGINT 0/1: sqlx's Any driver cannot decode SQLite booleans.
-- Portable types: ids TEXT, timestamps BIGINT (ms since epoch), JSON as TEXT.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    display_name  TEXT,
    language      TEXT NOT NULL DEFAULT 'en',
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at   BIGINT NOT NULL,
    refreshed_at BIGINT NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    api_version TEXT NOT NULL,
    settings    TEXT NOT NULL DEFAULT '{}',
    created_by  TEXT REFERENCES users(id) ON DELETE SET NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE org_members (
    org_id    TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role      TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_members_user ON org_members(user_id);

CREATE TABLE invitations (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    token       TEXT NOT NULL UNIQUE,
    inviter_id  TEXT REFERENCES users(id) ON DELETE SET NULL,
    expires_at  BIGINT NOT NULL,
    accepted_at BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX invitations_org ON invitations(org_id);

CREATE TABLE applications (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    is_default BIGINT NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    settings   TEXT NOT NULL DEFAULT '{}',
    created_by TEXT REFERENCES users(id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX applications_org ON applications(org_id);
CREATE UNIQUE INDEX applications_one_default ON applications(org_id) WHERE is_default = 1;

CREATE TABLE end_users (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    name           TEXT,
    email          TEXT,
    external_id    TEXT,
    metadata       TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX end_users_app ON end_users(application_id, id);
CREATE UNIQUE INDEX end_users_external ON end_users(application_id, external_id) WHERE external_id IS NOT NULL;

CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    key_prefix     TEXT NOT NULL,
    key_hash       TEXT NOT NULL UNIQUE,
    scopes         TEXT NOT NULL,
    created_by     TEXT REFERENCES users(id) ON DELETE SET NULL,
    expires_at     BIGINT,
    last_used_at   BIGINT,
    revoked_at     BIGINT,
    created_at     BIGINT NOT NULL
);
CREATE INDEX api_keys_prefix ON api_keys(key_prefix);
CREATE INDEX api_keys_app ON api_keys(application_id);

CREATE TABLE idempotency_keys (
    org_id           TEXT NOT NULL,
    application_id   TEXT NOT NULL,
    idem_key         TEXT NOT NULL,
    request_hash     TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
    response_status  BIGINT,
    response_headers TEXT,
    response_body    BLOB,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    PRIMARY KEY (org_id, application_id, idem_key)
);
CREATE INDEX idempotency_expiry ON idempotency_keys(expires_at);
