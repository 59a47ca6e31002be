//! Fresh access tokens of OAuth model provider credentials: refreshed at the
//! provider's token endpoint within 5 minutes of their expiry (or when forced),
//! serialized per credential.

use corral_core::time::now_ms;
use corral_core::OrgId;
use corral_store::model_oauth as store;
use corral_store::models as cred_store;
use serde_json::{json, Value};

use super::{derived_identity, refresh_aad, token_url, Identity, OAuthSpec, TokenBody};
use crate::models::provider;
use crate::Connect;

/// How long before its expiry an access token is refreshed (SPEC §12).
pub const REFRESH_LEAD_MS: i64 = 5 * 60 * 1000;

/// A usable access token.
#[derive(Debug, Clone)]
pub struct FreshToken {
    pub access_token: String,
    /// Unix ms; `None` when the provider did not say.
    pub expires_at: Option<i64>,
    pub account_id: Option<String>,
    /// The credential's provider and API base URL (the runtime config).
    pub provider_id: String,
    pub base_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the credential does not exist (or is not an OAuth credential)")]
    Gone,
    #[error("the credential needs reconnection: the provider refused its refresh token")]
    NeedsReconnection,
    #[error("the provider refused the refresh token (invalid_grant): {0}")]
    Revoked(String),
    #[error("the token could not be refreshed: {0}")]
    Failed(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<corral_store::StoreError> for TokenError {
    fn from(e: corral_store::StoreError) -> TokenError {
        TokenError::Other(e.into())
    }
}

/// Whether the access token must be refreshed at `now`: unknown expiry, or within
/// [`REFRESH_LEAD_MS`] of it.
fn expiring(c: &cred_store::Credential, now: i64) -> bool {
    c.token_expires_at
        .is_none_or(|e| e - now <= REFRESH_LEAD_MS)
}

fn open_current(state: &Connect, c: &cred_store::Credential) -> Result<FreshToken, TokenError> {
    let access = crate::models::open_key(state, &c.id, &c.api_key)
        .map_err(|e| TokenError::Other(anyhow::anyhow!("opening the access token: {e}")))?;
    Ok(FreshToken {
        access_token: access,
        expires_at: c.token_expires_at,
        account_id: c.oauth_account_id.clone(),
        provider_id: c.provider_id.clone(),
        base_url: c.base_url.clone(),
    })
}

/// The credential's access token, refreshed first when it expires within 5
/// minutes, or in any case with `force` (after the provider refused it). A refresh
/// token the provider refuses flags the credential `needs_reconnection`.
///
/// Concurrent callers refresh once: a mutex per credential in this process, and on
/// PostgreSQL the row locked until the new tokens are stored. Whoever waited finds
/// the tokens written after it asked, and uses them.
pub async fn fresh_token(
    state: &Connect,
    org_id: &OrgId,
    credential_id: &str,
    force: bool,
) -> Result<FreshToken, TokenError> {
    let asked_at = now_ms();
    let c = {
        let mut conn = state.db.conn().await?;
        store::credential(&mut conn, org_id, credential_id, false)
            .await?
            .ok_or(TokenError::Gone)?
    };
    if c.needs_reconnection {
        return Err(TokenError::NeedsReconnection);
    }
    if !force && !expiring(&c, asked_at) {
        return open_current(state, &c);
    }
    let lock = state
        .refresh_locks
        .entry(format!("model_credential:{credential_id}"))
        .or_default()
        .clone();
    let _guard = lock.lock().await;
    // PostgreSQL: the row stays locked (other replicas wait) until the new tokens are
    // stored. SQLite serves one process, whose mutex is enough; a transaction held
    // across the HTTP call would only make other writers fail as busy.
    let postgres = state.db.backend() == corral_store::Backend::Postgres;
    let mut tx = if postgres {
        Some(state.db.begin().await?)
    } else {
        None
    };
    let c = match &mut tx {
        Some(t) => store::credential(t, org_id, credential_id, true).await?,
        None => {
            let mut conn = state.db.conn().await?;
            store::credential(&mut conn, org_id, credential_id, false).await?
        }
    }
    .ok_or(TokenError::Gone)?;
    if c.needs_reconnection {
        return Err(TokenError::NeedsReconnection);
    }
    let refreshed_since = c.token_updated_at.is_some_and(|t| t >= asked_at);
    if refreshed_since || (!force && !expiring(&c, now_ms())) {
        // Someone refreshed while this caller waited for the lock.
        return open_current(state, &c);
    }
    let p = provider(&c.provider_id).ok_or(TokenError::Gone)?;
    let (spec, url) = match (p.oauth, token_url(state, p)) {
        (Some(s), Some(u)) => (s, u),
        _ => return Err(TokenError::Gone),
    };
    let refresh_token = match c.refresh_token.as_deref() {
        Some(sealed) => state
            .keyring
            .open_str(sealed, &refresh_aad(&c.id))
            .map_err(|e| TokenError::Other(anyhow::anyhow!("opening the refresh token: {e}")))?,
        None => {
            return Err(TokenError::Failed(
                "the credential has no refresh token".into(),
            ))
        }
    };
    let outcome = call_token_endpoint(state, spec, &url, &refresh_token).await;
    // After the answer: a caller that asked before now finds these tokens newer than
    // its question and takes them instead of refreshing again.
    let now = now_ms();
    match outcome {
        Ok(t) => {
            let account_id = match spec.identity {
                Identity::OpenAiJwt => derived_identity(spec, &t.access_token).1,
                Identity::Forwarded => None,
            };
            let access = state
                .keyring
                .seal(t.access_token.as_bytes(), &crate::models::key_aad(&c.id));
            let rotated = t
                .refresh_token
                .as_ref()
                .map(|r| state.keyring.seal(r.as_bytes(), &refresh_aad(&c.id)));
            let expires_at = t.expires_in_secs.map(|s| now + s * 1000);
            let write = store::Refreshed {
                access_token: &access,
                refresh_token: rotated.as_deref(),
                expires_at,
                account_id: account_id.as_deref(),
            };
            match tx {
                Some(mut t) => {
                    store::store_refreshed(&mut t, org_id, &c.id, &write, now).await?;
                    t.commit().await.map_err(corral_store::StoreError::from)?;
                }
                None => {
                    let mut conn = state.db.conn().await?;
                    store::store_refreshed(&mut conn, org_id, &c.id, &write, now).await?;
                }
            }
            tracing::info!(credential_id = %c.id, provider = p.id, forced = force, "model provider access token refreshed");
            Ok(FreshToken {
                access_token: t.access_token,
                expires_at,
                account_id: account_id.or(c.oauth_account_id),
                provider_id: c.provider_id,
                base_url: c.base_url,
            })
        }
        Err(Refusal::InvalidGrant(detail)) => {
            match tx {
                Some(mut t) => {
                    store::mark_needs_reconnection(&mut t, org_id, &c.id, now).await?;
                    t.commit().await.map_err(corral_store::StoreError::from)?;
                }
                None => {
                    let mut conn = state.db.conn().await?;
                    store::mark_needs_reconnection(&mut conn, org_id, &c.id, now).await?;
                }
            }
            tracing::warn!(credential_id = %c.id, provider = p.id, %detail, "refresh token refused (invalid_grant): the credential needs reconnection");
            Err(TokenError::Revoked(detail))
        }
        Err(Refusal::Failed(detail)) => {
            tracing::warn!(credential_id = %c.id, provider = p.id, %detail, "refreshing a model provider token failed");
            Err(TokenError::Failed(detail))
        }
    }
}

struct Tokens {
    access_token: String,
    refresh_token: Option<String>,
    expires_in_secs: Option<i64>,
}

enum Refusal {
    InvalidGrant(String),
    Failed(String),
}

/// One `refresh_token` grant at the provider's token endpoint (a public client: no
/// secret). The refresh token never appears in what is returned or logged.
async fn call_token_endpoint(
    state: &Connect,
    spec: &OAuthSpec,
    url: &str,
    refresh_token: &str,
) -> Result<Tokens, Refusal> {
    let req = state
        .probe_http
        .post(url)
        .header("accept", "application/json");
    let req = match spec.body {
        TokenBody::Json => req.json(&json!({
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": spec.client_id,
        })),
        TokenBody::Form => {
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", spec.client_id),
            ];
            if let Some(scope) = spec.scope {
                form.push(("scope", scope));
            }
            req.form(&form)
        }
    };
    let resp = req.send().await.map_err(|e| {
        Refusal::Failed(format!(
            "the token endpoint could not be reached: {}",
            e.without_url()
        ))
    })?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    if !status.is_success() {
        let error = text("error").unwrap_or_default();
        let description = text("error_description").unwrap_or_default();
        let detail = format!("HTTP {}: {error} {description}", status.as_u16())
            .trim()
            .chars()
            .take(300)
            .collect::<String>();
        return Err(if error == "invalid_grant" {
            Refusal::InvalidGrant(detail)
        } else {
            Refusal::Failed(detail)
        });
    }
    let access_token = text("access_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Refusal::Failed("the token endpoint answered no access_token".into()))?;
    Ok(Tokens {
        access_token,
        refresh_token: text("refresh_token").filter(|t| !t.is_empty()),
        expires_in_secs: body.get("expires_in").and_then(Value::as_i64),
    })
}
