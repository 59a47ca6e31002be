//! An OAuth model provider's token endpoint for tests, on 127.0.0.1: it issues
//! access and refresh tokens to a public client, takes refreshes as JSON (Anthropic's
//! console) or as a form (OpenAI's auth server), rotates refresh tokens (each works
//! once, as providers do: a second refresh with the same token is `invalid_grant`),
//! can revoke every refresh token and slow refreshes down to widen races. Every
//! request is recorded for assertions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Value};

/// One request to the token endpoint, as received.
#[derive(Debug, Clone)]
pub struct TokenCall {
    /// `json` or `form`.
    pub encoding: &'static str,
    pub params: HashMap<String, String>,
    pub status: u16,
}

struct Inner {
    addr: SocketAddr,
    client_id: String,
    /// Refresh token → still usable.
    refresh_tokens: Mutex<HashMap<String, bool>>,
    calls: Mutex<Vec<TokenCall>>,
    issued: AtomicU64,
    refreshes: AtomicU64,
    expires_in: AtomicU64,
    delay_ms: AtomicU64,
    revoked: AtomicBool,
    access_tokens: Mutex<Vec<String>>,
}

#[derive(Clone)]
pub struct TokenServer {
    inner: Arc<Inner>,
    _task: Arc<tokio::task::JoinHandle<()>>,
}

impl TokenServer {
    /// Serves the public client `client_id` at `/v1/oauth/token`.
    pub async fn start(client_id: &str) -> TokenServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            addr,
            client_id: client_id.to_owned(),
            refresh_tokens: Mutex::default(),
            calls: Mutex::default(),
            issued: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            expires_in: AtomicU64::new(3600),
            delay_ms: AtomicU64::new(0),
            revoked: AtomicBool::new(false),
            access_tokens: Mutex::default(),
        });
        let app = Router::new()
            .route("/v1/oauth/token", post(token))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TokenServer {
            inner,
            _task: Arc::new(task),
        }
    }

    pub fn token_url(&self) -> String {
        format!("http://{}/v1/oauth/token", self.inner.addr)
    }

    /// Tokens as the provider's authorization-code exchange would give them (what
    /// the connect helper posts to the redeem): `(access, refresh)`.
    pub fn grant(&self) -> (String, String) {
        let v = issue(&self.inner);
        (
            v["access_token"].as_str().unwrap().to_owned(),
            v["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    /// `expires_in` of the tokens issued from now on.
    pub fn set_expires_in(&self, secs: u64) {
        self.inner.expires_in.store(secs, Ordering::SeqCst);
    }

    /// Every refresh is answered after this delay.
    pub fn set_delay(&self, d: Duration) {
        self.inner
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// From now on every refresh token is refused with `invalid_grant`.
    pub fn revoke_all(&self) {
        self.inner.revoked.store(true, Ordering::SeqCst);
    }

    /// Successful refreshes so far.
    pub fn refreshes(&self) -> u64 {
        self.inner.refreshes.load(Ordering::SeqCst)
    }

    /// Every request so far.
    pub fn calls(&self) -> Vec<TokenCall> {
        self.inner.calls.lock().clone()
    }

    /// The access tokens issued so far, oldest first.
    pub fn access_tokens(&self) -> Vec<String> {
        self.inner.access_tokens.lock().clone()
    }
}

fn issue(s: &Inner) -> Value {
    let n = s.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let access = format!("at-oauth-{n}-{}", uuid::Uuid::new_v4().simple());
    let refresh = format!("rt-oauth-{n}-{}", uuid::Uuid::new_v4().simple());
    s.refresh_tokens.lock().insert(refresh.clone(), true);
    s.access_tokens.lock().push(access.clone());
    json!({
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": s.expires_in.load(Ordering::SeqCst),
    })
}

fn refusal(status: StatusCode, code: &str) -> Response {
    (
        status,
        Json(json!({"error": code, "error_description": code})),
    )
        .into_response()
}

async fn token(State(s): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let params: HashMap<String, String> = if json_body {
        serde_json::from_slice::<HashMap<String, Value>>(&body)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map(str::to_owned).unwrap_or_default()))
            .collect()
    } else {
        url::form_urlencoded::parse(&body).into_owned().collect()
    };
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let resp = answer(&s, &params);
    s.calls.lock().push(TokenCall {
        encoding: if json_body { "json" } else { "form" },
        params,
        status: resp.status().as_u16(),
    });
    resp
}

fn answer(s: &Inner, params: &HashMap<String, String>) -> Response {
    if params.get("client_id") != Some(&s.client_id) {
        return refusal(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if params.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return refusal(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let rt = params.get("refresh_token").cloned().unwrap_or_default();
    // Single use: the token is spent whether or not this refresh succeeds.
    let usable = s.refresh_tokens.lock().insert(rt, false).unwrap_or(false);
    if !usable || s.revoked.load(Ordering::SeqCst) {
        return refusal(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    s.refreshes.fetch_add(1, Ordering::SeqCst);
    Json(issue(s)).into_response()
}
