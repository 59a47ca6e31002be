//! The NUL character (`%00`) in a request's path or query is refused before routing,
//! with a 400 naming the parameter: PostgreSQL cannot store it, and both backends must
//! answer alike (JSON bodies are checked in [`crate::json::decode`]).

use axum::extract::Request;
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

pub async fn layer(req: Request, next: Next) -> Response {
    match refusal(req.uri()) {
        Some(e) => e.into_response(),
        None => next.run(req).await,
    }
}

fn refusal(uri: &Uri) -> Option<ApiError> {
    if uri.path().contains("%00") {
        return Some(ApiError::invalid_param(
            "path",
            "the path must not contain the NUL character (%00)",
        ));
    }
    let query = uri.query().filter(|q| q.contains("%00"))?;
    let name = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        .map(|(k, _)| k.replace('\0', "\u{FFFD}"))?;
    Some(ApiError::invalid_param(
        &name,
        format!("the query parameter {name} must not contain the NUL character (%00)"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(uri: &str) -> Option<String> {
        let uri: Uri = uri.parse().unwrap();
        refusal(&uri).map(|e| e.0.param.clone().unwrap_or_default())
    }

    #[test]
    fn names_the_parameter_holding_nul() {
        assert_eq!(
            param("/api/end-users?search=a%00b").as_deref(),
            Some("search")
        );
        assert_eq!(param("/api/runs/run_a%00").as_deref(), Some("path"));
        assert_eq!(param("/api/end-users?x%00=1").as_deref(), Some("x\u{FFFD}"));
        assert_eq!(
            param("/api/end-users?search=%2500"),
            None,
            "an escaped percent"
        );
        assert_eq!(param("/api/end-users?search=ab"), None);
    }
}
