//! Models (SPEC §12): the providers Corral can talk to, the sealing of their keys,
//! the small real requests that test a key or a model and discover a credential's
//! models, and the choice of a run's model at trigger time (request `modelId` >
//! the agent's setting > the org default > the system model from configuration).
//!
//! A key is opened only here, to call the provider (a test, a discovery) or when a
//! run starts; a run's definition names the credential, never the key.

use std::time::{Duration, Instant};

use corral_core::ErrorCode;
use corral_protocol::ModelApi;
use corral_store::models as store;
use serde_json::{json, Value};

use corral_core::{AppId, OrgId, Problem, ProblemResult};
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
    pub api: ModelApi,
    /// In the SDK convention of [`ModelApi::request_path`]; empty when the caller must
    /// give one.
    pub default_base_url: &'static str,
    pub featured: bool,
}

impl Provider {
    /// Whether a credential must name its base URL.
    pub fn needs_base_url(&self) -> bool {
        self.default_base_url.is_empty()
    }
}

pub const PROVIDERS: &[Provider] = &[
    Provider {
        id: "openai",
        display_name: "OpenAI",
        description: "OpenAI chat completions API.",
        docs_url: "https://platform.openai.com/docs/api-reference/chat",
        api_shape: "openai-completions",
        api: ModelApi::Openai,
        default_base_url: "https://api.openai.com/v1",
        featured: true,
    },
    Provider {
        id: "anthropic",
        display_name: "Anthropic",
        description: "Anthropic Messages API.",
        docs_url: "https://docs.anthropic.com/en/api/messages",
        api_shape: "anthropic-messages",
        api: ModelApi::Anthropic,
        default_base_url: "https://api.anthropic.com",
        featured: true,
    },
    Provider {
        id: "openai-compatible",
        display_name: "OpenAI-compatible",
        description: "Any server speaking the OpenAI chat completions API (Ollama, vLLM, LM Studio, a gateway). Give its base URL including the version, e.g. http://localhost:11434/v1.",
        docs_url: "https://github.com/ollama/ollama/blob/main/docs/openai.md",
        api_shape: "openai-completions",
        api: ModelApi::Openai,
        default_base_url: "",
        featured: false,
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
/// is a server error).
pub fn provider_api(id: &str) -> ProblemResult<ModelApi> {
    provider(id)
        .map(|p| p.api)
        .ok_or_else(|| Problem::internal(anyhow::anyhow!("unknown provider {id}")))
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

// ---- calls to the provider ------------------------------------------------------------

/// The outcome of a test call (the reference's `TestResult`).
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub ok: bool,
    pub latency_ms: f64,
    /// `auth_failed`, `model_not_found`, `rate_limited`, `upstream_error`,
    /// `network_error`, `timeout`.
    pub error: Option<String>,
    pub message: Option<String>,
    /// The provider's HTTP status when it answered.
    pub status: Option<u16>,
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The client that calls providers for tests and discovery (no redirects).
pub(crate) fn probe_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(PROBE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

fn authorize(req: reqwest::RequestBuilder, api: ModelApi, key: &str) -> reqwest::RequestBuilder {
    match api {
        ModelApi::Openai => req.bearer_auth(key),
        ModelApi::Anthropic => req
            .header("x-api-key", key)
            .header("anthropic-version", ANTHROPIC_VERSION),
    }
}

fn models_url(api: ModelApi, base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    match api {
        ModelApi::Openai => format!("{base}/models"),
        ModelApi::Anthropic => format!("{base}/v1/models"),
    }
}

/// The provider's error text, without the key (providers echo a masked key).
fn scrub(text: &str, key: &str) -> String {
    let msg = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .or_else(|| v.get("error"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| text.to_owned());
    let mut msg: String = msg.chars().take(300).collect();
    if key.len() >= 4 {
        msg = msg.replace(key, "***");
    }
    msg
}

fn failure_code(status: u16) -> &'static str {
    match status {
        401 | 403 => "auth_failed",
        404 => "model_not_found",
        429 => "rate_limited",
        _ => "upstream_error",
    }
}

/// Sends `req` and reports; `Ok(body)` when the provider answered 2xx.
async fn send(req: reqwest::RequestBuilder, key: &str) -> (Probe, Option<Value>) {
    let t0 = Instant::now();
    let result = req.send().await;
    let latency = |t0: Instant| (t0.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
    match result {
        Err(e) => {
            let (code, what) = if e.is_timeout() {
                ("timeout", "the provider did not answer in time")
            } else {
                ("network_error", "the provider could not be reached")
            };
            (
                Probe {
                    ok: false,
                    latency_ms: latency(t0),
                    error: Some(code.into()),
                    message: Some(what.into()),
                    status: None,
                },
                None,
            )
        }
        Ok(resp) => {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            let latency_ms = latency(t0);
            if (200..300).contains(&status) {
                let body = serde_json::from_str(&text).ok();
                (
                    Probe {
                        ok: true,
                        latency_ms,
                        error: None,
                        message: None,
                        status: Some(status),
                    },
                    body,
                )
            } else {
                (
                    Probe {
                        ok: false,
                        latency_ms,
                        error: Some(failure_code(status).into()),
                        message: Some(scrub(&text, key)),
                        status: Some(status),
                    },
                    None,
                )
            }
        }
    }
}

/// Tests a key: lists the provider's models (free, and proves the key).
pub async fn probe_key(state: &Connect, api: ModelApi, base_url: &str, key: &str) -> Probe {
    let req = authorize(state.probe_http.get(models_url(api, base_url)), api, key);
    send(req, key).await.0
}

/// Tests a model: one completion of at most one token.
pub async fn probe_model(
    state: &Connect,
    api: ModelApi,
    base_url: &str,
    key: &str,
    model: &str,
) -> Probe {
    let base = base_url.trim_end_matches('/');
    let body = json!({
        "model": model,
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "ping"}],
    });
    let url = format!("{base}{}", api.request_path());
    let req = authorize(state.probe_http.post(url), api, key).json(&body);
    send(req, key).await.0
}

/// The model ids the provider lists for the key, or why it could not.
pub async fn discover(
    state: &Connect,
    api: ModelApi,
    base_url: &str,
    key: &str,
) -> Result<Vec<String>, Probe> {
    let req = authorize(state.probe_http.get(models_url(api, base_url)), api, key);
    let (probe, body) = send(req, key).await;
    if !probe.ok {
        return Err(probe);
    }
    let mut ids: Vec<String> = body
        .as_ref()
        .and_then(|b| b.get("data"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned))
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

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
    let api = provider(&m.provider_id)
        .map(|p| p.api)
        .ok_or_else(|| Problem::internal(anyhow::anyhow!("unknown provider {}", m.provider_id)))?;
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
/// application > the org default > the system model. Errors are the trigger's.
pub async fn resolve_for_run(
    state: &Connect,
    org_id: &OrgId,
    app_id: &AppId,
    package_id: Option<&str>,
    requested: Option<&str>,
) -> ProblemResult<RunModel> {
    let setting = match package_id {
        Some(pkg) => {
            let mut conn = state.db.conn().await?;
            corral_store::app_packages::get(&mut conn, org_id, app_id, pkg).await?
        }
        None => None,
    };
    let agent_generation = setting
        .as_ref()
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
    } else if let Some(id) = setting.as_ref().and_then(|s| s.model_id.as_deref()) {
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

/// The key a starting run gives its sidecar: its credential's, opened now, or the
/// configured key for the system model. An error says why the run cannot start.
pub async fn run_api_key(
    state: &Connect,
    org_id: &OrgId,
    model: &DefinitionModel,
) -> Result<String, String> {
    let Some(cid) = &model.credential_id else {
        return Ok(state
            .config
            .model_api_key
            .as_ref()
            .map(|k| k.expose().to_owned())
            .unwrap_or_default());
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
    open_key(state, cid, &cred.api_key).map_err(|e| {
        format!("the key of the model's provider credential {cid} cannot be decrypted: {e}")
    })
}
