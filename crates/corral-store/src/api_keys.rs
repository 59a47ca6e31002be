//! API keys: stored as SHA-256 hash plus a short prefix used for the lookup.

use corral_core::{AppId, OrgId};
use sqlx::{AnyConnection, AnyPool, FromRow};

use crate::{Result, SqlxResultExt};

#[derive(Debug, Clone, FromRow)]
pub struct ApiKey {
    pub id: String,
    pub org_id: OrgId,
    pub application_id: AppId,
    pub name: String,
    pub key_prefix: String,
    pub scopes: String,
    pub created_by: Option<String>,
    pub created_by_name: Option<String>,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
}

pub struct NewApiKey<'a> {
    pub id: &'a str,
    pub org_id: &'a OrgId,
    pub application_id: &'a AppId,
    pub name: &'a str,
    pub key_prefix: &'a str,
    pub key_hash: &'a str,
    pub scopes: &'a str,
    pub created_by: &'a str,
    pub expires_at: Option<i64>,
    pub now: i64,
}

pub async fn insert(conn: &mut AnyConnection, k: &NewApiKey<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, org_id, application_id, name, key_prefix, key_hash, scopes, created_by, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(k.id)
    .bind(k.org_id)
    .bind(k.application_id)
    .bind(k.name)
    .bind(k.key_prefix)
    .bind(k.key_hash)
    .bind(k.scopes)
    .bind(k.created_by)
    .bind(k.expires_at)
    .bind(k.now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

const LIST_SQL: &str = "SELECT k.id, k.org_id, k.application_id, k.name, k.key_prefix, k.scopes, k.created_by, \
     COALESCE(u.display_name, u.name) AS created_by_name, k.expires_at, k.last_used_at, k.revoked_at, k.created_at \
     FROM api_keys k LEFT JOIN users u ON u.id = k.created_by";

pub async fn list(conn: &mut AnyConnection, org_id: &OrgId, app_id: &AppId) -> Result<Vec<ApiKey>> {
    sqlx::query_as(&format!(
        "{LIST_SQL} WHERE k.org_id = $1 AND k.application_id = $2 ORDER BY k.created_at DESC, k.id DESC"
    ))
    .bind(org_id)
    .bind(app_id)
    .fetch_all(conn)
    .await
    .db()
}

pub async fn get(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    id: &str,
) -> Result<Option<ApiKey>> {
    sqlx::query_as(&format!(
        "{LIST_SQL} WHERE k.org_id = $1 AND k.application_id = $2 AND k.id = $3"
    ))
    .bind(org_id)
    .bind(app_id)
    .bind(id)
    .fetch_optional(conn)
    .await
    .db()
}

/// Revokes a key; revoking twice keeps the first timestamp.
pub async fn revoke(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    id: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $4) WHERE org_id = $1 AND application_id = $2 AND id = $3",
    )
    .bind(org_id)
    .bind(app_id)
    .bind(id)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() > 0)
}

/// What authentication needs about a key, in one round trip: the key, its creator's
/// current role in the key's org (`None` when the creator left), the org's pinned API
/// version.
#[derive(Debug, Clone, FromRow)]
pub struct KeyCandidate {
    pub id: String,
    pub org_id: OrgId,
    pub application_id: AppId,
    pub key_hash: String,
    pub scopes: String,
    pub created_by: Option<String>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub creator_role: Option<String>,
    pub api_version: String,
}

pub async fn candidates_by_prefix(pool: &AnyPool, prefix: &str) -> Result<Vec<KeyCandidate>> {
    sqlx::query_as(
        "SELECT k.id, k.org_id, k.application_id, k.key_hash, k.scopes, k.created_by, k.expires_at, k.revoked_at, \
         k.last_used_at, m.role AS creator_role, o.api_version \
         FROM api_keys k JOIN organizations o ON o.id = k.org_id \
         LEFT JOIN org_members m ON m.org_id = k.org_id AND m.user_id = k.created_by \
         WHERE k.key_prefix = $1",
    )
    .bind(prefix)
    .fetch_all(pool)
    .await
    .db()
}

pub async fn touch_last_used(pool: &AnyPool, id: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(pool)
        .await
        .db()?;
    Ok(())
}
