//! `Authorization: Bearer ask_…` API keys. The key is looked up by its prefix and
//! compared by SHA-256 hash in constant time; revoked, expired and orphaned keys (their
//! creator left the org) are refused. `last_used_at` is written off the hot path, at
//! most once a minute per key. Verified keys are cached for a few seconds
//! ([`super::key_cache`]); revocations drop them at once.

use axum::http::request::Parts;
use corral_core::perm::{grantable_to_api_key, PermSet};
use corral_core::Role;
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthStrategy, KeyPrincipal, Principal};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub const KEY_PREFIX: &str = "ask_";
/// Characters of the key stored in clear and used for the lookup: `ask_` + 8 hex.
pub const LOOKUP_PREFIX_LEN: usize = 12;
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

#[derive(Default)]
pub struct ApiKeyStrategy {
    cache: super::key_cache::KeyCache,
}

/// A new random key: `ask_` + 48 hex characters.
pub fn generate() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

pub fn is_well_formed(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        rest.len() == 48
            && rest
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// The API key a request presents: the bearer token, or `?token=` on the realtime
/// routes (browsers' EventSource cannot set headers).
pub fn presented_key(parts: &Parts) -> Option<&str> {
    if let Some(bearer) = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    {
        let bearer = bearer.trim();
        return bearer.starts_with(KEY_PREFIX).then_some(bearer);
    }
    if parts.uri.path().starts_with("/api/realtime/") {
        return parts.uri.query().and_then(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == "token")
                .map(|(_, v)| v)
                .filter(|v| v.starts_with(KEY_PREFIX))
        });
    }
    None
}

impl AuthStrategy for ApiKeyStrategy {
    fn name(&self) -> &'static str {
        "api_key"
    }

    fn authenticate<'a>(
        &'a self,
        parts: &'a Parts,
        state: &'a AppState,
    ) -> BoxFuture<'a, ApiResult<Option<Principal>>> {
        Box::pin(async move {
            let Some(key) = presented_key(parts) else {
                return Ok(None);
            };
            if !is_well_formed(key) {
                return Err(ApiError::unauthorized("malformed API key", true));
            }
            let digest = hash(key);
            let now = corral_core::time::now_ms();
            if let Some(hit) = self
                .cache
                .get(&digest, now, || state.runs.bus.revocations())
            {
                self.touch(state, &digest, &hit.principal.key_id, hit.last_used_at, now);
                return Ok(Some(Principal::ApiKey(hit.principal)));
            }
            let candidates = corral_store::api_keys::candidates_by_prefix(
                state.db.pool(),
                &key[..LOOKUP_PREFIX_LEN],
            )
            .await?;
            let Some(found) = candidates
                .into_iter()
                .find(|c| bool::from(c.key_hash.as_bytes().ct_eq(digest.as_bytes())))
            else {
                return Err(ApiError::unauthorized("unknown API key", true));
            };
            if found.revoked_at.is_some() {
                return Err(ApiError::unauthorized(
                    "this API key has been revoked",
                    true,
                ));
            }
            if found.expires_at.is_some_and(|t| t <= now) {
                return Err(ApiError::unauthorized("this API key has expired", true));
            }
            let Some(role) = found.creator_role.as_deref().and_then(Role::parse) else {
                return Err(ApiError::unauthorized(
                    "this API key's creator is no longer a member of its organization",
                    true,
                ));
            };
            let scopes: Vec<String> = serde_json::from_str(&found.scopes).unwrap_or_default();
            let permissions = PermSet::from_scopes(scopes.iter().map(String::as_str))
                .intersect(role.permissions())
                .retain(grantable_to_api_key);
            let principal = KeyPrincipal {
                key_id: found.id,
                org_id: found.org_id,
                application_id: found.application_id,
                permissions,
                created_by: found.created_by,
                org_api_version: found.api_version,
            };
            self.cache.put(
                digest.clone(),
                principal.clone(),
                found.expires_at,
                found.last_used_at,
                now,
            );
            self.touch(state, &digest, &principal.key_id, found.last_used_at, now);
            Ok(Some(Principal::ApiKey(principal)))
        })
    }
}

impl ApiKeyStrategy {
    /// Writes `last_used_at` off the hot path, at most once a minute per key.
    fn touch(&self, state: &AppState, digest: &str, id: &str, last: Option<i64>, now: i64) {
        if last.is_some_and(|t| now - t < LAST_USED_RESOLUTION_MS) {
            return;
        }
        self.cache.used(digest, now);
        let pool = state.db.pool().clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            if let Err(e) = corral_store::api_keys::touch_last_used(&pool, &id, now).await {
                tracing::warn!(error = %e, "could not record API key use");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed() {
        let k = generate();
        assert!(is_well_formed(&k), "{k}");
        assert_eq!(k.len(), 52);
        assert!(!is_well_formed("ask_short"));
        assert!(!is_well_formed(&k.replace("ask_", "xsk_")));
        assert_ne!(generate(), k);
    }
}
