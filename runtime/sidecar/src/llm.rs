//! The `/llm/*` reverse proxy to the run's model provider: checks the agent's
//! placeholder key, substitutes the real one, enforces the run's token budget and
//! streams the provider's answer back byte for byte while reading the token usage
//! out of it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use corral_protocol::sidecar_api::{self, PLACEHOLDER_API_KEY};
use corral_protocol::{codes, ModelApi, Secret};
use futures::StreamExt as _;
use serde_json::{json, Value};

use crate::api::Shared;
use crate::state::Run;

/// Largest request body accepted from the agent.
const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;
/// Largest non-streamed response kept in memory to read its usage from.
const MAX_USAGE_SCAN_BYTES: usize = 8 * 1024 * 1024;

/// Headers never forwarded: hop-by-hop ones, those the client recomputes, the
/// credentials (replaced), and `accept-encoding` so the provider answers in
/// identity encoding and the usage stays readable.
const DROP_REQUEST: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "authorization",
    "x-api-key",
    "accept-encoding",
];
const DROP_RESPONSE: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "trailer",
    "upgrade",
    "content-length",
];

fn openai_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"type": kind, "code": kind, "message": message}})),
    )
        .into_response()
}

pub async fn proxy(
    State(state): State<Shared>,
    Path(rest): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(run) = state.current() else {
        return openai_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_configured",
            "the sidecar is not configured yet",
        );
    };
    let model = &run.config.task.model;
    if presented_key(model.api, &headers) != Some(PLACEHOLDER_API_KEY) {
        // The agent never holds a real key; anything else is a leak or a mistake
        // and must not reach the provider.
        return openai_error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "the sidecar only accepts the placeholder key",
        );
    }
    let budget = run.config.task.limits.max_tokens;
    let used = run.tokens_used.load(Ordering::Relaxed);
    if used >= budget {
        return openai_error(
            StatusCode::TOO_MANY_REQUESTS,
            codes::TOKEN_BUDGET_EXCEEDED,
            &format!("the run's token budget ({budget}) is spent ({used} used)"),
        );
    }
    let body = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return openai_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "request body too large",
            )
        }
    };

    let mut url = sidecar_api::upstream_url(&model.base_url, &rest);
    if let Some(q) = uri.query() {
        url.push('?');
        url.push_str(q);
    }
    let key = match crate::model_key::current(&state, &run).await {
        Ok(k) => k,
        Err(e) => return key_unavailable(&e),
    };
    let send = |key: Secret| {
        send_upstream(
            &state,
            &run,
            method.clone(),
            &url,
            &headers,
            body.clone(),
            key,
        )
    };
    let mut upstream = match send(key.clone()).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if upstream.status() == reqwest::StatusCode::UNAUTHORIZED {
        // An OAuth token the provider no longer takes (revoked, rotated early): ask
        // the platform for a new one and send once more.
        match crate::model_key::after_unauthorized(&state, &run, &key).await {
            Ok(Some(fresh)) => {
                upstream = match send(fresh).await {
                    Ok(r) => r,
                    Err(resp) => return resp,
                };
            }
            Ok(None) => {}
            Err(e) => return key_unavailable(&e),
        }
    }

    let mut resp = Response::builder().status(upstream.status().as_u16());
    for (name, value) in upstream.headers() {
        if !DROP_RESPONSE.contains(&name.as_str()) {
            resp = resp.header(name, value);
        }
    }
    let sse = upstream
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let mut meter = Meter::new(run.clone(), upstream.status().is_success(), sse);
    let stream = upstream.bytes_stream().map(move |chunk| {
        if let Ok(bytes) = &chunk {
            meter.feed(bytes);
        }
        chunk
    });
    resp.body(Body::from_stream(stream))
        .unwrap_or_else(|e| openai_error(StatusCode::BAD_GATEWAY, "bad_upstream", &e.to_string()))
}

/// The `anthropic-beta` flag Anthropic requires with an OAuth access token.
const ANTHROPIC_OAUTH_BETA: &str = "oauth-2025-04-20";

/// One request to the provider with `key` (a bearer for OpenAI and for OAuth
/// tokens, `x-api-key` for an Anthropic API key); `Err` is the answer to give the
/// agent when the provider could not be reached.
async fn send_upstream(
    state: &crate::state::AppState,
    run: &Run,
    method: Method,
    url: &str,
    headers: &HeaderMap,
    body: Bytes,
    key: Secret,
) -> Result<reqwest::Response, Response> {
    let model = &run.config.task.model;
    let oauth = model.oauth.is_some();
    let mut req = state.http.request(method, url).body(body);
    for (name, value) in headers {
        let n = name.as_str();
        if DROP_REQUEST.contains(&n) || (oauth && n == "anthropic-beta") {
            continue;
        }
        req = req.header(name, value);
    }
    req = match (model.api, oauth) {
        (ModelApi::Openai, _) => req.bearer_auth(key.expose()),
        (ModelApi::Anthropic, false) => req.header("x-api-key", key.expose()),
        (ModelApi::Anthropic, true) => {
            let beta = headers
                .get_all("anthropic-beta")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .chain([ANTHROPIC_OAUTH_BETA])
                .collect::<Vec<_>>()
                .join(",");
            req.bearer_auth(key.expose()).header("anthropic-beta", beta)
        }
    };
    req.send().await.map_err(|e| {
        // reqwest errors carry the URL, never headers, so this is safe to show.
        openai_error(
            StatusCode::BAD_GATEWAY,
            "upstream_unreachable",
            &format!("model provider unreachable: {e}"),
        )
    })
}

/// The platform could not give a usable token: the agent sees the provider's kind
/// of refusal (401 when the account must be paired again).
fn key_unavailable(e: &crate::model_key::KeyError) -> Response {
    if e.gone {
        openai_error(
            StatusCode::UNAUTHORIZED,
            "model_credential_revoked",
            &format!("the model account must be reconnected: {}", e.message),
        )
    } else {
        openai_error(
            StatusCode::BAD_GATEWAY,
            "model_credential_unavailable",
            &format!("no usable model token: {}", e.message),
        )
    }
}

fn presented_key(api: ModelApi, headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let x_api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    match api {
        ModelApi::Openai => bearer.or(x_api_key),
        ModelApi::Anthropic => x_api_key.or(bearer),
    }
}

/// Reads the usage out of a response as it streams by and adds it to the run's
/// total when the response ends (or the agent hangs up: tokens the provider
/// spent count either way).
struct Meter {
    run: Arc<Run>,
    enabled: bool,
    sse: bool,
    /// Unparsed tail of the stream: an incomplete SSE line, or the whole JSON body.
    buf: Vec<u8>,
    input: u64,
    output: u64,
}

impl Meter {
    fn new(run: Arc<Run>, enabled: bool, sse: bool) -> Self {
        Self {
            run,
            enabled,
            sse,
            buf: Vec::new(),
            input: 0,
            output: 0,
        }
    }

    fn feed(&mut self, bytes: &Bytes) {
        if !self.enabled {
            return;
        }
        if self.buf.len() + bytes.len() <= MAX_USAGE_SCAN_BYTES {
            self.buf.extend_from_slice(bytes);
        }
        // SSE: every complete `data:` line may carry usage. A JSON body is one
        // value and is read at the end.
        if !self.sse {
            return;
        }
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim();
            if let Some(data) = line.strip_prefix("data:") {
                if let Ok(v) = serde_json::from_str::<Value>(data.trim()) {
                    self.observe(&v);
                }
            }
        }
    }

    /// Takes the largest counts seen: OpenAI reports usage once (the body or the
    /// final chunk), Anthropic reports input in `message_start` and a running
    /// output total in `message_delta`.
    fn observe(&mut self, v: &Value) {
        for usage in [v.get("usage"), v.pointer("/message/usage")]
            .into_iter()
            .flatten()
        {
            let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
            let input = n("prompt_tokens")
                + n("input_tokens")
                + n("cache_creation_input_tokens")
                + n("cache_read_input_tokens");
            let output = n("completion_tokens") + n("output_tokens");
            self.input = self.input.max(input);
            self.output = self.output.max(output);
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if !self.enabled {
            return;
        }
        if !self.sse && !self.buf.is_empty() {
            if let Ok(v) = serde_json::from_slice::<Value>(&self.buf) {
                self.observe(&v);
            }
        }
        let total = self.input + self.output;
        if total > 0 {
            let before = self.run.tokens_used.fetch_add(total, Ordering::Relaxed);
            tracing::debug!(tokens = total, total = before + total, "model usage");
        }
    }
}
