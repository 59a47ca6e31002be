//! `GET /health`: the server's and the database's state.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Version {
    pub app: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckStatus {
    #[schema(value_type = String, pattern = "^(healthy|unhealthy)$")]
    pub status: &'static str,
    pub latency_ms: f64,
    /// Which database backend is in use (`sqlite` or `postgres`).
    pub backend: &'static str,
}

/// The sandbox backend and its warm pool.
#[derive(Debug, Serialize, ToSchema)]
pub struct SandboxCheck {
    /// `none` on an api replica: it executes no runs.
    #[schema(value_type = String, pattern = "^(starting|ready|unavailable|none)$")]
    pub status: &'static str,
    /// `docker` | `process` once chosen.
    pub backend: Option<String>,
    /// Why no backend is available.
    pub error: Option<String>,
    pub pool: Option<PoolCheck>,
    /// Runs waiting for a slot on this server.
    pub queued_runs: usize,
    /// Runs this server supervises.
    pub running_runs: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PoolCheck {
    pub target: usize,
    pub ready: usize,
    pub warming: usize,
    pub hits: u64,
    pub misses: u64,
    pub recycled: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    pub database: CheckStatus,
    pub sandbox: SandboxCheck,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(value_type = String, pattern = "^(healthy|degraded|unhealthy)$")]
    pub status: &'static str,
    pub version: Version,
    pub uptime_ms: f64,
    /// What this instance does in the cluster: `all`, `api` or `worker`.
    #[schema(value_type = String, pattern = "^(all|api|worker)$")]
    pub role: &'static str,
    pub checks: Checks,
}

/// Health of the server and its database.
#[utoipa::path(get, path = "/health", tag = "Health", operation_id = "getHealth", security(()),
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "Unhealthy (database unreachable) or starting", body = Health),
    ))]
pub async fn health(State(state): State<AppState>) -> Response {
    let start = Instant::now();
    let db_ok = tokio::time::timeout(std::time::Duration::from_secs(2), state.db.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let (sbx_status, sbx, sbx_error) = state.runs.sandbox_status();
    let ex = state.runs.executor.stats();
    let sandbox = SandboxCheck {
        status: sbx_status,
        backend: sbx.as_ref().map(|s| s.backend.kind().as_str().to_owned()),
        error: sbx_error,
        pool: sbx.map(|s| {
            let p = s.backend.stats();
            PoolCheck {
                target: p.target,
                ready: p.ready,
                warming: p.warming,
                hits: p.hits,
                misses: p.misses,
                recycled: p.recycled,
            }
        }),
        queued_runs: ex.queued,
        running_runs: ex.running,
    };
    let overall = match (db_ok, sbx_status) {
        (false, _) => "unhealthy",
        (true, "unavailable") => "degraded",
        (true, _) => "healthy",
    };
    let body = Health {
        status: overall,
        version: Version {
            app: env!("CARGO_PKG_VERSION").to_owned(),
            commit: option_env!("CORRAL_GIT_COMMIT").map(str::to_owned),
        },
        uptime_ms: state.started.elapsed().as_secs_f64() * 1000.0,
        role: state.config.role.as_str(),
        checks: Checks {
            database: CheckStatus {
                status: if db_ok { "healthy" } else { "unhealthy" },
                latency_ms: start.elapsed().as_secs_f64() * 1000.0,
                backend: state.db.backend().name(),
            },
            sandbox,
        },
    };
    let status = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
