-- OAuth model providers and remote runs.
--
-- 1. Model provider credentials backed by OAuth (`authMode: oauth2`, providers
--    `codex` and `claude-code`): `api_key` holds the sealed *access token*
--    (associated data `model_provider_credential:<id>`, as an API key), and the new
--    columns the sealed refresh token (`model_provider_credential:<id>:refresh_token`),
--    the access token's expiry, when the tokens were last written, the account's
--    identity and the needs-reconnection flag (a refresh token the provider refused).
ALTER TABLE model_provider_credentials DROP CONSTRAINT model_provider_credentials_provider_id_check;
ALTER TABLE model_provider_credentials ADD CONSTRAINT model_provider_credentials_provider_id_check
    CHECK (provider_id IN ('openai', 'anthropic', 'openai-compatible', 'codex', 'claude-code'));
ALTER TABLE model_provider_credentials
    ADD COLUMN auth_mode TEXT NOT NULL DEFAULT 'api_key' CHECK (auth_mode IN ('api_key', 'oauth2')),
    ADD COLUMN refresh_token TEXT,                -- sealed envelope (oauth2)
    ADD COLUMN token_expires_at BIGINT,           -- access token expiry, ms (oauth2; NULL: unknown)
    ADD COLUMN token_updated_at BIGINT,           -- when the tokens were last written (oauth2)
    ADD COLUMN oauth_email TEXT,
    ADD COLUMN oauth_account_id TEXT,
    ADD COLUMN needs_reconnection BIGINT NOT NULL DEFAULT 0 CHECK (needs_reconnection IN (0, 1));

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
--    signed-event routes. No sandbox, no executor: the cluster's queue skips them
--    (its index says so too).
ALTER TABLE runs ADD COLUMN origin TEXT NOT NULL DEFAULT 'platform' CHECK (origin IN ('platform', 'remote'));
ALTER TABLE runs ADD COLUMN context_snapshot TEXT;  -- JSON, from the remote runner
DROP INDEX runs_queue;
CREATE INDEX runs_queue ON runs(org_id, priority DESC, created_at, id)
    WHERE status = 'pending' AND server_id IS NULL AND origin = 'platform';
