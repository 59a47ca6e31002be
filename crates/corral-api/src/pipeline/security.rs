//! Security headers on every response, and the body-size limit checked on
//! `Content-Length` before anything reads the body (streamed bodies are capped by
//! axum's `DefaultBodyLimit`, which the JSON extractor maps to the same 413).

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use corral_core::ErrorCode;

use crate::error::ApiError;
use crate::state::AppState;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

pub async fn headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if state.config.secure_cookies() {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    resp
}

/// The body limit of a request: the configured one, or for the routes that take a
/// file's raw bytes (upload content, a run's published document) the file limit
/// (those handlers read the body themselves, up to it).
pub fn body_limit_for(state: &AppState, path: &str) -> usize {
    let file_route = path == "/api/uploads/_content"
        || (path.starts_with("/api/runs/") && path.ends_with("/documents"));
    if file_route {
        state
            .config
            .body_limit_bytes
            .max(corral_engine::documents::UPLOAD_MAX_BYTES as usize)
    } else {
        state.config.body_limit_bytes
    }
}

pub async fn body_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = body_limit_for(&state, req.uri().path());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}
