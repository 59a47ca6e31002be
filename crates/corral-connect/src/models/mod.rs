//! Models (SPEC §12): the providers Corral can talk to, the sealing of their keys,
//! the small real requests that test a key or a model and discover a credential's
//! models, and the choice of a run's model at trigger time (request `modelId` >
//! the agent's setting > the org default > the system model from configuration).
//!
//! A key is opened only here, to call the provider (a test, a discovery) or when a
//! run starts; a run's definition names the credential, never the key.

use corral_core::ErrorCode;
use corral_protocol::ModelApi;
use corral_store::models as store;
use serde_json::Value;

use corral_core::{OrgId, Problem, ProblemResult};
use serde::{Deserialize, Serialize};

use crate::Connect;

/// A provider of the registry.
#[derive(Debug)]
pub struct Provider {
    pub id: &'static str,
    pub display_name: &'static str,
    pub description: &'static str,
    pub docs_url: &'static str,
    /// The reference's protocol family name.
    pub api_shape: &'static str,
    /// The wire format Corral's runtime speaks to it; `None` when Corral has no agent
    /// for its API (`codex`'s `openai-codex-responses`): its models cannot run.
    pub api: Option<ModelApi>,
    /// In the SDK convention of [`ModelApi::request_path`]; empty when the caller must
    /// give one.
    pub default_base_url: &'static str,
    pub featured: bool,
    /// Set for a provider whose credentials come from the OAuth pairing flow
    /// (`authMode: oauth2`) rather than an API key.
    pub oauth: Option<&'static crate::model_oauth::OAuthSpec>,
}

impl Provider {
    /// Whether a credential must name its base URL.
    pub fn needs_base_url(&self) -> bool {
        self.default_base_url.is_empty()
    }

    /// `api_key` or `oauth2`.
    pub fn auth_mode(&self) -> &'static str {
        if self.oauth.is_some() {
            "oauth2"
        } else {
            "api_key"
        }
    }
}

pub const PROVIDERS: &[Provider] = &[
    Provider {
        id: "openai",
        display_name: "OpenAI",
        description: "OpenAI chat completions API.",
        docs_url: "https://platform.openai.com/docs/api-reference/chat",
        api_shape: "openai-completions",
        api: Some(ModelApi::Openai),
        default_base_url: "https://api.openai.com/v1",
        featured: true,
        oauth: None,
    },
    Provider {
        id: "anthropic",
        display_name: "Anthropic",
        description: "Anthropic Messages API.",
        docs_url: "https://docs.anthropic.com/en/api/messages",
        api_shape: "anthropic-messages",
        api: Some(ModelApi::Anthropic),
        default_base_url: "https://api.anthropic.com",
        featured: true,
        oauth: None,
    },
    Provider {
        id: "openai-compatible",
        display_name: "OpenAI-compatible",
        description: "Any server speaking the OpenAI chat completions API (Ollama, vLLM, LM Studio, a gateway). Give its base URL including the version, e.g. http://localhost:11434/v1.",
        docs_url: "https://github.com/ollama/ollama/blob/main/docs/openai.md",
        api_shape: "openai-completions",
        api: Some(ModelApi::Openai),
        default_base_url: "",
        featured: false,
        oauth: None,
    },
    Provider {
        id: "claude-code",
        display_name: "Claude (subscription)",
        description: "Anthropic Messages API with a Claude Pro/Max subscription, connected through OAuth with the connect helper (POST /api/model-providers-oauth/pairing).",
        docs_url: "https://docs.anthropic.com/en/docs/claude-code",
        api_shape: "anthropic-messages",
        api: Some(ModelApi::Anthropic),
        default_base_url: "https://api.anthropic.com",
        featured: true,
        oauth: Some(&crate::model_oauth::CLAUDE_CODE),
    },
    Provider {
        id: "codex",
        display_name: "ChatGPT (Codex subscription)",
        description: "OpenAI's Codex Responses API with a ChatGPT Plus/Pro subscription, connected through OAuth with the connect helper. Corral's agent does not speak this API yet: its models cannot run.",
        docs_url: "https://developers.openai.com/codex",
        api_shape: "openai-codex-responses",
        api: None,
        default_base_url: "https://chatgpt.com/backend-api/codex",
        featured: false,
        oauth: Some(&crate::model_oauth::CODEX),
    },
];

pub fn provider(id: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.id == id)
}

/// The provider that speaks `api_shape`, for the inline test (which names a shape,
/// not a provider).
pub fn api_for_shape(api_shape: &str) -> Option<ModelApi> {
    match api_shape {
        "openai-completions" => Some(ModelApi::Openai),
        "anthropic-messages" => Some(ModelApi::Anthropic),
        _ => None,
    }
}

/// The wire API of a stored provider id (ids are checked on write, so an unknown one
/// is a server error; a provider Corral cannot talk to is a 422).
pub fn provider_api(id: &str) -> ProblemResult<ModelApi> {
    let p =
        provider(id).ok_or_else(|| Problem::internal(anyhow::anyhow!("unknown provider {id}")))?;
    p.api.ok_or_else(|| unsupported(p))
}

fn unsupported(p: &Provider) -> Problem {
    Problem::new(
        ErrorCode::ModelApiUnsupported,
        format!(
            "Corral's agent does not speak {} ({}), the API of {} models",
            p.api_shape, p.display_name, p.id
        ),
    )
}

/// Associated data of a credential's sealed key: the envelope opens only there.
pub fn key_aad(credential_id: &str) -> String {
    format!("model_provider_credential:{credential_id}")
}

pub fn seal_key(state: &Connect, credential_id: &str, key: &str) -> String {
    state.keyring.seal(key.as_bytes(), &key_aad(credential_id))
}

pub fn open_key(
    state: &Connect,
    credential_id: &str,
    sealed: &str,
) -> Result<String, corral_config::crypto::CryptoError> {
    state.keyring.open_str(sealed, &key_aad(credential_id))
}

/// A provider base URL as stored: `http(s)://host[:port][/path]`, no query, no
/// credentials, no trailing slash.
pub fn check_base_url(raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw.trim()).map_err(|e| format!("not a URL: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("must be an http:// or https:// URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials; give the key as apiKey".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

mod probe;
pub use probe::*;

// ---- a run's model ------------------------------------------------------------------

/// The model a run's definition names (never its key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DefinitionModel {
    pub api: ModelApi,
    pub model: String,
    pub base_url: String,
    /// The org model's provider credential (its key is opened at run start); `None`
    /// for the system model, whose key comes from configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
}

/// The model a run was given, and why.
#[derive(Debug, Clone)]
pub struct RunModel {
    pub model: DefinitionModel,
    pub label: String,
    /// `system` (configuration) or `org` (an org model), as runs record it.
    pub source: &'static str,
    /// The agent's generation settings, for a trigger that sends none.
    pub agent_generation: Option<Value>,
}

fn not_configured() -> Problem {
    Problem::new(
        ErrorCode::ModelNotConfigured,
        "no model is configured: set CORRAL_MODEL_API, CORRAL_MODEL_ID (and CORRAL_MODEL_BASE_URL, CORRAL_MODEL_API_KEY), or add a model (POST /api/models) and make it the organization's default",
    )
}

fn system_run_model(sys: corral_config::SystemModel) -> RunModel {
    let api = if sys.api == "anthropic" {
        ModelApi::Anthropic
    } else {
        ModelApi::Openai
    };
    RunModel {
        label: sys.model.clone(),
        model: DefinitionModel {
            api,
            model: sys.model,
            base_url: sys.base_url,
            credential_id: None,
        },
        source: "system",
        agent_generation: None,
    }
}

/// An org model as a run's model; refused when its key no longer opens (it would
/// fail at the first model call).
fn org_run_model(state: &Connect, m: store::Model) -> ProblemResult<RunModel> {
    if m.needs_reconnection {
        let mut e = Problem::new(
            ErrorCode::ModelNeedsReconnection,
            format!(
                "the provider refused the OAuth refresh token of model {:?}'s credential; pair the account again (POST /api/model-providers-oauth/pairing with its credentialId)",
                m.label
            ),
        );
        e.param = Some("modelId".into());
        return Err(e);
    }
    if open_key(state, &m.credential_id, &m.api_key).is_err() {
        let mut e = Problem::new(
            ErrorCode::ModelNeedsReconnection,
            format!(
                "the key of model {:?} can no longer be decrypted; update its credential's apiKey",
                m.label
            ),
        );
        e.param = Some("modelId".into());
        return Err(e);
    }
    let api = provider_api(&m.provider_id).map_err(|mut e| {
        e.param = Some("modelId".into());
        e
    })?;
    Ok(RunModel {
        label: m.label,
        model: DefinitionModel {
            api,
            model: m.model_id,
            base_url: m.base_url,
            credential_id: Some(m.credential_id),
        },
        source: "org",
        agent_generation: None,
    })
}

/// `id` as a model of the organization (or the system model), when usable.
async fn lookup(state: &Connect, org_id: &OrgId, id: &str) -> ProblemResult<Option<RunModel>> {
    if let Some(sys) = state.config.system_model().filter(|s| s.model == id) {
        return Ok(Some(system_run_model(sys)));
    }
    let mut conn = state.db.conn().await?;
    match store::get_model(&mut conn, org_id, id).await? {
        Some(m) if m.enabled => org_run_model(state, m).map(Some),
        _ => Ok(None),
    }
}

/// The run's model (SPEC §12): request `modelId` > the agent's setting in the
/// application (`setting`: the agent as installed there, which the caller has read)
/// > the org default > the system model. Errors are the trigger's.
pub async fn resolve_for_run(
    state: &Connect,
    org_id: &OrgId,
    setting: Option<&corral_store::app_packages::Installed>,
    requested: Option<&str>,
) -> ProblemResult<RunModel> {
    let agent_generation = setting
        .and_then(|s| s.generation_config.as_deref())
        .and_then(|g| serde_json::from_str::<Value>(g).ok())
        .filter(|g| !g.is_null());
    let chosen = if let Some(id) = requested {
        lookup(state, org_id, id).await?.ok_or_else(|| {
            let mut e = Problem::not_found("model");
            e.detail = format!("model {id:?} not found, or disabled");
            e.param = Some("modelId".into());
            e
        })?
    } else if let Some(id) = setting.and_then(|s| s.model_id.as_deref()) {
        lookup(state, org_id, id).await?.ok_or_else(|| {
            let mut e = Problem::new(
                ErrorCode::ModelNotConfigured,
                format!(
                    "the agent's model setting names model {id:?}, which is disabled or no longer exists; choose another with PUT /api/agents/{{scope}}/{{name}}/model"
                ),
            );
            e.param = Some("modelId".into());
            e
        })?
    } else {
        let mut conn = state.db.conn().await?;
        match store::default_model(&mut conn, org_id).await? {
            Some(m) => org_run_model(state, m)?,
            None => system_run_model(state.config.system_model().ok_or_else(not_configured)?),
        }
    };
    Ok(RunModel {
        agent_generation,
        ..chosen
    })
}

/// What a starting run (or the LLM proxy) presents to the model's provider.
#[derive(Debug, Clone)]
pub struct RunKey {
    /// The API key, or a fresh OAuth access token.
    pub key: String,
    /// Set for an OAuth credential.
    pub oauth: Option<RunOAuth>,
}

impl RunKey {
    pub fn kind(&self) -> KeyKind {
        if self.oauth.is_some() {
            KeyKind::OAuth
        } else {
            KeyKind::ApiKey
        }
    }
}

/// The OAuth side of a [`RunKey`]: the sidecar fetches a new token from the
/// platform when this one is about to expire.
#[derive(Debug, Clone)]
pub struct RunOAuth {
    pub credential_id: String,
    pub expires_at: Option<i64>,
    pub account_id: Option<String>,
}

/// The key a starting run gives its sidecar: its credential's, opened now (an OAuth
/// access token refreshed first when it expires within 5 minutes), or the
/// configured key for the system model. An error says why the run cannot start.
pub async fn run_key(
    state: &Connect,
    org_id: &OrgId,
    model: &DefinitionModel,
) -> Result<RunKey, String> {
    let Some(cid) = &model.credential_id else {
        return Ok(RunKey {
            key: state
                .config
                .model_api_key
                .as_ref()
                .map(|k| k.expose().to_owned())
                .unwrap_or_default(),
            oauth: None,
        });
    };
    // Database details go to the log; the run records a plain reason.
    let unreadable = |e: corral_store::StoreError| {
        tracing::error!(credential_id = %cid, error = %e, "reading a model credential failed");
        "the model's provider credential could not be read".to_owned()
    };
    let mut conn = state.db.conn().await.map_err(unreadable)?;
    let cred = store::get_credential(&mut conn, org_id, cid)
        .await
        .map_err(unreadable)?
        .ok_or_else(|| format!("the model's provider credential {cid} no longer exists"))?;
    drop(conn);
    if cred.is_oauth() {
        let fresh = crate::model_oauth::fresh_token(state, org_id, cid, false)
            .await
            .map_err(|e| format!("the OAuth access token of the model's provider credential {cid} is unavailable: {e}"))?;
        return Ok(RunKey {
            key: fresh.access_token,
            oauth: Some(RunOAuth {
                credential_id: cid.clone(),
                expires_at: fresh.expires_at,
                account_id: fresh.account_id,
            }),
        });
    }
    let key = open_key(state, cid, &cred.api_key).map_err(|e| {
        format!("the key of the model's provider credential {cid} cannot be decrypted: {e}")
    })?;
    Ok(RunKey { key, oauth: None })
}
