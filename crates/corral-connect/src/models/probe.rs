//! Calls to model providers: a key test (the provider's model list), a model test
//! (one completion of at most one token) and model discovery.

use std::time::{Duration, Instant};

use corral_protocol::ModelApi;
use serde_json::{json, Value};

use crate::Connect;

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

/// How a credential's secret is presented to its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    ApiKey,
    /// An OAuth access token: always a bearer (Anthropic also wants its OAuth beta).
    OAuth,
}

impl KeyKind {
    pub fn of(auth_mode: &str) -> KeyKind {
        if auth_mode == "oauth2" {
            KeyKind::OAuth
        } else {
            KeyKind::ApiKey
        }
    }
}

/// The `anthropic-beta` flag Anthropic requires with an OAuth access token.
pub const ANTHROPIC_OAUTH_BETA: &str = "oauth-2025-04-20";

fn authorize(
    req: reqwest::RequestBuilder,
    api: ModelApi,
    key: &str,
    kind: KeyKind,
) -> reqwest::RequestBuilder {
    match (api, kind) {
        (ModelApi::Openai, _) => req.bearer_auth(key),
        (ModelApi::Anthropic, KeyKind::ApiKey) => req
            .header("x-api-key", key)
            .header("anthropic-version", ANTHROPIC_VERSION),
        (ModelApi::Anthropic, KeyKind::OAuth) => req
            .bearer_auth(key)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .header("anthropic-beta", ANTHROPIC_OAUTH_BETA),
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
pub async fn probe_key(
    state: &Connect,
    api: ModelApi,
    base_url: &str,
    key: &str,
    kind: KeyKind,
) -> Probe {
    let req = authorize(
        state.probe_http.get(models_url(api, base_url)),
        api,
        key,
        kind,
    );
    send(req, key).await.0
}

/// Tests a model: one completion of at most one token.
pub async fn probe_model(
    state: &Connect,
    api: ModelApi,
    base_url: &str,
    key: (&str, KeyKind),
    model: &str,
) -> Probe {
    let (key, kind) = key;
    let base = base_url.trim_end_matches('/');
    let body = json!({
        "model": model,
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "ping"}],
    });
    let url = format!("{base}{}", api.request_path());
    let req = authorize(state.probe_http.post(url), api, key, kind).json(&body);
    send(req, key).await.0
}

/// The model ids the provider lists for the key, or why it could not.
pub async fn discover(
    state: &Connect,
    api: ModelApi,
    base_url: &str,
    key: &str,
) -> Result<Vec<String>, Probe> {
    let req = authorize(
        state.probe_http.get(models_url(api, base_url)),
        api,
        key,
        KeyKind::ApiKey,
    );
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
