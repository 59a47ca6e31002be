//! A run row ([`Run`]) and how it is read: from the `Any` driver by column name, from
//! PostgreSQL's own driver by position (run lists, [`crate::Db::reads`]), and from the
//! JSON object SQLite builds for a listed row.

use corral_core::{AppId, OrgId, RunId, RunStatus};
use sqlx::any::AnyRow;
use sqlx::postgres::PgRow;
use sqlx::{Column, ColumnIndex, Decode, FromRow, Row, Type};

/// A stored 0/1 (SQLite, and PostgreSQL's BIGINT) or a boolean.
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Flag {
        B(bool),
        N(i64),
    }
    Ok(match serde::Deserialize::deserialize(d)? {
        Flag::B(b) => b,
        Flag::N(n) => n != 0,
    })
}

/// A status column's text; a name this server does not know is a decode error.
pub(crate) fn parse_status(s: &str) -> sqlx::Result<RunStatus> {
    s.parse()
        .map_err(|e: corral_core::run::UnknownStatus| sqlx::Error::Decode(e.into()))
}

/// A status name; a name this server does not know is an error.
fn status_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<RunStatus, D::Error> {
    let s: std::borrow::Cow<'de, str> = serde::Deserialize::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

/// A run row, with the display names of who caused it. (Deserialize: a listed row
/// arrives as one JSON object built by the database, see [`crate::runs::list`].)
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Run {
    pub id: RunId,
    pub org_id: OrgId,
    pub application_id: AppId,
    pub package_id: Option<String>,
    pub agent_scope: Option<String>,
    pub agent_name: Option<String>,
    pub kind: String,
    pub run_number: i64,
    #[serde(deserialize_with = "status_text")]
    pub status: RunStatus,
    pub input: Option<String>,
    pub result: Option<String>,
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub error_details: Option<String>,
    pub version_label: Option<String>,
    pub version_ref: String,
    pub definition: String,
    pub model_label: Option<String>,
    pub model_source: Option<String>,
    /// The label of the outbound proxy the run's traffic goes through, if any.
    pub proxy_label: Option<String>,
    pub generation: Option<String>,
    pub user_id: Option<String>,
    pub end_user_id: Option<String>,
    pub api_key_id: Option<String>,
    pub schedule_id: Option<String>,
    /// The schedule's name when it fired the run.
    pub schedule_name: Option<String>,
    pub timeout_secs: i64,
    pub runner_kind: Option<String>,
    pub runner_name: Option<String>,
    pub server_id: Option<String>,
    pub sandbox_id: Option<String>,
    pub sink_secret: String,
    pub sink_expires_at: i64,
    pub run_token_hash: String,
    pub last_sequence: i64,
    pub token_usage: Option<String>,
    pub duration_ms: Option<i64>,
    #[serde(deserialize_with = "flag")]
    pub unread: bool,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub first_event_at: Option<i64>,
    pub last_heartbeat_at: Option<i64>,
    pub completed_at: Option<i64>,
    /// `platform` (a sandbox of this deployment) or `remote` (the caller's host).
    pub origin: String,
    /// JSON the remote runner sent about its environment.
    pub context_snapshot: Option<String>,
    pub user_name: Option<String>,
    pub end_user_name: Option<String>,
    pub api_key_name: Option<String>,
}

impl<'r> FromRow<'r, AnyRow> for Run {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        run_of(row, |name| name)
    }
}

impl Run {
    /// A run from a row of PostgreSQL's own driver (run lists, through the read pool
    /// [`crate::Db::reads`]) whose columns are [`Run`]'s fields in their order, as
    /// `run_list::LISTED` selects them: read by position, without looking each name
    /// up in the row's column index (a hash per value, ~5% of a list's CPU).
    pub(crate) fn from_listed_pg_row(row: &PgRow) -> sqlx::Result<Run> {
        let mut next = 0;
        run_of(row, |name| {
            debug_assert_eq!(row.column(next).name(), name, "LISTED is out of order");
            next += 1;
            next - 1
        })
    }
}

/// A [`Run`] from a row of any driver, the column of each field found by `col`
/// (called once per field, in the order of [`Run`]'s fields).
fn run_of<'r, R: Row, I: ColumnIndex<R>>(
    row: &'r R,
    mut col: impl FnMut(&'static str) -> I,
) -> sqlx::Result<Run>
where
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Run {
        id: row.try_get(col("id"))?,
        org_id: row.try_get(col("org_id"))?,
        application_id: row.try_get(col("application_id"))?,
        package_id: row.try_get(col("package_id"))?,
        agent_scope: row.try_get(col("agent_scope"))?,
        agent_name: row.try_get(col("agent_name"))?,
        kind: row.try_get(col("kind"))?,
        run_number: row.try_get(col("run_number"))?,
        status: parse_status(&row.try_get::<String, _>(col("status"))?)?,
        input: row.try_get(col("input"))?,
        result: row.try_get(col("result"))?,
        error: row.try_get(col("error"))?,
        error_code: row.try_get(col("error_code"))?,
        error_details: row.try_get(col("error_details"))?,
        version_label: row.try_get(col("version_label"))?,
        version_ref: row.try_get(col("version_ref"))?,
        definition: row.try_get(col("definition"))?,
        model_label: row.try_get(col("model_label"))?,
        model_source: row.try_get(col("model_source"))?,
        proxy_label: row.try_get(col("proxy_label"))?,
        generation: row.try_get(col("generation"))?,
        user_id: row.try_get(col("user_id"))?,
        end_user_id: row.try_get(col("end_user_id"))?,
        api_key_id: row.try_get(col("api_key_id"))?,
        schedule_id: row.try_get(col("schedule_id"))?,
        schedule_name: row.try_get(col("schedule_name"))?,
        timeout_secs: row.try_get(col("timeout_secs"))?,
        runner_kind: row.try_get(col("runner_kind"))?,
        runner_name: row.try_get(col("runner_name"))?,
        server_id: row.try_get(col("server_id"))?,
        sandbox_id: row.try_get(col("sandbox_id"))?,
        sink_secret: row.try_get(col("sink_secret"))?,
        sink_expires_at: row.try_get(col("sink_expires_at"))?,
        run_token_hash: row.try_get(col("run_token_hash"))?,
        last_sequence: row.try_get(col("last_sequence"))?,
        token_usage: row.try_get(col("token_usage"))?,
        duration_ms: row.try_get(col("duration_ms"))?,
        unread: row.try_get::<i64, _>(col("unread"))? != 0,
        created_at: row.try_get(col("created_at"))?,
        started_at: row.try_get(col("started_at"))?,
        first_event_at: row.try_get(col("first_event_at"))?,
        last_heartbeat_at: row.try_get(col("last_heartbeat_at"))?,
        completed_at: row.try_get(col("completed_at"))?,
        origin: row.try_get(col("origin"))?,
        context_snapshot: row.try_get(col("context_snapshot"))?,
        user_name: row.try_get(col("user_name"))?,
        end_user_name: row.try_get(col("end_user_name"))?,
        api_key_name: row.try_get(col("api_key_name"))?,
    })
}
