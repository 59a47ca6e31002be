//! The API's one error type. Every failure a handler or middleware returns becomes an
//! RFC 9457 `application/problem+json` body with exactly the reference fields. 5xx
//! details never reach the client: they are logged with the request id.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use corral_core::ErrorCode;
use corral_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

tokio::task_local! {
    /// The id of the request being served, set by the request-id middleware so that
    /// errors rendered anywhere below it carry it.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| corral_core::ids::prefixed(corral_core::ids::REQUEST))
}

pub use corral_core::problem::{FieldError, ProblemParts as ErrorParts};
use corral_core::Problem;

/// RFC 9457 problem details, as sent.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProblemDetail {
    /// `https://docs.corral.dev/errors/<code-with-dashes>`
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// `urn:corral:request:<requestId>`
    pub instance: String,
    /// Machine-readable code (snake_case).
    pub code: String,
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// An API error: a [`Problem`] (what services return) that renders itself as
/// problem+json. One pointer wide; fields are reached through `Deref`/`DerefMut`.
#[derive(Debug)]
pub struct ApiError(pub Problem);

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError(Problem::new(code, detail))
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError(Problem::not_found(what))
    }

    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError(Problem::forbidden(detail))
    }

    pub fn unauthorized(detail: impl Into<String>, credential_presented: bool) -> ApiError {
        ApiError(Problem::unauthorized(detail, credential_presented))
    }

    pub fn invalid_param(param: &str, detail: impl Into<String>) -> ApiError {
        ApiError(Problem::invalid_param(param, detail))
    }

    /// A 400 `validation_failed` (the reference's code) listing every offending field.
    pub fn validation(errors: Vec<FieldError>) -> ApiError {
        ApiError(Problem::validation(errors))
    }

    pub fn field(field: &str, code: &str, message: impl Into<String>) -> ApiError {
        ApiError(Problem::field(field, code, message))
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> ApiError {
        ApiError(Problem::internal(source))
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::ops::Deref for ApiError {
    type Target = ErrorParts;
    fn deref(&self) -> &ErrorParts {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ErrorParts {
        &mut self.0
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> ApiError {
        ApiError(p)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError(e.into())
    }
}

impl From<corral_afps::AfpsError> for ApiError {
    fn from(e: corral_afps::AfpsError) -> ApiError {
        ApiError(e.into())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = current_request_id();
        let status = self.status();
        let this = self.0.into_parts();
        let expected_unavailable = matches!(
            this.code,
            corral_core::ErrorCode::Starting | corral_core::ErrorCode::ShuttingDown
        );
        if expected_unavailable {
            // Booting or draining is the server working as designed, not an error.
            tracing::debug!(request_id = %request_id, code = this.code.code(), "request refused: {}", this.detail);
        } else if status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(request_id = %request_id, code = this.code.code(), detail = %this.detail, error = ?this.source, "service unavailable");
        } else if status.is_server_error() {
            match &this.source {
                Some(src) => {
                    tracing::error!(request_id = %request_id, code = this.code.code(), error = ?src, "request failed")
                }
                None => {
                    tracing::error!(request_id = %request_id, code = this.code.code(), detail = %this.detail, "request failed")
                }
            }
        } else if let Some(src) = &this.source {
            tracing::debug!(request_id = %request_id, code = this.code.code(), error = %src, "request refused");
        }
        let body = ProblemDetail {
            type_: this.code.type_uri(),
            title: this.code.title().to_owned(),
            status: status.as_u16(),
            detail: this.detail,
            instance: format!("urn:corral:request:{request_id}"),
            code: this.code.code().to_owned(),
            request_id,
            param: this.param,
            retry_after: this.retry_after,
            errors: this.errors,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = (status, bytes).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = this.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        for (name, value) in this.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.append(name, value);
            }
        }
        resp
    }
}
