//! Realtime (SPEC §10): the run bus and the fan-out of stored events to live
//! subscribers, with replay. No HTTP here: `corral-api` wraps [`Hub::stream`] in its
//! SSE endpoints.
//!
//! Fan-out. Database triggers append every visible change to
//! `realtime_events`, numbered per organization without gaps in commit order. One
//! task per server ([`Hub::run`]) learns that an organization has new events — from
//! PostgreSQL `NOTIFY` (through the run bus's single `LISTEN` connection), or from
//! in-process pokes and a short poll on SQLite — reads the new rows once, renders each
//! frame once, and hands it to every matching subscriber's bounded queue.
//!
//! A subscriber whose queue is full is dropped on the spot (its stream ends and the
//! client reconnects with `Last-Event-ID`), so a slow client never slows the others.
//! Dropping a [`Subscription`] (the HTTP connection closed) frees it at once.

pub mod bus;
pub mod revoke;
mod stream;

pub use bus::{RunBus, RunSignal};
pub use revoke::{Holder, Revocation};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use corral_core::{AppId, OrgId, RunId};
use corral_store::realtime::{self as store, Event};
use corral_store::{Backend, Db};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Rows read per query while catching up.
const PAGE: i64 = 500;
/// On SQLite nothing notifies across connections: look this often while anyone
/// listens (in-process pokes usually come first).
const SQLITE_POLL: Duration = Duration::from_millis(50);

/// The event kinds a client can select with `channels=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    RunUpdate = 1,
    RunLog = 2,
    RunMetric = 4,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        match s {
            "run_update" => Some(Kind::RunUpdate),
            "run_log" => Some(Kind::RunLog),
            "run_metric" => Some(Kind::RunMetric),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::RunUpdate => "run_update",
            Kind::RunLog => "run_log",
            Kind::RunMetric => "run_metric",
        }
    }
}

/// `channels=` as a bit set; unknown names are ignored and nothing recognised means
/// every channel (the reference's rule). `connection_update` and
/// `chat_session_update` are recognised but nothing emits them yet.
pub fn parse_channels(s: Option<&str>) -> u8 {
    let mut mask = 0u8;
    let mut recognised = false;
    for name in s.unwrap_or("").split(',').map(str::trim) {
        if let Some(k) = Kind::parse(name) {
            mask |= k as u8;
            recognised = true;
        } else if matches!(name, "connection_update" | "chat_session_update") {
            recognised = true;
        }
    }
    if recognised {
        mask
    } else {
        Kind::RunUpdate as u8 | Kind::RunLog as u8 | Kind::RunMetric as u8
    }
}

/// One rendered event, shared by every subscriber that receives it.
#[derive(Debug)]
pub struct Frame {
    pub seq: i64,
    pub kind: Kind,
    pub run_id: RunId,
    pub application_id: AppId,
    pub end_user_id: Option<String>,
    pub package_id: Option<String>,
    /// The SSE bytes without large user content.
    pub plain: Bytes,
    /// The SSE bytes with `result` / `data` (`verbose=true`).
    pub verbose: Bytes,
}

fn sse_bytes(seq: Option<i64>, event: &str, data: &Value) -> Bytes {
    let data = serde_json::to_string(data).unwrap_or_else(|_| "{}".into());
    let mut s = String::with_capacity(data.len() + 48);
    if let Some(seq) = seq {
        s.push_str("id: ");
        s.push_str(&seq.to_string());
        s.push('\n');
    }
    s.push_str("event: ");
    s.push_str(event);
    s.push_str("\ndata: ");
    s.push_str(&data);
    s.push_str("\n\n");
    Bytes::from(s)
}

/// An SSE frame outside the numbered stream (snapshot, ping).
pub fn unnumbered(event: &str, data: &Value) -> Bytes {
    sse_bytes(None, event, data)
}

fn parse(s: &Option<String>) -> Value {
    s.as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

/// Renders a stored event. Returns None for a kind this server does not know (a
/// newer replica wrote it).
pub fn render(e: &Event) -> Option<Frame> {
    let kind = Kind::parse(&e.kind)?;
    let extra: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
    let at = corral_core::time::to_rfc3339(e.created_at);
    // The fields verbose subscribers get on top (large user content); without any,
    // both kinds of subscriber share one rendering.
    let (mut v, extra_field) = match kind {
        Kind::RunUpdate => (
            json!({
                "id": e.run_id,
                "status": extra.get("status"),
                "error_code": extra.get("error_code"),
                "packageId": e.package_id,
                "applicationId": e.application_id,
                "orgId": e.org_id,
                "seq": e.seq,
                "at": at,
            }),
            e.result
                .as_ref()
                .map(|r| ("result", parse(&Some(r.clone())))),
        ),
        Kind::RunLog => {
            let log = e.log.as_ref()?;
            (
                json!({
                    "id": log.id,
                    "runId": e.run_id,
                    "sequence": log.sequence,
                    "type": log.log_type,
                    "level": log.level,
                    "message": log.message,
                    "createdAt": corral_core::time::to_rfc3339(log.created_at),
                    "seq": e.seq,
                }),
                Some(("data", parse(&log.data))),
            )
        }
        Kind::RunMetric => (
            json!({
                "runId": e.run_id,
                "token_usage": extra.get("token_usage"),
                "cost": Value::Null,
                "seq": e.seq,
                "at": at,
            }),
            None,
        ),
    };
    let name = kind.name();
    let plain = sse_bytes(Some(e.seq), name, &v);
    let verbose = match extra_field {
        Some((field, value)) => {
            v[field] = value;
            sse_bytes(Some(e.seq), name, &v)
        }
        None => plain.clone(),
    };
    Some(Frame {
        seq: e.seq,
        kind,
        run_id: e.run_id.clone(),
        application_id: e.application_id.clone(),
        end_user_id: e.end_user_id.clone(),
        package_id: e.package_id.clone(),
        plain,
        verbose,
    })
}

/// What a subscriber wants to see. The application is always set: streams are
/// tenant-scoped exactly like the REST endpoints (org and application).
#[derive(Debug, Clone)]
pub struct Filter {
    pub application_id: AppId,
    /// An end user's key sees that end user's runs only.
    pub end_user_id: Option<String>,
    pub run_id: Option<RunId>,
    pub package_id: Option<String>,
    pub channels: u8,
}

impl Filter {
    pub fn matches(&self, f: &Frame) -> bool {
        self.channels & (f.kind as u8) != 0
            && f.application_id == self.application_id
            && self
                .end_user_id
                .as_ref()
                .is_none_or(|u| f.end_user_id.as_ref() == Some(u))
            && self.run_id.as_ref().is_none_or(|r| *r == f.run_id)
            && self
                .package_id
                .as_ref()
                .is_none_or(|p| f.package_id.as_ref() == Some(p))
    }

    pub fn store_scope(&self) -> store::Scope<'_> {
        store::Scope {
            application_id: Some(&self.application_id),
            end_user_id: self.end_user_id.as_deref(),
            run_id: self.run_id.as_ref(),
            package_id: self.package_id.as_deref(),
        }
    }
}

/// "Organization X has events up to N" (N = `i64::MAX`: unknown, go and look),
/// coalesced so that a burst costs one read per organization.
#[derive(Clone, Default)]
pub struct Pokes {
    inner: Arc<PokesInner>,
}

#[derive(Default)]
struct PokesInner {
    pending: Mutex<HashMap<OrgId, i64>>,
    all: AtomicBool,
    wake: Notify,
}

impl Pokes {
    pub fn poke(&self, org: &OrgId, seq: i64) {
        {
            let mut p = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
            let e = p.entry(org.clone()).or_insert(seq);
            *e = (*e).max(seq);
        }
        self.inner.wake.notify_one();
    }

    /// Every organization may have new events (after a `LISTEN` reconnect, or a
    /// local write on SQLite whose organization the caller does not know).
    pub fn poke_all(&self) {
        self.inner.all.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    fn take(&self) -> (bool, HashMap<OrgId, i64>) {
        let all = self.inner.all.swap(false, Ordering::SeqCst);
        let mut p = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        (all, std::mem::take(&mut *p))
    }
}

struct Sub {
    /// Shared with the subscriber's stream (one copy per subscriber, small map rows).
    filter: Arc<Filter>,
    tx: flume::Sender<Arc<Frame>>,
    overflowed: Arc<AtomicBool>,
}

struct OrgSubs {
    /// Every event up to here has been handed to this org's subscribers.
    last_seq: i64,
    subs: HashMap<u64, Sub>,
}

#[derive(Default)]
struct Subs {
    orgs: HashMap<OrgId, OrgSubs>,
    next_id: u64,
}

/// The fan-out of one server.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    db: Db,
    pokes: Pokes,
    subs: Mutex<Subs>,
    queue_size: usize,
    subscribers: AtomicI64,
    dropped_slow: AtomicI64,
}

/// A live subscription; dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<HubInner>,
    pub(crate) org: OrgId,
    id: u64,
    pub rx: flume::Receiver<Arc<Frame>>,
    /// Set when the hub dropped this subscriber for falling behind.
    pub overflowed: Arc<AtomicBool>,
    pub verbose: bool,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self.hub.subs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(org) = subs.orgs.get_mut(&self.org) {
            if org.subs.remove(&self.id).is_some() {
                self.hub.subscribers.fetch_sub(1, Ordering::Relaxed);
            }
            if org.subs.is_empty() {
                subs.orgs.remove(&self.org);
            }
        }
    }
}

impl Hub {
    pub fn new(db: Db, pokes: Pokes, queue_size: usize) -> Hub {
        Hub {
            inner: Arc::new(HubInner {
                db,
                pokes,
                subs: Mutex::new(Subs::default()),
                queue_size: queue_size.max(1),
                subscribers: AtomicI64::new(0),
                dropped_slow: AtomicI64::new(0),
            }),
        }
    }

    pub fn pokes(&self) -> &Pokes {
        &self.inner.pokes
    }

    /// Current number of subscribers on this server.
    pub fn subscribers(&self) -> i64 {
        self.inner.subscribers.load(Ordering::Relaxed)
    }

    /// Subscribers dropped for a full queue since start.
    pub fn dropped_slow(&self) -> i64 {
        self.inner.dropped_slow.load(Ordering::Relaxed)
    }

    /// Registers a subscriber. From here on it receives every event of `org` that
    /// matches `filter` and was not yet handed out when it registered; the caller
    /// replays older ones from the table and skips duplicates by `seq`.
    pub async fn subscribe(
        &self,
        org: &OrgId,
        filter: Arc<Filter>,
        verbose: bool,
    ) -> corral_store::Result<Subscription> {
        let head = {
            let mut conn = self.inner.db.conn().await?;
            store::head(&mut conn, org).await?
        };
        // flume's bounded channel allocates as it fills; tokio's costs ~750 B per
        // subscriber from the start (cache-padded state, a first block of slots).
        let (tx, rx) = flume::bounded(self.inner.queue_size);
        let overflowed = Arc::new(AtomicBool::new(false));
        let id = {
            let mut subs = self.inner.subs.lock().unwrap_or_else(|e| e.into_inner());
            subs.next_id += 1;
            let id = subs.next_id;
            let o = subs.orgs.entry(org.clone()).or_insert(OrgSubs {
                last_seq: head,
                subs: HashMap::new(),
            });
            o.subs.insert(
                id,
                Sub {
                    filter,
                    tx,
                    overflowed: overflowed.clone(),
                },
            );
            id
        };
        self.inner.subscribers.fetch_add(1, Ordering::Relaxed);
        // Events committed between reading the head and registering were announced
        // while nobody of this org listened here: look again.
        self.inner.pokes.poke(org, i64::MAX);
        Ok(Subscription {
            hub: self.inner.clone(),
            org: org.clone(),
            id,
            rx,
            overflowed,
            verbose,
        })
    }

    /// The fan-out loop, until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let sqlite = self.inner.db.backend() == Backend::Sqlite;
        loop {
            let listening = self.subscribers() > 0;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.inner.pokes.inner.wake.notified() => {}
                _ = tokio::time::sleep(SQLITE_POLL), if sqlite && listening => {
                    self.inner.pokes.poke_all();
                }
            }
            if let Err(e) = self.fan_out().await {
                tracing::warn!(error = %e, "realtime fan-out failed; retrying");
                self.inner.pokes.poke_all();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }

    async fn fan_out(&self) -> corral_store::Result<()> {
        let (all, mut pending) = self.inner.pokes.take();
        let mut conn = self.inner.db.conn().await?;
        if all {
            let watched: Vec<OrgId> = {
                let subs = self.inner.subs.lock().unwrap_or_else(|e| e.into_inner());
                subs.orgs.keys().cloned().collect()
            };
            if !watched.is_empty() {
                for (org, head) in store::heads(&mut conn).await? {
                    if watched.contains(&org) {
                        let e = pending.entry(org).or_insert(head);
                        *e = (*e).max(head);
                    }
                }
            }
        }
        for (org, announced) in pending {
            while let Some(last) = self.last_seq(&org) {
                if announced <= last {
                    break;
                }
                let events =
                    store::after(&mut conn, &org, last, &store::Scope::default(), PAGE).await?;
                let n = events.len() as i64;
                let mut upto = last;
                for e in &events {
                    upto = e.seq;
                    if let Some(frame) = render(e) {
                        self.deliver(&org, Arc::new(frame));
                    }
                }
                self.set_last_seq(&org, upto);
                if n < PAGE {
                    break;
                }
            }
        }
        Ok(())
    }

    fn last_seq(&self, org: &OrgId) -> Option<i64> {
        let subs = self.inner.subs.lock().unwrap_or_else(|e| e.into_inner());
        subs.orgs.get(org).map(|o| o.last_seq)
    }

    fn set_last_seq(&self, org: &OrgId, seq: i64) {
        let mut subs = self.inner.subs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = subs.orgs.get_mut(org) {
            o.last_seq = o.last_seq.max(seq);
        }
    }

    fn deliver(&self, org: &OrgId, frame: Arc<Frame>) {
        let mut subs = self.inner.subs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(o) = subs.orgs.get_mut(org) else {
            return;
        };
        let mut gone = Vec::new();
        for (id, sub) in &o.subs {
            if !sub.filter.matches(&frame) {
                continue;
            }
            match sub.tx.try_send(frame.clone()) {
                Ok(()) => {}
                Err(flume::TrySendError::Full(_)) => {
                    sub.overflowed.store(true, Ordering::SeqCst);
                    self.inner.dropped_slow.fetch_add(1, Ordering::Relaxed);
                    gone.push(*id);
                }
                Err(flume::TrySendError::Disconnected(_)) => gone.push(*id),
            }
        }
        for id in gone {
            if o.subs.remove(&id).is_some() {
                self.inner.subscribers.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_follow_the_reference_rules() {
        let all = Kind::RunUpdate as u8 | Kind::RunLog as u8 | Kind::RunMetric as u8;
        assert_eq!(parse_channels(None), all);
        assert_eq!(parse_channels(Some("nonsense")), all);
        assert_eq!(parse_channels(Some("run_update")), Kind::RunUpdate as u8);
        assert_eq!(
            parse_channels(Some("run_update, run_metric,bogus")),
            Kind::RunUpdate as u8 | Kind::RunMetric as u8
        );
        // Recognised but silent: the stream carries none of the run channels.
        assert_eq!(parse_channels(Some("connection_update")), 0);
    }

    #[test]
    fn frames_are_numbered_sse() {
        let e = Event {
            org_id: "o".into(),
            seq: 42,
            run_id: "run_1".into(),
            application_id: "app_1".into(),
            end_user_id: None,
            package_id: None,
            kind: "run_update".into(),
            data: r#"{"status":"success","error_code":null}"#.into(),
            created_at: 0,
            log: None,
            result: Some(r#"{"output":{"x":1}}"#.into()),
        };
        let f = render(&e).expect("known kind");
        let plain = std::str::from_utf8(&f.plain).unwrap();
        assert!(
            plain.starts_with("id: 42\nevent: run_update\ndata: {"),
            "{plain}"
        );
        assert!(plain.ends_with("}\n\n"));
        assert!(!plain.contains("result"));
        assert!(std::str::from_utf8(&f.verbose)
            .unwrap()
            .contains("\"result\":{\"output\""));
    }
}
