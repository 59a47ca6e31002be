//! The boot gate (503 until migrations and system packages are loaded) and the
//! shutdown gate (after SIGTERM, unsafe requests get 503 while work drains; safe
//! requests are still served so viewers can watch runs finish, and sandboxes still
//! report, so running runs can finish within the grace period).

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use corral_core::ErrorCode;

use crate::error::ApiError;
use crate::state::AppState;

pub async fn boot(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !state.gates.is_ready() {
        let mut e = ApiError::new(ErrorCode::Starting, "the server is starting, retry shortly");
        e.retry_after = Some(1);
        return e.into_response();
    }
    next.run(req).await
}

/// What sandboxes send (run events, heartbeats, results, the internal API): runs that
/// finish during the grace period need it, so the drain lets it through.
fn from_sandbox(path: &str) -> bool {
    path.starts_with("/internal/")
        || path
            .strip_prefix("/api/runs/")
            .is_some_and(|rest| rest.split('/').nth(1) == Some("events"))
}

pub async fn shutdown(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let unsafe_method = !req.method().is_safe();
    if unsafe_method && state.gates.is_draining() && !from_sandbox(req.uri().path()) {
        let mut e = ApiError::new(
            ErrorCode::ShuttingDown,
            "the server is shutting down, retry on another instance",
        );
        e.retry_after = Some(5);
        let mut resp = e.into_response();
        resp.headers_mut()
            .insert("connection", HeaderValue::from_static("close"));
        return resp;
    }
    if unsafe_method {
        // In-flight writes are work the shutdown waits for.
        let _guard = state.gates.track();
        return next.run(req).await;
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn sandbox_traffic_is_recognised() {
        assert!(super::from_sandbox("/api/runs/run_1/events"));
        assert!(super::from_sandbox("/api/runs/run_1/events/finalize"));
        assert!(super::from_sandbox("/internal/integration-credentials/x"));
        assert!(!super::from_sandbox("/api/runs/run_1/cancel"));
        assert!(!super::from_sandbox("/api/runs"));
    }
}
