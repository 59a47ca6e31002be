//! The delivery worker's batched writes: the bodies of a claim's first attempts and
//! the records of a burst of attempts. On PostgreSQL each batch is one statement (one
//! round trip and one commit whatever its size: a `VALUES` list joined to the rows);
//! on SQLite, which has no data-changing `WITH` and one writer anyway, one transaction
//! of small statements.

use std::collections::{HashMap, HashSet};

use sqlx::{AnyConnection, Connection as _, Row};

use crate::webhooks::{insert_attempt, update_delivery, AttemptRecord};
use crate::{Result, SqlxResultExt};

/// Rows per statement at most (PostgreSQL takes 65,535 parameters; a record has 10).
const MAX_ROWS: usize = 1000;

/// Stores each body where none is stored yet and returns the stored body of every id
/// (another worker's where it got there first). Each row stands alone (a body is
/// stored once), so PostgreSQL's chunks need no common transaction.
pub async fn freeze_payloads(
    conn: &mut AnyConnection,
    postgres: bool,
    bodies: &[(i64, String)],
) -> Result<HashMap<i64, String>> {
    let mut out = HashMap::with_capacity(bodies.len());
    if postgres {
        for chunk in bodies.chunks(MAX_ROWS) {
            freeze_pg(conn, chunk, &mut out).await?;
        }
        return Ok(out);
    }
    if bodies.is_empty() {
        return Ok(out);
    }
    let mut tx = conn.begin().await.db()?;
    for (id, body) in bodies {
        sqlx::query("UPDATE webhook_deliveries SET payload = $2 WHERE id = $1 AND payload IS NULL")
            .bind(*id)
            .bind(body.as_str())
            .execute(&mut *tx)
            .await
            .db()?;
    }
    let sql = format!(
        "SELECT id, payload FROM webhook_deliveries WHERE id IN ({})",
        crate::placeholders(bodies.len())
    );
    let mut q = sqlx::query(&sql);
    for (id, _) in bodies {
        q = q.bind(*id);
    }
    for row in q.fetch_all(&mut *tx).await.db()? {
        let id: i64 = row.try_get(0).db()?;
        let payload: Option<String> = row.try_get(1).db()?;
        if let Some(p) = payload {
            out.insert(id, p);
        }
    }
    tx.commit().await.db()?;
    Ok(out)
}

async fn freeze_pg(
    conn: &mut AnyConnection,
    bodies: &[(i64, String)],
    out: &mut HashMap<i64, String>,
) -> Result<()> {
    if bodies.is_empty() {
        return Ok(());
    }
    let values = (0..bodies.len())
        .map(|i| format!("(${}::bigint, ${}::text)", 2 * i + 1, 2 * i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "UPDATE webhook_deliveries d SET payload = COALESCE(d.payload, v.body) \
         FROM (VALUES {values}) AS v(id, body) WHERE d.id = v.id \
         RETURNING d.id, d.payload"
    );
    let mut q = sqlx::query(&sql);
    for (id, body) in bodies {
        q = q.bind(*id).bind(body.as_str());
    }
    for row in q.fetch_all(conn).await.db()? {
        let id: i64 = row.try_get(0).db()?;
        let payload: Option<String> = row.try_get(1).db()?;
        if let Some(p) = payload {
            out.insert(id, p);
        }
    }
    Ok(())
}

/// Records a burst of attempts and their deliveries' new states, all or nothing. Per
/// record, whether it was kept (false: that claim had lapsed and the record was
/// skipped).
pub async fn record_attempts(
    conn: &mut AnyConnection,
    postgres: bool,
    records: &[AttemptRecord<'_>],
) -> Result<Vec<bool>> {
    if postgres {
        let mut kept = HashSet::with_capacity(records.len());
        if records.len() <= MAX_ROWS {
            // One statement: its own transaction.
            record_pg(conn, records, &mut kept).await?;
        } else {
            let mut tx = conn.begin().await.db()?;
            for chunk in records.chunks(MAX_ROWS) {
                record_pg(&mut tx, chunk, &mut kept).await?;
            }
            tx.commit().await.db()?;
        }
        return Ok(records
            .iter()
            .map(|r| kept.contains(&r.delivery_id))
            .collect());
    }
    let mut tx = conn.begin().await.db()?;
    let mut kept = Vec::with_capacity(records.len());
    for a in records {
        let ok = update_delivery(&mut tx, a).await?;
        if ok {
            insert_attempt(&mut tx, a.delivery_id, a).await?;
        }
        kept.push(ok);
    }
    tx.commit().await.db()?;
    Ok(kept)
}

async fn record_pg(
    conn: &mut AnyConnection,
    records: &[AttemptRecord<'_>],
    kept: &mut HashSet<i64>,
) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    const TYPES: [&str; 10] = [
        "bigint", "bigint", "text", "bigint", "bigint", "bigint", "text", "bigint", "bigint",
        "text",
    ];
    let values = (0..records.len())
        .map(|i| {
            let cols = TYPES
                .iter()
                .enumerate()
                .map(|(j, t)| format!("${}::{t}", i * TYPES.len() + j + 1))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({cols})")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "WITH v(id, claimed_until, outcome, attempt, next_attempt_at, status_code, error, now, \
           latency_ms, response) AS (VALUES {values}), \
         u AS (UPDATE webhook_deliveries d SET status = v.outcome, attempts = v.attempt, \
             next_attempt_at = v.next_attempt_at, last_status_code = v.status_code, \
             last_error = v.error, claimed_until = NULL, updated_at = v.now \
           FROM v WHERE d.id = v.id AND d.claimed_until = v.claimed_until \
             AND d.status = 'pending' RETURNING d.id) \
         INSERT INTO webhook_attempts (delivery_id, attempt, status_code, latency_ms, error, \
           response, created_at) \
         SELECT v.id, v.attempt, v.status_code, v.latency_ms, v.error, v.response, v.now \
         FROM v JOIN u ON u.id = v.id RETURNING delivery_id"
    );
    let mut q = sqlx::query(&sql);
    for a in records {
        q = q
            .bind(a.delivery_id)
            .bind(a.claimed_until)
            .bind(a.outcome)
            .bind(a.attempt)
            .bind(a.next_attempt_at)
            .bind(a.status_code)
            .bind(a.error)
            .bind(a.now)
            .bind(a.latency_ms)
            .bind(a.response);
    }
    for row in q.fetch_all(conn).await.db()? {
        kept.insert(row.try_get::<i64, _>(0).db()?);
    }
    Ok(())
}
