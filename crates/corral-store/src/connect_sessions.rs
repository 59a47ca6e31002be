//! Hosted connect sessions (the connect portal): a single-use token, then a page
//! cookie and a CSRF nonce for the hosted credential form. Only hashes of the token
//! and the cookie are stored.

use corral_core::{AppId, OrgId};
use sqlx::{AnyConnection, FromRow, Row};

use crate::{Result, SqlxResultExt};

#[derive(Debug, Clone)]
pub struct ConnectSession {
    pub org_id: OrgId,
    pub application_id: AppId,
    pub package_id: String,
    pub auth_key: String,
    pub owner_type: String,
    pub owner_id: String,
    pub connection_id: Option<String>,
    /// JSON array, when the caller asked for scopes.
    pub scopes: Option<String>,
    pub force_account_select: bool,
    pub csrf: Option<String>,
    pub expires_at: i64,
}

impl<'r> FromRow<'r, sqlx::any::AnyRow> for ConnectSession {
    fn from_row(row: &'r sqlx::any::AnyRow) -> std::result::Result<Self, sqlx::Error> {
        Ok(ConnectSession {
            org_id: row.try_get("org_id")?,
            application_id: row.try_get("application_id")?,
            package_id: row.try_get("package_id")?,
            auth_key: row.try_get("auth_key")?,
            owner_type: row.try_get("owner_type")?,
            owner_id: row.try_get("owner_id")?,
            connection_id: row.try_get("connection_id")?,
            scopes: row.try_get("scopes")?,
            force_account_select: row.try_get::<i64, _>("force_account_select")? != 0,
            csrf: row.try_get("csrf")?,
            expires_at: row.try_get("expires_at")?,
        })
    }
}

const COLS: &str = "org_id, application_id, package_id, auth_key, owner_type, owner_id, \
     connection_id, scopes, force_account_select, csrf, expires_at";

pub async fn insert(
    conn: &mut AnyConnection,
    token_hash: &str,
    s: &ConnectSession,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO integration_connect_sessions (token_hash, org_id, application_id, package_id, \
           auth_key, owner_type, owner_id, connection_id, scopes, force_account_select, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(token_hash)
    .bind(&s.org_id)
    .bind(&s.application_id)
    .bind(&s.package_id)
    .bind(&s.auth_key)
    .bind(&s.owner_type)
    .bind(&s.owner_id)
    .bind(&s.connection_id)
    .bind(&s.scopes)
    .bind(i64::from(s.force_account_select))
    .bind(s.expires_at)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// Consumes a token: the session if it was unused and unexpired (then marked used,
/// with the page cookie hash and CSRF nonce bound to it), else `None`.
pub async fn start(
    conn: &mut AnyConnection,
    token_hash: &str,
    page_hash: &str,
    csrf: &str,
    now: i64,
) -> Result<Option<ConnectSession>> {
    let r = sqlx::query(
        "UPDATE integration_connect_sessions SET started_at = $2, page_hash = $3, csrf = $4 \
         WHERE token_hash = $1 AND started_at IS NULL AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .bind(page_hash)
    .bind(csrf)
    .execute(&mut *conn)
    .await
    .db()?;
    if r.rows_affected() != 1 {
        return Ok(None);
    }
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM integration_connect_sessions WHERE token_hash = $1"
    ))
    .bind(token_hash)
    .fetch_optional(conn)
    .await
    .db()
}

/// The started, unexpired session a page cookie belongs to.
pub async fn by_page(
    conn: &mut AnyConnection,
    page_hash: &str,
    now: i64,
) -> Result<Option<ConnectSession>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM integration_connect_sessions \
         WHERE page_hash = $1 AND started_at IS NOT NULL AND expires_at > $2"
    ))
    .bind(page_hash)
    .bind(now)
    .fetch_optional(conn)
    .await
    .db()
}

/// Ends a session (after a submit): its cookie stops working.
pub async fn finish(conn: &mut AnyConnection, page_hash: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM integration_connect_sessions WHERE page_hash = $1")
        .bind(page_hash)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected() == 1)
}

/// Removes expired sessions.
pub async fn prune(conn: &mut AnyConnection, now: i64) -> Result<u64> {
    let r = sqlx::query("DELETE FROM integration_connect_sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected())
}
