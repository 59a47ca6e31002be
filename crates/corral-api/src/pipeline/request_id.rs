//! Gives every request a `req_<uuid>` id, answers with it in `Request-Id`, and opens
//! the request's tracing span (continuing an incoming W3C `traceparent`).

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::error::REQUEST_ID;

#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// The parts of a W3C `traceparent` header: `00-<trace-id>-<parent-id>-<flags>`.
fn parse_traceparent(v: &str) -> Option<(&str, &str)> {
    let mut it = v.trim().split('-');
    let (version, trace, parent, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace != "00000000000000000000000000000000"
        && parent != "0000000000000000")
        .then_some((trace, parent))
}

pub async fn layer(mut req: Request, next: Next) -> Response {
    let id = corral_core::ids::prefixed(corral_core::ids::REQUEST);
    req.extensions_mut().insert(RequestId(id.clone()));
    // The span (and the trace id it carries, random when the client sent none) only
    // when it is recorded: a disabled span costs nothing per request.
    let span = if tracing::enabled!(tracing::Level::INFO) {
        let (trace_id, parent_id) = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent)
            .map(|(t, p)| (t.to_owned(), p.to_owned()))
            .unwrap_or_else(|| (uuid::Uuid::new_v4().simple().to_string(), String::new()));
        tracing::info_span!(
            "request",
            request_id = %id,
            method = %req.method(),
            path = %req.uri().path(),
            trace_id = %trace_id,
            parent_span_id = %parent_id,
            status = tracing::field::Empty,
        )
    } else {
        tracing::Span::none()
    };
    let start = std::time::Instant::now();
    let fut = REQUEST_ID.scope(id.clone(), next.run(req));
    let mut resp = fut.instrument(span.clone()).await;
    span.record("status", resp.status().as_u16());
    tracing::debug!(parent: &span, elapsed_ms = start.elapsed().as_secs_f64() * 1000.0, status = resp.status().as_u16(), "served");
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("request-id", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::parse_traceparent;

    #[test]
    fn traceparent() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(ok),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"))
        );
        assert_eq!(parse_traceparent("00-xyz-00f067aa0ba902b7-01"), None);
        assert_eq!(
            parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
    }
}
