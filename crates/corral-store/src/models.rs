//! Model provider credentials and an organization's models (SPEC §12, migration
//! 0007). API keys are stored sealed; this module never opens them. Every function
//! that reads a tenant's rows takes the org id and puts it in the WHERE clause.
//! The per-agent choice lives in `application_packages` ([`crate::app_packages`]).

use corral_core::OrgId;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use crate::{Result, SqlxResultExt};

#[derive(Debug, Clone)]
pub struct Credential {
    pub id: String,
    pub org_id: OrgId,
    pub provider_id: String,
    pub label: String,
    pub base_url: String,
    /// Sealed envelope.
    pub api_key: String,
    /// JSON array written by model discovery.
    pub available_model_ids: Option<String>,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// `api_key` or `oauth2` (then `api_key` holds the sealed access token).
    pub auth_mode: String,
    /// Sealed envelope (`oauth2`).
    pub refresh_token: Option<String>,
    /// When the access token expires (ms); `None`: unknown.
    pub token_expires_at: Option<i64>,
    /// When the tokens were last written (ms).
    pub token_updated_at: Option<i64>,
    pub oauth_email: Option<String>,
    pub oauth_account_id: Option<String>,
    /// The provider refused the refresh token: the account must be paired again.
    pub needs_reconnection: bool,
}

impl Credential {
    pub fn is_oauth(&self) -> bool {
        self.auth_mode == "oauth2"
    }
}

pub(crate) const CREDENTIAL_COLUMNS: &str = "id, org_id, provider_id, label, base_url, api_key, \
    available_model_ids, created_by, created_at, updated_at, auth_mode, refresh_token, \
    token_expires_at, token_updated_at, oauth_email, oauth_account_id, needs_reconnection";

impl<'r> FromRow<'r, AnyRow> for Credential {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        Ok(Credential {
            id: row.try_get("id")?,
            org_id: row.try_get("org_id")?,
            provider_id: row.try_get("provider_id")?,
            label: row.try_get("label")?,
            base_url: row.try_get("base_url")?,
            api_key: row.try_get("api_key")?,
            available_model_ids: row.try_get("available_model_ids")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            auth_mode: row.try_get("auth_mode")?,
            refresh_token: row.try_get("refresh_token")?,
            token_expires_at: row.try_get("token_expires_at")?,
            token_updated_at: row.try_get("token_updated_at")?,
            oauth_email: row.try_get("oauth_email")?,
            oauth_account_id: row.try_get("oauth_account_id")?,
            needs_reconnection: row.try_get::<i64, _>("needs_reconnection")? != 0,
        })
    }
}

pub struct NewCredential<'a> {
    pub id: &'a str,
    pub org_id: &'a OrgId,
    pub provider_id: &'a str,
    pub label: &'a str,
    pub base_url: &'a str,
    pub api_key: &'a str,
    pub created_by: Option<&'a str>,
    pub now: i64,
}

pub async fn insert_credential(conn: &mut AnyConnection, c: &NewCredential<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO model_provider_credentials (id, org_id, provider_id, label, base_url, api_key, \
           created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(c.id)
    .bind(c.org_id)
    .bind(c.provider_id)
    .bind(c.label)
    .bind(c.base_url)
    .bind(c.api_key)
    .bind(c.created_by)
    .bind(c.now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

pub async fn get_credential(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: &str,
) -> Result<Option<Credential>> {
    sqlx::query_as(&format!(
        "SELECT {CREDENTIAL_COLUMNS} FROM model_provider_credentials WHERE org_id = $1 AND id = $2"
    ))
    .bind(org_id)
    .bind(id)
    .fetch_optional(conn)
    .await
    .db()
}

/// The organization's credentials, oldest first.
pub async fn list_credentials(conn: &mut AnyConnection, org_id: &OrgId) -> Result<Vec<Credential>> {
    sqlx::query_as(&format!(
        "SELECT {CREDENTIAL_COLUMNS} FROM model_provider_credentials WHERE org_id = $1 \
         ORDER BY created_at, id"
    ))
    .bind(org_id)
    .fetch_all(conn)
    .await
    .db()
}

/// Changes the label and, when given, the (sealed) key.
pub async fn update_credential(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: &str,
    label: &str,
    api_key: Option<&str>,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE model_provider_credentials SET label = $3, api_key = COALESCE($4, api_key), \
           updated_at = $5 WHERE org_id = $1 AND id = $2",
    )
    .bind(org_id)
    .bind(id)
    .bind(label)
    .bind(api_key)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() == 1)
}

/// Records the model ids discovery found (a JSON array).
pub async fn set_available_models(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: &str,
    ids_json: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE model_provider_credentials SET available_model_ids = $3, updated_at = $4 \
         WHERE org_id = $1 AND id = $2",
    )
    .bind(org_id)
    .bind(id)
    .bind(ids_json)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() == 1)
}

/// Models of the organization that use the credential.
pub async fn count_models_using(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    credential_id: &str,
) -> Result<i64> {
    let row =
        sqlx::query("SELECT COUNT(*) FROM org_models WHERE org_id = $1 AND credential_id = $2")
            .bind(org_id)
            .bind(credential_id)
            .fetch_one(conn)
            .await
            .db()?;
    row.try_get(0).db()
}

/// Deletes a credential. A model still using it makes this a
/// [`crate::StoreError::Conflict`] (the foreign key).
pub async fn delete_credential(conn: &mut AnyConnection, org_id: &OrgId, id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM model_provider_credentials WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(id)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected() == 1)
}

/// An organization's model with what it needs of its credential.
#[derive(Debug, Clone)]
pub struct Model {
    pub id: String,
    pub org_id: OrgId,
    pub credential_id: String,
    pub label: String,
    pub model_id: String,
    pub enabled: bool,
    pub is_default: bool,
    /// JSON array.
    pub input: Option<String>,
    pub context_window: Option<i64>,
    pub max_tokens: Option<i64>,
    pub reasoning: Option<bool>,
    /// JSON object.
    pub cost: Option<String>,
    pub aliased: bool,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// From the credential.
    pub provider_id: String,
    pub base_url: String,
    /// The credential's sealed key (or OAuth access token).
    pub api_key: String,
    /// The credential's `auth_mode`.
    pub auth_mode: String,
    /// The credential's flag: its refresh token was refused.
    pub needs_reconnection: bool,
}

const MODEL_SELECT: &str =
    "SELECT m.id, m.org_id, m.credential_id, m.label, m.model_id, m.enabled, \
    m.is_default, m.input, m.context_window, m.max_tokens, m.reasoning, m.cost, m.aliased, \
    m.created_by, m.created_at, m.updated_at, c.provider_id, c.base_url, c.api_key, \
    c.auth_mode, c.needs_reconnection AS credential_needs_reconnection \
    FROM org_models m JOIN model_provider_credentials c ON c.id = m.credential_id";

impl<'r> FromRow<'r, AnyRow> for Model {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        let flag = |name: &str| -> sqlx::Result<bool> { Ok(row.try_get::<i64, _>(name)? != 0) };
        Ok(Model {
            id: row.try_get("id")?,
            org_id: row.try_get("org_id")?,
            credential_id: row.try_get("credential_id")?,
            label: row.try_get("label")?,
            model_id: row.try_get("model_id")?,
            enabled: flag("enabled")?,
            is_default: flag("is_default")?,
            input: row.try_get("input")?,
            context_window: row.try_get("context_window")?,
            max_tokens: row.try_get("max_tokens")?,
            reasoning: row.try_get::<Option<i64>, _>("reasoning")?.map(|r| r != 0),
            cost: row.try_get("cost")?,
            aliased: flag("aliased")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            provider_id: row.try_get("provider_id")?,
            base_url: row.try_get("base_url")?,
            api_key: row.try_get("api_key")?,
            auth_mode: row.try_get("auth_mode")?,
            needs_reconnection: row.try_get::<i64, _>("credential_needs_reconnection")? != 0,
        })
    }
}

/// The writable fields of a model.
pub struct ModelFields<'a> {
    pub credential_id: &'a str,
    pub label: &'a str,
    pub model_id: &'a str,
    pub enabled: bool,
    pub input: Option<&'a str>,
    pub context_window: Option<i64>,
    pub max_tokens: Option<i64>,
    pub reasoning: Option<bool>,
    pub cost: Option<&'a str>,
    pub aliased: bool,
}

pub async fn insert_model(
    conn: &mut AnyConnection,
    id: &str,
    org_id: &OrgId,
    f: &ModelFields<'_>,
    created_by: Option<&str>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO org_models (id, org_id, credential_id, label, model_id, enabled, is_default, \
           input, context_window, max_tokens, reasoning, cost, aliased, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
    )
    .bind(id)
    .bind(org_id)
    .bind(f.credential_id)
    .bind(f.label)
    .bind(f.model_id)
    .bind(i64::from(f.enabled))
    .bind(f.input)
    .bind(f.context_window)
    .bind(f.max_tokens)
    .bind(f.reasoning.map(i64::from))
    .bind(f.cost)
    .bind(i64::from(f.aliased))
    .bind(created_by)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

pub async fn update_model(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: &str,
    f: &ModelFields<'_>,
    now: i64,
) -> Result<bool> {
    // A disabled model cannot stay the default.
    let r = sqlx::query(
        "UPDATE org_models SET credential_id = $3, label = $4, model_id = $5, enabled = $6, \
           is_default = CASE WHEN $6 = 1 THEN is_default ELSE 0 END, input = $7, \
           context_window = $8, max_tokens = $9, reasoning = $10, cost = $11, aliased = $12, \
           updated_at = $13 WHERE org_id = $1 AND id = $2",
    )
    .bind(org_id)
    .bind(id)
    .bind(f.credential_id)
    .bind(f.label)
    .bind(f.model_id)
    .bind(i64::from(f.enabled))
    .bind(f.input)
    .bind(f.context_window)
    .bind(f.max_tokens)
    .bind(f.reasoning.map(i64::from))
    .bind(f.cost)
    .bind(i64::from(f.aliased))
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() == 1)
}

pub async fn get_model(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: &str,
) -> Result<Option<Model>> {
    sqlx::query_as(&format!("{MODEL_SELECT} WHERE m.org_id = $1 AND m.id = $2"))
        .bind(org_id)
        .bind(id)
        .fetch_optional(conn)
        .await
        .db()
}

/// The organization's models, oldest first.
pub async fn list_models(conn: &mut AnyConnection, org_id: &OrgId) -> Result<Vec<Model>> {
    sqlx::query_as(&format!(
        "{MODEL_SELECT} WHERE m.org_id = $1 ORDER BY m.created_at, m.id"
    ))
    .bind(org_id)
    .fetch_all(conn)
    .await
    .db()
}

/// The organization's enabled default model, if one is flagged.
pub async fn default_model(conn: &mut AnyConnection, org_id: &OrgId) -> Result<Option<Model>> {
    sqlx::query_as(&format!(
        "{MODEL_SELECT} WHERE m.org_id = $1 AND m.is_default = 1 AND m.enabled = 1"
    ))
    .bind(org_id)
    .fetch_optional(conn)
    .await
    .db()
}

/// Makes `id` the organization's only default, or clears the default (`None`). Run
/// it in a transaction: the clear and the set must land together.
pub async fn set_default(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: Option<&str>,
    now: i64,
) -> Result<bool> {
    sqlx::query(
        "UPDATE org_models SET is_default = 0, updated_at = $2 WHERE org_id = $1 AND is_default = 1",
    )
    .bind(org_id)
    .bind(now)
    .execute(&mut *conn)
    .await
    .db()?;
    let Some(id) = id else {
        return Ok(true);
    };
    let r = sqlx::query(
        "UPDATE org_models SET is_default = 1, updated_at = $3 WHERE org_id = $1 AND id = $2",
    )
    .bind(org_id)
    .bind(id)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() == 1)
}

/// Deletes a model and forgets it as any agent's choice. Run it in a transaction.
pub async fn delete_model(conn: &mut AnyConnection, org_id: &OrgId, id: &str) -> Result<bool> {
    sqlx::query(
        "UPDATE application_packages SET model_id = NULL WHERE org_id = $1 AND model_id = $2",
    )
    .bind(org_id)
    .bind(id)
    .execute(&mut *conn)
    .await
    .db()?;
    let r = sqlx::query("DELETE FROM org_models WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(id)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected() == 1)
}
