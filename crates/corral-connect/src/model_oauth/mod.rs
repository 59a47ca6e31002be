//! OAuth model providers (subscription accounts: `claude-code`, `codex`): the
//! providers' OAuth side, the pairing tokens of the connect helper, the redeem
//! that turns a helper's token bundle into a model provider credential, and fresh
//! access tokens, refreshed under a lock.
//!
//! The connect helper runs the provider's loopback OAuth dance on the user's machine
//! (the providers only accept `http://localhost` redirect URIs for their public
//! clients) and posts the tokens back with a single-use pairing token; the server
//! never sees an authorization code. Afterwards the server keeps the access token
//! fresh with the refresh token, against the provider's token endpoint
//! (configurable: `CORRAL_OAUTH_<PROVIDER>_TOKEN_URL`).
//!
//! A credential's access token is sealed in its `api_key` column (same associated
//! data as an API key), its refresh token in `refresh_token`. Refreshes of one
//! credential are serialized: a mutex per credential in this process, and the row
//! locked `FOR UPDATE` across replicas on PostgreSQL, because providers rotate
//! refresh tokens: a second refresh with the first one's token would be refused
//! and cut the account off.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use corral_core::time::now_ms;
use corral_core::{ErrorCode, Problem, ProblemResult};
use corral_store::model_oauth as store;
use corral_store::models as cred_store;
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::models::{provider, Provider};
use crate::Connect;

/// How a provider's token endpoint wants its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenBody {
    /// `application/json` (Anthropic's console).
    Json,
    /// `application/x-www-form-urlencoded` (RFC 6749; OpenAI's auth server).
    Form,
}

/// Where a provider's account identity lives besides what the helper forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// Only what the helper forwards.
    Forwarded,
    /// The access token is a JWT whose `https://api.openai.com/auth` claim names the
    /// ChatGPT account and `https://api.openai.com/profile` its email.
    OpenAiJwt,
}

/// A model a subscription provider serves (Corral vendors no pricing catalog: this
/// list is the provider's servable set).
#[derive(Debug)]
pub struct OAuthModel {
    pub id: &'static str,
    pub label: &'static str,
    pub context_window: i64,
    pub max_tokens: Option<i64>,
    pub capabilities: &'static [&'static str],
}

/// The OAuth side of a model provider.
#[derive(Debug)]
pub struct OAuthSpec {
    /// The provider's public client (the one its own CLI uses).
    pub client_id: &'static str,
    /// Default token endpoint (refreshes).
    pub token_url: &'static str,
    pub body: TokenBody,
    /// Sent with a refresh when the provider wants it.
    pub scope: Option<&'static str>,
    pub identity: Identity,
    pub models: &'static [OAuthModel],
}

pub static CLAUDE_CODE: OAuthSpec = OAuthSpec {
    client_id: "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
    token_url: "https://platform.claude.com/v1/oauth/token",
    body: TokenBody::Json,
    scope: None,
    identity: Identity::Forwarded,
    models: &[
        OAuthModel {
            id: "claude-opus-4-1",
            label: "Claude Opus 4.1",
            context_window: 200_000,
            max_tokens: Some(32_000),
            capabilities: &["text", "image", "reasoning"],
        },
        OAuthModel {
            id: "claude-sonnet-4-5",
            label: "Claude Sonnet 4.5",
            context_window: 200_000,
            max_tokens: Some(64_000),
            capabilities: &["text", "image", "reasoning"],
        },
        OAuthModel {
            id: "claude-haiku-4-5",
            label: "Claude Haiku 4.5",
            context_window: 200_000,
            max_tokens: Some(64_000),
            capabilities: &["text", "image"],
        },
    ],
};

pub static CODEX: OAuthSpec = OAuthSpec {
    client_id: "app_EMoamEEZ73f0CkXaXp7hrann",
    token_url: "https://auth.openai.com/oauth/token",
    body: TokenBody::Form,
    scope: Some("openid profile email"),
    identity: Identity::OpenAiJwt,
    models: &[
        OAuthModel {
            id: "gpt-5",
            label: "GPT-5",
            context_window: 272_000,
            max_tokens: Some(128_000),
            capabilities: &["text", "image", "reasoning"],
        },
        OAuthModel {
            id: "gpt-5-codex",
            label: "GPT-5 Codex",
            context_window: 272_000,
            max_tokens: Some(128_000),
            capabilities: &["text", "reasoning"],
        },
    ],
};

/// The token endpoint of `p` (configuration first).
pub fn token_url(state: &Connect, p: &Provider) -> Option<String> {
    let spec = p.oauth?;
    let configured = match p.id {
        "claude-code" => state.config.oauth_claude_code_token_url.clone(),
        "codex" => state.config.oauth_codex_token_url.clone(),
        _ => None,
    };
    Some(configured.unwrap_or_else(|| spec.token_url.to_owned()))
}

/// The API base URL of new credentials of `p` (configuration first).
pub fn base_url(state: &Connect, p: &Provider) -> String {
    let configured = match p.id {
        "claude-code" => state.config.oauth_claude_code_base_url.clone(),
        "codex" => state.config.oauth_codex_base_url.clone(),
        _ => None,
    };
    configured
        .map(|u| u.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| p.default_base_url.to_owned())
}

/// The servable model ids of an OAuth provider (empty for others).
pub fn model_ids(p: &Provider) -> Vec<String> {
    p.oauth
        .map(|s| s.models.iter().map(|m| m.id.to_owned()).collect())
        .unwrap_or_default()
}

/// Associated data of a credential's sealed refresh token.
pub fn refresh_aad(credential_id: &str) -> String {
    format!("model_provider_credential:{credential_id}:refresh_token")
}

// ---- pairing tokens ------------------------------------------------------------------

/// Prefix of a pairing token (the redeem's bearer).
pub const PAIRING_TOKEN_PREFIX: &str = "appp_";
/// Prefix of a pairing id.
pub const PAIRING_ID_PREFIX: &str = "pair_";

/// How a pairing token is stored and looked up: hex SHA-256 (never the token).
pub fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A new pairing: `(id, token, hash)`. The token is
/// `appp_<base64url(header)>.<base64url(32 random bytes)>`, the header telling the
/// helper where to post back and for which provider.
pub fn mint_pairing(platform_url: &str, provider_id: &str) -> (String, String, String) {
    let header = json!({"platformUrl": platform_url, "providerId": provider_id}).to_string();
    let token = format!(
        "{PAIRING_TOKEN_PREFIX}{}.{}",
        B64URL.encode(header.as_bytes()),
        corral_core::token::random_urlsafe(32)
    );
    let id = format!(
        "{PAIRING_ID_PREFIX}{}",
        corral_core::token::random_urlsafe(16)
    );
    let hash = token_hash(&token);
    (id, token, hash)
}

// ---- redeem ----------------------------------------------------------------------

/// What the helper posts back.
#[derive(Debug, Clone)]
pub struct RedeemInput {
    pub provider_id: String,
    pub label: Option<String>,
    pub access_token: String,
    pub refresh_token: String,
    /// Unix ms.
    pub expires_at: Option<i64>,
    pub email: Option<String>,
    pub account_id: Option<String>,
}

/// The credential a redeem created or reconnected.
#[derive(Debug, Clone)]
pub struct Redeemed {
    pub credential_id: String,
    pub provider_id: String,
    pub email: Option<String>,
    pub available_model_ids: Vec<String>,
}

/// The claims of a JWT, unverified (identity hints only, never authorization).
fn jwt_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = B64URL.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `(email, account id)` the provider's tokens tell, for what the helper left out.
fn derived_identity(spec: &OAuthSpec, access_token: &str) -> (Option<String>, Option<String>) {
    match spec.identity {
        Identity::Forwarded => (None, None),
        Identity::OpenAiJwt => {
            let Some(claims) = jwt_claims(access_token) else {
                return (None, None);
            };
            let text = |p: &str| {
                claims
                    .pointer(p)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty() && s.len() <= 320)
                    .map(str::to_owned)
            };
            (
                text("/https:~1~1api.openai.com~1profile/email"),
                text("/https:~1~1api.openai.com~1auth/chatgpt_account_id"),
            )
        }
    }
}

fn label_for(base: &str, taken: &[String]) -> String {
    if !taken.iter().any(|t| t == base) {
        return base.to_owned();
    }
    (2..)
        .map(|n| format!("{base} ({n})"))
        .find(|l| !taken.contains(l))
        .unwrap_or_else(|| base.to_owned())
}

fn gone() -> Problem {
    Problem::new(
        ErrorCode::PairingExpiredOrConsumed,
        "the pairing token has expired or was already used; mint a new one",
    )
}

/// Redeems a pairing token (the helper's bearer) with the tokens it obtained:
/// creates the credential, or reconnects the one the pairing names. The org, the
/// user, the provider and the credential come from the pairing, never the body.
/// Nothing changes unless it all succeeds (the pairing is consumed in the same
/// transaction).
pub async fn redeem(state: &Connect, token: &str, input: RedeemInput) -> ProblemResult<Redeemed> {
    let hash = token_hash(token);
    let now = now_ms();
    let pairing = {
        let mut conn = state.db.conn().await?;
        store::pairing_by_hash(&mut conn, &hash)
            .await?
            .ok_or_else(|| Problem::unauthorized("unknown pairing token", true))?
    };
    if pairing.consumed_at.is_some() || pairing.expires_at <= now {
        return Err(gone());
    }
    if input.provider_id != pairing.provider_id {
        return Err(Problem::invalid_param(
            "providerId",
            format!(
                "providerId {:?} does not match the pairing's {:?}",
                input.provider_id, pairing.provider_id
            ),
        ));
    }
    let p = provider(&pairing.provider_id)
        .filter(|p| p.oauth.is_some())
        .ok_or_else(|| {
            let mut e = Problem::not_found("OAuth model provider");
            e.detail = format!(
                "{} is no longer an OAuth model provider of this server",
                pairing.provider_id
            );
            e
        })?;
    let spec = p.oauth.expect("filtered");
    let (jwt_email, jwt_account) = derived_identity(spec, &input.access_token);
    let email = input.email.clone().or(jwt_email);
    let account_id = input.account_id.clone().or(jwt_account);
    let org = &pairing.org_id;

    let mut tx = state.db.begin().await?;
    if store::consume(&mut tx, &hash, now).await?.is_none() {
        // Another redeem of the same token won meanwhile.
        return Err(gone());
    }
    let credential_id = match &pairing.reconnect_credential_id {
        Some(id) => id.clone(),
        None => uuid::Uuid::now_v7().to_string(),
    };
    let access = state.keyring.seal(
        input.access_token.as_bytes(),
        &crate::models::key_aad(&credential_id),
    );
    let refresh = state
        .keyring
        .seal(input.refresh_token.as_bytes(), &refresh_aad(&credential_id));
    let tokens = store::OAuthTokens {
        access_token: &access,
        refresh_token: &refresh,
        expires_at: input.expires_at,
        email: email.as_deref(),
        account_id: account_id.as_deref(),
    };
    if pairing.reconnect_credential_id.is_some() {
        let done = store::reconnect(
            &mut tx,
            org,
            &credential_id,
            p.id,
            input.label.as_deref(),
            &tokens,
            now,
        )
        .await?;
        if !done {
            let mut e = Problem::not_found("model provider credential");
            e.detail =
                format!("the credential {credential_id} this pairing reconnects no longer exists");
            return Err(e);
        }
    } else {
        let label = match &input.label {
            Some(l) => l.clone(),
            None => {
                let taken: Vec<String> = cred_store::list_credentials(&mut tx, org)
                    .await?
                    .into_iter()
                    .map(|c| c.label)
                    .collect();
                label_for(p.display_name, &taken)
            }
        };
        store::insert_credential(
            &mut tx,
            &store::NewOAuthCredential {
                id: &credential_id,
                org_id: org,
                provider_id: p.id,
                label: &label,
                base_url: &base_url(state, p),
                tokens,
                created_by: pairing.user_id.as_deref(),
                now,
            },
        )
        .await?;
    }
    store::set_pairing_credential(&mut tx, org, &pairing.id, &credential_id).await?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    tracing::info!(pairing = %pairing.id, credential_id, provider = p.id, reconnect = pairing.reconnect_credential_id.is_some(), "OAuth model provider paired");
    Ok(Redeemed {
        credential_id,
        provider_id: p.id.to_owned(),
        email,
        available_model_ids: model_ids(p),
    })
}

mod refresh;
pub use refresh::{fresh_token, FreshToken, TokenError, REFRESH_LEAD_MS};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_tokens_carry_a_header_and_hash_stably() {
        let (id, token, hash) = mint_pairing("https://corral.example", "claude-code");
        assert!(id.starts_with("pair_") && id.len() > 20, "{id}");
        let rest = token.strip_prefix("appp_").unwrap();
        let (header, secret) = rest.split_once('.').unwrap();
        let header: Value = serde_json::from_slice(&B64URL.decode(header).unwrap()).unwrap();
        assert_eq!(header["providerId"], "claude-code");
        assert_eq!(header["platformUrl"], "https://corral.example");
        assert_eq!(B64URL.decode(secret).unwrap().len(), 32);
        assert_eq!(hash, token_hash(&token));
        assert_eq!(hash.len(), 64);
        let (_, other, _) = mint_pairing("https://corral.example", "claude-code");
        assert_ne!(token, other);
    }

    #[test]
    fn openai_tokens_tell_the_account() {
        let claims = json!({
            "https://api.openai.com/auth": {"chatgpt_account_id": "acc-42"},
            "https://api.openai.com/profile": {"email": "ada@example.com"}
        });
        let jwt = format!(
            "e30.{}.sig",
            B64URL.encode(serde_json::to_vec(&claims).unwrap())
        );
        assert_eq!(
            derived_identity(&CODEX, &jwt),
            (Some("ada@example.com".into()), Some("acc-42".into()))
        );
        assert_eq!(derived_identity(&CODEX, "not-a-jwt"), (None, None));
        assert_eq!(derived_identity(&CLAUDE_CODE, &jwt), (None, None));
    }
}
