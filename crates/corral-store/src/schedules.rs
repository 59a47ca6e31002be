//! Schedules (SPEC §13) and their fires. A fire is claimed by inserting its
//! `(schedule, fire time)` row, which can succeed once; the due rows themselves are
//! read `FOR UPDATE SKIP LOCKED` on PostgreSQL so replicas split the work instead of
//! queueing on each other.

use corral_core::{AppId, OrgId};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use crate::{Result, SqlxResultExt};

#[derive(Debug, Clone)]
pub struct Schedule {
    pub id: String,
    pub org_id: OrgId,
    pub application_id: AppId,
    pub package_id: String,
    pub name: Option<String>,
    pub enabled: bool,
    pub cron_expression: String,
    pub timezone: String,
    /// JSON object.
    pub input: Option<String>,
    pub generation_config_override: Option<String>,
    pub model_id_override: Option<String>,
    pub proxy_id_override: Option<String>,
    pub version_override: Option<String>,
    pub connection_overrides: Option<String>,
    pub dependency_overrides: Option<String>,
    pub user_id: Option<String>,
    pub end_user_id: Option<String>,
    pub next_run_at: i64,
    pub last_run_at: Option<i64>,
    pub last_run_id: Option<String>,
    pub last_error_code: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Read with the schedule (views only; `None`/0 where not joined).
    pub actor_name: Option<String>,
    pub running_runs: i64,
    pub unread_count: i64,
    pub last_run_number: i64,
}

impl<'r> FromRow<'r, AnyRow> for Schedule {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        let opt_i64 = |c: &str| row.try_get::<Option<i64>, _>(c).ok().flatten();
        Ok(Schedule {
            id: row.try_get("id")?,
            org_id: row.try_get("org_id")?,
            application_id: row.try_get("application_id")?,
            package_id: row.try_get("package_id")?,
            name: row.try_get("name")?,
            enabled: row.try_get::<i64, _>("enabled")? != 0,
            cron_expression: row.try_get("cron_expression")?,
            timezone: row.try_get("timezone")?,
            input: row.try_get("input")?,
            generation_config_override: row.try_get("generation_config_override")?,
            model_id_override: row.try_get("model_id_override")?,
            proxy_id_override: row.try_get("proxy_id_override")?,
            version_override: row.try_get("version_override")?,
            connection_overrides: row.try_get("connection_overrides")?,
            dependency_overrides: row.try_get("dependency_overrides")?,
            user_id: row.try_get("user_id")?,
            end_user_id: row.try_get("end_user_id")?,
            next_run_at: row.try_get("next_run_at")?,
            last_run_at: row.try_get("last_run_at")?,
            last_run_id: row.try_get("last_run_id")?,
            last_error_code: row.try_get("last_error_code")?,
            last_error: row.try_get("last_error")?,
            last_error_at: row.try_get("last_error_at")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            actor_name: row.try_get("actor_name").ok().flatten(),
            running_runs: opt_i64("running_runs").unwrap_or(0),
            unread_count: opt_i64("unread_count").unwrap_or(0),
            last_run_number: opt_i64("last_run_number").unwrap_or(0),
        })
    }
}

/// A schedule with what the views show beside it: the actor's name, its runs in
/// flight, unread and the highest run number.
const SELECT_VIEW: &str = "SELECT s.*, COALESCE(u.name, e.name, e.external_id) AS actor_name, \
     (SELECT COUNT(*) FROM runs r WHERE r.schedule_id = s.id \
        AND r.status IN ('pending', 'running')) AS running_runs, \
     (SELECT COUNT(*) FROM runs r WHERE r.schedule_id = s.id AND r.unread <> 0) AS unread_count, \
     (SELECT COALESCE(MAX(r.run_number), 0) FROM runs r WHERE r.schedule_id = s.id) AS last_run_number \
     FROM schedules s \
     LEFT JOIN users u ON u.id = s.user_id \
     LEFT JOIN end_users e ON e.id = s.end_user_id";

/// Every column a create or an update writes.
pub struct Fields<'a> {
    pub name: Option<&'a str>,
    pub enabled: bool,
    pub cron_expression: &'a str,
    pub timezone: &'a str,
    pub input: Option<&'a str>,
    pub generation_config_override: Option<&'a str>,
    pub model_id_override: Option<&'a str>,
    pub proxy_id_override: Option<&'a str>,
    pub version_override: Option<&'a str>,
    pub connection_overrides: Option<&'a str>,
    pub dependency_overrides: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub end_user_id: Option<&'a str>,
    pub next_run_at: i64,
}

impl<'a> Fields<'a> {
    pub fn of(s: &'a Schedule) -> Fields<'a> {
        Fields {
            name: s.name.as_deref(),
            enabled: s.enabled,
            cron_expression: &s.cron_expression,
            timezone: &s.timezone,
            input: s.input.as_deref(),
            generation_config_override: s.generation_config_override.as_deref(),
            model_id_override: s.model_id_override.as_deref(),
            proxy_id_override: s.proxy_id_override.as_deref(),
            version_override: s.version_override.as_deref(),
            connection_overrides: s.connection_overrides.as_deref(),
            dependency_overrides: s.dependency_overrides.as_deref(),
            user_id: s.user_id.as_deref(),
            end_user_id: s.end_user_id.as_deref(),
            next_run_at: s.next_run_at,
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn insert(
    conn: &mut AnyConnection,
    id: &str,
    org_id: &OrgId,
    app_id: &AppId,
    package_id: &str,
    f: &Fields<'_>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO schedules (id, org_id, application_id, package_id, name, enabled, \
           cron_expression, timezone, input, generation_config_override, model_id_override, \
           proxy_id_override, version_override, connection_overrides, dependency_overrides, \
           user_id, end_user_id, next_run_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
           $18, $19, $19)",
    )
    .bind(id)
    .bind(org_id)
    .bind(app_id)
    .bind(package_id)
    .bind(f.name)
    .bind(f.enabled as i64)
    .bind(f.cron_expression)
    .bind(f.timezone)
    .bind(f.input)
    .bind(f.generation_config_override)
    .bind(f.model_id_override)
    .bind(f.proxy_id_override)
    .bind(f.version_override)
    .bind(f.connection_overrides)
    .bind(f.dependency_overrides)
    .bind(f.user_id)
    .bind(f.end_user_id)
    .bind(f.next_run_at)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// Rewrites the editable columns of a schedule of the tenant; false when it is gone.
pub async fn update(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    id: &str,
    f: &Fields<'_>,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE schedules SET name = $4, enabled = $5, cron_expression = $6, timezone = $7, \
           input = $8, generation_config_override = $9, model_id_override = $10, \
           proxy_id_override = $11, version_override = $12, connection_overrides = $13, \
           dependency_overrides = $14, user_id = $15, end_user_id = $16, next_run_at = $17, \
           updated_at = $18 \
         WHERE org_id = $1 AND application_id = $2 AND id = $3",
    )
    .bind(org_id)
    .bind(app_id)
    .bind(id)
    .bind(f.name)
    .bind(f.enabled as i64)
    .bind(f.cron_expression)
    .bind(f.timezone)
    .bind(f.input)
    .bind(f.generation_config_override)
    .bind(f.model_id_override)
    .bind(f.proxy_id_override)
    .bind(f.version_override)
    .bind(f.connection_overrides)
    .bind(f.dependency_overrides)
    .bind(f.user_id)
    .bind(f.end_user_id)
    .bind(f.next_run_at)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(done.rows_affected() == 1)
}

pub async fn get(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    id: &str,
) -> Result<Option<Schedule>> {
    sqlx::query_as(&format!(
        "{SELECT_VIEW} WHERE s.org_id = $1 AND s.application_id = $2 AND s.id = $3"
    ))
    .bind(org_id)
    .bind(app_id)
    .bind(id)
    .fetch_optional(conn)
    .await
    .db()
}

/// The application's schedules (of one agent when `package_id` is set), oldest first.
/// `end_user_id` narrows to one end-user's schedules.
pub async fn list(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    package_id: Option<&str>,
    end_user_id: Option<&str>,
) -> Result<Vec<Schedule>> {
    sqlx::query_as(&format!(
        "{SELECT_VIEW} WHERE s.org_id = $1 AND s.application_id = $2 \
           AND ($3 IS NULL OR s.package_id = $3) AND ($4 IS NULL OR s.end_user_id = $4) \
         ORDER BY s.created_at, s.id"
    ))
    .bind(org_id)
    .bind(app_id)
    .bind(package_id)
    .bind(end_user_id)
    .fetch_all(conn)
    .await
    .db()
}

pub async fn delete(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    id: &str,
) -> Result<bool> {
    let done =
        sqlx::query("DELETE FROM schedules WHERE org_id = $1 AND application_id = $2 AND id = $3")
            .bind(org_id)
            .bind(app_id)
            .bind(id)
            .execute(conn)
            .await
            .db()?;
    Ok(done.rows_affected() == 1)
}

/// Schedules in the organization (the per-org cap).
pub async fn count_for_org(conn: &mut AnyConnection, org_id: &OrgId) -> Result<i64> {
    sqlx::query("SELECT COUNT(*) FROM schedules WHERE org_id = $1")
        .bind(org_id)
        .fetch_one(conn)
        .await
        .db()?
        .try_get(0)
        .db()
}

/// The earliest fire time of an enabled schedule.
pub async fn next_due(conn: &mut AnyConnection) -> Result<Option<i64>> {
    sqlx::query("SELECT MIN(next_run_at) FROM schedules WHERE enabled = 1")
        .fetch_one(conn)
        .await
        .db()?
        .try_get(0)
        .db()
}

/// Enabled schedules due at `now`, earliest first (inside a transaction). On
/// PostgreSQL the rows stay locked until it ends and other replicas skip them.
pub async fn lock_due(
    conn: &mut AnyConnection,
    postgres: bool,
    now: i64,
    limit: i64,
) -> Result<Vec<Schedule>> {
    let lock = if postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    sqlx::query_as(&format!(
        "SELECT * FROM schedules WHERE enabled = 1 AND next_run_at <= $1 \
         ORDER BY next_run_at, id LIMIT {limit}{lock}"
    ))
    .bind(now)
    .fetch_all(conn)
    .await
    .db()
}

/// Records the claim of one fire; false when this (schedule, fire time) was already
/// claimed (by another replica, or before a clock jump).
pub async fn claim_fire(
    conn: &mut AnyConnection,
    schedule_id: &str,
    fire_at: i64,
    claimed_by: &str,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO schedule_fires (schedule_id, fire_at, claimed_at, claimed_by, status) \
         VALUES ($1, $2, $3, $4, 'claimed') ON CONFLICT (schedule_id, fire_at) DO NOTHING",
    )
    .bind(schedule_id)
    .bind(fire_at)
    .bind(now)
    .bind(claimed_by)
    .execute(conn)
    .await
    .db()?;
    Ok(done.rows_affected() == 1)
}

/// Moves a schedule to its next fire time.
pub async fn advance(
    conn: &mut AnyConnection,
    id: &str,
    next_run_at: i64,
    fired_at: i64,
) -> Result<()> {
    sqlx::query("UPDATE schedules SET next_run_at = $2, last_run_at = $3 WHERE id = $1")
        .bind(id)
        .bind(next_run_at)
        .bind(fired_at)
        .execute(conn)
        .await
        .db()?;
    Ok(())
}

/// What became of a claimed fire.
pub enum FireOutcome<'a> {
    Fired { run_id: &'a str },
    Refused { code: &'a str, message: &'a str },
}

/// Records a fire's outcome on the fire and on its schedule (the last run, or the
/// last error, visible in the schedule's view).
pub async fn finish_fire(
    conn: &mut AnyConnection,
    schedule_id: &str,
    fire_at: i64,
    outcome: &FireOutcome<'_>,
    now: i64,
) -> Result<()> {
    let (status, run_id, code, message) = match outcome {
        FireOutcome::Fired { run_id } => ("fired", Some(*run_id), None, None),
        FireOutcome::Refused { code, message } => ("refused", None, Some(*code), Some(*message)),
    };
    sqlx::query(
        "UPDATE schedule_fires SET status = $3, run_id = $4, error_code = $5, error = $6 \
         WHERE schedule_id = $1 AND fire_at = $2",
    )
    .bind(schedule_id)
    .bind(fire_at)
    .bind(status)
    .bind(run_id)
    .bind(code)
    .bind(message)
    .execute(&mut *conn)
    .await
    .db()?;
    let sql = match outcome {
        FireOutcome::Fired { .. } => {
            "UPDATE schedules SET last_run_id = $2, last_error_code = NULL, last_error = NULL, \
               last_error_at = NULL WHERE id = $1"
        }
        FireOutcome::Refused { .. } => {
            "UPDATE schedules SET last_error_code = $3, last_error = $4, last_error_at = $5 \
             WHERE id = $1"
        }
    };
    sqlx::query(sql)
        .bind(schedule_id)
        .bind(run_id)
        .bind(code)
        .bind(message)
        .bind(now)
        .execute(conn)
        .await
        .db()?;
    Ok(())
}

/// Claims older than `before` whose server stopped between the claim and the run:
/// marked `lost` and shown as the schedule's last error. Returns how many.
pub async fn expire_claims(conn: &mut AnyConnection, before: i64, now: i64) -> Result<u64> {
    let msg = "the server stopped before this fire's run was created";
    sqlx::query(
        "UPDATE schedules SET last_error_code = 'fire_lost', last_error = $2, last_error_at = $3 \
         WHERE id IN (SELECT schedule_id FROM schedule_fires \
                      WHERE status = 'claimed' AND claimed_at < $1)",
    )
    .bind(before)
    .bind(msg)
    .bind(now)
    .execute(&mut *conn)
    .await
    .db()?;
    let done = sqlx::query(
        "UPDATE schedule_fires SET status = 'lost', error_code = 'fire_lost', error = $2 \
         WHERE status = 'claimed' AND claimed_at < $1",
    )
    .bind(before)
    .bind(msg)
    .execute(conn)
    .await
    .db()?;
    Ok(done.rows_affected())
}

/// One recorded fire (tests and diagnostics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
    pub schedule_id: String,
    pub fire_at: i64,
    pub status: String,
    pub run_id: Option<String>,
    pub error_code: Option<String>,
}

/// The fires of a schedule, oldest first.
pub async fn fires(conn: &mut AnyConnection, schedule_id: &str) -> Result<Vec<Fire>> {
    let rows = sqlx::query(
        "SELECT schedule_id, fire_at, status, run_id, error_code FROM schedule_fires \
         WHERE schedule_id = $1 ORDER BY fire_at",
    )
    .bind(schedule_id)
    .fetch_all(conn)
    .await
    .db()?;
    rows.iter()
        .map(|r| {
            Ok(Fire {
                schedule_id: r.try_get("schedule_id")?,
                fire_at: r.try_get("fire_at")?,
                status: r.try_get("status")?,
                run_id: r.try_get("run_id")?,
                error_code: r.try_get("error_code")?,
            })
        })
        .collect::<sqlx::Result<Vec<_>>>()
        .db()
}
