//! The endpoints sandboxes report to (SPEC §9 "Events"): `POST /api/runs/{runId}/events`,
//! `/events/heartbeat` and `/events/finalize`, served on the sandbox-facing listener.
//! Authenticated by the run's sink secret, not by the user pipeline; the work is
//! [`corral_engine::runs::ingest`]'s.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use corral_core::RunId;
use corral_engine::runs::ingest;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::ApiResult;
use crate::json::Json;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ingest_event))
        .routes(routes!(heartbeat))
        .routes(routes!(finalize))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestOutcome {
    pub ok: bool,
    /// `persisted` | `replay` | `buffered`.
    #[schema(value_type = String, pattern = "^(persisted|replay|buffered)$")]
    pub outcome: &'static str,
    pub sequence: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ok {
    pub ok: bool,
}

fn header<'h>(headers: &'h HeaderMap) -> impl FnMut(&str) -> Option<&'h str> + 'h {
    |name| headers.get(name).and_then(|v| v.to_str().ok())
}

/// Ingest one signed CloudEvent from the run's sidecar.
#[utoipa::path(post, path = "/api/runs/{runId}/events", tag = "Runs", operation_id = "ingestRunEvent",
    params(("runId" = String, Path, description = "Run id")),
    request_body(content = Object, content_type = "application/cloudevents+json", description = "One CloudEvents 1.0 run event"),
    responses((status = 200, description = "Accepted", body = IngestOutcome),
              (status = 410, description = "The run's sink is closed or expired", body = crate::error::ProblemDetail)),
    security(()))]
pub async fn ingest_event(
    State(state): State<AppState>,
    Path(run_id): Path<RunId>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<IngestOutcome>> {
    let run = ingest::authenticate(&state, &run_id, header(&headers), &body).await?;
    ingest::check_open(&run)?;
    let (outcome, sequence) = ingest::ingest(&state, &run, &body).await?;
    Ok(Json(IngestOutcome {
        ok: true,
        outcome,
        sequence,
    }))
}

/// Proof of life from the run's sidecar.
#[utoipa::path(post, path = "/api/runs/{runId}/events/heartbeat", tag = "Runs", operation_id = "heartbeatRemoteRun",
    params(("runId" = String, Path, description = "Run id")),
    request_body(content = Object, description = "The heartbeat (run id, time, step, usage)"),
    responses((status = 200, description = "Recorded", body = Ok),
              (status = 410, description = "The run's sink is closed or expired", body = crate::error::ProblemDetail)),
    security(()))]
pub async fn heartbeat(
    State(state): State<AppState>,
    Path(run_id): Path<RunId>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Ok>> {
    let run = ingest::authenticate(&state, &run_id, header(&headers), &body).await?;
    ingest::check_open(&run)?;
    ingest::heartbeat(&state, &run).await?;
    Ok(Json(Ok { ok: true }))
}

/// The run's result: closes the sink, flushes buffered events, validates the output
/// against the agent's output schema and writes the terminal state.
#[utoipa::path(post, path = "/api/runs/{runId}/events/finalize", tag = "Runs", operation_id = "finalizeRemoteRun",
    params(("runId" = String, Path, description = "Run id")),
    request_body(content = Object, description = "The run result: status, output, error, usage, duration_ms"),
    responses((status = 200, description = "Closed", body = Ok),
              (status = 410, description = "The run's sink expired", body = crate::error::ProblemDetail)),
    security(()))]
pub async fn finalize(
    State(state): State<AppState>,
    Path(run_id): Path<RunId>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Ok>> {
    let run = ingest::authenticate(&state, &run_id, header(&headers), &body).await?;
    ingest::finalize(&state, &run, &body).await?;
    Ok(Json(Ok { ok: true }))
}
