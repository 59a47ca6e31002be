//! Session cookies: `corral_session` holds an opaque random token; the database holds
//! its HMAC (keyed with the session secret), so a database leak alone yields no usable
//! session. Sessions last 7 days and slide forward at most once every 24 hours.

use axum::http::request::Parts;
use axum::http::HeaderValue;
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{AuthStrategy, Principal, UserPrincipal};
use crate::error::ApiError;
use crate::error::ApiResult;
use crate::state::AppState;
use corral_core::time::{now_ms, DAY_MS};

pub const COOKIE: &str = "corral_session";
pub const TTL_MS: i64 = 7 * DAY_MS;
pub const REFRESH_AFTER_MS: i64 = DAY_MS;

pub fn new_token() -> String {
    corral_core::token::random_urlsafe(32)
}

pub fn token_hash(state: &AppState, token: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(state.secrets.session.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub fn cookie_value(state: &AppState, token: &str, max_age_ms: i64) -> HeaderValue {
    let secure = if state.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let v = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        max_age_ms / 1000
    );
    HeaderValue::from_str(&v)
        .unwrap_or_else(|_| HeaderValue::from_static("corral_session=; Path=/"))
}

pub fn clear_cookie(state: &AppState) -> HeaderValue {
    cookie_value(state, "", 0)
}

pub fn token_from(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Looks the session up; `Ok(None)` when there is no cookie, 401 when it is stale.
pub async fn resolve(state: &AppState, parts: &Parts) -> ApiResult<Option<UserPrincipal>> {
    let Some(token) = token_from(parts) else {
        return Ok(None);
    };
    let now = now_ms();
    let hash = token_hash(state, token);
    let mut conn = state.db.conn().await?;
    let Some(s) = corral_store::sessions::lookup(&mut conn, &hash, now).await? else {
        return Err(ApiError::unauthorized(
            "the session has expired or was signed out",
            true,
        ));
    };
    let mut expires_at = s.expires_at;
    let mut refreshed_cookie = None;
    if now - s.refreshed_at >= REFRESH_AFTER_MS {
        expires_at = now + TTL_MS;
        corral_store::sessions::refresh(&mut conn, &s.session_id, expires_at, now).await?;
        refreshed_cookie = Some(token.to_owned());
    }
    Ok(Some(UserPrincipal {
        user_id: s.user_id,
        email: s.email,
        name: s.name,
        session_id: s.session_id,
        session_expires_at: expires_at,
        session_created_at: s.created_at,
        refreshed_cookie,
    }))
}

pub struct SessionStrategy;

impl AuthStrategy for SessionStrategy {
    fn name(&self) -> &'static str {
        "session"
    }

    fn authenticate<'a>(
        &'a self,
        parts: &'a Parts,
        state: &'a AppState,
    ) -> BoxFuture<'a, ApiResult<Option<Principal>>> {
        Box::pin(async move {
            let Some(user) = resolve(state, parts).await? else {
                return Ok(None);
            };
            check_origin(parts, &state.config.trusted_origins)?;
            Ok(Some(Principal::User(user)))
        })
    }
}

/// CSRF: a cookie travels with cross-site requests, so an unsafe request
/// authenticated by one must come from this server's own origin or a trusted one
/// (`CORRAL_TRUSTED_ORIGINS`). Browsers say where a request comes from (`Origin`,
/// `Sec-Fetch-Site`); a client that says nothing is not a browser and is let through.
pub fn check_origin(parts: &Parts, trusted: &[String]) -> ApiResult<()> {
    if parts.method.is_safe() {
        return Ok(());
    }
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(origin) = header("origin").filter(|o| *o != "null") {
        let host = header("host").unwrap_or_default();
        let same = origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host);
        if same || trusted.iter().any(|t| t.trim_end_matches('/') == origin) {
            return Ok(());
        }
        return Err(ApiError::forbidden(format!(
            "cross-site request refused: the origin {origin} is not trusted"
        )));
    }
    if header("origin") == Some("null") || header("sec-fetch-site") == Some("cross-site") {
        return Err(ApiError::forbidden(
            "cross-site request refused: a session cookie only works from a trusted origin",
        ));
    }
    Ok(())
}
