//! The storage-deletion outbox (migration 0013): a blob to delete is a row written in
//! the same transaction as the deletion of what referenced it, so a crash can never
//! forget a blob nor delete one whose row survived. Workers claim due jobs under a
//! lease (`claimed_until`; `FOR UPDATE SKIP LOCKED` on PostgreSQL, so two replicas
//! never take the same job), delete the object, then record the outcome only while
//! their claim holds.
//!
//! Instance-global by design (the platform operators' view): rows carry no tenant
//! filter beyond the `org_id` they record.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use crate::{Backend, Result, SqlxResultExt};

/// Why an object is purged (the reference's reasons).
pub mod reasons {
    pub const DOCUMENT_DELETED: &str = "document_deleted";
    pub const DOCUMENT_EXPIRED: &str = "document_expired";
    pub const UPLOAD_EXPIRED: &str = "upload_expired";
    pub const ORG_DELETED: &str = "org_deleted";
    pub const APPLICATION_DELETED: &str = "application_deleted";
    pub const MATERIALIZATION_FAILED: &str = "materialization_failed";
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub bucket: String,
    pub storage_key: String,
    pub reason: String,
    pub org_id: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub claimed_until: Option<i64>,
    pub completed_at: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
}

impl Job {
    /// The object's key in the blob store.
    pub fn object_key(&self) -> String {
        format!("{}/{}", self.bucket, self.storage_key)
    }
}

impl<'r> FromRow<'r, AnyRow> for Job {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        Ok(Job {
            id: row.try_get("id")?,
            bucket: row.try_get("bucket")?,
            storage_key: row.try_get("storage_key")?,
            reason: row.try_get("reason")?,
            org_id: row.try_get("org_id")?,
            attempts: row.try_get("attempts")?,
            next_attempt_at: row.try_get("next_attempt_at")?,
            claimed_until: row.try_get("claimed_until")?,
            completed_at: row.try_get("completed_at")?,
            last_error: row.try_get("last_error")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

const COLUMNS: &str = "id, bucket, storage_key, reason, org_id, attempts, next_attempt_at, \
    claimed_until, completed_at, last_error, created_at";

/// Splits a blob key (`documents/<org>/<id>`) into its bucket (the first segment)
/// and the key inside it.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

fn new_id() -> String {
    corral_core::ids::prefixed("sdj")
}

/// Queues the deletion of the object under `key`. Call it on the transaction that
/// deletes the row referencing it.
pub async fn enqueue(
    conn: &mut AnyConnection,
    key: &str,
    reason: &str,
    org_id: Option<&str>,
    now: i64,
) -> Result<String> {
    let (bucket, storage_key) = split_key(key);
    let id = new_id();
    sqlx::query(
        "INSERT INTO storage_deletion_jobs (id, bucket, storage_key, reason, org_id, attempts, \
           next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $6)",
    )
    .bind(&id)
    .bind(bucket)
    .bind(storage_key)
    .bind(reason)
    .bind(org_id)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(id)
}

/// Queues one job per key (in the caller's transaction); returns how many.
pub async fn enqueue_all(
    conn: &mut AnyConnection,
    keys: &[(String, String)],
    reason: &str,
    now: i64,
) -> Result<usize> {
    for (key, org) in keys {
        enqueue(&mut *conn, key, reason, Some(org), now).await?;
    }
    Ok(keys.len())
}

/// Claims up to `limit` due jobs for `lease_ms` in one statement: they are not due
/// for anyone else until the lease lapses (a worker that dies mid-way leaves them to
/// the next). Returns them with `claimed_until` set, which [`finish`] presents as
/// the claim.
pub async fn claim_due(
    conn: &mut AnyConnection,
    backend: Backend,
    now: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<Job>> {
    let lock = match backend {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    sqlx::query_as(&format!(
        "UPDATE storage_deletion_jobs SET claimed_until = $2 WHERE id IN ( \
           SELECT j.id FROM storage_deletion_jobs j WHERE j.completed_at IS NULL \
             AND j.next_attempt_at <= $1 AND (j.claimed_until IS NULL OR j.claimed_until <= $1) \
           ORDER BY j.next_attempt_at, j.id LIMIT $3 {lock}) \
         RETURNING {COLUMNS}"
    ))
    .bind(now)
    .bind(now + lease_ms)
    .bind(limit)
    .fetch_all(conn)
    .await
    .db()
}

/// The outcome of one attempt: `Ok` completes the job, `Err` records the error and
/// the next attempt. False when the claim was lost (the lease lapsed and another
/// worker took the job): nothing is written then.
pub async fn finish(
    conn: &mut AnyConnection,
    job: &Job,
    outcome: std::result::Result<(), (&str, i64)>,
    now: i64,
) -> Result<bool> {
    let r = match outcome {
        Ok(()) => sqlx::query(
            "UPDATE storage_deletion_jobs SET attempts = attempts + 1, completed_at = $3, \
               last_error = NULL, claimed_until = NULL WHERE id = $1 AND claimed_until = $2",
        )
        .bind(&job.id)
        .bind(job.claimed_until)
        .bind(now)
        .execute(conn)
        .await
        .db()?,
        Err((error, next_attempt_at)) => sqlx::query(
            "UPDATE storage_deletion_jobs SET attempts = attempts + 1, last_error = $3, \
               next_attempt_at = $4, claimed_until = NULL WHERE id = $1 AND claimed_until = $2",
        )
        .bind(&job.id)
        .bind(job.claimed_until)
        .bind(error)
        .bind(next_attempt_at)
        .execute(conn)
        .await
        .db()?,
    };
    Ok(r.rows_affected() == 1)
}

/// Which jobs a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not completed, under the dead-letter threshold of attempts.
    Pending,
    /// Pending with at least the dead-letter threshold of attempts.
    Dead,
    Completed,
}

/// A page of jobs, newest first, after the job `after` (keyset on `(created_at,
/// id)`); up to `limit + 1` rows so the caller can tell whether more follow.
pub async fn list(
    conn: &mut AnyConnection,
    status: Status,
    dead_after: i64,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Job>> {
    let cursor: Option<(i64, String)> = match after {
        Some(id) => {
            sqlx::query_as("SELECT created_at, id FROM storage_deletion_jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .db()?
        }
        None => None,
    };
    let (c_at, c_id) = cursor.unwrap_or((i64::MAX, String::new()));
    let filter = match status {
        Status::Pending => "completed_at IS NULL AND attempts < $4",
        Status::Dead => "completed_at IS NULL AND attempts >= $4",
        Status::Completed => "completed_at IS NOT NULL",
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM storage_deletion_jobs WHERE {filter} \
           AND (created_at < $1 OR (created_at = $1 AND $2 <> '' AND id < $2)) \
         ORDER BY created_at DESC, id DESC LIMIT $3"
    );
    let mut q = sqlx::query_as(&sql).bind(c_at).bind(c_id).bind(limit + 1);
    if status != Status::Completed {
        q = q.bind(dead_after);
    }
    q.fetch_all(conn).await.db()
}

/// Makes a pending job due now (the next worker pass retries it); false when the job
/// is unknown or completed.
pub async fn retry_now(conn: &mut AnyConnection, id: &str, now: i64) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE storage_deletion_jobs SET next_attempt_at = $2 \
         WHERE id = $1 AND completed_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() == 1)
}

pub async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<Job>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM storage_deletion_jobs WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
    .db()
}

/// The blob keys (with their org) of an organization's documents and of its uploads
/// that never became a document: what deleting the organization leaves unreferenced.
pub async fn keys_of_org(conn: &mut AnyConnection, org_id: &str) -> Result<Vec<(String, String)>> {
    keys(
        conn,
        "SELECT storage_key, org_id FROM documents WHERE org_id = $1 \
         UNION SELECT storage_key, org_id FROM uploads WHERE org_id = $1 AND document_id IS NULL",
        &[org_id],
    )
    .await
}

/// The same for one application.
pub async fn keys_of_application(
    conn: &mut AnyConnection,
    org_id: &str,
    app_id: &str,
) -> Result<Vec<(String, String)>> {
    keys(
        conn,
        "SELECT storage_key, org_id FROM documents WHERE org_id = $1 AND application_id = $2 \
         UNION SELECT storage_key, org_id FROM uploads WHERE org_id = $1 AND application_id = $2 \
           AND document_id IS NULL",
        &[org_id, app_id],
    )
    .await
}

/// The same for the documents of an agent's finished runs in an application (what
/// deleting those runs cascades to).
pub async fn keys_of_finished_runs(
    conn: &mut AnyConnection,
    org_id: &str,
    app_id: &str,
    package_id: &str,
) -> Result<Vec<(String, String)>> {
    keys(
        conn,
        "SELECT d.storage_key, d.org_id FROM documents d JOIN runs r ON r.id = d.run_id \
         WHERE r.org_id = $1 AND r.application_id = $2 AND r.package_id = $3 \
           AND r.status NOT IN ('pending', 'running')",
        &[org_id, app_id, package_id],
    )
    .await
}

async fn keys(
    conn: &mut AnyConnection,
    sql: &str,
    binds: &[&str],
) -> Result<Vec<(String, String)>> {
    let mut q = sqlx::query(sql);
    for b in binds {
        q = q.bind(*b);
    }
    let rows = q.fetch_all(conn).await.db()?;
    rows.iter()
        .map(|r| Ok((r.try_get(0).db()?, r.try_get(1).db()?)))
        .collect()
}
