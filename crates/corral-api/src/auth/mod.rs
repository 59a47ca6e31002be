//! Authentication: an ordered list of strategies, first match wins (SPEC §4 step 4).
//! Each strategy answers quickly "not mine" (`Ok(None)`) when the request does not
//! carry its kind of credential, "mine and valid" with a [`Principal`], or "mine but
//! rejected" with a 401. Pluggable strategies (OIDC/JWT later) run before the built-in
//! API-key and session strategies.

pub mod api_key;
pub mod key_cache;
pub mod password;
pub mod session;

use std::sync::Arc;

use axum::http::request::Parts;
use corral_core::perm::PermSet;
use corral_core::{AppId, OrgId};
use futures::future::BoxFuture;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Who is calling.
#[derive(Clone, Debug)]
pub enum Principal {
    User(UserPrincipal),
    ApiKey(KeyPrincipal),
}

#[derive(Clone, Debug)]
pub struct UserPrincipal {
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub session_id: String,
    pub session_expires_at: i64,
    pub session_created_at: i64,
    /// A refreshed cookie to send back (sliding expiry), when one was minted.
    pub refreshed_cookie: Option<String>,
}

#[derive(Clone, Debug)]
pub struct KeyPrincipal {
    pub key_id: String,
    pub org_id: OrgId,
    pub application_id: AppId,
    /// Scopes ∩ the creator's current role ∩ what keys may hold.
    pub permissions: PermSet,
    pub created_by: Option<String>,
    pub org_api_version: String,
}

impl Principal {
    pub fn user(&self) -> Option<&UserPrincipal> {
        match self {
            Principal::User(u) => Some(u),
            Principal::ApiKey(_) => None,
        }
    }

    /// A stable key for per-principal limits.
    pub fn limit_key(&self) -> String {
        match self {
            Principal::User(u) => format!("user:{}", u.user_id),
            Principal::ApiKey(k) => format!("key:{}", k.key_id),
        }
    }

    /// The user id recorded as actor for writes (an API key acts for its creator).
    pub fn actor_user_id(&self) -> Option<&str> {
        match self {
            Principal::User(u) => Some(&u.user_id),
            Principal::ApiKey(k) => k.created_by.as_deref(),
        }
    }
}

pub trait AuthStrategy: Send + Sync {
    fn name(&self) -> &'static str;
    fn authenticate<'a>(
        &'a self,
        parts: &'a Parts,
        state: &'a AppState,
    ) -> BoxFuture<'a, ApiResult<Option<Principal>>>;
}

pub struct Authenticator {
    strategies: Vec<Arc<dyn AuthStrategy>>,
}

impl Authenticator {
    /// `extra` strategies run first, then API keys, then the session cookie.
    pub fn new(extra: Vec<Arc<dyn AuthStrategy>>) -> Authenticator {
        let mut strategies = extra;
        strategies.push(Arc::new(api_key::ApiKeyStrategy::default()));
        strategies.push(Arc::new(session::SessionStrategy));
        Authenticator { strategies }
    }

    pub async fn authenticate(&self, parts: &Parts, state: &AppState) -> ApiResult<Principal> {
        // An Authorization header is the credential: when no strategy accepts it, the
        // request is a 401 even if it also carries a valid session cookie.
        let authorization = parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION);
        for s in &self.strategies {
            if authorization && s.name() == "session" {
                continue;
            }
            if let Some(p) = s.authenticate(parts, state).await? {
                return Ok(p);
            }
        }
        let presented = parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION);
        Err(if presented {
            ApiError::unauthorized(
                "the Authorization header carries no credential Corral accepts",
                true,
            )
        } else {
            ApiError::unauthorized(
                "authentication required: send an API key or a session cookie",
                false,
            )
        })
    }
}
