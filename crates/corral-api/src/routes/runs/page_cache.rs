//! The pages of runs lists rendered on SQLite (`GET /api/runs`, an agent's runs),
//! kept with the version of their application's list they were read at
//! ([`store::list_version`]). A page is served again only after a read of the
//! current version finds it unchanged: SQLite's triggers bump the version on every
//! write that can change a page, from any connection, so a kept page is never stale.
//! A hit costs that one-row read instead of the page's statement (which renders every
//! run as JSON: about half of the server's CPU on this route, perf) and no copy of the
//! body.
//!
//! Bounded by the bytes of the bodies kept ([`CAPACITY`]); the least recently used
//! pages go first. Not used on PostgreSQL, where the list is read and serialized per
//! request (`list_json.rs`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use corral_core::{AppId, OrgId};
use corral_store::runs as store;

/// The bytes of page bodies kept at most (a page of 20 runs is ~30 KB).
const CAPACITY: u64 = 8 << 20;

/// What selects a page: the tenant, the filter, the page's size and offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    org_id: OrgId,
    app_id: AppId,
    texts: [Option<Box<str>>; 6],
    created: [Option<i64>; 2],
    limit: i64,
    offset: i64,
}

impl PageKey {
    /// The key of the page `f` selects (`f.limit` is its size).
    pub fn new(org_id: &OrgId, app_id: &AppId, f: &store::ListFilter<'_>) -> PageKey {
        PageKey {
            org_id: org_id.clone(),
            app_id: app_id.clone(),
            texts: [
                f.package_id,
                f.user_id,
                f.end_user_id,
                f.schedule_id,
                f.kind,
                f.status,
            ]
            .map(|t| t.map(Box::from)),
            created: [f.created_from, f.created_to],
            limit: f.limit,
            offset: f.offset,
        }
    }

    /// The bytes the key holds: itself and the text it points to.
    fn weight(&self) -> u64 {
        let texts: usize = self.texts.iter().flatten().map(|t| t.len()).sum();
        let ids = self.org_id.as_str().len() + self.app_id.as_str().len();
        (std::mem::size_of::<PageKey>() + texts + ids) as u64
    }
}

/// A kept page: its body and the list version it was read at.
#[derive(Debug, Clone)]
pub struct Kept {
    pub version: i64,
    pub body: Bytes,
}

#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<PageKey, Kept> for Weight {
    fn weight(&self, key: &PageKey, page: &Kept) -> u64 {
        key.weight() + page.body.len() as u64
    }
}

pub struct PageCache {
    pages: quick_cache::sync::Cache<PageKey, Kept, Weight>,
    hits: AtomicU64,
    renders: AtomicU64,
}

impl Default for PageCache {
    fn default() -> PageCache {
        PageCache {
            pages: quick_cache::sync::Cache::with_weighter(256, CAPACITY, Weight),
            hits: AtomicU64::new(0),
            renders: AtomicU64::new(0),
        }
    }
}

impl PageCache {
    /// The page kept for `key`, whatever its version: the caller compares it.
    pub fn get(&self, key: &PageKey) -> Option<Kept> {
        self.pages.get(key)
    }

    /// Counts a page served from the cache.
    pub fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// How many pages were served from the cache since the start.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Keeps `body`, rendered at `version`, for `key`.
    pub fn insert(&self, key: PageKey, version: i64, body: Bytes) {
        self.renders.fetch_add(1, Ordering::Relaxed);
        self.pages.insert(key, Kept { version, body });
    }

    /// Prometheus lines for the metrics listener.
    pub fn render_metrics(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP corral_run_list_pages_total Runs-list pages served on SQLite, by whether \
             the page was kept from an earlier read (its list unchanged) or rendered.\n\
             # TYPE corral_run_list_pages_total counter\n\
             corral_run_list_pages_total{{source=\"kept\"}} {}\n\
             corral_run_list_pages_total{{source=\"rendered\"}} {}\n\
             # HELP corral_run_list_kept_bytes Bytes of runs-list pages kept (keys included).\n\
             # TYPE corral_run_list_kept_bytes gauge\n\
             corral_run_list_kept_bytes {}",
            self.hits(),
            self.renders.load(Ordering::Relaxed),
            self.pages.weight()
        );
    }
}
