//! A scripted mock LLM server for tests. It speaks the real wire formats — OpenAI
//! chat completions (`POST /v1/chat/completions`, also `/chat/completions`) and
//! Anthropic Messages (`POST /v1/messages`), streaming (SSE) and not — so that the
//! agent and the sidecar are tested against the bytes a provider sends.
//!
//! A [`Script`] is a queue of [`Turn`]s; each model request consumes the next one.
//! Every request is recorded (headers and JSON body) so a test can assert what the
//! model was shown and which credential it received. The mock also lists models
//! (`GET /v1/models`, `/models`) and can be told to accept one API key only, answering
//! any other with the provider's 401.
#![forbid(unsafe_code)]

mod script;
mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use parking_lot::Mutex;
use serde_json::Value;

pub use script::{Reply, Script, ScriptedToolCall, Turn, Usage};
use wire::Format;

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub path: String,
    /// Header names lower-cased; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The JSON body (`Value::Null` if it was not JSON).
    pub body: Value,
    /// When the request arrived (Unix milliseconds), for latency figures.
    pub received_unix_ms: f64,
}

fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Whether the request asked for a streamed response.
    pub fn is_streaming(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }

    /// All text of the request body, for "was the model shown X" assertions.
    pub fn body_text(&self) -> String {
        self.body.to_string()
    }
}

#[derive(Default)]
struct Inner {
    turns: VecDeque<Turn>,
    /// Per-conversation mode: the turn is `steps[k]` where `k` is the number of
    /// assistant messages the request already carries, so concurrent conversations
    /// each play the same script independently of how their requests interleave.
    steps: Option<Vec<Turn>>,
    requests: Vec<RecordedRequest>,
    served: Usage,
    next_id: u64,
    /// When set, requests carrying another key get a 401.
    api_key: Option<String>,
    /// What `GET /v1/models` lists.
    models: Vec<String>,
}

type Shared = Arc<Mutex<Inner>>;

/// A running mock LLM server; it stops when dropped.
pub struct MockLlm {
    addr: SocketAddr,
    inner: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl MockLlm {
    /// Binds `127.0.0.1:0` and serves `script`.
    pub async fn start(script: impl Into<Script>) -> std::io::Result<MockLlm> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), script).await
    }

    /// Binds `addr` (port 0: any free port) and serves `script` — e.g. on the
    /// Docker host gateway address, so that containers reach it.
    pub async fn start_on(addr: SocketAddr, script: impl Into<Script>) -> std::io::Result<MockLlm> {
        let inner: Shared = Arc::new(Mutex::new(Inner {
            turns: script.into().turns.into(),
            models: vec!["mock-model".to_owned()],
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .route("/v1/models", get(list_models))
            .route("/models", get(list_models))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            // The server only ends when the task is aborted on drop; an accept error
            // would end the test's mock, which the test then notices as a failed request.
            // Streamed frames leave at once (no Nagle wait for a delayed ACK).
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, app).await;
        });
        Ok(MockLlm {
            addr,
            inner,
            server,
        })
    }

    /// Binds `addr` and plays `steps` for every conversation independently: a request
    /// whose messages already hold `k` assistant turns gets `steps[k]` (requests past
    /// the end get an error). For concurrent runs of the same agent.
    pub async fn start_per_conversation(
        addr: SocketAddr,
        steps: Vec<Turn>,
    ) -> std::io::Result<MockLlm> {
        let mock = Self::start_on(addr, Vec::<Turn>::new()).await?;
        mock.inner.lock().steps = Some(steps);
        Ok(mock)
    }

    /// `http://<bound address>` (no path), e.g. `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Base URL in the OpenAI SDK convention (with `/v1`).
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    /// Base URL in the Anthropic SDK convention (without `/v1`).
    pub fn anthropic_base_url(&self) -> String {
        self.base_url()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.lock().requests.clone()
    }

    /// Appends turns to the script.
    pub fn push(&self, turn: Turn) {
        self.inner.lock().turns.push_back(turn);
    }

    /// Turns not consumed yet.
    pub fn remaining(&self) -> usize {
        self.inner.lock().turns.len()
    }

    /// Accept only `key` (as `Authorization: Bearer` or `x-api-key`); any other
    /// request gets the provider's 401 and consumes no turn.
    pub fn require_api_key(&self, key: impl Into<String>) {
        self.inner.lock().api_key = Some(key.into());
    }

    /// The model ids `GET /v1/models` lists (default: `mock-model`).
    pub fn set_models<S: Into<String>>(&self, ids: impl IntoIterator<Item = S>) {
        self.inner.lock().models = ids.into_iter().map(Into::into).collect();
    }

    /// Sum of the usage reported in every successful response.
    pub fn served_usage(&self) -> Usage {
        self.inner.lock().served
    }
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn openai(
    State(inner): State<Shared>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    respond(Format::OpenAi, &inner, uri.path(), &headers, &body)
}

async fn anthropic(
    State(inner): State<Shared>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    respond(Format::Anthropic, &inner, uri.path(), &headers, &body)
}

fn record_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut recorded = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        recorded
            .entry(name.as_str().to_owned())
            .and_modify(|v: &mut String| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    recorded
}

/// The provider's 401 when a required key is set and `headers` carry another.
fn reject_key(
    format: Format,
    inner: &Inner,
    headers: &BTreeMap<String, String>,
) -> Option<Response> {
    let want = inner.api_key.as_deref()?;
    let given = match format {
        Format::OpenAi => headers
            .get("authorization")
            .and_then(|v| v.strip_prefix("Bearer ")),
        // Anthropic takes an API key as `x-api-key`, an OAuth access token as a bearer.
        Format::Anthropic => headers.get("x-api-key").map(String::as_str).or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
        }),
    };
    if given == Some(want) {
        return None;
    }
    Some(plain(
        StatusCode::UNAUTHORIZED,
        "application/json",
        wire::error_body(format, "invalid x-api-key / Incorrect API key provided").to_string(),
    ))
}

/// `GET /v1/models` in the shape of the provider the request speaks to (Anthropic
/// requests carry `anthropic-version`).
async fn list_models(
    State(inner): State<Shared>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let recorded = record_headers(&headers);
    let format = if recorded.contains_key("anthropic-version") {
        Format::Anthropic
    } else {
        Format::OpenAi
    };
    let mut inner = inner.lock();
    inner.requests.push(RecordedRequest {
        path: uri.path().to_owned(),
        headers: recorded.clone(),
        body: Value::Null,
        received_unix_ms: unix_ms(),
    });
    if let Some(resp) = reject_key(format, &inner, &recorded) {
        return resp;
    }
    let body = match format {
        Format::OpenAi => serde_json::json!({
            "object": "list",
            "data": inner.models.iter().map(|id| serde_json::json!({
                "id": id, "object": "model", "created": 0, "owned_by": "mock"
            })).collect::<Vec<_>>(),
        }),
        Format::Anthropic => serde_json::json!({
            "data": inner.models.iter().map(|id| serde_json::json!({
                "id": id, "type": "model", "display_name": id, "created_at": "2025-01-01T00:00:00Z"
            })).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": inner.models.first(),
            "last_id": inner.models.last(),
        }),
    };
    plain(StatusCode::OK, "application/json", body.to_string())
}

fn respond(
    format: Format,
    inner: &Shared,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let recorded_headers = record_headers(headers);
    let stream = json.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = json
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let model = json
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model")
        .to_owned();

    // Anthropic and OpenAI both carry prior model turns as `role: assistant`.
    let assistant_turns = json
        .get("messages")
        .and_then(Value::as_array)
        .map(|m| m.iter().filter(|m| m["role"] == "assistant").count())
        .unwrap_or(0);
    let (turn, id) = {
        let mut inner = inner.lock();
        let rejected = reject_key(format, &inner, &recorded_headers);
        inner.requests.push(RecordedRequest {
            path: path.to_owned(),
            headers: recorded_headers,
            body: json,
            received_unix_ms: unix_ms(),
        });
        if let Some(resp) = rejected {
            return resp;
        }
        inner.next_id += 1;
        let turn = match &inner.steps {
            Some(steps) => steps.get(assistant_turns).cloned(),
            None => inner.turns.pop_front(),
        };
        (turn, inner.next_id)
    };

    let Some(turn) = turn else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/json",
            wire::error_body(format, "mock LLM script exhausted").to_string(),
        );
    };
    match turn {
        Turn::Error {
            status,
            body,
            retry_after,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let text = match body {
                Value::String(s) => s,
                other => other.to_string(),
            };
            let mut resp = plain(status, "application/json", text);
            if let Some(secs) = retry_after {
                if let Ok(v) = secs.to_string().parse() {
                    resp.headers_mut().insert("retry-after", v);
                }
            }
            resp
        }
        Turn::Reply(reply) => {
            let usage = reply.usage.unwrap_or_else(|| Usage {
                input_tokens: (body.len() as u64 / 4).max(1),
                output_tokens: (reply.output_len() as u64 / 4).max(1),
            });
            {
                let mut inner = inner.lock();
                inner.served.input_tokens += usage.input_tokens;
                inner.served.output_tokens += usage.output_tokens;
            }
            let reply = wire::Reply {
                id,
                model,
                turn: reply,
                usage,
            };
            if stream {
                let frames = wire::stream_frames(format, &reply, include_usage);
                let body = Body::from_stream(futures::stream::iter(
                    frames
                        .into_iter()
                        .map(|f| Ok::<_, std::convert::Infallible>(Bytes::from(f))),
                ));
                let mut resp = Response::new(body);
                resp.headers_mut().insert(
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("text/event-stream"),
                );
                resp
            } else {
                plain(
                    StatusCode::OK,
                    "application/json",
                    wire::complete_body(format, &reply).to_string(),
                )
            }
        }
    }
}

fn plain(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(content_type),
    );
    resp
}
