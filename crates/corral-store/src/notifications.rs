//! Notifications: one row per recipient when a run reaches a terminal state, written
//! by [`crate::runs::finish`] on the connection (and transaction) of the terminal
//! write. A recipient is `(recipient_type, recipient_id)`: the run's end-user, else its
//! user, else the creator of the API key that started it — the same owner an API
//! caller is (see the API's `Ctx::actor`). Every read and write takes the org, the
//! application and the recipient.

use corral_core::{AppId, OrgId, RunId};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use crate::{Result, SqlxResultExt};

/// The kind of notification a finished run writes.
pub const RUN_COMPLETED: &str = "run_completed";

#[derive(Debug, Clone)]
pub struct Notification {
    pub id: String,
    pub kind: String,
    pub run_id: Option<String>,
    pub package_id: Option<String>,
    /// JSON object.
    pub payload: Option<String>,
    pub read_at: Option<i64>,
    pub created_at: i64,
}

impl<'r> FromRow<'r, AnyRow> for Notification {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        Ok(Notification {
            id: row.try_get("id")?,
            kind: row.try_get("type")?,
            run_id: row.try_get("run_id")?,
            package_id: row.try_get("package_id")?,
            payload: row.try_get("payload")?,
            read_at: row.try_get("read_at")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Whose notifications: the tenant and the recipient.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    pub org_id: &'a OrgId,
    pub app_id: &'a AppId,
    /// `user` | `end_user`.
    pub kind: &'a str,
    pub id: &'a str,
}

const WHERE_RECIPIENT: &str =
    "org_id = $1 AND application_id = $2 AND recipient_type = $3 AND recipient_id = $4";

/// Writes the notification of a run that just reached `status`. Runs nobody can
/// receive (an API key without a creator) notify no one.
pub async fn run_finished(
    conn: &mut AnyConnection,
    run_id: &RunId,
    status: &str,
    now: i64,
) -> Result<()> {
    type Row = (String, String, Option<String>, String, Option<String>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT r.org_id, r.application_id, r.package_id, \
           CASE WHEN r.end_user_id IS NOT NULL THEN 'end_user' ELSE 'user' END, \
           COALESCE(r.end_user_id, r.user_id, k.created_by) \
         FROM runs r LEFT JOIN api_keys k ON k.id = r.api_key_id WHERE r.id = $1",
    )
    .bind(run_id)
    .fetch_optional(&mut *conn)
    .await
    .db()?;
    let Some((org_id, app_id, package_id, kind, Some(recipient))) = row else {
        return Ok(());
    };
    let payload = serde_json::json!({
        "agent_id": package_id,
        "status": status,
    })
    .to_string();
    sqlx::query(
        "INSERT INTO notifications (id, org_id, application_id, recipient_type, recipient_id, \
           type, run_id, package_id, payload, read_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10)",
    )
    .bind(corral_core::ids::uuid())
    .bind(org_id)
    .bind(app_id)
    .bind(kind)
    .bind(recipient)
    .bind(RUN_COMPLETED)
    .bind(run_id)
    .bind(package_id)
    .bind(payload)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// A page of the recipient's notifications, newest first, after the `after` cursor
/// (a notification id of the same recipient; unknown → from the start). Returns up to
/// `limit + 1` rows so the caller can tell whether another page follows.
pub async fn list(
    conn: &mut AnyConnection,
    to: Recipient<'_>,
    unread_only: bool,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Notification>> {
    let cursor: Option<(i64, String)> = match after {
        Some(id) => sqlx::query_as(&format!(
            "SELECT created_at, id FROM notifications WHERE {WHERE_RECIPIENT} AND id = $5"
        ))
        .bind(to.org_id)
        .bind(to.app_id)
        .bind(to.kind)
        .bind(to.id)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .db()?,
        None => None,
    };
    let (c_at, c_id) = cursor.unwrap_or((i64::MAX, String::new()));
    sqlx::query_as(&format!(
        "SELECT id, type, run_id, package_id, payload, read_at, created_at FROM notifications \
         WHERE {WHERE_RECIPIENT} AND ($5 = 0 OR read_at IS NULL) \
           AND (created_at < $6 OR (created_at = $6 AND $7 <> '' AND id < $7)) \
         ORDER BY created_at DESC, id DESC LIMIT $8"
    ))
    .bind(to.org_id)
    .bind(to.app_id)
    .bind(to.kind)
    .bind(to.id)
    .bind(i64::from(unread_only))
    .bind(c_at)
    .bind(c_id)
    .bind(limit + 1)
    .fetch_all(conn)
    .await
    .db()
}

pub async fn unread_count(conn: &mut AnyConnection, to: Recipient<'_>) -> Result<i64> {
    sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM notifications WHERE {WHERE_RECIPIENT} AND read_at IS NULL"
    ))
    .bind(to.org_id)
    .bind(to.app_id)
    .bind(to.kind)
    .bind(to.id)
    .fetch_one(conn)
    .await
    .db()
}

/// Unread notifications per agent package.
pub async fn unread_by_package(
    conn: &mut AnyConnection,
    to: Recipient<'_>,
) -> Result<Vec<(String, i64)>> {
    sqlx::query_as(&format!(
        "SELECT package_id, COUNT(*) FROM notifications \
         WHERE {WHERE_RECIPIENT} AND read_at IS NULL AND package_id IS NOT NULL \
         GROUP BY package_id ORDER BY package_id"
    ))
    .bind(to.org_id)
    .bind(to.app_id)
    .bind(to.kind)
    .bind(to.id)
    .fetch_all(conn)
    .await
    .db()
}

/// Marks one notification read (kept read if already). `None` when the recipient has
/// no such notification.
pub async fn mark_read(
    conn: &mut AnyConnection,
    to: Recipient<'_>,
    id: &str,
    now: i64,
) -> Result<Option<()>> {
    let r = sqlx::query(&format!(
        "UPDATE notifications SET read_at = COALESCE(read_at, $6) WHERE {WHERE_RECIPIENT} AND id = $5"
    ))
    .bind(to.org_id)
    .bind(to.app_id)
    .bind(to.kind)
    .bind(to.id)
    .bind(id)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok((r.rows_affected() > 0).then_some(()))
}

/// Marks the recipient's notifications of a run read; returns how many changed.
pub async fn mark_run_read(
    conn: &mut AnyConnection,
    to: Recipient<'_>,
    run_id: &str,
    now: i64,
) -> Result<u64> {
    let r = sqlx::query(&format!(
        "UPDATE notifications SET read_at = $6 \
         WHERE {WHERE_RECIPIENT} AND run_id = $5 AND read_at IS NULL"
    ))
    .bind(to.org_id)
    .bind(to.app_id)
    .bind(to.kind)
    .bind(to.id)
    .bind(run_id)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected())
}

/// Marks every unread notification of the recipient read; returns how many changed.
pub async fn mark_all_read(conn: &mut AnyConnection, to: Recipient<'_>, now: i64) -> Result<u64> {
    let r = sqlx::query(&format!(
        "UPDATE notifications SET read_at = $5 WHERE {WHERE_RECIPIENT} AND read_at IS NULL"
    ))
    .bind(to.org_id)
    .bind(to.app_id)
    .bind(to.kind)
    .bind(to.id)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected())
}
