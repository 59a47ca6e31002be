//! The API's one error type. Every failure a handler or middleware returns becomes an
//! RFC 9457 `application/problem+json` body with exactly the reference fields. 5xx
//! details never reach the client: they are logged with the request id.

use axum::http::{HeaderName, HeaderValue, StatusCode};
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

/// One field-level validation failure.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
    /// Set on `needs_reconnection` and `connection_not_found`: the connection
    /// concerned (re-authorize it in place by passing it as `connection_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            code: code.to_owned(),
            message: message.into(),
            connection_id: None,
        }
    }

    pub fn with_connection(mut self, id: impl Into<String>) -> FieldError {
        self.connection_id = Some(id.into());
        self
    }
}

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

/// An API error. Boxed so that `Result<T, ApiError>` stays one pointer wide on the
/// happy path; fields are reached through `Deref`/`DerefMut`.
#[derive(Debug)]
pub struct ApiError(Box<ErrorParts>);

#[derive(Debug)]
pub struct ErrorParts {
    pub code: ErrorCode,
    pub detail: String,
    pub param: Option<String>,
    pub retry_after: Option<u64>,
    pub errors: Vec<FieldError>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Internal cause, logged for 5xx, never sent.
    pub source: Option<anyhow::Error>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError(Box::new(ErrorParts {
            code,
            detail: detail.into(),
            param: None,
            retry_after: None,
            errors: Vec::new(),
            headers: Vec::new(),
            source: None,
        }))
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Forbidden, detail)
    }

    pub fn unauthorized(detail: impl Into<String>, credential_presented: bool) -> ApiError {
        let challenge = if credential_presented {
            "Bearer error=\"invalid_token\""
        } else {
            "Bearer"
        };
        ApiError::new(ErrorCode::Unauthorized, detail).with_header(
            axum::http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        )
    }

    pub fn invalid_param(param: &str, detail: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(ErrorCode::InvalidRequest, detail);
        e.param = Some(param.to_owned());
        e
    }

    /// A 400 `validation_error` listing every offending field.
    pub fn validation(errors: Vec<FieldError>) -> ApiError {
        let detail = match errors.as_slice() {
            [] => "the request is invalid".to_owned(),
            [one] => format!("{}: {}", one.field, one.message),
            [first, rest @ ..] => {
                format!("{}: {} (+{} more)", first.field, first.message, rest.len())
            }
        };
        let mut e = ApiError::new(ErrorCode::ValidationError, detail);
        e.param = errors.first().map(|f| f.field.clone());
        e.errors = errors;
        e
    }

    pub fn field(field: &str, code: &str, message: impl Into<String>) -> ApiError {
        ApiError::validation(vec![FieldError::new(field, code, message)])
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> ApiError {
        let mut e = ApiError::new(
            ErrorCode::InternalError,
            "An unexpected error occurred. Please try again or contact support.",
        );
        e.source = Some(source.into());
        e
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
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

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound => ApiError::new(ErrorCode::NotFound, "resource not found"),
            StoreError::Conflict { .. } => {
                let mut err = ApiError::new(
                    ErrorCode::Conflict,
                    "the request conflicts with the current state",
                );
                err.source = Some(e.into());
                err
            }
            ref other if other.is_unavailable() => {
                let mut err = ApiError::new(
                    ErrorCode::DatabaseUnavailable,
                    "the database is unavailable, retry shortly",
                );
                err.retry_after = Some(5);
                err.source = Some(e.into());
                err
            }
            other => ApiError::internal(other),
        }
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
        let this = *self.0;
        if status.is_server_error() {
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
            headers.append(name, value);
        }
        resp
    }
}
