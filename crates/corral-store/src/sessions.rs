//! Sessions: opaque cookie tokens stored as keyed hashes, with sliding expiry.

use sqlx::{AnyConnection, FromRow};

use crate::{Result, SqlxResultExt};

#[derive(Debug, Clone, FromRow)]
pub struct SessionUser {
    pub session_id: String,
    pub user_id: String,
    pub expires_at: i64,
    pub refreshed_at: i64,
    pub created_at: i64,
    pub email: String,
    pub name: String,
}

pub struct NewSession<'a> {
    pub id: &'a str,
    pub token_hash: &'a str,
    pub user_id: &'a str,
    pub expires_at: i64,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub now: i64,
}

pub async fn insert(conn: &mut AnyConnection, s: &NewSession<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO sessions (id, token_hash, user_id, expires_at, refreshed_at, ip, user_agent, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $5)",
    )
    .bind(s.id)
    .bind(s.token_hash)
    .bind(s.user_id)
    .bind(s.expires_at)
    .bind(s.now)
    .bind(s.ip)
    .bind(s.user_agent)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// The live session for a token hash, with its user; expired sessions are not found.
pub async fn lookup(
    conn: &mut AnyConnection,
    token_hash: &str,
    now: i64,
) -> Result<Option<SessionUser>> {
    sqlx::query_as(
        "SELECT s.id AS session_id, s.user_id, s.expires_at, s.refreshed_at, s.created_at, u.email, u.name \
         FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.token_hash = $1 AND s.expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(conn)
    .await
    .db()
}

/// Slides the expiry forward.
pub async fn refresh(
    conn: &mut AnyConnection,
    session_id: &str,
    expires_at: i64,
    now: i64,
) -> Result<()> {
    sqlx::query("UPDATE sessions SET expires_at = $2, refreshed_at = $3 WHERE id = $1")
        .bind(session_id)
        .bind(expires_at)
        .bind(now)
        .execute(conn)
        .await
        .db()?;
    Ok(())
}

/// Ends the session with this token; returns its id, or `None` when there was none.
pub async fn delete_by_hash(conn: &mut AnyConnection, token_hash: &str) -> Result<Option<String>> {
    sqlx::query_scalar("DELETE FROM sessions WHERE token_hash = $1 RETURNING id")
        .bind(token_hash)
        .fetch_optional(conn)
        .await
        .db()
}

/// Ends every other session of a user (after a password change).
pub async fn delete_others(
    conn: &mut AnyConnection,
    user_id: &str,
    keep_session_id: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
        .bind(user_id)
        .bind(keep_session_id)
        .execute(conn)
        .await
        .db()?;
    Ok(())
}

pub async fn purge_expired(conn: &mut AnyConnection, now: i64) -> Result<u64> {
    let r = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected())
}
