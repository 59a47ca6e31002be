//! A run's view of its agent's past (`/internal/run-history`): the finished runs of
//! the same agent, application and actor, newest first, with their result and their
//! checkpoint (the last value the run pinned under the key `checkpoint`).

use corral_core::{AppId, OrgId, RunId};
use sqlx::{AnyConnection, Row};

use crate::{Result, SqlxResultExt};

/// Whose runs: the same end-user, else the same user, else the same API key.
pub enum Actor<'a> {
    EndUser(&'a str),
    User(&'a str),
    ApiKey(&'a str),
}

#[derive(Debug, Clone)]
pub struct Past {
    pub id: String,
    pub status: String,
    pub created_at: i64,
    pub duration_ms: Option<i64>,
    /// JSON `{"output": …}`.
    pub result: Option<String>,
    /// JSON `{"key": "checkpoint", "value": …}` of the run's last checkpoint pin.
    pub checkpoint: Option<String>,
}

/// Up to `limit` + 1 past runs (the extra one tells whether there are more).
pub async fn past_runs(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    package_id: &str,
    actor: Actor<'_>,
    current: &RunId,
    limit: i64,
) -> Result<Vec<Past>> {
    let (col, id, extra) = match actor {
        Actor::EndUser(id) => ("end_user_id", id, ""),
        Actor::User(id) => ("user_id", id, " AND r.end_user_id IS NULL"),
        Actor::ApiKey(id) => ("api_key_id", id, " AND r.end_user_id IS NULL"),
    };
    let sql = format!(
        "SELECT r.id, r.status, r.created_at, r.duration_ms, r.result, \
           (SELECT l.data FROM run_logs l WHERE l.run_id = r.id AND l.type = 'pinned' \
              AND l.data LIKE '{{\"key\":\"checkpoint\"%' ORDER BY l.id DESC LIMIT 1) AS checkpoint \
         FROM runs r WHERE r.org_id = $1 AND r.application_id = $2 AND r.package_id = $3 \
           AND r.{col} = $4{extra} AND r.id <> $5 \
           AND r.status IN ('success', 'failed', 'timeout', 'cancelled') \
         ORDER BY r.created_at DESC, r.id DESC LIMIT {}",
        limit.max(0) + 1
    );
    let rows = sqlx::query(&sql)
        .bind(org_id)
        .bind(app_id)
        .bind(package_id)
        .bind(id)
        .bind(current)
        .fetch_all(conn)
        .await
        .db()?;
    rows.iter()
        .map(|r| {
            Ok(Past {
                id: r.try_get("id")?,
                status: r.try_get("status")?,
                created_at: r.try_get("created_at")?,
                duration_ms: r.try_get("duration_ms")?,
                result: r.try_get("result")?,
                checkpoint: r.try_get("checkpoint")?,
            })
        })
        .collect::<sqlx::Result<Vec<_>>>()
        .db()
}
