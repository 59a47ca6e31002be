-- Outbound proxies and the storage-deletion outbox. The same tables as on
-- SQLite (see its 0013).
--
-- An organization's custom proxies: the URL (which may carry credentials) is stored
-- sealed (`v1:<kid>:…`, associated data `org_proxy:<id>`); `url_prefix` is its masked
-- form, the only one the API shows. At most one default per organization. The
-- built-in proxy (`CORRAL_PROXY_URL`) is configuration, not a row. An agent's choice
-- is `application_packages.proxy_id` (migration 0003): a proxy id, `none`, or NULL
-- for the organization's default.
CREATE TABLE org_proxies (
    id          TEXT PRIMARY KEY,                   -- prx_…
    org_id      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    label       TEXT NOT NULL,
    url         TEXT NOT NULL,                      -- sealed envelope
    url_prefix  TEXT NOT NULL,                      -- masked, for display
    enabled     BIGINT NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    is_default  BIGINT NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    created_by  TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX org_proxies_org ON org_proxies(org_id, created_at);
CREATE UNIQUE INDEX org_proxies_default ON org_proxies(org_id) WHERE is_default = 1;

-- The proxy label a run used (NULL: not proxied).
ALTER TABLE runs ADD COLUMN proxy_label TEXT;

-- The storage-deletion outbox: a blob to delete, written in the same transaction as
-- the deletion of the row that referenced it. Workers claim due jobs (a lease in
-- `claimed_until`; `FOR UPDATE SKIP LOCKED` on PostgreSQL), delete the object and
-- mark the job completed, or record the error and reschedule it with backoff. The
-- object's key is `<bucket>/<storage_key>`. No foreign key: the rows it came from are
-- gone, and so may be their organization.
CREATE TABLE storage_deletion_jobs (
    id               TEXT PRIMARY KEY,              -- sdj_…
    bucket           TEXT NOT NULL,
    storage_key      TEXT NOT NULL,
    reason           TEXT NOT NULL,
    org_id           TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    claimed_until    BIGINT,
    completed_at     BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX storage_deletion_jobs_due ON storage_deletion_jobs(next_attempt_at) WHERE completed_at IS NULL;
CREATE INDEX storage_deletion_jobs_list ON storage_deletion_jobs(created_at DESC, id DESC);
