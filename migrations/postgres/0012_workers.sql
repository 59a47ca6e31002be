-- Scale-out (worker role): PostgreSQL's runs table is the cluster's work queue.
-- A pending run with no server_id is queued; a worker claims it by setting server_id
-- (FOR UPDATE SKIP LOCKED), then starts it. Server instances describe themselves so
-- that operators (GET /api/admin/workers) and the claim see capacity and load.
ALTER TABLE server_instances ADD COLUMN role TEXT NOT NULL DEFAULT 'all';
ALTER TABLE server_instances ADD COLUMN name TEXT;
ALTER TABLE server_instances ADD COLUMN capacity BIGINT NOT NULL DEFAULT 0;
ALTER TABLE server_instances ADD COLUMN in_use BIGINT NOT NULL DEFAULT 0;
ALTER TABLE server_instances ADD COLUMN sandbox_kind TEXT;
ALTER TABLE server_instances ADD COLUMN draining BIGINT NOT NULL DEFAULT 0;

ALTER TABLE runs ADD COLUMN claimed_at BIGINT;
ALTER TABLE runs ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;

-- The queue: unclaimed pending runs, per org by priority then arrival.
CREATE INDEX runs_queue ON runs(org_id, priority DESC, created_at, id)
    WHERE status = 'pending' AND server_id IS NULL;
-- Runs in flight per org (claimed or running), for the cluster-wide org cap.
CREATE INDEX runs_in_flight ON runs(org_id)
    WHERE status IN ('pending', 'running') AND server_id IS NOT NULL;
