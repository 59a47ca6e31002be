//! Runs (SPEC §7): the run rows (their logs are in [`crate::run_logs`], the
//! instances and leases that own them in [`crate::cluster`]).
//!
//! State changes are conditional updates (`WHERE status IN (…)`), so a terminal state
//! is written once and never changes again, whichever replica or task gets there
//! first; the caller learns from the returned flag whether its write won.

use corral_core::{AppId, OrgId, RunId};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use crate::{Result, SqlxResultExt};

pub use crate::run_list::{
    list, list_json, list_json_sql, list_pg, list_version, JsonPage, ListFilter,
};
pub use crate::run_row::Run;
pub use corral_core::RunStatus;

/// Reads a status column; a name this server does not know is a decode error.
fn status_of(row: &AnyRow) -> sqlx::Result<RunStatus> {
    crate::run_row::parse_status(row.try_get("status")?)
}

const SELECT: &str = "SELECT r.*, u.name AS user_name, \
     COALESCE(e.name, e.external_id) AS end_user_name, k.name AS api_key_name \
     FROM runs r \
     LEFT JOIN users u ON u.id = r.user_id \
     LEFT JOIN end_users e ON e.id = r.end_user_id \
     LEFT JOIN api_keys k ON k.id = r.api_key_id";

/// What a trigger writes.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub id: &'a RunId,
    pub org_id: &'a OrgId,
    pub application_id: &'a AppId,
    pub package_id: Option<&'a str>,
    pub agent_scope: Option<&'a str>,
    pub agent_name: Option<&'a str>,
    pub kind: &'a str,
    pub input: Option<&'a str>,
    pub version_label: Option<&'a str>,
    pub version_ref: &'a str,
    pub definition: &'a str,
    pub model_label: Option<&'a str>,
    pub model_source: Option<&'a str>,
    pub proxy_label: Option<&'a str>,
    pub generation: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub end_user_id: Option<&'a str>,
    pub api_key_id: Option<&'a str>,
    pub schedule_id: Option<&'a str>,
    pub schedule_name: Option<&'a str>,
    pub timeout_secs: i64,
    pub runner_kind: Option<&'a str>,
    pub runner_name: Option<&'a str>,
    pub server_id: Option<&'a str>,
    pub sink_secret: &'a str,
    pub sink_expires_at: i64,
    pub run_token_hash: &'a str,
    /// `platform` or `remote`.
    pub origin: &'a str,
    pub context_snapshot: Option<&'a str>,
    pub now: i64,
}

/// Inserts a `pending` run; its number is one more than the application's highest
/// for the same agent (or inline runs).
pub async fn insert(conn: &mut AnyConnection, r: &NewRun<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO runs (id, org_id, application_id, package_id, agent_scope, agent_name, kind, \
           run_number, status, input, version_label, version_ref, definition, model_label, \
           model_source, generation, user_id, end_user_id, api_key_id, schedule_id, timeout_secs, \
           runner_kind, runner_name, sink_secret, sink_expires_at, run_token_hash, created_at, server_id, \
           schedule_name, proxy_label, origin, context_snapshot) \
         SELECT $1, $2, $3, $4, $5, $6, $7, \
           COALESCE((SELECT MAX(run_number) FROM runs WHERE application_id = $3 \
                     AND COALESCE(agent_scope, '') = COALESCE($5, '') \
                     AND COALESCE(agent_name, '') = COALESCE($6, '')), 0) + 1, \
           'pending', $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, \
           $28, $29, $30",
    )
    .bind(r.id)
    .bind(r.org_id)
    .bind(r.application_id)
    .bind(r.package_id)
    .bind(r.agent_scope)
    .bind(r.agent_name)
    .bind(r.kind)
    .bind(r.input)
    .bind(r.version_label)
    .bind(r.version_ref)
    .bind(r.definition)
    .bind(r.model_label)
    .bind(r.model_source)
    .bind(r.generation)
    .bind(r.user_id)
    .bind(r.end_user_id)
    .bind(r.api_key_id)
    .bind(r.schedule_id)
    .bind(r.timeout_secs)
    .bind(r.runner_kind)
    .bind(r.runner_name)
    .bind(r.sink_secret)
    .bind(r.sink_expires_at)
    .bind(r.run_token_hash)
    .bind(r.now)
    .bind(r.server_id)
    .bind(r.schedule_name)
    .bind(r.proxy_label)
    .bind(r.origin)
    .bind(r.context_snapshot)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// A run of the tenant, or `None`.
pub async fn get(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    id: &RunId,
) -> Result<Option<Run>> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE r.org_id = $1 AND r.application_id = $2 AND r.id = $3"
    ))
    .bind(org_id)
    .bind(app_id)
    .bind(id)
    .fetch_optional(conn)
    .await
    .db()
}

/// A run by id alone: for the sandbox-facing endpoints (authenticated by the run's
/// own sink secret) and the executor.
pub async fn get_internal(conn: &mut AnyConnection, id: &RunId) -> Result<Option<Run>> {
    sqlx::query_as(&format!("{SELECT} WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
        .db()
}

/// [`get_internal`] for many ids at once (those that exist, in no particular order).
pub async fn get_internal_many(conn: &mut AnyConnection, ids: &[&RunId]) -> Result<Vec<Run>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let sql = format!(
            "{SELECT} WHERE r.id IN ({})",
            crate::placeholders(chunk.len())
        );
        let mut q = sqlx::query_as(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        out.extend(q.fetch_all(&mut *conn).await.db()?);
    }
    Ok(out)
}

/// The run a run token belongs to, by the token's hash (platform internal API).
pub async fn by_token_hash(conn: &mut AnyConnection, hash: &str) -> Result<Option<Run>> {
    sqlx::query_as(&format!("{SELECT} WHERE r.run_token_hash = $1"))
        .bind(hash)
        .fetch_optional(conn)
        .await
        .db()
}

/// Who starts a run, on what, and when.
#[derive(Debug, Clone, Copy)]
pub struct Start<'a> {
    /// The instance supervising the run.
    pub server_id: &'a str,
    /// The worker's name (`runnerName` in the run's shape).
    pub runner_name: &'a str,
    pub sandbox_id: &'a str,
    pub runner_kind: &'a str,
    pub now: i64,
}

/// `pending` → `running` once the sandbox is leased. False when the run is no
/// longer pending (cancelled meanwhile) or was claimed by another instance (a run
/// in the cluster's queue is started only by the worker that claimed it).
pub async fn mark_running(conn: &mut AnyConnection, id: &RunId, s: &Start<'_>) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE runs SET status = 'running', server_id = $2, sandbox_id = $3, runner_kind = $4, \
           runner_name = $6, started_at = $5, last_heartbeat_at = $5 \
         WHERE id = $1 AND status = 'pending' AND COALESCE(server_id, $2) = $2",
    )
    .bind(id)
    .bind(s.server_id)
    .bind(s.sandbox_id)
    .bind(s.runner_kind)
    .bind(s.now)
    .bind(s.runner_name)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() > 0)
}

/// The terminal write of a run.
#[derive(Debug, Clone)]
pub struct Finish<'a> {
    pub status: RunStatus,
    /// JSON `{"output": …}`.
    pub result: Option<&'a str>,
    pub error: Option<&'a str>,
    pub error_code: Option<&'a str>,
    pub error_details: Option<&'a str>,
    pub token_usage: Option<&'a str>,
    pub duration_ms: Option<i64>,
    pub now: i64,
}

impl Finish<'_> {
    /// `status` at `now`, with nothing else recorded.
    pub fn new(status: RunStatus, now: i64) -> Self {
        Finish {
            status,
            result: None,
            error: None,
            error_code: None,
            error_details: None,
            token_usage: None,
            duration_ms: None,
            now,
        }
    }
}

/// Writes the terminal state if the run is still active, with the notification of
/// its recipient in the same transaction; returns whether this call made the
/// transition. `duration_ms` defaults to the time since the sandbox started.
pub async fn finish(conn: &mut AnyConnection, id: &RunId, f: &Finish<'_>) -> Result<bool> {
    debug_assert!(f.status.is_terminal());
    let mut tx = sqlx::Connection::begin(conn).await.db()?;
    let r = sqlx::query(
        "UPDATE runs SET status = $2, result = COALESCE($3, result), error = $4, error_code = $5, \
           error_details = $6, token_usage = COALESCE($7, token_usage), \
           duration_ms = COALESCE($8, $9 - COALESCE(started_at, created_at)), completed_at = $9, \
           unread = 1 \
         WHERE id = $1 AND status IN ('pending', 'running')",
    )
    .bind(id)
    .bind(f.status.as_str())
    .bind(f.result)
    .bind(f.error)
    .bind(f.error_code)
    .bind(f.error_details)
    .bind(f.token_usage)
    .bind(f.duration_ms)
    .bind(f.now)
    .execute(&mut *tx)
    .await
    .db()?;
    let won = r.rows_affected() > 0;
    if won {
        crate::notifications::run_finished(&mut tx, id, f.status.as_str(), f.now).await?;
    }
    tx.commit().await.db()?;
    Ok(won)
}

/// Proof of life: bumps `last_heartbeat_at` (and `first_event_at` the first time).
pub async fn touch(conn: &mut AnyConnection, id: &RunId, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE runs SET last_heartbeat_at = $2, first_event_at = COALESCE(first_event_at, $2) \
         WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// Compare-and-swap of the event sequence: moves `last_sequence` from `expected` to
/// `next`; false when another writer moved it first.
pub async fn advance_sequence(
    conn: &mut AnyConnection,
    id: &RunId,
    expected: i64,
    next: i64,
) -> Result<bool> {
    let r = sqlx::query("UPDATE runs SET last_sequence = $3 WHERE id = $1 AND last_sequence = $2")
        .bind(id)
        .bind(expected)
        .bind(next)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected() > 0)
}

/// Stores the latest `output` (validated at finalize) and usage seen in events.
pub async fn set_result(conn: &mut AnyConnection, id: &RunId, result: &str) -> Result<()> {
    sqlx::query("UPDATE runs SET result = $2 WHERE id = $1")
        .bind(id)
        .bind(result)
        .execute(conn)
        .await
        .db()?;
    Ok(())
}

pub async fn set_usage(conn: &mut AnyConnection, id: &RunId, usage: &str) -> Result<()> {
    sqlx::query("UPDATE runs SET token_usage = $2 WHERE id = $1")
        .bind(id)
        .bind(usage)
        .execute(conn)
        .await
        .db()?;
    Ok(())
}

/// A run that is not finished yet, as the executor and the watchdog see it.
#[derive(Debug, Clone)]
pub struct Active {
    pub id: RunId,
    pub org_id: OrgId,
    pub status: RunStatus,
    pub server_id: Option<String>,
    pub sandbox_id: Option<String>,
    pub runner_kind: Option<String>,
    pub timeout_secs: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub first_event_at: Option<i64>,
    pub last_heartbeat_at: Option<i64>,
    /// `platform` or `remote` (no sandbox, no executor: only the remote watchdog).
    pub origin: String,
}

impl<'r> FromRow<'r, AnyRow> for Active {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        Ok(Active {
            id: row.try_get("id")?,
            org_id: row.try_get("org_id")?,
            status: status_of(row)?,
            server_id: row.try_get("server_id")?,
            sandbox_id: row.try_get("sandbox_id")?,
            runner_kind: row.try_get("runner_kind")?,
            timeout_secs: row.try_get("timeout_secs")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            first_event_at: row.try_get("first_event_at")?,
            last_heartbeat_at: row.try_get("last_heartbeat_at")?,
            origin: row.try_get("origin")?,
        })
    }
}

pub(crate) const ACTIVE_COLS: &str =
    "id, org_id, status, server_id, sandbox_id, runner_kind, timeout_secs, \
     created_at, started_at, first_event_at, last_heartbeat_at, origin";

/// Every pending or running run executed by this deployment (not the remote ones),
/// oldest first.
pub async fn active(conn: &mut AnyConnection) -> Result<Vec<Active>> {
    sqlx::query_as(&format!(
        "SELECT {ACTIVE_COLS} FROM runs WHERE status IN ('pending', 'running') \
         AND origin = 'platform' ORDER BY created_at, id"
    ))
    .fetch_all(conn)
    .await
    .db()
}

/// The liveness columns of one run, whatever its status: what a supervisor re-reads
/// every second, without the definition or the display names.
pub async fn liveness(conn: &mut AnyConnection, id: &RunId) -> Result<Option<Active>> {
    sqlx::query_as(&format!("SELECT {ACTIVE_COLS} FROM runs WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
        .db()
}

/// `(last_sequence, result)` of a run: what event ingestion reads inside its
/// transaction.
/// [`progress`] that also locks the run row until the transaction ends, so a
/// transaction that then appends logs takes its locks in the same order as any
/// status change (run row, then the org's realtime counter, from the trigger).
/// Reading first and writing later would take them the other way round and
/// deadlock against a concurrent cancel on PostgreSQL (and on SQLite it takes the
/// write lock first thing, so no later write has to upgrade a stale read).
pub async fn lock_progress(
    conn: &mut AnyConnection,
    id: &RunId,
) -> Result<Option<(i64, Option<String>)>> {
    let row = sqlx::query(
        "UPDATE runs SET last_sequence = last_sequence WHERE id = $1 \
         RETURNING last_sequence, result",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
    .db()?;
    row.map(|r| Ok((r.try_get(0).db()?, r.try_get(1).db()?)))
        .transpose()
}

pub async fn progress(
    conn: &mut AnyConnection,
    id: &RunId,
) -> Result<Option<(i64, Option<String>)>> {
    let row = sqlx::query("SELECT last_sequence, result FROM runs WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
        .db()?;
    row.map(|r| Ok((r.try_get(0).db()?, r.try_get(1).db()?)))
        .transpose()
}

/// Statuses of the given runs (those that exist).
pub async fn statuses(conn: &mut AnyConnection, ids: &[RunId]) -> Result<Vec<(RunId, String)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id, status FROM runs WHERE id IN ({})",
        crate::placeholders(ids.len())
    );
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(id.as_str());
    }
    let rows = q.fetch_all(conn).await.db()?;
    rows.iter()
        .map(|r| Ok((r.try_get(0).db()?, r.try_get(1).db()?)))
        .collect()
}

/// Number of the org's runs that are pending or running.
pub async fn count_active_for_org(conn: &mut AnyConnection, org_id: &OrgId) -> Result<i64> {
    sqlx::query("SELECT COUNT(*) FROM runs WHERE org_id = $1 AND status IN ('pending', 'running')")
        .bind(org_id)
        .fetch_one(conn)
        .await
        .db()?
        .try_get(0)
        .db()
}

/// Running runs per agent of an org (for agent listings).
pub async fn running_by_package(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT package_id, COUNT(*) FROM runs WHERE org_id = $1 AND application_id = $2 \
           AND status IN ('pending', 'running') AND package_id IS NOT NULL GROUP BY package_id",
    )
    .bind(org_id)
    .bind(app_id)
    .fetch_all(conn)
    .await
    .db()?;
    rows.iter()
        .map(|r| Ok((r.try_get(0).db()?, r.try_get(1).db()?)))
        .collect()
}

/// Deletes the application's finished runs of an agent; returns how many.
pub async fn delete_finished_for_package(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    package_id: &str,
) -> Result<u64> {
    let r = sqlx::query(
        "DELETE FROM runs WHERE org_id = $1 AND application_id = $2 AND package_id = $3 \
           AND status NOT IN ('pending', 'running')",
    )
    .bind(org_id)
    .bind(app_id)
    .bind(package_id)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected())
}

/// Moves an active run from a dead server (`from`, or none) to `to`; false when the
/// run changed meanwhile or another server claimed it first.
pub async fn claim(
    conn: &mut AnyConnection,
    id: &RunId,
    from: Option<&str>,
    to: &str,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE runs SET server_id = $3 WHERE id = $1 AND status IN ('pending', 'running') \
           AND COALESCE(server_id, '') = COALESCE($2, '')",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() > 0)
}

/// Number of runs per status.
pub async fn count_by_status(conn: &mut AnyConnection) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query("SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status")
        .fetch_all(conn)
        .await
        .db()?;
    rows.iter()
        .map(|r| Ok((r.try_get(0).db()?, r.try_get(1).db()?)))
        .collect()
}

/// Moves an open sink's expiry to `until` (a run still active whose sink has not
/// expired at `now`); false otherwise.
pub async fn extend_sink(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    id: &RunId,
    now: i64,
    until: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE runs SET sink_expires_at = $5, last_heartbeat_at = CASE WHEN status = 'running' \
           THEN $4 ELSE last_heartbeat_at END WHERE id = $3 AND org_id = $1 \
         AND application_id = $2 AND status IN ('pending', 'running') AND sink_expires_at > $4",
    )
    .bind(org_id)
    .bind(app_id)
    .bind(id)
    .bind(now)
    .bind(until)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() > 0)
}
