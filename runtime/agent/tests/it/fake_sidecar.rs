//! A small sidecar for the agent's integration tests: it serves `/task`, proxies
//! `/llm/*` to the mock LLM swapping the placeholder key for a real one (as the real
//! sidecar does), collects `/events`, heartbeats and the finalize message, and
//! offers one MCP tool over Streamable HTTP.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use corral_protocol::sidecar_api::{self, PLACEHOLDER_API_KEY};
use corral_protocol::{AgentTask, CloudEvent, Heartbeat, ModelApi, RunResult};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::watch;

pub const REAL_KEY: &str = "sk-real-provider-key";
pub const MCP_TOOL: &str = "demo__api_call";
const MCP_SESSION: &str = "session-123";

#[derive(Default, Clone)]
pub struct Recorded {
    pub task_polls: u32,
    pub events: Vec<CloudEvent>,
    pub heartbeats: Vec<Heartbeat>,
    pub finalize: Vec<RunResult>,
    /// Credentials the agent presented to `/llm` (must only be the placeholder).
    pub agent_llm_keys: Vec<String>,
    pub mcp_calls: Vec<Value>,
    /// Protocol violations seen by the fake; tests assert it stays empty.
    pub violations: Vec<String>,
}

struct Inner {
    task: watch::Sender<Option<AgentTask>>,
    recorded: Mutex<Recorded>,
    changed: watch::Sender<u64>,
    upstream: String,
    api: ModelApi,
    http: reqwest::Client,
}

impl Inner {
    fn record(&self, f: impl FnOnce(&mut Recorded)) {
        f(&mut self.recorded.lock());
        self.changed.send_modify(|n| *n += 1);
    }
}

pub struct FakeSidecar {
    pub url: String,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSidecar {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeSidecar {
    /// `upstream` is the provider base URL in the SDK convention of `api`.
    pub async fn start(api: ModelApi, upstream: String) -> FakeSidecar {
        let inner = Arc::new(Inner {
            task: watch::channel(None).0,
            recorded: Mutex::new(Recorded::default()),
            changed: watch::channel(0).0,
            upstream,
            api,
            http: reqwest::Client::new(),
        });
        let app = Router::new()
            .route(sidecar_api::TASK_PATH, get(task))
            .route(sidecar_api::EVENTS_PATH, post(event))
            .route(sidecar_api::HEARTBEAT_PATH, post(heartbeat))
            .route(sidecar_api::FINALIZE_PATH, post(finalize))
            .route("/llm/{*rest}", any(llm))
            .route(sidecar_api::MCP_PATH, post(mcp))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeSidecar { url, inner, server }
    }

    /// Configures the sidecar: releases waiting `GET /task` calls.
    pub fn set_task(&self, task: AgentTask) {
        self.inner.task.send_replace(Some(task));
    }

    pub fn recorded(&self) -> Recorded {
        self.inner.recorded.lock().clone()
    }

    /// Waits until `f` returns something, or panics after `timeout`.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&Recorded) -> Option<T>,
    ) -> T {
        let mut rx = self.inner.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(t) = f(&self.inner.recorded.lock()) {
                return t;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                panic!(
                    "condition not met within {timeout:?}; recorded events: {:#?}",
                    self.recorded().events
                );
            }
        }
    }

    pub async fn wait_finalize(&self) -> RunResult {
        self.wait_for(Duration::from_secs(40), |r| r.finalize.first().cloned())
            .await
    }
}

#[derive(serde::Deserialize)]
struct WaitQuery {
    wait: Option<u64>,
}

async fn task(State(inner): State<Arc<Inner>>, Query(q): Query<WaitQuery>) -> Response {
    inner.record(|r| r.task_polls += 1);
    let mut rx = inner.task.subscribe();
    let wait = Duration::from_secs(q.wait.unwrap_or(sidecar_api::DEFAULT_TASK_WAIT_SECS));
    let ready = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await;
    match ready {
        Ok(Ok(task)) => Json(task.clone()).into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn event(State(inner): State<Arc<Inner>>, Json(ev): Json<CloudEvent>) -> StatusCode {
    let expected = inner
        .task
        .borrow()
        .as_ref()
        .map(|t| format!("/afps/runs/{}", t.run_id));
    if Some(&ev.source) != expected.as_ref() {
        inner.record(|r| r.violations.push(format!("foreign source {}", ev.source)));
        return StatusCode::BAD_REQUEST;
    }
    inner.record(|r| r.events.push(ev));
    StatusCode::NO_CONTENT
}

async fn heartbeat(State(inner): State<Arc<Inner>>, Json(hb): Json<Heartbeat>) -> StatusCode {
    inner.record(|r| r.heartbeats.push(hb));
    StatusCode::NO_CONTENT
}

async fn finalize(State(inner): State<Arc<Inner>>, Json(result): Json<RunResult>) -> StatusCode {
    inner.record(|r| r.finalize.push(result));
    StatusCode::NO_CONTENT
}

async fn llm(
    State(inner): State<Arc<Inner>>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let presented = match inner.api {
        ModelApi::Openai => headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_start_matches("Bearer ").to_owned()),
        ModelApi::Anthropic => headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
    .unwrap_or_default();
    inner.record(|r| r.agent_llm_keys.push(presented.clone()));
    if presented != PLACEHOLDER_API_KEY {
        return (StatusCode::UNAUTHORIZED, "placeholder key expected").into_response();
    }
    let url = sidecar_api::upstream_url(&inner.upstream, &rest);
    let mut req = inner
        .http
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    req = match inner.api {
        ModelApi::Openai => req.bearer_auth(REAL_KEY),
        ModelApi::Anthropic => req.header("x-api-key", REAL_KEY).header(
            "anthropic-version",
            headers
                .get("anthropic-version")
                .cloned()
                .unwrap_or(axum::http::HeaderValue::from_static("missing")),
        ),
    };
    let upstream = match req.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    // Stream the provider's response through unchanged.
    let mut resp = Response::builder().status(upstream.status().as_u16());
    for name in ["content-type", "retry-after"] {
        if let Some(v) = upstream.headers().get(name) {
            resp = resp.header(name, v.as_bytes());
        }
    }
    resp.body(Body::from_stream(upstream.bytes_stream()))
        .unwrap()
}

async fn mcp(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Json(msg): Json<Value>,
) -> Response {
    let method = msg["method"].as_str().unwrap_or_default().to_owned();
    if method != "initialize"
        && headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) != Some(MCP_SESSION)
    {
        inner.record(|r| r.violations.push(format!("MCP {method} without session")));
        return StatusCode::BAD_REQUEST.into_response();
    }
    let Some(id) = msg.get("id").cloned() else {
        // A notification.
        return StatusCode::ACCEPTED.into_response();
    };
    let reply = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result});
    match method.as_str() {
        "initialize" => (
            [("mcp-session-id", MCP_SESSION)],
            Json(reply(json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "fake-sidecar", "version": "0"},
            }))),
        )
            .into_response(),
        "tools/list" => Json(reply(json!({"tools": [{
            "name": MCP_TOOL,
            "description": "Call the demo API with the integration's credential.",
            "inputSchema": {"type": "object", "properties": {"method": {"type": "string"}, "target": {"type": "string"}}, "required": ["method", "target"]},
        }]})))
        .into_response(),
        "tools/call" => {
            inner.record(|r| r.mcp_calls.push(msg["params"].clone()));
            let target = msg["params"]["arguments"]["target"].as_str().unwrap_or_default().to_owned();
            let result = reply(json!({"content": [{"type": "text", "text": format!("200 OK from {target}: {{\"stars\": 7}}")}], "isError": false}));
            // Answer as an SSE stream with a notification first, like rmcp does.
            let body = format!(
                "event: message\ndata: {}\n\nevent: message\ndata: {}\n\n",
                json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}),
                result
            );
            ([("content-type", "text/event-stream")], body).into_response()
        }
        other => Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!("no method {other}")}})).into_response(),
    }
}
