-- Notifications: one row per recipient when a run reaches a terminal state, written
-- with the terminal state. The recipient is the run's end-user, else its user, else
-- the creator of the API key that started it (`recipient_type` 'end_user' | 'user').
CREATE TABLE notifications (
    id              TEXT PRIMARY KEY,                   -- UUID v7
    org_id          TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    application_id  TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    recipient_type  TEXT NOT NULL CHECK (recipient_type IN ('user', 'end_user')),
    recipient_id    TEXT NOT NULL,
    type            TEXT NOT NULL,
    run_id          TEXT REFERENCES runs(id) ON DELETE CASCADE,
    package_id      TEXT,
    payload         TEXT,                               -- JSON object
    read_at         BIGINT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX notifications_recipient ON notifications(org_id, application_id, recipient_type, recipient_id, created_at DESC, id DESC);
CREATE INDEX notifications_run ON notifications(run_id);

-- Uploads: a reserved slot a client PUTs bytes to (`PUT /api/uploads/_content`,
-- HMAC-signed token), consumed by a run's `upload://` input. Unconsumed uploads and
-- their bytes are deleted after `expires_at`; a consumed upload becomes a document.
CREATE TABLE uploads (
    id              TEXT PRIMARY KEY,                   -- upl_…
    org_id          TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    application_id  TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    owner_type      TEXT NOT NULL,
    owner_id        TEXT NOT NULL,
    name            TEXT NOT NULL,
    mime            TEXT NOT NULL,
    size            BIGINT NOT NULL,
    sha256          TEXT,                               -- the client's claim, hex
    storage_key     TEXT NOT NULL,
    written_at      BIGINT,
    document_id     TEXT,
    expires_at      BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX uploads_expiry ON uploads(expires_at);
CREATE INDEX uploads_owner ON uploads(org_id, owner_type, owner_id, expires_at);

-- Documents: stored files attached to an application: user uploads a run consumed,
-- and agent outputs a run published. `expires_at` NULL means kept.
CREATE TABLE documents (
    id              TEXT PRIMARY KEY,                   -- doc_…
    org_id          TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    application_id  TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    purpose         TEXT NOT NULL CHECK (purpose IN ('user_upload', 'agent_output')),
    presentation    TEXT CHECK (presentation IN ('primary')),
    run_id          TEXT REFERENCES runs(id) ON DELETE CASCADE,
    package_id      TEXT,
    owner_type      TEXT,
    owner_id        TEXT,
    name            TEXT NOT NULL,
    mime            TEXT NOT NULL,
    size            BIGINT NOT NULL,
    sha256          TEXT NOT NULL,
    storage_key     TEXT NOT NULL,
    expires_at      BIGINT,
    publish_id      TEXT,                               -- the publishing request's webhook-id
    created_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX documents_publish ON documents(run_id, publish_id);
CREATE INDEX documents_app ON documents(org_id, application_id, created_at DESC, id DESC);
CREATE INDEX documents_run ON documents(run_id);

-- The input documents a run carries, under unique workspace file names.
CREATE TABLE run_documents (
    run_id          TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    workspace_name  TEXT NOT NULL,
    document_id     TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    PRIMARY KEY (run_id, workspace_name)
);
CREATE INDEX run_documents_document ON run_documents(document_id);
