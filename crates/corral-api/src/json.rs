//! The JSON body extractor. Bodies are closed: request types use
//! `#[serde(deny_unknown_fields)]`, and every serde failure becomes a 400 naming the
//! field; malformed JSON is a 400 of its own; a body over the limit is a 413. After
//! decoding, [`Validate`] reports every remaining field problem in one response.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use corral_core::ErrorCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ApiError, FieldError};

/// Request validation beyond types: lengths, formats, ranges. Return every problem.
pub trait Validate {
    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }
}

pub struct Json<T>(pub T);

/// Operations whose JSON body the reference contract makes optional: an empty body
/// is read as `{}` there. Every other JSON body is required (the contract says so
/// too: [`crate::openapi`] marks these optional from this list).
pub const OPTIONAL_BODIES: &[(&str, &str)] = &[
    ("POST", "/api/agents/{scope}/{name}/run"),
    (
        "PUT",
        "/api/applications/{applicationId}/packages/{scope}/{name}",
    ),
    ("PATCH", "/api/applications/{id}"),
    ("GET", "/api/credential-proxy/proxy"),
    ("POST", "/api/credential-proxy/proxy"),
    ("PUT", "/api/credential-proxy/proxy"),
    ("PATCH", "/api/credential-proxy/proxy"),
    ("DELETE", "/api/credential-proxy/proxy"),
    (
        "POST",
        "/api/integrations/{packageId}/auths/{authKey}/connect/oauth2",
    ),
    (
        "POST",
        "/api/integrations/{packageId}/auths/{authKey}/connect/session",
    ),
    ("PUT", "/api/orgs/{orgId}/settings"),
    ("POST", "/api/packages/{scope}/{name}/fork"),
    ("POST", "/api/packages/agents/{scope}/{name}/versions"),
    ("POST", "/api/packages/integrations/{scope}/{name}/versions"),
    ("POST", "/api/packages/mcp-servers/{scope}/{name}/versions"),
    ("POST", "/api/packages/skills/{scope}/{name}/versions"),
];

fn body_optional(req: &Request) -> bool {
    let Some(path) = req.extensions().get::<axum::extract::MatchedPath>() else {
        return false;
    };
    OPTIONAL_BODIES
        .iter()
        .any(|(m, p)| req.method().as_str() == *m && path.as_str() == *p)
}

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let optional = body_optional(&req);
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let mime = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    "the request body is larger than the limit",
                )
            } else {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    "the request body could not be read",
                )
            }
        })?;
        let empty = bytes.iter().all(u8::is_ascii_whitespace);
        if empty && !optional {
            return Err(ApiError::field(
                "body",
                "required",
                "a JSON body is required",
            ));
        }
        // A body without a Content-Type is refused too: it is what a cross-site form
        // or `fetch` without preflight sends.
        if is_json != Some(true) && !empty {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "the request body must be application/json",
            ));
        }
        let bytes: &[u8] = if empty { b"{}" } else { &bytes };
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::field(
                "body",
                "invalid_type",
                "the request body must be a JSON object",
            ));
        }
        let value = decode::<T>(bytes)?;
        let errors = value.validate();
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        Ok(Json(value))
    }
}

/// Decodes `bytes` as `T`, mapping serde's errors to the field they concern. A string
/// holding NUL (U+0000) is refused here, once for every JSON body, naming its field
/// (see [`corral_core::text`]).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    refuse_nul(bytes)?;
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut *de) {
        Ok(v) => match de.end() {
            Ok(()) => Ok(v),
            Err(e) => Err(ApiError::new(
                ErrorCode::MalformedJson,
                format!("the request body is not valid JSON: {e}"),
            )),
        },
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::new(
                    ErrorCode::MalformedJson,
                    format!("the request body is not valid JSON: {inner}"),
                ));
            }
            let msg = inner.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            let (field, code) = if let Some(name) = between(&msg, "unknown field `", "`") {
                (join_path(&path, name), "unknown_field")
            } else if let Some(name) = between(&msg, "missing field `", "`") {
                (join_path(&path, name), "required")
            } else {
                (
                    if path == "." { "body".to_owned() } else { path },
                    "invalid_type",
                )
            };
            Err(ApiError::validation(vec![FieldError::new(
                field, code, msg,
            )]))
        }
    }
}

fn refuse_nul(bytes: &[u8]) -> Result<(), ApiError> {
    if !corral_core::text::json_may_hold_nul(bytes) {
        return Ok(());
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Ok(()); // malformed: the decoder below says so
    };
    match corral_core::text::nul_path(&value) {
        Some(field) => Err(ApiError::field(
            &field,
            "invalid_characters",
            "must not contain the NUL character (U+0000)",
        )),
        None => Ok(()),
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &s[s.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

fn join_path(path: &str, name: &str) -> String {
    if path.is_empty() || path == "." {
        name.to_owned()
    } else if path == name || path.ends_with(&format!(".{name}")) {
        // serde_path_to_error already ends the path with the unknown field.
        path.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// Initial capacity of a response body: most answers fit without growing (a page of
/// runs is tens of kilobytes and grows a few times instead of from 128 bytes).
const RESPONSE_BUFFER: usize = 4096;

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        let mut buf = Vec::with_capacity(RESPONSE_BUFFER);
        match serde_json::to_writer(&mut buf, &self.0) {
            Ok(()) => (
                [(
                    CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/json"),
                )],
                buf,
            )
                .into_response(),
            Err(e) => ApiError::internal(e).into_response(),
        }
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`); use
/// with `#[serde(default, deserialize_with = "crate::json::nullable")]`.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// Small helpers for `Validate` impls.
pub mod check {
    use crate::error::FieldError;

    pub fn len(errors: &mut Vec<FieldError>, field: &str, value: &str, min: usize, max: usize) {
        let n = value.chars().count();
        if n < min {
            let msg = if min == 1 {
                "must not be empty".to_owned()
            } else {
                format!("must be at least {min} characters")
            };
            errors.push(FieldError::new(field, "too_short", msg));
        } else if n > max {
            errors.push(FieldError::new(
                field,
                "too_long",
                format!("must be at most {max} characters"),
            ));
        }
    }

    pub fn email(errors: &mut Vec<FieldError>, field: &str, value: &str) {
        if value.len() > 254
            || !email_address::EmailAddress::is_valid(value)
            || !value.contains('.')
        {
            errors.push(FieldError::new(
                field,
                "invalid_format",
                "must be a valid email address",
            ));
        }
    }

    pub fn one_of(errors: &mut Vec<FieldError>, field: &str, value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            errors.push(FieldError::new(
                field,
                "invalid_enum",
                format!("must be one of: {}", allowed.join(", ")),
            ));
        }
    }
}
