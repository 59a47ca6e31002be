//! Remote runs (migration 0014: `runs.origin = 'remote'`): the agent runs on the
//! caller's host, so no executor, queue or reconciler takes them (see
//! [`crate::runs::active`] and [`crate::queue`]); these are the two writes and reads
//! only they have.

use corral_core::RunId;
use sqlx::AnyConnection;

use crate::runs::{Active, ACTIVE_COLS};
use crate::{Result, SqlxResultExt};

/// Every pending or running remote run, oldest first (the remote watchdog's).
pub async fn active_remote(conn: &mut AnyConnection) -> Result<Vec<Active>> {
    sqlx::query_as(&format!(
        "SELECT {ACTIVE_COLS} FROM runs WHERE status IN ('pending', 'running') \
         AND origin = 'remote' ORDER BY created_at, id"
    ))
    .fetch_all(conn)
    .await
    .db()
}

/// A remote run's first event: `pending` → `running`. False when it is not a
/// pending remote run (already running, finished, or a sandboxed run).
pub async fn mark_remote_running(conn: &mut AnyConnection, id: &RunId, now: i64) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE runs SET status = 'running', started_at = $2, last_heartbeat_at = $2 \
         WHERE id = $1 AND status = 'pending' AND origin = 'remote'",
    )
    .bind(id)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() > 0)
}
