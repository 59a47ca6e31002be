//! Request shapes refused before routing, as problem+json: a method no route has
//! (TRACE, CONNECT, …: 405 rather than a 404), a URI over 8 KiB (414) and header
//! fields over 32 KiB in all (431). Requests past hyper's own limits (a URI over
//! 64 KiB, headers over its buffer) are refused by hyper itself, without a body.

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use corral_core::ErrorCode;

use crate::error::ApiError;

pub const MAX_URI_BYTES: usize = 8 * 1024;
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

const ALLOWED: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

pub async fn layer(req: Request, next: Next) -> Response {
    let known = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    if !known.contains(req.method()) {
        let mut resp = ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("{} is not allowed on any route", req.method()),
        )
        .into_response();
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(ALLOWED));
        return resp;
    }
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return ApiError::new(
            ErrorCode::UriTooLong,
            format!("the request URI is {uri_len} bytes; the limit is {MAX_URI_BYTES}"),
        )
        .into_response();
    }
    let header_len: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_len > MAX_HEADER_BYTES {
        return ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!("the request's header fields are {header_len} bytes; the limit is {MAX_HEADER_BYTES}"),
        )
        .into_response();
    }
    next.run(req).await
}
