//! The contract (`GET /api/openapi.json`, generated from the code) and a human docs
//! page (`GET /api/docs`) that renders it with no asset from outside Corral.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(docs_page))
}

/// The contract's strong entity tag: its SHA-256, stable for the deployment.
fn etag(json: &[u8]) -> String {
    use sha2::Digest as _;
    format!("\"{}\"", hex::encode(sha2::Sha256::digest(json)))
}

/// The OpenAPI 3.1 contract of this server, generated from its code. Send the `ETag`
/// back as `If-None-Match` to get a `304` while it is current.
#[utoipa::path(get, path = "/api/openapi.json", tag = "Health", operation_id = "getOpenApiSpec",
    params(("If-None-Match" = Option<String>, Header, description = "Entity tag of a cached copy")),
    responses((status = 200, description = "OpenAPI spec", body = Object),
              (status = 304, description = "The cached copy is current")),
    security(()))]
pub async fn openapi_json(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let tag = etag(&state.openapi_json);
    let etag_header = HeaderValue::from_str(&tag).expect("hex etag");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag_header)]).into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag_header),
        ],
        state.openapi_json.clone(),
    )
        .into_response()
}

/// The API documentation page, rendering the contract with no outside asset.
#[utoipa::path(get, path = "/api/docs", tag = "Health", operation_id = "getSwaggerUI",
    responses((status = 200, description = "HTML page", content_type = "text/html", body = String)),
    security(()))]
pub async fn docs_page() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        DOCS_HTML,
    )
        .into_response()
}

pub async fn docs_js() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/javascript; charset=utf-8"),
        )],
        DOCS_JS,
    )
        .into_response()
}

const DOCS_HTML: &str = include_str!("docs/index.html");
const DOCS_JS: &str = include_str!("docs/docs.js");
