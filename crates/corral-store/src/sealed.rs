//! Columns holding sealed secrets (`v1:<kid>:…` envelopes), for `corral secrets
//! rotate`: list the values not under the primary key, swap one if unchanged.

use sqlx::{AnyConnection, Row};

use crate::{Result, SqlxResultExt};

/// A table column of sealed values, keyed by a text id.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub table: &'static str,
    pub id: &'static str,
    pub column: &'static str,
}

pub const RUN_SINK_SECRETS: Column = Column {
    table: "runs",
    id: "id",
    column: "sink_secret",
};
pub const MODEL_PROVIDER_KEYS: Column = Column {
    table: "model_provider_credentials",
    id: "id",
    column: "api_key",
};
/// OAuth refresh tokens of model provider credentials (their access tokens are in
/// [`MODEL_PROVIDER_KEYS`]).
pub const MODEL_PROVIDER_REFRESH_TOKENS: Column = Column {
    table: "model_provider_credentials",
    id: "id",
    column: "refresh_token",
};
pub const CONNECTION_CREDENTIALS: Column = Column {
    table: "integration_connections",
    id: "id",
    column: "credentials",
};
pub const ORG_PROXY_URLS: Column = Column {
    table: "org_proxies",
    id: "id",
    column: "url",
};
pub const OAUTH_CLIENT_SECRETS: Column = Column {
    table: "integration_oauth_clients",
    id: "id",
    column: "client_secret",
};

/// Up to `limit` `(id, sealed)` pairs with an id after `after`, in id order, whose
/// value does not match `current` (a `LIKE` pattern such as `v1:k2:%`).
pub async fn stale(
    conn: &mut AnyConnection,
    c: Column,
    current: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query(&format!(
        "SELECT {id}, {col} FROM {table} WHERE {col} IS NOT NULL AND {col} NOT LIKE $1 \
         AND {id} > $2 ORDER BY {id} LIMIT $3",
        id = c.id,
        col = c.column,
        table = c.table
    ))
    .bind(current)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
    .db()?;
    rows.iter()
        .map(|r| Ok((r.try_get(0).db()?, r.try_get(1).db()?)))
        .collect()
}

/// Replaces `old` by `new` unless the row changed meanwhile; true when written.
pub async fn swap(
    conn: &mut AnyConnection,
    c: Column,
    id: &str,
    old: &str,
    new: &str,
) -> Result<bool> {
    let r = sqlx::query(&format!(
        "UPDATE {table} SET {col} = $1 WHERE {id} = $2 AND {col} = $3",
        id = c.id,
        col = c.column,
        table = c.table
    ))
    .bind(new)
    .bind(id)
    .bind(old)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() == 1)
}
