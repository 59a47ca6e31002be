-- Integration governance per application (reference: activate/deactivate, settings,
-- org default connection, admin pins, member pins). Activation itself is the
-- `application_packages` row of the integration (`enabled`).

-- Per (application, integration) settings.
CREATE TABLE integration_settings (
    application_id          TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    package_id              TEXT NOT NULL,
    block_user_connections  BIGINT NOT NULL DEFAULT 0,
    updated_at              BIGINT NOT NULL,
    PRIMARY KEY (application_id, package_id)
);

-- The one default connection per (application, integration); `enforce` locks every
-- member to it (over run overrides and member pins).
CREATE TABLE integration_defaults (
    application_id  TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    package_id      TEXT NOT NULL,
    connection_id   TEXT NOT NULL REFERENCES integration_connections(id) ON DELETE CASCADE,
    enforce         BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (application_id, package_id)
);

-- Pins of a connection to (agent, integration): an admin pin (owner_type 'admin',
-- owner_id '') applies to every member; a member pin to its owner's runs only.
-- Deleting the connection removes its pins.
CREATE TABLE integration_pins (
    application_id  TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    agent_id        TEXT NOT NULL,
    package_id      TEXT NOT NULL,
    owner_type      TEXT NOT NULL CHECK (owner_type IN ('admin', 'user', 'end_user')),
    owner_id        TEXT NOT NULL,
    connection_id   TEXT NOT NULL REFERENCES integration_connections(id) ON DELETE CASCADE,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (application_id, agent_id, package_id, owner_type, owner_id)
);
CREATE INDEX integration_pins_package ON integration_pins(application_id, package_id);
CREATE INDEX integration_pins_connection ON integration_pins(connection_id);
CREATE INDEX integration_defaults_connection ON integration_defaults(connection_id);

-- Hosted connect sessions: a single-use token opens the connect portal (its
-- SHA-256 is stored, never the token); the dispatch consumes it and, for a
-- credential form, binds a page cookie (hashed) and a CSRF nonce to the session.
CREATE TABLE integration_connect_sessions (
    token_hash            TEXT PRIMARY KEY,
    org_id                TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    application_id        TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    package_id            TEXT NOT NULL,
    auth_key              TEXT NOT NULL,
    owner_type            TEXT NOT NULL,
    owner_id              TEXT NOT NULL,
    connection_id         TEXT,
    scopes                TEXT,
    force_account_select  BIGINT NOT NULL DEFAULT 0,
    started_at            BIGINT,
    page_hash             TEXT,
    csrf                  TEXT,
    expires_at            BIGINT NOT NULL,
    created_at            BIGINT NOT NULL
);
CREATE INDEX integration_connect_sessions_page ON integration_connect_sessions(page_hash);
