-- OAuth model providers and remote runs. The same schema as PostgreSQL's 0014.
--
-- 1. Model provider credentials backed by OAuth (`authMode: oauth2`, providers
--    `codex` and `claude-code`): `api_key` holds the sealed *access token*
--    (associated data `model_provider_credential:<id>`, as an API key), and the new
--    columns the sealed refresh token (`model_provider_credential:<id>:refresh_token`),
--    the access token's expiry, when the tokens were last written, the account's
--    identity and the needs-reconnection flag (a refresh token the provider refused).
--    SQLite cannot alter the provider CHECK: the table is rebuilt. Its rows are
--    copied to a scratch table, the table dropped and created anew, and the rows
--    inserted back; `defer_foreign_keys` holds `org_models`' references to the
--    credentials until the commit, by when every referenced row is back (inserting a
--    parent row settles the violations the drop counted).
PRAGMA defer_foreign_keys = ON;

CREATE TABLE model_provider_credentials_copy AS SELECT * FROM model_provider_credentials;
DROP TABLE model_provider_credentials;

CREATE TABLE model_provider_credentials (
    id                   TEXT PRIMARY KEY,
    org_id               TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    provider_id          TEXT NOT NULL CHECK (provider_id IN ('openai', 'anthropic', 'openai-compatible', 'codex', 'claude-code')),
    label                TEXT NOT NULL,
    base_url             TEXT NOT NULL,
    api_key              TEXT NOT NULL,          -- sealed envelope: the API key, or the OAuth access token
    available_model_ids  TEXT,                   -- JSON array, written by refresh-models
    created_by           TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    auth_mode            TEXT NOT NULL DEFAULT 'api_key' CHECK (auth_mode IN ('api_key', 'oauth2')),
    refresh_token        TEXT,                   -- sealed envelope (oauth2)
    token_expires_at     BIGINT,                 -- access token expiry, ms (oauth2; NULL: unknown)
    token_updated_at     BIGINT,                 -- when the tokens were last written (oauth2)
    oauth_email          TEXT,
    oauth_account_id     TEXT,
    needs_reconnection   BIGINT NOT NULL DEFAULT 0 CHECK (needs_reconnection IN (0, 1))
);
INSERT INTO model_provider_credentials (id, org_id, provider_id, label, base_url, api_key,
    available_model_ids, created_by, created_at, updated_at)
SELECT id, org_id, provider_id, label, base_url, api_key, available_model_ids, created_by,
    created_at, updated_at
FROM model_provider_credentials_copy;
DROP TABLE model_provider_credentials_copy;
CREATE INDEX model_provider_credentials_org ON model_provider_credentials(org_id, created_at);

-- 2. Pairing tokens of the connect helper: one row per minted token, of which only
--    the SHA-256 is stored. The org, the user, the provider and the credential to
--    reconnect are pinned at mint time; `credential_id` is the credential the
--    redeem created or reconnected.
CREATE TABLE model_provider_pairings (
    id                       TEXT PRIMARY KEY,           -- pair_<base64url>
    org_id                   TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id                  TEXT REFERENCES users(id) ON DELETE SET NULL,
    provider_id              TEXT NOT NULL,
    reconnect_credential_id  TEXT REFERENCES model_provider_credentials(id) ON DELETE CASCADE,
    token_hash               TEXT NOT NULL UNIQUE,       -- hex SHA-256 of the token
    expires_at               BIGINT NOT NULL,
    consumed_at              BIGINT,
    credential_id            TEXT REFERENCES model_provider_credentials(id) ON DELETE SET NULL,
    created_at               BIGINT NOT NULL
);
CREATE INDEX model_provider_pairings_org ON model_provider_pairings(org_id, id);
CREATE INDEX model_provider_pairings_expiry ON model_provider_pairings(expires_at);

-- 3. Remote runs: the agent runs on the caller's host and reports through the
--    signed-event routes. No sandbox, no executor: the queues skip them.
ALTER TABLE runs ADD COLUMN origin TEXT NOT NULL DEFAULT 'platform' CHECK (origin IN ('platform', 'remote'));
ALTER TABLE runs ADD COLUMN context_snapshot TEXT;  -- JSON, from the remote runner
