//! The cluster's run queue (PostgreSQL): a `pending` run with no `server_id` is
//! queued; a worker claims it by writing its instance id there, then starts it.
//!
//! One claim is one transaction: the organizations with queued runs are taken in
//! fairness order (fewest runs in flight across the cluster first, then the oldest
//! queued run), each org's claims are serialized by a transaction-scoped advisory
//! lock so the org's cap holds across workers, and the org's next run (priority,
//! then arrival) is locked `FOR UPDATE SKIP LOCKED`, so workers never wait on each
//! other's rows.
//!
//! Remote runs (`origin = 'remote'`) are never queued: their agent runs on the
//! caller's host.
//!
//! Server instances also describe themselves here (role, capacity, load), for the
//! operators' view of the cluster.

use corral_core::{OrgId, RunId};
use sqlx::{Acquire, AnyConnection, Row};

use crate::{Result, SqlxResultExt};

/// Advisory-lock namespace of the per-org claim lock (the first key of the pair).
const ORG_CLAIM_LOCK: i32 = 0x436f_7252; // "CorR"
/// Orgs considered per claim before giving up for this round.
const CANDIDATE_ORGS: i64 = 16;

/// A claimed run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub run_id: RunId,
    pub org_id: OrgId,
    /// When the run was queued (created), for the claim latency.
    pub created_at: i64,
}

/// What a claim attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Got(Claimed),
    /// Nothing runnable: the queue is empty or every org with queued runs is at its cap.
    Empty,
    /// Another worker was claiming for the orgs that had work: try again shortly.
    Busy,
}

/// Claims the next runnable run for `worker` under the per-org cap `org_cap`.
pub async fn claim_next(
    conn: &mut AnyConnection,
    worker: &str,
    org_cap: i64,
    now: i64,
) -> Result<Claim> {
    let mut tx = conn.begin().await.db()?;
    let orgs = sqlx::query(
        "SELECT q.org_id FROM \
           (SELECT org_id, MIN(created_at) AS oldest FROM runs \
             WHERE status = 'pending' AND server_id IS NULL AND origin = 'platform' \
             GROUP BY org_id) q \
         LEFT JOIN \
           (SELECT org_id, COUNT(*) AS n FROM runs \
             WHERE status IN ('pending', 'running') AND server_id IS NOT NULL GROUP BY org_id) f \
           ON f.org_id = q.org_id \
         WHERE COALESCE(f.n, 0) < $1 \
         ORDER BY COALESCE(f.n, 0), q.oldest \
         LIMIT $2",
    )
    .bind(org_cap)
    .bind(CANDIDATE_ORGS)
    .fetch_all(&mut *tx)
    .await
    .db()?;
    let mut busy = false;
    for row in orgs {
        let org: String = row.try_get(0).db()?;
        // Another worker is claiming for this org right now: next org.
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, hashtext($2))")
            .bind(ORG_CLAIM_LOCK)
            .bind(&org)
            .fetch_one(&mut *tx)
            .await
            .db()?;
        if !locked {
            busy = true;
            continue;
        }
        // Counted again under the lock: claims committed since the first read count.
        let in_flight: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM runs WHERE org_id = $1 \
               AND status IN ('pending', 'running') AND server_id IS NOT NULL",
        )
        .bind(&org)
        .fetch_one(&mut *tx)
        .await
        .db()?;
        if in_flight >= org_cap {
            continue;
        }
        let next = sqlx::query(
            "SELECT id, created_at FROM runs \
             WHERE org_id = $1 AND status = 'pending' AND server_id IS NULL \
               AND origin = 'platform' ORDER BY priority DESC, created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .bind(&org)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        let Some(next) = next else { continue };
        let run_id: String = next.try_get(0).db()?;
        let created_at: i64 = next.try_get(1).db()?;
        sqlx::query("UPDATE runs SET server_id = $2, claimed_at = $3 WHERE id = $1")
            .bind(&run_id)
            .bind(worker)
            .bind(now)
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        return Ok(Claim::Got(Claimed {
            run_id: RunId::from(run_id),
            org_id: OrgId::from(org),
            created_at,
        }));
    }
    tx.commit().await.db()?;
    Ok(if busy { Claim::Busy } else { Claim::Empty })
}

/// Puts a run claimed by `from` but not started back in the queue (a worker died or
/// stopped before starting it); false when it started or changed meanwhile.
pub async fn requeue(conn: &mut AnyConnection, id: &RunId, from: &str) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE runs SET server_id = NULL, claimed_at = NULL \
         WHERE id = $1 AND status = 'pending' AND server_id = $2",
    )
    .bind(id)
    .bind(from)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() > 0)
}

/// Every run `worker` claimed and has not started, back in the queue (a drain).
pub async fn requeue_all(conn: &mut AnyConnection, worker: &str) -> Result<Vec<RunId>> {
    let rows = sqlx::query(
        "UPDATE runs SET server_id = NULL, claimed_at = NULL \
         WHERE status = 'pending' AND server_id = $1 RETURNING id",
    )
    .bind(worker)
    .fetch_all(conn)
    .await
    .db()?;
    rows.iter()
        .map(|r| Ok(RunId::from(r.try_get::<String, _>(0).db()?)))
        .collect()
}

/// Queued (unclaimed) runs per organization, largest first.
pub async fn depth_by_org(conn: &mut AnyConnection) -> Result<Vec<(OrgId, i64)>> {
    let rows = sqlx::query(
        "SELECT org_id, COUNT(*) AS n FROM runs WHERE status = 'pending' AND server_id IS NULL \
           AND origin = 'platform' GROUP BY org_id ORDER BY n DESC, org_id",
    )
    .fetch_all(conn)
    .await
    .db()?;
    rows.iter()
        .map(|r| {
            Ok((
                OrgId::from(r.try_get::<String, _>(0).db()?),
                r.try_get(1).db()?,
            ))
        })
        .collect()
}

/// What an instance says about itself in its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    pub id: String,
    pub role: String,
    pub name: Option<String>,
    pub capacity: i64,
    pub in_use: i64,
    pub sandbox_kind: Option<String>,
    pub draining: bool,
    pub started_at: i64,
    pub heartbeat_at: i64,
}

/// Registers or refreshes an instance's row with what it says about itself.
pub async fn heartbeat(conn: &mut AnyConnection, i: &InstanceInfo) -> Result<()> {
    sqlx::query(
        "INSERT INTO server_instances \
           (id, started_at, heartbeat_at, role, name, capacity, in_use, sandbox_kind, draining) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = $3, role = $4, name = $5, capacity = $6, \
           in_use = $7, sandbox_kind = $8, draining = $9",
    )
    .bind(&i.id)
    .bind(i.started_at)
    .bind(i.heartbeat_at)
    .bind(&i.role)
    .bind(&i.name)
    .bind(i.capacity)
    .bind(i.in_use)
    .bind(&i.sandbox_kind)
    .bind(i64::from(i.draining))
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// Instances whose heartbeat is newer than `since`, by role then name.
pub async fn instances(conn: &mut AnyConnection, since: i64) -> Result<Vec<InstanceInfo>> {
    let rows = sqlx::query(
        "SELECT id, role, name, capacity, in_use, sandbox_kind, draining, started_at, heartbeat_at \
         FROM server_instances WHERE heartbeat_at >= $1 ORDER BY role, name, id",
    )
    .bind(since)
    .fetch_all(conn)
    .await
    .db()?;
    rows.iter()
        .map(|r| {
            Ok(InstanceInfo {
                id: r.try_get(0).db()?,
                role: r.try_get(1).db()?,
                name: r.try_get(2).db()?,
                capacity: r.try_get(3).db()?,
                in_use: r.try_get(4).db()?,
                sandbox_kind: r.try_get(5).db()?,
                draining: r.try_get::<i64, _>(6).db()? != 0,
                started_at: r.try_get(7).db()?,
                heartbeat_at: r.try_get(8).db()?,
            })
        })
        .collect()
}
