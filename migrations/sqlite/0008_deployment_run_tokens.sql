-- The one row naming this deployment (every server on this database). Sandboxes carry
-- it as a label, so a server only ever lists and reaps its own deployment's sandboxes,
-- never another deployment's on a shared Docker engine.
CREATE TABLE deployment (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    id         TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Sandboxes authenticate to the platform's internal API with their run token; the
-- platform finds the run by the token's hash.
CREATE INDEX runs_token_hash ON runs(run_token_hash);
