//! The query-string extractor: like axum's `Query`, but a value that does not parse
//! (`?limit=abc`, an offset past `i64`) is a problem+json 400 naming the parameter,
//! not axum's `text/plain` rejection.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse(parts.uri.query().unwrap_or("")).map(Query)
    }
}

/// Decodes a raw query string as `T`.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let param = e.path().to_string();
        let inner = e.into_inner().to_string();
        let param = if param.is_empty() || param == "." {
            inner
                .split('`')
                .nth(1)
                .map(str::to_owned)
                .unwrap_or_else(|| "query".to_owned())
        } else {
            param
        };
        ApiError::invalid_param(&param, format!("invalid query parameter {param}: {inner}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Q {
        #[allow(dead_code, reason = "read by serde only")]
        limit: Option<i64>,
        #[allow(dead_code, reason = "read by serde only")]
        offset: Option<i64>,
        #[allow(dead_code, reason = "read by serde only")]
        name: String,
    }

    fn param(q: &str) -> Option<String> {
        parse::<Q>(q)
            .err()
            .map(|e| e.0.param.clone().unwrap_or_default())
    }

    #[test]
    fn names_the_parameter_that_does_not_parse() {
        assert_eq!(param("name=a&limit=abc").as_deref(), Some("limit"));
        assert_eq!(
            param("name=a&offset=9223372036854775808").as_deref(),
            Some("offset")
        );
        assert_eq!(param("limit=1").as_deref(), Some("name"));
        assert_eq!(param("name=a&limit=5"), None);
    }
}
