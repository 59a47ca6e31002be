//! A run's ordered logs, and the events that arrived ahead of a sequence gap and
//! wait in `run_event_buffer` until it fills.

use corral_core::RunId;
use sqlx::{AnyConnection, FromRow, Row};

use crate::{Result, SqlxResultExt};

#[derive(Debug, Clone, FromRow)]
pub struct Log {
    pub id: i64,
    pub run_id: RunId,
    pub sequence: Option<i64>,
    #[sqlx(rename = "type")]
    pub log_type: String,
    pub level: String,
    pub message: Option<String>,
    pub data: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewLog<'a> {
    pub run_id: &'a RunId,
    pub sequence: Option<i64>,
    pub log_type: &'a str,
    pub level: &'a str,
    pub message: Option<&'a str>,
    pub data: Option<&'a str>,
    pub now: i64,
}

pub async fn insert_log(conn: &mut AnyConnection, l: &NewLog<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO run_logs (run_id, sequence, type, level, message, data, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(l.run_id)
    .bind(l.sequence)
    .bind(l.log_type)
    .bind(l.level)
    .bind(l.message)
    .bind(l.data)
    .bind(l.now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// Log entries with `id > since` at or above the given levels, oldest first; one more
/// than `limit` is fetched so the caller can tell whether more follow.
pub async fn logs(
    conn: &mut AnyConnection,
    run_id: &RunId,
    since: i64,
    levels: &[&str],
    limit: i64,
) -> Result<Vec<Log>> {
    let placeholders: Vec<String> = (0..levels.len()).map(|i| format!("${}", i + 4)).collect();
    let sql = format!(
        "SELECT id, run_id, sequence, type, level, message, data, created_at FROM run_logs \
         WHERE run_id = $1 AND id > $2 AND level IN ({}) ORDER BY id LIMIT $3",
        placeholders.join(", ")
    );
    let mut q = sqlx::query_as(&sql).bind(run_id).bind(since).bind(limit);
    for l in levels {
        q = q.bind(*l);
    }
    q.fetch_all(conn).await.db()
}

// Events waiting behind a gap.

/// Keeps an event that arrived ahead of a gap; a duplicate is ignored.
pub async fn buffer_event(
    conn: &mut AnyConnection,
    run_id: &RunId,
    sequence: i64,
    body: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO run_event_buffer (run_id, sequence, body, received_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (run_id, sequence) DO NOTHING",
    )
    .bind(run_id)
    .bind(sequence)
    .bind(body)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// Buffered events of a run in sequence order.
pub async fn buffered(conn: &mut AnyConnection, run_id: &RunId) -> Result<Vec<(i64, String)>> {
    let rows = sqlx::query(
        "SELECT sequence, body FROM run_event_buffer WHERE run_id = $1 ORDER BY sequence",
    )
    .bind(run_id)
    .fetch_all(conn)
    .await
    .db()?;
    rows.iter()
        .map(|r| Ok((r.try_get(0).db()?, r.try_get(1).db()?)))
        .collect()
}

pub async fn unbuffer(conn: &mut AnyConnection, run_id: &RunId, sequence: i64) -> Result<()> {
    sqlx::query("DELETE FROM run_event_buffer WHERE run_id = $1 AND sequence = $2")
        .bind(run_id)
        .bind(sequence)
        .execute(conn)
        .await
        .db()?;
    Ok(())
}
