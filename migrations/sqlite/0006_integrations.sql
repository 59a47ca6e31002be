-- Integration connections (SPEC §12): the OAuth clients an application registered
-- for an integration's oauth2 auth, the connections (credentials sealed with the
-- encryption envelope, never plaintext), and the pending OAuth authorizations
-- (state, PKCE verifier) that live 10 minutes and are consumed once.

CREATE TABLE integration_oauth_clients (
    id                          TEXT PRIMARY KEY,
    org_id                      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    application_id              TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    package_id                  TEXT NOT NULL,           -- "@scope/name" of the integration
    auth_key                    TEXT NOT NULL,
    client_id                   TEXT NOT NULL,
    client_secret               TEXT,                    -- sealed; NULL for a public client
    token_endpoint_auth_method  TEXT CHECK (token_endpoint_auth_method IN ('client_secret_post', 'client_secret_basic', 'none')),
    redirect_uri                TEXT,
    is_default                  BIGINT NOT NULL DEFAULT 0,
    created_by                  TEXT,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL
);
CREATE INDEX integration_oauth_clients_auth ON integration_oauth_clients(application_id, package_id, auth_key);

CREATE TABLE integration_connections (
    id                  TEXT PRIMARY KEY,
    org_id              TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    application_id      TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    package_id          TEXT NOT NULL,
    auth_key            TEXT NOT NULL,
    auth_type           TEXT NOT NULL,
    owner_type          TEXT NOT NULL CHECK (owner_type IN ('user', 'end_user')),
    owner_id            TEXT NOT NULL,
    label               TEXT,
    shared_with_org     BIGINT NOT NULL DEFAULT 0,
    account_id          TEXT NOT NULL,
    identity_claims     TEXT,                            -- JSON
    scopes_granted      TEXT NOT NULL DEFAULT '[]',      -- JSON array
    credentials         TEXT NOT NULL,                   -- sealed JSON object
    expires_at          BIGINT,                          -- access token expiry (ms)
    needs_reconnection  BIGINT NOT NULL DEFAULT 0,
    client_ref          TEXT REFERENCES integration_oauth_clients(id) ON DELETE SET NULL,
    refresh_count       BIGINT NOT NULL DEFAULT 0,
    refreshed_at        BIGINT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX integration_connections_app ON integration_connections(application_id, package_id);
CREATE INDEX integration_connections_owner ON integration_connections(owner_type, owner_id);

CREATE TABLE integration_oauth_states (
    state_hash      TEXT PRIMARY KEY,                    -- SHA-256 of the state; the state itself is not stored
    org_id          TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    application_id  TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    package_id      TEXT NOT NULL,
    auth_key        TEXT NOT NULL,
    owner_type      TEXT NOT NULL,
    owner_id        TEXT NOT NULL,
    shared_with_org BIGINT NOT NULL DEFAULT 0,
    client_ref      TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    scopes          TEXT NOT NULL,                       -- JSON array
    code_verifier   TEXT NOT NULL,                       -- sealed
    connection_id   TEXT,                                -- reconnect this one in place
    expires_at      BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX integration_oauth_states_expiry ON integration_oauth_states(expires_at);
