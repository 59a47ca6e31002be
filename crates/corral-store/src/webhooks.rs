//! Webhook endpoints, their outbox (`webhook_deliveries`, written by the run
//! triggers of migration 0005 in the same transaction as the state change) and every
//! delivery attempt (SPEC §11). Secrets are stored sealed; this module never opens
//! them.

use corral_core::{AppId, OrgId, RunId};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use crate::{Result, SqlxResultExt};

#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: String,
    pub org_id: OrgId,
    pub application_id: Option<String>,
    pub url: String,
    pub description: Option<String>,
    pub events: Vec<String>,
    pub payload_mode: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, org_id, application_id, url, description, events, payload_mode, \
    enabled, disabled_reason, secret, previous_secret, previous_secret_expires_at, created_by, \
    created_at, updated_at";

/// Events are stored as `,a,b,` so that the run triggers can match one with `LIKE`.
pub fn events_column(events: &[String]) -> String {
    format!(",{},", events.join(","))
}

fn events_from_column(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

impl<'r> FromRow<'r, AnyRow> for Webhook {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        let events: String = row.try_get("events")?;
        let enabled: i64 = row.try_get("enabled")?;
        Ok(Webhook {
            id: row.try_get("id")?,
            org_id: row.try_get("org_id")?,
            application_id: row.try_get("application_id")?,
            url: row.try_get("url")?,
            description: row.try_get("description")?,
            events: events_from_column(&events),
            payload_mode: row.try_get("payload_mode")?,
            enabled: enabled != 0,
            disabled_reason: row.try_get("disabled_reason")?,
            secret: row.try_get("secret")?,
            previous_secret: row.try_get("previous_secret")?,
            previous_secret_expires_at: row.try_get("previous_secret_expires_at")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

pub struct NewWebhook<'a> {
    pub id: &'a str,
    pub org_id: &'a OrgId,
    pub application_id: Option<&'a AppId>,
    pub url: &'a str,
    pub description: Option<&'a str>,
    pub events: &'a [String],
    pub payload_mode: &'a str,
    pub enabled: bool,
    pub secret: &'a str,
    pub created_by: Option<&'a str>,
    pub now: i64,
}

/// Endpoints at exactly this level: the org level (`application_id` None) or one
/// application.
pub async fn count_in_scope(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    application_id: Option<&AppId>,
) -> Result<i64> {
    let row = sqlx::query(
        "SELECT COUNT(*) FROM webhooks WHERE org_id = $1 \
         AND COALESCE(application_id, '') = COALESCE($2, '')",
    )
    .bind(org_id)
    .bind(application_id)
    .fetch_one(conn)
    .await
    .db()?;
    row.try_get(0).db()
}

/// Serializes webhook creations of one organization until the transaction ends.
/// On SQLite the no-op write takes the database's write lock first thing, so the
/// transaction's later reads cannot go stale before its insert (SQLITE_BUSY).
pub async fn lock_org(conn: &mut AnyConnection, postgres: bool, org_id: &OrgId) -> Result<()> {
    let sql = if postgres {
        "SELECT id FROM organizations WHERE id = $1 FOR UPDATE"
    } else {
        "UPDATE organizations SET id = id WHERE id = $1"
    };
    sqlx::query(sql).bind(org_id).execute(conn).await.db()?;
    Ok(())
}

pub async fn insert(conn: &mut AnyConnection, w: &NewWebhook<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO webhooks (id, org_id, application_id, url, description, events, payload_mode, \
           enabled, secret, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
    )
    .bind(w.id)
    .bind(w.org_id)
    .bind(w.application_id)
    .bind(w.url)
    .bind(w.description)
    .bind(events_column(w.events))
    .bind(w.payload_mode)
    .bind(i64::from(w.enabled))
    .bind(w.secret)
    .bind(w.created_by)
    .bind(w.now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

pub async fn get(conn: &mut AnyConnection, org_id: &OrgId, id: &str) -> Result<Option<Webhook>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE org_id = $1 AND id = $2"
    ))
    .bind(org_id)
    .bind(id)
    .fetch_optional(conn)
    .await
    .db()
}

/// What an application sees, newest first: the org-level endpoints and its own.
pub async fn list(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    application_id: &AppId,
) -> Result<Vec<Webhook>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE org_id = $1 \
         AND (application_id IS NULL OR application_id = $2) ORDER BY created_at DESC, id DESC"
    ))
    .bind(org_id)
    .bind(application_id)
    .fetch_all(conn)
    .await
    .db()
}

pub struct Patch<'a> {
    pub url: &'a str,
    pub description: Option<&'a str>,
    pub events: &'a [String],
    pub payload_mode: &'a str,
    pub enabled: bool,
    /// Re-enabling clears the reason it was disabled.
    pub disabled_reason: Option<&'a str>,
    pub now: i64,
}

pub async fn update(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: &str,
    p: &Patch<'_>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE webhooks SET url = $3, description = $4, events = $5, payload_mode = $6, \
           enabled = $7, disabled_reason = $8, updated_at = $9 WHERE org_id = $1 AND id = $2",
    )
    .bind(org_id)
    .bind(id)
    .bind(p.url)
    .bind(p.description)
    .bind(events_column(p.events))
    .bind(p.payload_mode)
    .bind(i64::from(p.enabled))
    .bind(p.disabled_reason)
    .bind(p.now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() == 1)
}

pub async fn delete(conn: &mut AnyConnection, org_id: &OrgId, id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM webhooks WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(id)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected() == 1)
}

/// Installs a new primary secret; the old one keeps signing until `expires_at`.
pub async fn rotate(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: &str,
    secret: &str,
    previous: &str,
    expires_at: i64,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE webhooks SET secret = $3, previous_secret = $4, previous_secret_expires_at = $5, \
           updated_at = $6 WHERE org_id = $1 AND id = $2",
    )
    .bind(org_id)
    .bind(id)
    .bind(secret)
    .bind(previous)
    .bind(expires_at)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() == 1)
}

/// Disables an endpoint (the receiver answered 410) and fails what it still owes.
pub async fn disable(conn: &mut AnyConnection, id: &str, reason: &str, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE webhooks SET enabled = 0, disabled_reason = $2, updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .bind(now)
    .execute(&mut *conn)
    .await
    .db()?;
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'failed', last_error = $2, claimed_until = NULL, \
           updated_at = $3 WHERE webhook_id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(reason)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

// ---- deliveries -------------------------------------------------------------------

#[derive(Debug, Clone, FromRow)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub run_id: Option<RunId>,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub event_created_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, event_id, event_type, run_id, status, attempts, \
    next_attempt_at, last_status_code, last_error, event_created_at, created_at, updated_at";

#[derive(Debug, Clone, FromRow)]
pub struct Attempt {
    pub id: i64,
    pub delivery_id: i64,
    pub attempt: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response: Option<String>,
    pub created_at: i64,
}

/// An endpoint's deliveries, newest first, with `id < before` when given.
pub async fn deliveries(
    conn: &mut AnyConnection,
    webhook_id: &str,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Delivery>> {
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 \
         AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    ))
    .bind(webhook_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
    .db()
}

/// The attempts of the given deliveries, in attempt order.
pub async fn attempts(conn: &mut AnyConnection, delivery_ids: &[i64]) -> Result<Vec<Attempt>> {
    if delivery_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id, delivery_id, attempt, status_code, latency_ms, error, response, created_at \
         FROM webhook_attempts WHERE delivery_id IN ({}) ORDER BY delivery_id, attempt",
        crate::placeholders(delivery_ids.len())
    );
    let mut q = sqlx::query_as(&sql);
    for id in delivery_ids {
        q = q.bind(*id);
    }
    q.fetch_all(conn).await.db()
}

/// A delivery a worker took, with what it needs to attempt it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub webhook_id: String,
    pub org_id: OrgId,
    pub event_id: String,
    pub event_type: String,
    pub run_id: Option<RunId>,
    pub attempts: i64,
    pub payload: Option<String>,
    pub event_created_at: i64,
    pub claimed_until: i64,
}

impl<'r> FromRow<'r, AnyRow> for Claimed {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        Ok(Claimed {
            id: row.try_get("id")?,
            webhook_id: row.try_get("webhook_id")?,
            org_id: row.try_get("org_id")?,
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("event_type")?,
            run_id: row.try_get("run_id")?,
            attempts: row.try_get("attempts")?,
            payload: row.try_get("payload")?,
            event_created_at: row.try_get("event_created_at")?,
            claimed_until: row.try_get("claimed_until")?,
        })
    }
}

/// Takes up to `limit` due deliveries of enabled endpoints until `lease_until`. On
/// PostgreSQL concurrent workers skip each other's rows (`FOR UPDATE SKIP LOCKED`);
/// SQLite has one writer, so one worker. A crashed worker's claim lapses at
/// `lease_until` and the delivery is attempted again.
pub async fn claim(
    conn: &mut AnyConnection,
    postgres: bool,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<Claimed>> {
    let lock = if postgres {
        "FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE webhook_deliveries SET claimed_until = $2 WHERE id IN ( \
           SELECT d.id FROM webhook_deliveries d WHERE d.status = 'pending' \
             AND d.next_attempt_at <= $1 AND (d.claimed_until IS NULL OR d.claimed_until < $1) \
           ORDER BY d.next_attempt_at, d.id LIMIT $3 {lock}) \
         RETURNING id, webhook_id, org_id, event_id, event_type, run_id, attempts, payload, \
           event_created_at, claimed_until"
    );
    sqlx::query_as(&sql)
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(conn)
        .await
        .db()
}

pub struct AttemptRecord<'a> {
    pub delivery_id: i64,
    pub attempt: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<&'a str>,
    pub response: Option<&'a str>,
    pub now: i64,
    /// `pending` (retry at `next_attempt_at`), `success` or `failed`.
    pub outcome: &'a str,
    pub next_attempt_at: i64,
    /// The claim this worker holds: a lapsed claim records nothing.
    pub claimed_until: i64,
}

/// Records one attempt and the delivery's new state, in one transaction. Returns
/// false when the claim had lapsed (another worker owns the delivery now).
pub async fn record_attempt(conn: &mut AnyConnection, a: &AttemptRecord<'_>) -> Result<bool> {
    use sqlx::Connection as _;
    let mut tx = conn.begin().await.db()?;
    if !update_delivery(&mut tx, a).await? {
        return Ok(false);
    }
    insert_attempt(&mut tx, a.delivery_id, a).await?;
    tx.commit().await.db()?;
    Ok(true)
}

pub(crate) async fn update_delivery(
    conn: &mut AnyConnection,
    a: &AttemptRecord<'_>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE webhook_deliveries SET status = $3, attempts = $4, next_attempt_at = $5, \
           last_status_code = $6, last_error = $7, claimed_until = NULL, updated_at = $8 \
         WHERE id = $1 AND claimed_until = $2 AND status = 'pending'",
    )
    .bind(a.delivery_id)
    .bind(a.claimed_until)
    .bind(a.outcome)
    .bind(a.attempt)
    .bind(a.next_attempt_at)
    .bind(a.status_code)
    .bind(a.error)
    .bind(a.now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() == 1)
}

pub(crate) async fn insert_attempt(
    conn: &mut AnyConnection,
    delivery_id: i64,
    a: &AttemptRecord<'_>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, attempt, status_code, latency_ms, error, \
           response, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(delivery_id)
    .bind(a.attempt)
    .bind(a.status_code)
    .bind(a.latency_ms)
    .bind(a.error)
    .bind(a.response)
    .bind(a.now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// A delivery made outside the outbox (`POST /webhooks/{id}/test`): recorded with its
/// single attempt, never retried.
pub async fn insert_test_delivery(
    conn: &mut AnyConnection,
    webhook: &Webhook,
    event_id: &str,
    payload: &str,
    a: &AttemptRecord<'_>,
) -> Result<i64> {
    use sqlx::Connection as _;
    let mut tx = conn.begin().await.db()?;
    let row = sqlx::query(
        "INSERT INTO webhook_deliveries (webhook_id, org_id, event_id, event_type, status, \
           attempts, next_attempt_at, payload, last_status_code, last_error, event_created_at, \
           created_at, updated_at) \
         VALUES ($1, $2, $3, 'webhook.test', $4, 1, $5, $6, $7, $8, $5, $5, $5) RETURNING id",
    )
    .bind(&webhook.id)
    .bind(&webhook.org_id)
    .bind(event_id)
    .bind(a.outcome)
    .bind(a.now)
    .bind(payload)
    .bind(a.status_code)
    .bind(a.error)
    .fetch_one(&mut *tx)
    .await
    .db()?;
    let id: i64 = row.try_get(0).db()?;
    insert_attempt(&mut tx, id, a).await?;
    tx.commit().await.db()?;
    Ok(id)
}

/// The endpoint a claimed delivery goes to (whatever its org).
pub async fn by_id(conn: &mut AnyConnection, id: &str) -> Result<Option<Webhook>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
        .db()
}

/// Sealed secrets not under `current_prefix` (for `corral secrets rotate`).
pub async fn secrets_to_reseal(
    conn: &mut AnyConnection,
    current_prefix: &str,
    limit: i64,
) -> Result<Vec<(String, String, Option<String>)>> {
    let rows = sqlx::query(
        "SELECT id, secret, previous_secret FROM webhooks \
         WHERE secret NOT LIKE $1 OR (previous_secret IS NOT NULL AND previous_secret NOT LIKE $1) \
         ORDER BY id LIMIT $2",
    )
    .bind(current_prefix)
    .bind(limit)
    .fetch_all(conn)
    .await
    .db()?;
    rows.iter()
        .map(|r| Ok((r.try_get(0).db()?, r.try_get(1).db()?, r.try_get(2).db()?)))
        .collect()
}

pub async fn store_resealed(
    conn: &mut AnyConnection,
    id: &str,
    old_secret: &str,
    secret: &str,
    previous: Option<&str>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE webhooks SET secret = $3, previous_secret = $4 WHERE id = $1 AND secret = $2",
    )
    .bind(id)
    .bind(old_secret)
    .bind(secret)
    .bind(previous)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() == 1)
}
