//! The boot gate (503 until migrations and system packages are loaded) and the
//! shutdown gate (after SIGTERM, unsafe requests get 503 while work drains; safe
//! requests are still served so viewers can watch runs finish).

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

pub async fn shutdown(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let unsafe_method = !req.method().is_safe();
    if unsafe_method && state.gates.is_draining() {
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
