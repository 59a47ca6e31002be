//! Integration connections (SPEC §12): OAuth clients per application and auth,
//! connections with their sealed credentials, and pending OAuth authorizations.
//! Secrets are stored sealed; this module never opens them.

use corral_core::{AppId, OrgId};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use crate::{Result, SqlxResultExt};

// ---------------------------------------------------------------- OAuth clients

#[derive(Debug, Clone)]
pub struct OauthClient {
    pub id: String,
    pub org_id: OrgId,
    pub application_id: AppId,
    pub package_id: String,
    pub auth_key: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub redirect_uri: Option<String>,
    pub is_default: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

const CLIENT_COLUMNS: &str = "id, org_id, application_id, package_id, auth_key, client_id, \
    client_secret, token_endpoint_auth_method, redirect_uri, is_default, created_at, updated_at";

impl<'r> FromRow<'r, AnyRow> for OauthClient {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        let is_default: i64 = row.try_get("is_default")?;
        Ok(OauthClient {
            id: row.try_get("id")?,
            org_id: row.try_get("org_id")?,
            application_id: row.try_get("application_id")?,
            package_id: row.try_get("package_id")?,
            auth_key: row.try_get("auth_key")?,
            client_id: row.try_get("client_id")?,
            client_secret: row.try_get("client_secret")?,
            token_endpoint_auth_method: row.try_get("token_endpoint_auth_method")?,
            redirect_uri: row.try_get("redirect_uri")?,
            is_default: is_default != 0,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

pub struct NewOauthClient<'a> {
    pub id: &'a str,
    pub org_id: &'a OrgId,
    pub application_id: &'a AppId,
    pub package_id: &'a str,
    pub auth_key: &'a str,
    pub client_id: &'a str,
    pub client_secret: Option<&'a str>,
    pub token_endpoint_auth_method: Option<&'a str>,
    pub redirect_uri: Option<&'a str>,
    pub created_by: Option<&'a str>,
    pub now: i64,
}

/// Inserts a client; the first one of its auth becomes the default.
pub async fn insert_client(conn: &mut AnyConnection, c: &NewOauthClient<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO integration_oauth_clients (id, org_id, application_id, package_id, auth_key, \
         client_id, client_secret, token_endpoint_auth_method, redirect_uri, is_default, created_by, \
         created_at, updated_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, \
           CASE WHEN EXISTS (SELECT 1 FROM integration_oauth_clients WHERE application_id = $3 \
             AND package_id = $4 AND auth_key = $5) THEN 0 ELSE 1 END, $10, $11, $11",
    )
    .bind(c.id)
    .bind(c.org_id)
    .bind(c.application_id)
    .bind(c.package_id)
    .bind(c.auth_key)
    .bind(c.client_id)
    .bind(c.client_secret)
    .bind(c.token_endpoint_auth_method)
    .bind(c.redirect_uri)
    .bind(c.created_by)
    .bind(c.now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

pub async fn clients(
    conn: &mut AnyConnection,
    application_id: &AppId,
    package_id: &str,
    auth_key: &str,
) -> Result<Vec<OauthClient>> {
    sqlx::query_as(&format!(
        "SELECT {CLIENT_COLUMNS} FROM integration_oauth_clients \
         WHERE application_id = $1 AND package_id = $2 AND auth_key = $3 ORDER BY created_at, id"
    ))
    .bind(application_id)
    .bind(package_id)
    .bind(auth_key)
    .fetch_all(conn)
    .await
    .db()
}

pub async fn client(
    conn: &mut AnyConnection,
    application_id: &AppId,
    package_id: &str,
    id: &str,
) -> Result<Option<OauthClient>> {
    sqlx::query_as(&format!(
        "SELECT {CLIENT_COLUMNS} FROM integration_oauth_clients \
         WHERE application_id = $1 AND package_id = $2 AND id = $3"
    ))
    .bind(application_id)
    .bind(package_id)
    .bind(id)
    .fetch_optional(conn)
    .await
    .db()
}

/// A client by id alone (the refresh path, which has the connection's `client_ref`).
pub async fn client_by_id(conn: &mut AnyConnection, id: &str) -> Result<Option<OauthClient>> {
    sqlx::query_as(&format!(
        "SELECT {CLIENT_COLUMNS} FROM integration_oauth_clients WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
    .db()
}

pub struct ClientUpdate<'a> {
    pub client_id: &'a str,
    /// `None` keeps the stored secret; `Some(None)` clears it.
    pub client_secret: Option<Option<&'a str>>,
    pub token_endpoint_auth_method: Option<&'a str>,
    pub redirect_uri: Option<&'a str>,
    pub now: i64,
}

pub async fn update_client(
    conn: &mut AnyConnection,
    application_id: &AppId,
    id: &str,
    u: &ClientUpdate<'_>,
) -> Result<bool> {
    let keep_secret = u.client_secret.is_none();
    let r = sqlx::query(
        "UPDATE integration_oauth_clients SET client_id = $1, \
         client_secret = CASE WHEN $2 = 1 THEN client_secret ELSE $3 END, \
         token_endpoint_auth_method = $4, redirect_uri = COALESCE($5, redirect_uri), updated_at = $6 \
         WHERE application_id = $7 AND id = $8",
    )
    .bind(u.client_id)
    .bind(keep_secret as i64)
    .bind(u.client_secret.flatten())
    .bind(u.token_endpoint_auth_method)
    .bind(u.redirect_uri)
    .bind(u.now)
    .bind(application_id)
    .bind(id)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() > 0)
}

pub async fn delete_client(
    conn: &mut AnyConnection,
    application_id: &AppId,
    id: &str,
) -> Result<bool> {
    let r =
        sqlx::query("DELETE FROM integration_oauth_clients WHERE application_id = $1 AND id = $2")
            .bind(application_id)
            .bind(id)
            .execute(conn)
            .await
            .db()?;
    Ok(r.rows_affected() > 0)
}

/// Flags `id` as the auth's default (and un-flags the others); `None` un-flags all.
pub async fn set_default_client(
    conn: &mut AnyConnection,
    application_id: &AppId,
    package_id: &str,
    auth_key: &str,
    id: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE integration_oauth_clients SET is_default = CASE WHEN id = $4 THEN 1 ELSE 0 END \
         WHERE application_id = $1 AND package_id = $2 AND auth_key = $3",
    )
    .bind(application_id)
    .bind(package_id)
    .bind(auth_key)
    .bind(id)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

// ---------------------------------------------------------------- connections

#[derive(Debug, Clone)]
pub struct Connection {
    pub id: String,
    pub org_id: OrgId,
    pub application_id: AppId,
    pub package_id: String,
    pub auth_key: String,
    pub auth_type: String,
    pub owner_type: String,
    pub owner_id: String,
    pub owner_name: Option<String>,
    pub label: Option<String>,
    pub shared_with_org: bool,
    pub account_id: String,
    pub identity_claims: Option<String>,
    pub scopes_granted: Vec<String>,
    pub credentials: String,
    pub expires_at: Option<i64>,
    pub needs_reconnection: bool,
    pub client_ref: Option<String>,
    pub refresh_count: i64,
    pub refreshed_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const CONNECTION_SELECT: &str = "SELECT c.id, c.org_id, c.application_id, c.package_id, \
    c.auth_key, c.auth_type, c.owner_type, c.owner_id, \
    CASE WHEN c.owner_type = 'user' THEN COALESCE(u.display_name, u.name) \
         ELSE COALESCE(e.name, e.external_id) END AS owner_name, \
    c.label, c.shared_with_org, c.account_id, c.identity_claims, c.scopes_granted, c.credentials, \
    c.expires_at, c.needs_reconnection, c.client_ref, c.refresh_count, c.refreshed_at, \
    c.created_at, c.updated_at \
    FROM integration_connections c \
    LEFT JOIN users u ON c.owner_type = 'user' AND u.id = c.owner_id \
    LEFT JOIN end_users e ON c.owner_type = 'end_user' AND e.id = c.owner_id";

impl<'r> FromRow<'r, AnyRow> for Connection {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        let shared: i64 = row.try_get("shared_with_org")?;
        let needs: i64 = row.try_get("needs_reconnection")?;
        let scopes: String = row.try_get("scopes_granted")?;
        Ok(Connection {
            id: row.try_get("id")?,
            org_id: row.try_get("org_id")?,
            application_id: row.try_get("application_id")?,
            package_id: row.try_get("package_id")?,
            auth_key: row.try_get("auth_key")?,
            auth_type: row.try_get("auth_type")?,
            owner_type: row.try_get("owner_type")?,
            owner_id: row.try_get("owner_id")?,
            owner_name: row.try_get("owner_name")?,
            label: row.try_get("label")?,
            shared_with_org: shared != 0,
            account_id: row.try_get("account_id")?,
            identity_claims: row.try_get("identity_claims")?,
            scopes_granted: serde_json::from_str(&scopes).unwrap_or_default(),
            credentials: row.try_get("credentials")?,
            expires_at: row.try_get("expires_at")?,
            needs_reconnection: needs != 0,
            client_ref: row.try_get("client_ref")?,
            refresh_count: row.try_get("refresh_count")?,
            refreshed_at: row.try_get("refreshed_at")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

pub struct NewConnection<'a> {
    pub id: &'a str,
    pub org_id: &'a OrgId,
    pub application_id: &'a AppId,
    pub package_id: &'a str,
    pub auth_key: &'a str,
    pub auth_type: &'a str,
    pub owner_type: &'a str,
    pub owner_id: &'a str,
    pub label: Option<&'a str>,
    pub shared_with_org: bool,
    pub account_id: &'a str,
    pub identity_claims: Option<&'a str>,
    pub scopes_granted: &'a [String],
    pub credentials: &'a str,
    pub expires_at: Option<i64>,
    pub client_ref: Option<&'a str>,
    pub now: i64,
}

pub async fn insert_connection(conn: &mut AnyConnection, c: &NewConnection<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO integration_connections (id, org_id, application_id, package_id, auth_key, \
         auth_type, owner_type, owner_id, label, shared_with_org, account_id, identity_claims, \
         scopes_granted, credentials, expires_at, needs_reconnection, client_ref, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 0, $16, $17, $17)",
    )
    .bind(c.id)
    .bind(c.org_id)
    .bind(c.application_id)
    .bind(c.package_id)
    .bind(c.auth_key)
    .bind(c.auth_type)
    .bind(c.owner_type)
    .bind(c.owner_id)
    .bind(c.label)
    .bind(c.shared_with_org as i64)
    .bind(c.account_id)
    .bind(c.identity_claims)
    .bind(serde_json::to_string(c.scopes_granted).unwrap_or_else(|_| "[]".into()))
    .bind(c.credentials)
    .bind(c.expires_at)
    .bind(c.client_ref)
    .bind(c.now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// Replaces a connection's credentials in place (a renewal or a re-authorization);
/// clears `needs_reconnection`.
pub struct Renewal<'a> {
    pub credentials: &'a str,
    pub expires_at: Option<i64>,
    pub scopes_granted: &'a [String],
    pub account_id: &'a str,
    pub client_ref: Option<&'a str>,
    pub now: i64,
}

pub async fn renew_connection(
    conn: &mut AnyConnection,
    application_id: &AppId,
    id: &str,
    r: &Renewal<'_>,
) -> Result<bool> {
    let res = sqlx::query(
        "UPDATE integration_connections SET credentials = $1, expires_at = $2, scopes_granted = $3, \
         account_id = $4, client_ref = $5, needs_reconnection = 0, updated_at = $6 \
         WHERE application_id = $7 AND id = $8",
    )
    .bind(r.credentials)
    .bind(r.expires_at)
    .bind(serde_json::to_string(r.scopes_granted).unwrap_or_else(|_| "[]".into()))
    .bind(r.account_id)
    .bind(r.client_ref)
    .bind(r.now)
    .bind(application_id)
    .bind(id)
    .execute(conn)
    .await
    .db()?;
    Ok(res.rows_affected() > 0)
}

/// Stores refreshed tokens (counted, for operators and tests).
pub async fn store_refreshed(
    conn: &mut AnyConnection,
    id: &str,
    credentials: &str,
    expires_at: Option<i64>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE integration_connections SET credentials = $1, expires_at = $2, \
         refresh_count = refresh_count + 1, refreshed_at = $3, needs_reconnection = 0, updated_at = $3 \
         WHERE id = $4",
    )
    .bind(credentials)
    .bind(expires_at)
    .bind(now)
    .bind(id)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

pub async fn mark_needs_reconnection(conn: &mut AnyConnection, id: &str, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE integration_connections SET needs_reconnection = 1, updated_at = $1 WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

pub async fn connection(conn: &mut AnyConnection, id: &str) -> Result<Option<Connection>> {
    sqlx::query_as(&format!("{CONNECTION_SELECT} WHERE c.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
        .db()
}

/// Locks the connection row until the transaction ends (PostgreSQL); on SQLite the
/// caller serializes in process.
pub async fn connection_for_update(
    conn: &mut AnyConnection,
    id: &str,
    postgres: bool,
) -> Result<Option<Connection>> {
    let lock = if postgres { " FOR UPDATE OF c" } else { "" };
    sqlx::query_as(&format!("{CONNECTION_SELECT} WHERE c.id = $1{lock}"))
        .bind(id)
        .fetch_optional(conn)
        .await
        .db()
}

/// The connections an actor may use in an application: their own, plus the ones
/// shared with the org (`include_shared`). Newest first. `package_id` narrows.
pub async fn usable(
    conn: &mut AnyConnection,
    application_id: &AppId,
    package_id: Option<&str>,
    owner_type: &str,
    owner_id: &str,
    include_shared: bool,
) -> Result<Vec<Connection>> {
    sqlx::query_as(&format!(
        "{CONNECTION_SELECT} WHERE c.application_id = $1 AND ($2 IS NULL OR c.package_id = $2) \
         AND ((c.owner_type = $3 AND c.owner_id = $4) OR ($5 = 1 AND c.shared_with_org = 1)) \
         ORDER BY c.updated_at DESC, c.id"
    ))
    .bind(application_id)
    .bind(package_id)
    .bind(owner_type)
    .bind(owner_id)
    .bind(include_shared as i64)
    .fetch_all(conn)
    .await
    .db()
}

/// Every connection an owner has, across organizations and applications (`/api/me`).
pub async fn owned(
    conn: &mut AnyConnection,
    owner_type: &str,
    owner_id: &str,
    application_id: Option<&AppId>,
) -> Result<Vec<Connection>> {
    sqlx::query_as(&format!(
        "{CONNECTION_SELECT} WHERE c.owner_type = $1 AND c.owner_id = $2 \
         AND ($3 IS NULL OR c.application_id = $3) ORDER BY c.package_id, c.created_at DESC"
    ))
    .bind(owner_type)
    .bind(owner_id)
    .bind(application_id)
    .fetch_all(conn)
    .await
    .db()
}

pub struct MetadataUpdate<'a> {
    pub label: Option<Option<&'a str>>,
    pub shared_with_org: Option<bool>,
    pub now: i64,
}

pub async fn update_metadata(
    conn: &mut AnyConnection,
    application_id: &AppId,
    package_id: &str,
    id: &str,
    owner: (&str, &str),
    u: &MetadataUpdate<'_>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE integration_connections SET \
         label = CASE WHEN $1 = 1 THEN $2 ELSE label END, \
         shared_with_org = COALESCE($3, shared_with_org), updated_at = $4 \
         WHERE application_id = $5 AND package_id = $6 AND id = $7 AND owner_type = $8 AND owner_id = $9",
    )
    .bind(u.label.is_some() as i64)
    .bind(u.label.flatten())
    .bind(u.shared_with_org.map(|b| b as i64))
    .bind(u.now)
    .bind(application_id)
    .bind(package_id)
    .bind(id)
    .bind(owner.0)
    .bind(owner.1)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() > 0)
}

/// Deletes an owner's connection; `application_id` narrows (API keys).
pub async fn delete_owned(
    conn: &mut AnyConnection,
    id: &str,
    owner: (&str, &str),
    application_id: Option<&AppId>,
) -> Result<bool> {
    let r = sqlx::query(
        "DELETE FROM integration_connections WHERE id = $1 AND owner_type = $2 AND owner_id = $3 \
         AND ($4 IS NULL OR application_id = $4)",
    )
    .bind(id)
    .bind(owner.0)
    .bind(owner.1)
    .bind(application_id)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() > 0)
}

// ---------------------------------------------------------------- OAuth states

#[derive(Debug, Clone)]
pub struct OauthState {
    pub org_id: OrgId,
    pub application_id: AppId,
    pub package_id: String,
    pub auth_key: String,
    pub owner_type: String,
    pub owner_id: String,
    pub shared_with_org: bool,
    pub client_ref: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub code_verifier: String,
    pub connection_id: Option<String>,
    pub expires_at: i64,
}

pub struct NewOauthState<'a> {
    pub state_hash: &'a str,
    pub state: &'a OauthState,
    pub now: i64,
}

pub async fn insert_state(conn: &mut AnyConnection, s: &NewOauthState<'_>) -> Result<()> {
    let st = s.state;
    sqlx::query(
        "INSERT INTO integration_oauth_states (state_hash, org_id, application_id, package_id, \
         auth_key, owner_type, owner_id, shared_with_org, client_ref, redirect_uri, scopes, \
         code_verifier, connection_id, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(s.state_hash)
    .bind(&st.org_id)
    .bind(&st.application_id)
    .bind(&st.package_id)
    .bind(&st.auth_key)
    .bind(&st.owner_type)
    .bind(&st.owner_id)
    .bind(st.shared_with_org as i64)
    .bind(&st.client_ref)
    .bind(&st.redirect_uri)
    .bind(serde_json::to_string(&st.scopes).unwrap_or_else(|_| "[]".into()))
    .bind(&st.code_verifier)
    .bind(&st.connection_id)
    .bind(st.expires_at)
    .bind(s.now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// Consumes a state: the row is deleted whatever its age, so a state works once.
/// Returns it only if it had not expired.
pub async fn take_state(
    conn: &mut AnyConnection,
    state_hash: &str,
    now: i64,
) -> Result<Option<OauthState>> {
    let row = sqlx::query(
        "DELETE FROM integration_oauth_states WHERE state_hash = $1 RETURNING org_id, \
         application_id, package_id, auth_key, owner_type, owner_id, shared_with_org, client_ref, \
         redirect_uri, scopes, code_verifier, connection_id, expires_at",
    )
    .bind(state_hash)
    .fetch_optional(conn)
    .await
    .db()?;
    let Some(r) = row else { return Ok(None) };
    let shared: i64 = r.try_get("shared_with_org").db()?;
    let scopes: String = r.try_get("scopes").db()?;
    let st = OauthState {
        org_id: r.try_get("org_id").db()?,
        application_id: r.try_get("application_id").db()?,
        package_id: r.try_get("package_id").db()?,
        auth_key: r.try_get("auth_key").db()?,
        owner_type: r.try_get("owner_type").db()?,
        owner_id: r.try_get("owner_id").db()?,
        shared_with_org: shared != 0,
        client_ref: r.try_get("client_ref").db()?,
        redirect_uri: r.try_get("redirect_uri").db()?,
        scopes: serde_json::from_str(&scopes).unwrap_or_default(),
        code_verifier: r.try_get("code_verifier").db()?,
        connection_id: r.try_get("connection_id").db()?,
        expires_at: r.try_get("expires_at").db()?,
    };
    Ok((st.expires_at > now).then_some(st))
}

/// Drops expired authorizations (maintenance).
pub async fn prune_states(conn: &mut AnyConnection, now: i64) -> Result<u64> {
    let r = sqlx::query("DELETE FROM integration_oauth_states WHERE expires_at <= $1")
        .bind(now)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected())
}
