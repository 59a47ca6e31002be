//! Shared server state, held by every handler as `State<AppState>`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::auth::Authenticator;
use crate::ratelimit::RateLimiter;

#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Inner>,
}

pub struct Inner {
    /// Everything below HTTP: runs, realtime, connections, webhooks, configuration,
    /// the database and the keyring (reached through `Deref`: `state.db`).
    pub engine: corral_engine::Engine,
    pub auth: Authenticator,
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// The rate-limit rules in effect (defaults + `CORRAL_RATE_LIMITS`).
    pub limits: crate::ratelimit::Rules,
    /// Tier 2: the shared Redis, when `REDIS_URL` is set.
    pub redis: Option<Arc<crate::tier2::Redis>>,
    pub gates: Gates,
    pub started: Instant,
    /// `/api/openapi.json`, serialized once at startup.
    pub openapi_json: bytes::Bytes,
    /// `?wait=` long polls in flight per identity (capped).
    pub long_polls: dashmap::DashMap<String, usize>,
    /// SQLite: the runs-list pages rendered, kept while their list version holds.
    pub run_pages: crate::routes::runs::page_cache::PageCache,
}

impl std::ops::Deref for Inner {
    type Target = corral_engine::Engine;
    fn deref(&self) -> &corral_engine::Engine {
        &self.engine
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

/// The boot and shutdown gates, plus the count of work that must drain before exit.
#[derive(Default)]
pub struct Gates {
    ready: AtomicBool,
    draining: AtomicBool,
    work: tokio::sync::watch::Sender<usize>,
}

impl Gates {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Registers a piece of running work (an unsafe request in flight, a run); the
    /// server waits for every guard to drop before it stops, up to the grace period.
    pub fn track(&self) -> WorkGuard<'_> {
        self.work.send_modify(|n| *n += 1);
        WorkGuard { gates: self }
    }

    pub fn in_flight(&self) -> usize {
        *self.work.borrow()
    }

    /// Resolves once no tracked work remains.
    pub async fn drained(&self) {
        let mut rx = self.work.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

pub struct WorkGuard<'a> {
    gates: &'a Gates,
}

impl Drop for WorkGuard<'_> {
    fn drop(&mut self) {
        self.gates.work.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// An owned guard for work that outlives a borrow (spawned tasks, tests).
pub struct OwnedWorkGuard {
    state: AppState,
}

impl AppState {
    pub fn track_owned(&self) -> OwnedWorkGuard {
        self.gates.work.send_modify(|n| *n += 1);
        OwnedWorkGuard {
            state: self.clone(),
        }
    }
}

impl Drop for OwnedWorkGuard {
    fn drop(&mut self) {
        self.state
            .gates
            .work
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}
