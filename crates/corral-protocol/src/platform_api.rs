//! The platform's internal API called by the sidecar on a run's behalf
//! (container → host only), backing the MCP tools `run_history` and
//! `recall_memory`. Both are `GET {platform_url}{path}` with
//! `Authorization: Bearer <run token>`; the platform derives the agent and actor
//! from the token, so the sidecar never names them.
//!
//! The sidecar passes the platform's JSON body to the model unchanged, so these
//! types document the contract rather than constrain the sidecar.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET` — past runs of the same agent. Query: [`RunHistoryQuery`]. `200`
/// [`RunHistoryPage`]; `401` bad run token.
pub const RUN_HISTORY_PATH: &str = "/internal/run-history";
/// `GET` — archive (non-pinned) memories visible to the run's actor. Query:
/// [`MemoriesQuery`]. `200` [`MemoriesPage`]; `401` bad run token.
pub const MEMORIES_PATH: &str = "/internal/memories";

/// `GET {path}/{scope}/{name}` — the run's current credentials of one integration it
/// declared, OAuth tokens refreshed first when they expire within 5 minutes; `POST
/// {path}/{scope}/{name}/refresh` forces an OAuth refresh (after an upstream 401).
/// `200` [`IntegrationCredentials`]; `401` bad run token or finished run; `404` not
/// an integration of this run, or its connection is gone; `410` the connection needs
/// re-authorization; `502` the authorization server failed.
pub const INTEGRATION_CREDENTIALS_PATH: &str = "/internal/integration-credentials";

/// `GET {path}/{credentialId}` — a fresh access token of the run's OAuth model
/// credential, refreshed first when it expires within 5 minutes; `POST
/// {path}/{credentialId}/refresh` forces a refresh (after the provider answered
/// 401). `200` [`OAuthTokenResponse`]; `401` bad run token or finished run; `403` not
/// the credential of this run's model; `404` no such OAuth credential; `410` the
/// account must be paired again (refresh token refused); `502` the token endpoint
/// failed.
pub const OAUTH_TOKEN_PATH: &str = "/internal/oauth-token";

/// The answer of [`OAUTH_TOKEN_PATH`] (the reference contract's `OAuthTokenResponse`).
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuthTokenResponse {
    pub access_token: String,
    /// Epoch milliseconds; `null` when the expiry is unknown.
    pub expires_at: Option<i64>,
    /// The account the provider routes on, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The credential's provider (`claude-code`, `codex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// Its protocol family (`anthropic-messages`, `openai-codex-responses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_shape: Option<String>,
    /// Its API base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
}

/// The answer of [`INTEGRATION_CREDENTIALS_PATH`] (the reference contract's
/// `IntegrationCredentialsResponse`).
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegrationCredentials {
    pub auths: Vec<IntegrationAuth>,
    /// Header deliveries by auth key.
    #[serde(default)]
    pub delivery_plans: std::collections::BTreeMap<String, DeliveryPlan>,
    /// Expiry (Unix ms) by auth key; `null` when the credential does not expire.
    #[serde(default)]
    pub expires_at_epoch_ms: std::collections::BTreeMap<String, Option<i64>>,
}

#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegrationAuth {
    pub auth_key: String,
    pub auth_type: String,
    /// Credential values by name.
    pub fields: std::collections::BTreeMap<String, String>,
    pub authorized_uris: Vec<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_granted: Vec<String>,
}

#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryPlan {
    pub header_name: String,
    pub header_prefix: String,
    pub value: String,
    pub allow_server_override: bool,
}

/// The most bytes a memory (`note`) or a pinned slot's JSON value (`pin`) may hold;
/// the agent refuses longer ones at once, the platform refuses them again.
pub const MAX_MEMORY_BYTES: usize = 4096;

/// Most items either call returns.
pub const MAX_LIMIT: u32 = 50;
pub const DEFAULT_LIMIT: u32 = 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RunHistoryQuery {
    /// 1–[`MAX_LIMIT`], default [`DEFAULT_LIMIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Comma-separated fields to include: `checkpoint`, `result` (default `checkpoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<String>,
}

#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunHistoryPage {
    /// Always `list`.
    #[cfg_attr(feature = "utoipa", schema(pattern = "^list$"))]
    pub object: String,
    /// `{id, status, date, duration, checkpoint?, result?}` per run, newest first.
    #[cfg_attr(feature = "utoipa", schema(value_type = Vec<Object>))]
    pub data: Vec<Value>,
    pub has_more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MemoriesQuery {
    /// Case-insensitive substring filter on the content; absent = most recent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// 1–[`MAX_LIMIT`], default [`DEFAULT_LIMIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoriesPage {
    pub memories: Vec<Memory>,
}

#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub id: i64,
    pub content: Value,
    #[serde(rename = "createdAt")]
    #[cfg_attr(feature = "utoipa", schema(format = DateTime))]
    pub created_at: String,
    pub actor_type: String,
    #[serde(default)]
    pub actor_id: Option<String>,
}

/// `{platform_url}{path}` without a doubled slash.
pub fn platform_endpoint(platform_url: &str, path: &str) -> String {
    format!("{}{path}", platform_url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reference_examples_parse() {
        let page: RunHistoryPage = serde_json::from_value(json!({
            "object": "list", "hasMore": false,
            "data": [{"id": "run_1", "status": "success", "checkpoint": {"n": 42}}]
        }))
        .unwrap();
        assert!(!page.has_more);
        let mem: MemoriesPage = serde_json::from_value(json!({"memories": [{
            "id": 42, "content": "User prefers Python", "createdAt": "2026-04-20T10:00:00Z",
            "actor_type": "user", "actor_id": "usr_abc"
        }]}))
        .unwrap();
        assert_eq!(mem.memories[0].id, 42);
        assert_eq!(
            platform_endpoint("http://p:3000/", MEMORIES_PATH),
            "http://p:3000/internal/memories"
        );
    }
}
