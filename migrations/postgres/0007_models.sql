-- Models (SPEC §12): an organization's LLM provider credentials and the models it
-- runs agents with. The per-agent choice lives in `application_packages.model_id` /
-- `generation_config` (migration 0003), per (org, application, agent).
--
-- A credential's API key is stored sealed (`v1:<kid>:…`, associated data
-- `model_provider_credential:<id>`) and never leaves the server except towards the
-- provider. A model names one credential of its own organization; a credential that
-- a model still uses cannot be deleted (the API answers 409 `credential_in_use`;
-- NO ACTION rather than RESTRICT so that deleting the organization, which cascades to
-- both tables in one statement, is checked only at the end of that statement).

CREATE TABLE model_provider_credentials (
    id                   TEXT PRIMARY KEY,
    org_id               TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    provider_id          TEXT NOT NULL CHECK (provider_id IN ('openai', 'anthropic', 'openai-compatible')),
    label                TEXT NOT NULL,
    base_url             TEXT NOT NULL,
    api_key              TEXT NOT NULL,          -- sealed envelope
    available_model_ids  TEXT,                   -- JSON array, written by refresh-models
    created_by           TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX model_provider_credentials_org ON model_provider_credentials(org_id, created_at);

CREATE TABLE org_models (
    id              TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    credential_id   TEXT NOT NULL REFERENCES model_provider_credentials(id),
    label           TEXT NOT NULL,
    model_id        TEXT NOT NULL,               -- the provider's model id
    enabled         BIGINT NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    is_default      BIGINT NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    input           TEXT,                        -- JSON array of input kinds
    context_window  BIGINT,
    max_tokens      BIGINT,
    reasoning       BIGINT CHECK (reasoning IN (0, 1)),
    cost            TEXT,                        -- JSON {input, output, cacheRead, cacheWrite}
    aliased         BIGINT NOT NULL DEFAULT 0 CHECK (aliased IN (0, 1)),
    created_by      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX org_models_org ON org_models(org_id, created_at);
CREATE INDEX org_models_credential ON org_models(credential_id);
-- At most one default per organization.
CREATE UNIQUE INDEX org_models_default ON org_models(org_id) WHERE is_default = 1;
