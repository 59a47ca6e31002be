//! The LLM proxy (`/api/llm-proxy/<api>/…`): an external runner calls a model of the
//! organization without holding its key. The body is the provider's own wire format
//! with `model` naming one of the organization's models (or the system model); the
//! server resolves it, puts the provider's model id in its place, adds the key and
//! forwards the request, then streams the provider's answer back unchanged (status,
//! content type and body; SSE included).
//!
//! Bearer API keys only, with the `llm-proxy:call` scope (which a key gets only when
//! asked for by name): a browser session is refused.

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use corral_core::{ErrorCode, Permission};
use corral_protocol::ModelApi;
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Principal;
use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn app_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openai_completions))
        .routes(routes!(anthropic_messages))
        .routes(routes!(mistral_conversations))
}

const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

fn bad_model(detail: impl Into<String>) -> ApiError {
    ApiError::field("model", "invalid_model", detail)
}

/// Resolves, rewrites and forwards one proxied request. `api` is the endpoint's wire
/// format (`None` for a format no Corral provider speaks).
async fn forward(
    state: &AppState,
    ctx: &Ctx,
    api: Option<ModelApi>,
    endpoint: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    // The body first: a malformed one (or one holding NUL) is a 400 for everyone.
    let mut payload: Value = crate::json::decode(&body)?;
    if !matches!(ctx.principal, Principal::ApiKey(_)) {
        return Err(ApiError::forbidden(
            "the LLM proxy takes a bearer API key only (not a browser session)",
        ));
    }
    ctx.require(Permission::LlmProxyCall)?;
    if !payload.is_object() {
        return Err(ApiError::field(
            "body",
            "invalid_type",
            "the request body must be a JSON object",
        ));
    }
    let requested = payload["model"]
        .as_str()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::field("model", "required", "name one of the organization's models")
        })?
        .to_owned();
    if !payload["messages"].is_array() {
        return Err(ApiError::field(
            "messages",
            "required",
            "messages must be an array",
        ));
    }
    let resolved = corral_connect::models::resolve_for_run(
        &state.connect,
        ctx.org_id()?,
        None,
        Some(&requested),
    )
    .await
    .map_err(|p| {
        if p.code == ErrorCode::NotFound {
            bad_model(format!(
                "model {requested:?} is not an enabled model of this organization"
            ))
        } else {
            ApiError(p)
        }
    })?;
    let model = resolved.model;
    if api != Some(model.api) {
        return Err(bad_model(format!(
            "model {requested:?} speaks {}; call /api/llm-proxy/{}/… instead of {endpoint}",
            match model.api {
                ModelApi::Openai => "the OpenAI chat completions API",
                ModelApi::Anthropic => "the Anthropic Messages API",
            },
            match model.api {
                ModelApi::Openai => "openai-completions",
                ModelApi::Anthropic => "anthropic-messages",
            }
        )));
    }
    let run_key = corral_connect::models::run_key(&state.connect, ctx.org_id()?, &model)
        .await
        .map_err(|reason| ApiError::new(ErrorCode::ModelNeedsReconnection, reason))?;
    let oauth = run_key.oauth.is_some();
    let key = run_key.key;
    payload["model"] = Value::String(model.model.clone());
    let url = format!(
        "{}{}",
        model.base_url.trim_end_matches('/'),
        model.api.request_path()
    );
    let mut req = client()
        .post(&url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&payload).map_err(ApiError::internal)?);
    req = match model.api {
        ModelApi::Openai => req.bearer_auth(&key),
        ModelApi::Anthropic => {
            let version = headers
                .get("anthropic-version")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(DEFAULT_ANTHROPIC_VERSION)
                .to_owned();
            let r = req.header("anthropic-version", version);
            // An OAuth access token is a bearer, with Anthropic's OAuth beta flag.
            let mut betas: Vec<&str> = headers
                .get_all("anthropic-beta")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            if oauth {
                betas.push(corral_connect::models::ANTHROPIC_OAUTH_BETA);
            }
            let r = if oauth {
                r.bearer_auth(&key)
            } else {
                r.header("x-api-key", &key)
            };
            if betas.is_empty() {
                r
            } else {
                r.header("anthropic-beta", betas.join(","))
            }
        }
    };
    let upstream = req.send().await.map_err(|e| {
        let e = e.without_url();
        let mut err = ApiError::new(
            ErrorCode::UpstreamError,
            format!("the model provider could not be reached: {e}"),
        );
        err.source = Some(e.into());
        err
    })?;
    let status =
        StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/json"));
    let mut resp = Response::new(Body::from_stream(upstream.bytes_stream()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// OpenAI chat completions with the organization's key: `model` names an org model.
#[utoipa::path(post, path = "/api/llm-proxy/openai-completions/v1/chat/completions", tag = "Models", operation_id = "llmProxyOpenaiChatCompletions",
    request_body(content = Object, description = "An OpenAI chat completions body whose `model` is a model id of the organization", content_type = "application/json"),
    responses((status = 200, description = "The provider's answer, forwarded (JSON, or SSE when `stream` is true)", body = Object),
              (status = 502, description = "The provider could not be reached", body = crate::error::ProblemDetail)))]
pub async fn openai_completions(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    forward(
        &state,
        &ctx,
        Some(ModelApi::Openai),
        "openai-completions",
        &headers,
        body,
    )
    .await
}

/// Anthropic Messages with the organization's key: `model` names an org model.
#[utoipa::path(post, path = "/api/llm-proxy/anthropic-messages/v1/messages", tag = "Models", operation_id = "llmProxyAnthropicMessages",
    params(("anthropic-version" = Option<String>, Header, description = "Forwarded (default 2023-06-01)"),
           ("anthropic-beta" = Option<String>, Header, description = "Forwarded")),
    request_body(content = Object, description = "An Anthropic Messages body whose `model` is a model id of the organization", content_type = "application/json"),
    responses((status = 200, description = "The provider's answer, forwarded (JSON, or SSE when `stream` is true)", body = Object),
              (status = 502, description = "The provider could not be reached", body = crate::error::ProblemDetail)))]
pub async fn anthropic_messages(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    forward(
        &state,
        &ctx,
        Some(ModelApi::Anthropic),
        "anthropic-messages",
        &headers,
        body,
    )
    .await
}

/// Mistral conversations: no Corral provider speaks this format, so every model is
/// refused with a 400 naming the route its model speaks.
#[utoipa::path(post, path = "/api/llm-proxy/mistral-conversations/v1/chat/completions", tag = "Models", operation_id = "llmProxyMistralChatCompletions",
    request_body(content = Object, description = "A Mistral chat completions body", content_type = "application/json"),
    responses((status = 200, description = "The provider's answer, forwarded", body = Object)))]
pub async fn mistral_conversations(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    forward(&state, &ctx, None, "mistral-conversations", &headers, body).await
}
