//! The idempotency store: one row per (org, application, key) holding the request's
//! body hash and, once the first request finished, its response for replay. Kept in
//! the database so every replica and every restart sees the same keys.

use corral_core::{AppId, OrgId};
use sqlx::{AnyConnection, FromRow};

use crate::{Result, SqlxResultExt};

#[derive(Debug, Clone, FromRow)]
pub struct Stored {
    pub request_hash: String,
    pub state: String,
    pub response_status: Option<i64>,
    pub response_headers: Option<String>,
    pub response_body: Option<Vec<u8>>,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Debug)]
pub enum Begin {
    /// This request owns the key now and must `complete` or `abandon` it.
    Started,
    /// Another request with this key is still running.
    InFlight,
    /// The key was used with another body.
    Mismatch,
    /// The first request finished; replay its response.
    Replay {
        status: u16,
        headers: String,
        body: Vec<u8>,
    },
}

pub struct Key<'a> {
    pub org_id: &'a OrgId,
    pub application_id: &'a AppId,
    pub key: &'a str,
}

/// Claims the key for this request. An in-flight claim older than `stale_after_ms`
/// belonged to a request that died (crash, kill) and is taken over.
pub async fn begin(
    conn: &mut AnyConnection,
    k: &Key<'_>,
    request_hash: &str,
    now: i64,
    ttl_ms: i64,
    stale_after_ms: i64,
) -> Result<Begin> {
    for _ in 0..2 {
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (org_id, application_id, idem_key, request_hash, state, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, 'in_flight', $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(k.org_id)
        .bind(k.application_id)
        .bind(k.key)
        .bind(request_hash)
        .bind(now)
        .bind(now + ttl_ms)
        .execute(&mut *conn)
        .await
        .db()?
        .rows_affected();
        if inserted == 1 {
            return Ok(Begin::Started);
        }
        let row: Option<Stored> = sqlx::query_as(
            "SELECT request_hash, state, response_status, response_headers, response_body, created_at, expires_at \
             FROM idempotency_keys WHERE org_id = $1 AND application_id = $2 AND idem_key = $3",
        )
        .bind(k.org_id)
        .bind(k.application_id)
        .bind(k.key)
        .fetch_optional(&mut *conn)
        .await
        .db()?;
        let Some(row) = row else { continue };
        let stale_flight = row.state == "in_flight" && row.created_at <= now - stale_after_ms;
        if row.expires_at <= now || stale_flight {
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE org_id = $1 AND application_id = $2 AND idem_key = $3 AND created_at = $4",
            )
            .bind(k.org_id)
            .bind(k.application_id)
            .bind(k.key)
            .bind(row.created_at)
            .execute(&mut *conn)
            .await
            .db()?;
            continue;
        }
        if row.request_hash != request_hash {
            return Ok(Begin::Mismatch);
        }
        if row.state == "in_flight" {
            return Ok(Begin::InFlight);
        }
        return Ok(Begin::Replay {
            status: row
                .response_status
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(200),
            headers: row.response_headers.unwrap_or_else(|| "[]".into()),
            body: row.response_body.unwrap_or_default(),
        });
    }
    // Two rounds of insert-conflict-vanish means heavy churn on one key; say in flight.
    Ok(Begin::InFlight)
}

pub async fn complete(
    conn: &mut AnyConnection,
    k: &Key<'_>,
    status: u16,
    headers: &str,
    body: &[u8],
) -> Result<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET state = 'done', response_status = $4, response_headers = $5, response_body = $6 \
         WHERE org_id = $1 AND application_id = $2 AND idem_key = $3",
    )
    .bind(k.org_id)
    .bind(k.application_id)
    .bind(k.key)
    .bind(i64::from(status))
    .bind(headers)
    .bind(body.to_vec())
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// Forgets the key (the first request failed with a 5xx or never finished).
pub async fn abandon(conn: &mut AnyConnection, k: &Key<'_>) -> Result<()> {
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE org_id = $1 AND application_id = $2 AND idem_key = $3",
    )
    .bind(k.org_id)
    .bind(k.application_id)
    .bind(k.key)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

pub async fn purge_expired(conn: &mut AnyConnection, now: i64) -> Result<u64> {
    let r = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
        .bind(now)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected())
}
