//! Corral's storage: one set of repositories over SQLite (tier 0) and PostgreSQL
//! (tier 1+). SQL is written once with `$N` placeholders and portable types (TEXT ids,
//! BIGINT millisecond timestamps, JSON in TEXT) and runs through sqlx's `Any` driver;
//! the few places that differ ask [`Db::backend`]. Every repository function that
//! reads a tenant's rows takes the org (and application) id and puts it in the WHERE
//! clause, so a forgotten check cannot leak another tenant's row.

pub mod api_keys;
pub mod app_packages;
pub mod applications;
pub mod cluster;
pub mod connect_sessions;
mod db;
pub mod documents;
pub mod end_users;
pub mod idempotency;
pub mod integration_governance;
pub mod integrations;
pub mod invitations;
pub mod memory;
pub mod model_oauth;
pub mod models;
pub mod notifications;
pub mod orgs;
pub mod packages;
pub mod proxies;
pub mod queue;
pub mod realtime;
pub mod remote_runs;
pub mod run_history;
mod run_list;
pub mod run_logs;
mod run_row;
pub mod runs;
pub mod schedules;
pub mod sealed;
pub mod sessions;
pub mod storage_deletions;
pub mod users;
pub mod webhook_batches;
pub mod webhooks;

pub use db::{Backend, Db};
pub use sqlx::AnyConnection as Conn;

/// The store's small error: what a caller can act on, and everything else.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique or foreign-key constraint refused the write; `constraint` names it
    /// (PostgreSQL constraint name, or SQLite's `table.column` message).
    #[error("conflict on {constraint}")]
    Conflict { constraint: String },
    #[error("database error: {0}")]
    Other(#[from] sqlx::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn from_sqlx(e: sqlx::Error) -> StoreError {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db)
                if db.is_unique_violation() || db.is_foreign_key_violation() =>
            {
                StoreError::Conflict {
                    constraint: db
                        .constraint()
                        .map(str::to_owned)
                        .unwrap_or_else(|| db.message().to_owned()),
                }
            }
            _ => StoreError::Other(e),
        }
    }

    /// True when the database could not be reached (pool timeout, I/O, closed):
    /// retryable, and answered as 503 rather than 500.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Other(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
            )
        )
    }

    /// True for a conflict whose constraint mentions `needle` (e.g. `"slug"`).
    pub fn is_conflict_on(&self, needle: &str) -> bool {
        matches!(self, StoreError::Conflict { constraint } if constraint.contains(needle))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// `$1, $2, …, $n`: the parameters of an `IN (…)` list of `n` values.
pub(crate) fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a store failure reaches a client: 404, 409, 503 (retry) or an opaque 500.
impl From<StoreError> for corral_core::Problem {
    fn from(e: StoreError) -> corral_core::Problem {
        use corral_core::{ErrorCode, Problem};
        match e {
            StoreError::NotFound => Problem::new(ErrorCode::NotFound, "resource not found"),
            StoreError::Conflict { .. } => {
                let mut err = Problem::new(
                    ErrorCode::Conflict,
                    "the request conflicts with the current state",
                );
                err.source = Some(e.into());
                err
            }
            ref other if other.is_unavailable() => {
                let mut err = Problem::new(
                    ErrorCode::DatabaseUnavailable,
                    "the database is unavailable, retry shortly",
                );
                err.retry_after = Some(5);
                err.source = Some(e.into());
                err
            }
            other => Problem::internal(other),
        }
    }
}

/// `?`-friendly conversion used inside this crate.
pub(crate) trait SqlxResultExt<T> {
    fn db(self) -> Result<T>;
}

impl<T> SqlxResultExt<T> for std::result::Result<T, sqlx::Error> {
    fn db(self) -> Result<T> {
        self.map_err(StoreError::from_sqlx)
    }
}

pub(crate) fn json_text<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}
