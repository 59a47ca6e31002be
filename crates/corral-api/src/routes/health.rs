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

#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    pub database: CheckStatus,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(value_type = String, pattern = "^(healthy|degraded|unhealthy)$")]
    pub status: &'static str,
    pub version: Version,
    pub uptime_ms: f64,
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
    let body = Health {
        status: if db_ok { "healthy" } else { "unhealthy" },
        version: Version {
            app: env!("CARGO_PKG_VERSION").to_owned(),
            commit: option_env!("CORRAL_GIT_COMMIT").map(str::to_owned),
        },
        uptime_ms: state.started.elapsed().as_secs_f64() * 1000.0,
        checks: Checks {
            database: CheckStatus {
                status: if db_ok { "healthy" } else { "unhealthy" },
                latency_ms: start.elapsed().as_secs_f64() * 1000.0,
                backend: state.db.backend().name(),
            },
        },
    };
    let status = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
