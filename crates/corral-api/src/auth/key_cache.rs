//! Verified API keys, kept for a few seconds so a busy client's requests do not each
//! look their key up. A revocation that concerns a cached key drops it at once: the
//! key itself revoked, its creator removed from the org or given another role (the
//! key's permissions are its scopes ∩ the creator's role), the org deleted. They
//! arrive through the run bus from every replica and are applied before each lookup;
//! when some were missed (a lagging receiver) the whole cache is dropped. What no
//! revocation announces (an org's API version pinned anew) is seen within the TTL.

use std::sync::{Mutex, OnceLock};

use corral_realtime::Revocation;
use dashmap::DashMap;
use tokio::sync::broadcast::{self, error::TryRecvError};

use super::KeyPrincipal;

/// How long a verified key is trusted without looking at the database again.
pub const TTL_MS: i64 = 5_000;
/// Entries beyond this are not cached (one client per key is the common case).
const MAX_ENTRIES: usize = 10_000;

#[derive(Clone)]
pub struct Cached {
    pub principal: KeyPrincipal,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    cached_at: i64,
}

#[derive(Default)]
pub struct KeyCache {
    /// By the SHA-256 of the presented key.
    entries: DashMap<String, Cached>,
    revocations: OnceLock<Mutex<broadcast::Receiver<Revocation>>>,
}

impl KeyCache {
    /// The cached principal for `digest`, if fresh and still valid at `now`.
    pub fn get(
        &self,
        digest: &str,
        now: i64,
        subscribe: impl FnOnce() -> broadcast::Receiver<Revocation>,
    ) -> Option<Cached> {
        self.apply_revocations(subscribe);
        let hit = self.entries.get(digest)?.clone();
        let fresh = now - hit.cached_at < TTL_MS && hit.expires_at.is_none_or(|t| t > now);
        if !fresh {
            self.entries.remove(digest);
            return None;
        }
        Some(hit)
    }

    pub fn put(
        &self,
        digest: String,
        principal: KeyPrincipal,
        expires_at: Option<i64>,
        last_used_at: Option<i64>,
        now: i64,
    ) {
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.retain(|_, e| now - e.cached_at < TTL_MS);
            if self.entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        self.entries.insert(
            digest,
            Cached {
                principal,
                expires_at,
                last_used_at,
                cached_at: now,
            },
        );
    }

    /// Records that the key's use was written at `now`.
    pub fn used(&self, digest: &str, now: i64) {
        if let Some(mut e) = self.entries.get_mut(digest) {
            e.last_used_at = Some(now);
        }
    }

    fn apply_revocations(&self, subscribe: impl FnOnce() -> broadcast::Receiver<Revocation>) {
        let rx = self.revocations.get_or_init(|| Mutex::new(subscribe()));
        let mut rx = rx.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match rx.try_recv() {
                Ok(r) => self.drop_revoked(&r),
                Err(TryRecvError::Lagged(_)) => self.entries.clear(),
                Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            }
        }
    }

    fn drop_revoked(&self, r: &Revocation) {
        self.entries.retain(|_, e| {
            let k = &e.principal;
            !match r {
                Revocation::ApiKey { id } => k.key_id == *id,
                Revocation::Member { org, user } => {
                    k.org_id == *org && k.created_by.as_deref() == Some(user.as_str())
                }
                Revocation::Org { org } => k.org_id == *org,
                Revocation::Application { org, app } => {
                    k.org_id == *org && k.application_id == *app
                }
                Revocation::Session { .. } | Revocation::UserSessions { .. } => false,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_core::perm::PermSet;

    fn key(id: &str, org: &str, creator: &str) -> KeyPrincipal {
        KeyPrincipal {
            key_id: id.into(),
            org_id: org.into(),
            application_id: "app".into(),
            permissions: PermSet::EMPTY,
            created_by: Some(creator.into()),
            org_api_version: "v".into(),
        }
    }

    #[test]
    fn revocations_and_age_drop_entries() {
        let (tx, _) = broadcast::channel(16);
        let cache = KeyCache::default();
        let sub = || tx.subscribe();
        assert!(cache.get("d0", 0, sub).is_none());
        cache.put("d1".into(), key("k1", "o1", "u1"), None, None, 0);
        cache.put("d2".into(), key("k2", "o1", "u2"), None, None, 0);
        cache.put("d3".into(), key("k3", "o2", "u1"), Some(1_000), None, 0);
        assert!(cache.get("d1", 10, sub).is_some());
        assert!(cache.get("d3", 999, sub).is_some());
        assert!(cache.get("d3", 1_000, sub).is_none(), "the key expired");
        tx.send(Revocation::ApiKey { id: "k1".into() }).unwrap();
        assert!(cache.get("d1", 10, sub).is_none(), "revoked");
        assert!(cache.get("d2", 10, sub).is_some());
        tx.send(Revocation::Member {
            org: "o1".into(),
            user: "u2".into(),
        })
        .unwrap();
        assert!(
            cache.get("d2", 10, sub).is_none(),
            "its creator's role changed"
        );
        cache.put("d4".into(), key("k4", "o2", "u4"), None, None, 0);
        assert!(cache.get("d4", TTL_MS, sub).is_none(), "older than the TTL");
    }
}
