//! An OAuth 2.0 authorization server for tests, on 127.0.0.1: RFC 8414 metadata,
//! an authorization endpoint that approves at once (302 back to the client with a
//! code), and a token endpoint that checks the client's credentials, the code's
//! redirect URI and the PKCE verifier (S256), and issues access and refresh tokens.
//! Refresh tokens can be revoked (→ `invalid_grant`) and refreshes slowed down to
//! widen races. Everything it saw is recorded for assertions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::Digest as _;

/// One request to the token endpoint, as received.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub form: HashMap<String, String>,
    /// `Authorization` header, if the client used basic auth.
    pub authorization: Option<String>,
    /// What the server answered (status).
    pub status: u16,
}

#[derive(Debug, Clone)]
struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    resource: Option<String>,
    scope: Option<String>,
}

struct Inner {
    addr: SocketAddr,
    client_id: String,
    client_secret: String,
    codes: Mutex<HashMap<String, Grant>>,
    refresh_tokens: Mutex<HashMap<String, bool>>,
    /// `/authorize` query strings.
    authorizations: Mutex<Vec<HashMap<String, String>>>,
    token_requests: Mutex<Vec<TokenRequest>>,
    refreshes: AtomicU64,
    issued: AtomicU64,
    expires_in: AtomicU64,
    refresh_delay_ms: AtomicU64,
    revoked: std::sync::atomic::AtomicBool,
    tokens: Mutex<Vec<String>>,
}

#[derive(Clone)]
pub struct AuthServer {
    inner: Arc<Inner>,
    _task: Arc<tokio::task::JoinHandle<()>>,
}

impl AuthServer {
    /// Serves a confidential client `client_id` / `client_secret`.
    pub async fn start(client_id: &str, client_secret: &str) -> AuthServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            addr,
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            codes: Mutex::default(),
            refresh_tokens: Mutex::default(),
            authorizations: Mutex::default(),
            token_requests: Mutex::default(),
            refreshes: AtomicU64::new(0),
            issued: AtomicU64::new(0),
            expires_in: AtomicU64::new(3600),
            refresh_delay_ms: AtomicU64::new(0),
            revoked: Default::default(),
            tokens: Mutex::default(),
        });
        let app = Router::new()
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        AuthServer {
            inner,
            _task: Arc::new(task),
        }
    }

    /// The issuer (`http://127.0.0.1:PORT`).
    pub fn issuer(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// Lifetime (`expires_in`) of the access tokens issued from now on.
    pub fn set_expires_in(&self, secs: u64) {
        self.inner.expires_in.store(secs, Ordering::SeqCst);
    }

    /// Every refresh request is answered after this delay.
    pub fn set_refresh_delay(&self, d: Duration) {
        self.inner
            .refresh_delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// From now on every refresh token is refused with `invalid_grant`.
    pub fn revoke_refresh_tokens(&self) {
        self.inner.revoked.store(true, Ordering::SeqCst);
    }

    /// Successful refreshes so far.
    pub fn refreshes(&self) -> u64 {
        self.inner.refreshes.load(Ordering::SeqCst)
    }

    pub fn authorizations(&self) -> Vec<HashMap<String, String>> {
        self.inner.authorizations.lock().clone()
    }

    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.inner.token_requests.lock().clone()
    }

    /// Every access and refresh token issued so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.inner.tokens.lock().clone()
    }

    /// Access tokens issued so far (by code exchange or refresh).
    pub fn issued(&self) -> u64 {
        self.inner.issued.load(Ordering::SeqCst)
    }

    /// Follows an authorization URL as a browser would: the server approves and
    /// answers a redirect to the client's callback, whose URL is returned.
    pub async fn approve(&self, auth_url: &str) -> String {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let resp = client.get(auth_url).send().await.unwrap();
        assert_eq!(resp.status(), 302, "authorize answered {}", resp.status());
        resp.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .to_owned()
    }
}

async fn metadata(State(s): State<Arc<Inner>>) -> Json<Value> {
    let issuer = format!("http://{}", s.addr);
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]
    }))
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

async fn authorize(
    State(s): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    s.authorizations.lock().push(q.clone());
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code"
        || get("client_id") != s.client_id
        || get("code_challenge_method") != "S256"
        || get("code_challenge").len() != 43
        || get("redirect_uri").is_empty()
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "bad authorization request",
        );
    }
    let code = format!("code_{}", uuid::Uuid::new_v4().simple());
    s.codes.lock().insert(
        code.clone(),
        Grant {
            client_id: get("client_id"),
            redirect_uri: get("redirect_uri"),
            challenge: get("code_challenge"),
            resource: q.get("resource").cloned(),
            scope: q.get("scope").cloned(),
        },
    );
    let mut location = url::Url::parse(&get("redirect_uri")).unwrap();
    location
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &get("state"));
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

fn client_ok(s: &Inner, headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let Some(b64) = auth.strip_prefix("Basic ") else {
            return false;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            return false;
        };
        let text = String::from_utf8_lossy(&raw).into_owned();
        // RFC 6749 §2.3.1: both parts are form-urlencoded.
        let decode = |p: &str| {
            url::form_urlencoded::parse(format!("x={p}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let Some((id, secret)) = text.split_once(':') else {
            return false;
        };
        return decode(id) == s.client_id && decode(secret) == s.client_secret;
    }
    form.get("client_id") == Some(&s.client_id)
        && form.get("client_secret") == Some(&s.client_secret)
}

fn issue(s: &Inner, scope: Option<String>) -> Value {
    let n = s.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let refresh = format!("rt_{}_{}", n, uuid::Uuid::new_v4().simple());
    s.refresh_tokens.lock().insert(refresh.clone(), true);
    let access = format!("at_{}_{}", n, uuid::Uuid::new_v4().simple());
    s.tokens.lock().extend([access.clone(), refresh.clone()]);
    let mut v = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": s.expires_in.load(Ordering::SeqCst),
        "refresh_token": refresh,
    });
    if let Some(scope) = scope {
        v["scope"] = Value::from(scope);
    }
    v
}

async fn token(State(s): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let resp = token_inner(&s, &headers, &form).await;
    s.token_requests.lock().push(TokenRequest {
        form,
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        status: resp.status().as_u16(),
    });
    resp
}

async fn token_inner(s: &Inner, headers: &HeaderMap, form: &HashMap<String, String>) -> Response {
    if !client_ok(s, headers, form) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = form.get("code").cloned().unwrap_or_default();
            let Some(grant) = s.codes.lock().remove(&code) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown or used code",
                );
            };
            if form.get("redirect_uri") != Some(&grant.redirect_uri)
                || grant.client_id != s.client_id
            {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "redirect_uri mismatch",
                );
            }
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()));
            if computed != grant.challenge {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "PKCE verification failed",
                );
            }
            if form.get("resource") != grant.resource.as_ref() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_target",
                    "resource mismatch",
                );
            }
            Json(issue(s, grant.scope)).into_response()
        }
        Some("refresh_token") => {
            let delay = s.refresh_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            let known = s.refresh_tokens.lock().get(&rt).copied().unwrap_or(false);
            if !known || s.revoked.load(Ordering::SeqCst) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "refresh token revoked",
                );
            }
            s.refreshes.fetch_add(1, Ordering::SeqCst);
            Json(issue(s, None)).into_response()
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "unsupported grant",
        ),
    }
}
