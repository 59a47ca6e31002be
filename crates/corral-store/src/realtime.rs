//! The realtime event log (SPEC §10). Rows are appended by database triggers on
//! `runs` and `run_logs` (migration 0005), numbered per organization without gaps in
//! commit order; this module reads them for fan-out and `Last-Event-ID` replay, and
//! prunes old ones.

use corral_core::{AppId, OrgId, RunId};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use crate::{Result, SqlxResultExt};

/// One event, joined with what a viewer needs: the log entry of a `run_log`, and the
/// run's result for a terminal `run_update` (sent to verbose subscribers only).
#[derive(Debug, Clone)]
pub struct Event {
    pub org_id: OrgId,
    pub seq: i64,
    pub run_id: RunId,
    pub application_id: AppId,
    pub end_user_id: Option<String>,
    pub package_id: Option<String>,
    pub kind: String,
    pub data: String,
    pub created_at: i64,
    pub log: Option<LogEntry>,
    pub result: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LogEntry {
    pub id: i64,
    pub sequence: Option<i64>,
    pub log_type: String,
    pub level: String,
    pub message: Option<String>,
    pub data: Option<String>,
    pub created_at: i64,
}

impl<'r> FromRow<'r, AnyRow> for Event {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        let log_id: Option<i64> = row.try_get("log_id")?;
        let log_type: Option<String> = row.try_get("log_type")?;
        let log = match (log_id, log_type) {
            (Some(id), Some(log_type)) => Some(LogEntry {
                id,
                sequence: row.try_get("log_sequence")?,
                log_type,
                level: row.try_get("log_level")?,
                message: row.try_get("log_message")?,
                data: row.try_get("log_data")?,
                created_at: row.try_get("log_created_at")?,
            }),
            _ => None,
        };
        Ok(Event {
            org_id: row.try_get("org_id")?,
            seq: row.try_get("seq")?,
            run_id: row.try_get("run_id")?,
            application_id: row.try_get("application_id")?,
            end_user_id: row.try_get("end_user_id")?,
            package_id: row.try_get("package_id")?,
            kind: row.try_get("kind")?,
            data: row.try_get("data")?,
            created_at: row.try_get("created_at")?,
            log,
            result: row.try_get("result")?,
        })
    }
}

/// Which events of an organization a reader wants.
#[derive(Debug, Clone, Default)]
pub struct Scope<'a> {
    pub application_id: Option<&'a AppId>,
    pub end_user_id: Option<&'a str>,
    pub run_id: Option<&'a RunId>,
    pub package_id: Option<&'a str>,
}

/// Events of `org_id` with `seq > after`, oldest first, at most `limit`.
pub async fn after(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    after: i64,
    scope: &Scope<'_>,
    limit: i64,
) -> Result<Vec<Event>> {
    let mut sql = String::from(
        "SELECT e.org_id, e.seq, e.run_id, e.application_id, e.end_user_id, e.package_id, e.kind, e.data, \
           e.created_at, e.log_id, l.sequence AS log_sequence, l.type AS log_type, \
           l.level AS log_level, l.message AS log_message, l.data AS log_data, \
           l.created_at AS log_created_at, \
           CASE WHEN e.kind = 'run_update' THEN r.result END AS result \
         FROM realtime_events e \
         LEFT JOIN run_logs l ON l.id = e.log_id \
         LEFT JOIN runs r ON r.id = e.run_id AND e.kind = 'run_update' \
         WHERE e.org_id = $1 AND e.seq > $2",
    );
    let mut n = 3;
    let mut binds: Vec<&str> = Vec::new();
    for (col, v) in [
        ("e.application_id", scope.application_id.map(AppId::as_str)),
        ("e.end_user_id", scope.end_user_id),
        ("e.run_id", scope.run_id.map(RunId::as_str)),
        ("e.package_id", scope.package_id),
    ] {
        if let Some(v) = v {
            sql.push_str(&format!(" AND {col} = ${n}"));
            n += 1;
            binds.push(v);
        }
    }
    sql.push_str(&format!(" ORDER BY e.seq LIMIT ${n}"));
    let mut q = sqlx::query_as(&sql).bind(org_id).bind(after);
    for b in binds {
        q = q.bind(b);
    }
    q.bind(limit).fetch_all(conn).await.db()
}

/// The last number handed out in `org_id` (0 before its first event).
pub async fn head(conn: &mut AnyConnection, org_id: &OrgId) -> Result<i64> {
    let row = sqlx::query("SELECT seq FROM realtime_counters WHERE org_id = $1")
        .bind(org_id)
        .fetch_optional(conn)
        .await
        .db()?;
    match row {
        Some(r) => r.try_get(0).db(),
        None => Ok(0),
    }
}

/// Every organization's last number (a cheap table: one row per org).
pub async fn heads(conn: &mut AnyConnection) -> Result<Vec<(OrgId, i64)>> {
    let rows = sqlx::query("SELECT org_id, seq FROM realtime_counters")
        .fetch_all(conn)
        .await
        .db()?;
    rows.iter()
        .map(|r| Ok((r.try_get(0).db()?, r.try_get(1).db()?)))
        .collect()
}

/// Deletes events older than `before` (ms), at most `limit` per call.
pub async fn prune(conn: &mut AnyConnection, before: i64, limit: i64) -> Result<u64> {
    let r = sqlx::query(
        "DELETE FROM realtime_events WHERE (org_id, seq) IN \
           (SELECT org_id, seq FROM realtime_events WHERE created_at < $1 LIMIT $2)",
    )
    .bind(before)
    .bind(limit)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected())
}
