//! OAuth-backed model provider credentials (migration 0014): their token writes
//! (redeem, refresh, the needs-reconnection flag) and the pairing tokens of the
//! connect helper. Tokens are stored sealed; this module never opens them. Every
//! function that reads a tenant's rows takes the org id and puts it in the WHERE
//! clause (the redeem finds its pairing by the token's hash, the only way in).

use corral_core::OrgId;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use crate::models::{Credential, CREDENTIAL_COLUMNS};
use crate::{Result, SqlxResultExt};

/// The tokens and identity an OAuth credential holds (sealed where secret).
pub struct OAuthTokens<'a> {
    /// Sealed access token (stored in `api_key`).
    pub access_token: &'a str,
    /// Sealed refresh token.
    pub refresh_token: &'a str,
    pub expires_at: Option<i64>,
    pub email: Option<&'a str>,
    pub account_id: Option<&'a str>,
}

pub struct NewOAuthCredential<'a> {
    pub id: &'a str,
    pub org_id: &'a OrgId,
    pub provider_id: &'a str,
    pub label: &'a str,
    pub base_url: &'a str,
    pub tokens: OAuthTokens<'a>,
    pub created_by: Option<&'a str>,
    pub now: i64,
}

pub async fn insert_credential(conn: &mut AnyConnection, c: &NewOAuthCredential<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO model_provider_credentials (id, org_id, provider_id, label, base_url, api_key, \
           created_by, created_at, updated_at, auth_mode, refresh_token, token_expires_at, \
           token_updated_at, oauth_email, oauth_account_id, needs_reconnection) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 'oauth2', $9, $10, $8, $11, $12, 0)",
    )
    .bind(c.id)
    .bind(c.org_id)
    .bind(c.provider_id)
    .bind(c.label)
    .bind(c.base_url)
    .bind(c.tokens.access_token)
    .bind(c.created_by)
    .bind(c.now)
    .bind(c.tokens.refresh_token)
    .bind(c.tokens.expires_at)
    .bind(c.tokens.email)
    .bind(c.tokens.account_id)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// Reconnects an OAuth credential in place: new tokens and identity, the flag
/// cleared, the label changed when given. False when it is not an OAuth credential
/// of the org for `provider_id`.
pub async fn reconnect(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: &str,
    provider_id: &str,
    label: Option<&str>,
    t: &OAuthTokens<'_>,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE model_provider_credentials SET api_key = $4, refresh_token = $5, \
           token_expires_at = $6, oauth_email = COALESCE($7, oauth_email), \
           oauth_account_id = COALESCE($8, oauth_account_id), label = COALESCE($9, label), \
           needs_reconnection = 0, token_updated_at = $10, updated_at = $10 \
         WHERE org_id = $1 AND id = $2 AND provider_id = $3 AND auth_mode = 'oauth2'",
    )
    .bind(org_id)
    .bind(id)
    .bind(provider_id)
    .bind(t.access_token)
    .bind(t.refresh_token)
    .bind(t.expires_at)
    .bind(t.email)
    .bind(t.account_id)
    .bind(label)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() == 1)
}

/// An OAuth credential of the org; with `lock` (PostgreSQL, inside a transaction)
/// its row stays locked until the transaction ends, so refreshes of one credential
/// are serialized across replicas.
pub async fn credential(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: &str,
    lock: bool,
) -> Result<Option<Credential>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as(&format!(
        "SELECT {CREDENTIAL_COLUMNS} FROM model_provider_credentials \
         WHERE org_id = $1 AND id = $2 AND auth_mode = 'oauth2'{lock}"
    ))
    .bind(org_id)
    .bind(id)
    .fetch_optional(conn)
    .await
    .db()
}

/// Tokens a refresh produced (sealed).
pub struct Refreshed<'a> {
    pub access_token: &'a str,
    /// Only when the provider rotated it.
    pub refresh_token: Option<&'a str>,
    pub expires_at: Option<i64>,
    pub account_id: Option<&'a str>,
}

/// Stores refreshed tokens (the refresh token only when the provider rotated it).
pub async fn store_refreshed(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: &str,
    t: &Refreshed<'_>,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE model_provider_credentials SET api_key = $3, \
           refresh_token = COALESCE($4, refresh_token), token_expires_at = $5, \
           oauth_account_id = COALESCE($6, oauth_account_id), token_updated_at = $7 \
         WHERE org_id = $1 AND id = $2 AND auth_mode = 'oauth2'",
    )
    .bind(org_id)
    .bind(id)
    .bind(t.access_token)
    .bind(t.refresh_token)
    .bind(t.expires_at)
    .bind(t.account_id)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() == 1)
}

/// The provider refused the refresh token: the credential must be paired again.
pub async fn mark_needs_reconnection(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE model_provider_credentials SET needs_reconnection = 1, updated_at = $3 \
         WHERE org_id = $1 AND id = $2 AND auth_mode = 'oauth2'",
    )
    .bind(org_id)
    .bind(id)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

// ---- pairings -------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Pairing {
    pub id: String,
    pub org_id: OrgId,
    pub user_id: Option<String>,
    pub provider_id: String,
    pub reconnect_credential_id: Option<String>,
    pub expires_at: i64,
    pub consumed_at: Option<i64>,
    pub credential_id: Option<String>,
    pub created_at: i64,
}

const PAIRING_COLUMNS: &str = "id, org_id, user_id, provider_id, reconnect_credential_id, \
    expires_at, consumed_at, credential_id, created_at";

impl<'r> FromRow<'r, AnyRow> for Pairing {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        Ok(Pairing {
            id: row.try_get("id")?,
            org_id: row.try_get("org_id")?,
            user_id: row.try_get("user_id")?,
            provider_id: row.try_get("provider_id")?,
            reconnect_credential_id: row.try_get("reconnect_credential_id")?,
            expires_at: row.try_get("expires_at")?,
            consumed_at: row.try_get("consumed_at")?,
            credential_id: row.try_get("credential_id")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

pub struct NewPairing<'a> {
    pub id: &'a str,
    pub org_id: &'a OrgId,
    pub user_id: Option<&'a str>,
    pub provider_id: &'a str,
    pub reconnect_credential_id: Option<&'a str>,
    pub token_hash: &'a str,
    pub expires_at: i64,
    pub now: i64,
}

pub async fn insert_pairing(conn: &mut AnyConnection, p: &NewPairing<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO model_provider_pairings (id, org_id, user_id, provider_id, \
           reconnect_credential_id, token_hash, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(p.id)
    .bind(p.org_id)
    .bind(p.user_id)
    .bind(p.provider_id)
    .bind(p.reconnect_credential_id)
    .bind(p.token_hash)
    .bind(p.expires_at)
    .bind(p.now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

pub async fn get_pairing(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: &str,
) -> Result<Option<Pairing>> {
    sqlx::query_as(&format!(
        "SELECT {PAIRING_COLUMNS} FROM model_provider_pairings WHERE org_id = $1 AND id = $2"
    ))
    .bind(org_id)
    .bind(id)
    .fetch_optional(conn)
    .await
    .db()
}

/// The pairing a token's hash names, whatever its state (the redeem's
/// authentication: the token is the only credential it has).
pub async fn pairing_by_hash(
    conn: &mut AnyConnection,
    token_hash: &str,
) -> Result<Option<Pairing>> {
    sqlx::query_as(&format!(
        "SELECT {PAIRING_COLUMNS} FROM model_provider_pairings WHERE token_hash = $1"
    ))
    .bind(token_hash)
    .fetch_optional(conn)
    .await
    .db()
}

/// Consumes a pairing: one conditional update, so of two concurrent redeems of one
/// token exactly one gets the row. `None` when it is unknown, expired or consumed.
pub async fn consume(
    conn: &mut AnyConnection,
    token_hash: &str,
    now: i64,
) -> Result<Option<Pairing>> {
    sqlx::query_as(&format!(
        "UPDATE model_provider_pairings SET consumed_at = $2 \
         WHERE token_hash = $1 AND consumed_at IS NULL AND expires_at > $2 \
         RETURNING {PAIRING_COLUMNS}"
    ))
    .bind(token_hash)
    .bind(now)
    .fetch_optional(conn)
    .await
    .db()
}

/// Records the credential a consumed pairing created or reconnected.
pub async fn set_pairing_credential(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: &str,
    credential_id: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE model_provider_pairings SET credential_id = $3 WHERE org_id = $1 AND id = $2",
    )
    .bind(org_id)
    .bind(id)
    .bind(credential_id)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// Deletes a pairing of the org (nothing when absent).
pub async fn delete_pairing(conn: &mut AnyConnection, org_id: &OrgId, id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM model_provider_pairings WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(id)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected() == 1)
}

/// Deletes the pairings that expired before `before` (maintenance).
pub async fn purge_pairings(conn: &mut AnyConnection, before: i64) -> Result<u64> {
    let r = sqlx::query("DELETE FROM model_provider_pairings WHERE expires_at < $1")
        .bind(before)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected())
}
