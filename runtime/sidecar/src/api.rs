//! The sidecar's HTTP router: the platform's one-time `POST /configure`, `/health`,
//! the agent's `/task` long poll and event endpoints, and the mounting of `/llm`
//! and `/mcp`.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use corral_protocol::events::run_source;
use corral_protocol::sidecar_api::{self, DEFAULT_TASK_WAIT_SECS, MAX_TASK_WAIT_SECS};
use corral_protocol::{AgentTask, CloudEvent, SidecarConfig, SigningSecret};
use serde_json::json;
use subtle::ConstantTimeEq as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::egress::EgressGuard;
use crate::events::Forwarder;
use crate::state::{AppState, Run};

pub type Shared = Arc<AppState>;

/// `mcp_hosts` and `shutdown` go to the MCP service: the `Host` values it accepts,
/// and the token that ends its open SSE streams so a graceful shutdown completes.
pub fn router(state: Shared, mcp_hosts: Vec<String>, shutdown: CancellationToken) -> Router {
    Router::new()
        .route(sidecar_api::CONFIGURE_PATH, post(configure))
        .route(sidecar_api::HEALTH_PATH, get(health))
        .route(sidecar_api::TASK_PATH, get(task))
        .route(sidecar_api::EVENTS_PATH, post(event))
        .route(sidecar_api::HEARTBEAT_PATH, post(heartbeat))
        .route(sidecar_api::FINALIZE_PATH, post(finalize))
        .route("/llm/{*rest}", any(crate::llm::proxy))
        .route_service(
            sidecar_api::MCP_PATH,
            crate::mcp::service(state.clone(), mcp_hosts, shutdown),
        )
        .with_state(state)
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

async fn configure(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let presented = bearer(&headers).unwrap_or_default();
    let expected = state.configure_token.expose();
    if !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        return problem(StatusCode::UNAUTHORIZED, "wrong configure token");
    }
    if state.run.borrow().is_some() {
        return problem(StatusCode::CONFLICT, "already configured");
    }
    let config: SidecarConfig = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("invalid configuration: {e}"),
            )
        }
    };
    let run = match build_run(&state, config) {
        Ok(run) => Arc::new(run),
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("invalid configuration: {e:#}"),
            )
        }
    };
    // Check-and-set in one step so two racing configure calls cannot both win.
    let won = state.run.send_if_modified(|slot| {
        if slot.is_some() {
            return false;
        }
        *slot = Some(run.clone());
        true
    });
    if !won {
        return problem(StatusCode::CONFLICT, "already configured");
    }
    tracing::info!(run_id = %run.config.run_id, integrations = run.config.integrations.len(),
        mcp_servers = run.config.mcp_servers.len(), "configured");
    crate::mcp::bundled::start_all(run);
    StatusCode::NO_CONTENT.into_response()
}

fn build_run(state: &AppState, config: SidecarConfig) -> anyhow::Result<Run> {
    let signing = SigningSecret::parse(config.sink.secret.expose())
        .map_err(|e| anyhow::anyhow!("sink.secret: {e}"))?;
    let guard = Arc::new(EgressGuard::new(&config.egress)?);
    for i in &config.integrations {
        anyhow::ensure!(
            valid_name(&i.namespace),
            "integration namespace `{}` must be letters, digits, `-` or `_`",
            i.namespace
        );
    }
    for s in &config.mcp_servers {
        anyhow::ensure!(
            valid_name(&s.name),
            "MCP server name `{}` must be letters, digits, `-` or `_`",
            s.name
        );
    }
    let api_http = match &config.egress.upstream_proxy {
        Some(url) => reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(10))
            .proxy(
                reqwest::Proxy::all(url.expose())
                    .map_err(|_| anyhow::anyhow!("egress.upstream_proxy is not a proxy URL"))?,
            )
            .build()?,
        None => state.http.clone(),
    };
    Ok(Run {
        task: AgentTask::from(&config),
        api_http,
        events: Forwarder::start(state.http.clone(), signing.clone(), state.event_attempts),
        signing,
        tokens_used: AtomicU64::new(0),
        guard,
        bundled: watch::channel(None).0,
        model_key: crate::model_key::LiveKey::new(&config.task.model),
        live: config
            .integrations
            .iter()
            .map(|i| (i.namespace.clone(), crate::mcp::api_call::Live::new(i)))
            .collect(),
        config,
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains("__")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

async fn health(State(state): State<Shared>) -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "configured": state.run.borrow().is_some()}))
}

#[derive(serde::Deserialize)]
struct WaitQuery {
    wait: Option<u64>,
}

async fn task(State(state): State<Shared>, Query(q): Query<WaitQuery>) -> Response {
    let wait = q
        .wait
        .unwrap_or(DEFAULT_TASK_WAIT_SECS)
        .min(MAX_TASK_WAIT_SECS);
    let mut rx = state.run.subscribe();
    let ready = tokio::time::timeout(Duration::from_secs(wait), rx.wait_for(Option::is_some)).await;
    match ready {
        Ok(Ok(run)) => match run.as_ref() {
            Some(run) => Json(run.task.clone()).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        },
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

fn not_configured() -> Response {
    problem(StatusCode::CONFLICT, "the sidecar is not configured yet")
}

async fn event(State(state): State<Shared>, body: Bytes) -> Response {
    let Some(run) = state.current() else {
        return not_configured();
    };
    let event: CloudEvent = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => return problem(StatusCode::BAD_REQUEST, format!("not a CloudEvent: {e}")),
    };
    if event.source != run_source(&run.config.run_id) {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("foreign event source {}", event.source),
        );
    }
    let url = run.config.sink.events_url.clone();
    forward(&run, url, event.id, body).await
}

async fn heartbeat(State(state): State<Shared>, body: Bytes) -> Response {
    let Some(run) = state.current() else {
        return not_configured();
    };
    let id = format!("hb_{}", uuid::Uuid::now_v7().simple());
    forward(&run, run.config.sink.heartbeat_url(), id, body).await
}

async fn finalize(State(state): State<Shared>, body: Bytes) -> Response {
    let Some(run) = state.current() else {
        return not_configured();
    };
    // One result per run: a retried finalize keeps its id so the platform can
    // recognise the duplicate.
    let id = format!("fin_{}", run.config.run_id);
    forward(&run, run.config.sink.finalize_url(), id, body).await
}

async fn forward(run: &Run, url: String, id: String, body: Bytes) -> Response {
    match run.events.send(url, id, body).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "event not accepted by the platform");
            problem(StatusCode::BAD_GATEWAY, e.to_string())
        }
    }
}
