//! The dashboard (`web/`, SPEC §15), embedded in the binary and served at `/`: files
//! of `web/dist` as they are (hashed `assets/*` cached for a year, the rest
//! revalidated), and `index.html` for every other page path so client-side routes
//! work on reload. API paths never reach it: `/api/…`, `/internal/…`, `/health` and
//! the invitation API keep their problem+json 404.

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::RustEmbed)]
#[folder = "../../web/dist"]
#[allow_missing = true]
struct Dist;

/// What the binary answers when it was built without the dashboard.
const NOT_BUILT: &str = "<!doctype html><html lang=en><meta charset=utf-8>\
<title>Corral</title><body style=\"font-family:system-ui;max-width:40em;margin:4em auto\">\
<h1>Corral</h1><p>This server was built without its dashboard (Node.js was not \
available, or <code>CORRAL_SKIP_WEB_BUILD</code> was set). Install Node.js 20+ and \
rebuild, or build it by hand: <code>npm --prefix web ci &amp;&amp; npm --prefix web run \
build</code>, then <code>cargo build</code>.</p><p>The API works: see \
<a href=\"/api/docs\">/api/docs</a>.</p></body></html>";

/// Paths the dashboard may answer: everything but the API's.
pub fn serves(path: &str) -> bool {
    let api = path == "/api"
        || path.starts_with("/api/")
        || path.starts_with("/internal/")
        || path == "/health"
        || path.starts_with("/health/")
        || (path.starts_with("/invite/") && (path.ends_with("/info") || path.ends_with("/accept")));
    !api
}

fn file(path: &str, body: std::borrow::Cow<'static, [u8]>, immutable: bool) -> Response {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let cache = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut resp = (StatusCode::OK, body.into_owned()).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime.essence_str()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

/// Answers a GET/HEAD of a dashboard path; `None` for anything else.
pub fn answer(req: &Request) -> Option<Response> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    let path = req.uri().path();
    if !serves(path) {
        return None;
    }
    let rel = path.trim_start_matches('/');
    if !rel.is_empty() {
        if let Some(f) = Dist::get(rel) {
            return Some(file(rel, f.data, rel.starts_with("assets/")));
        }
        // A missing hashed asset is a 404, not the page (a stale tab after a deploy
        // must not parse HTML as JavaScript).
        if rel.starts_with("assets/") {
            return None;
        }
    }
    Some(match Dist::get("index.html") {
        Some(f) => file("index.html", f.data, false),
        None => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            NOT_BUILT,
        )
            .into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::serves;

    #[test]
    fn api_paths_are_never_the_dashboard() {
        for p in [
            "/api",
            "/api/runs",
            "/api/nope",
            "/internal/memories",
            "/health",
            "/invite/tok/info",
            "/invite/tok/accept",
        ] {
            assert!(!serves(p), "{p}");
        }
        for p in [
            "/",
            "/api-keys",
            "/runs/run_1",
            "/invite/tok",
            "/agents/@a/b",
            "/assets/x.js",
        ] {
            assert!(serves(p), "{p}");
        }
    }
}
