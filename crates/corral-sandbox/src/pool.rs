//! The warm pool in front of every backend (SPEC §8): `target` fully started
//! sandboxes wait for a run; [`Pool::lease`] hands one out (a hit) or creates one on
//! demand (a miss); a leased sandbox never comes back; a background task refills
//! after every lease, recycles members older than the TTL, and backs off when
//! creation fails (engine down, image missing) instead of spinning.
//!
//! Behind it a second tier, for backends whose sandboxes are slow to make (Docker:
//! networks, containers, two container starts): `prepared_target` sandboxes made
//! ahead but not started as a whole (on Docker the sidecar runs, configured with
//! nothing yet, and the agent container is only created). A miss starts one of those
//! (one container start) instead of making a sandbox from nothing, and a warm member
//! is made by finishing one.
//!
//! The backends provide a [`Factory`]; the pool owns the policy.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use corral_protocol::Secret;

use crate::{Lease, PoolStats, Resources, SandboxError};

/// First delay after a failed refill; doubled per consecutive failure.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest delay between refill attempts while creation keeps failing.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long [`Pool::shutdown`] waits for members still being created.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);

/// What a backend must provide for the pool to manage its sandboxes.
#[async_trait]
pub trait Factory: Send + Sync + 'static {
    /// Creates a ready sandbox. `run_id` is set when it is created on demand for a
    /// known run (label `corral.run`), `None` for a pool member.
    async fn create(
        &self,
        run_id: Option<&str>,
        resources: Resources,
    ) -> Result<Lease, SandboxError>;

    /// Fits an idle member (created with [`Resources::default`]) to the resources
    /// of the run it is leased for. An error makes the pool discard the member and
    /// create a sandbox on demand instead.
    async fn adapt(&self, lease: &Lease, resources: Resources) -> Result<(), SandboxError>;

    /// Whether an idle member is still usable (cheap: called on every hit).
    async fn alive(&self, lease: &Lease) -> bool;

    /// Removes a sandbox (idempotent).
    async fn destroy(&self, id: &str) -> Result<(), SandboxError>;

    /// Whether this backend has a second tier: sandboxes worth making ahead and
    /// starting later ([`Factory::prepare`], [`Factory::start_prepared`]).
    fn prepares(&self) -> bool {
        false
    }

    /// Makes a sandbox ahead without starting it as a whole (the second tier).
    async fn prepare(&self) -> Result<Prepared, SandboxError> {
        Err(SandboxError::Start(
            "this backend does not prepare sandboxes".into(),
        ))
    }

    /// Starts a prepared sandbox, fitted to `resources`. On error the pool destroys it.
    async fn start_prepared(
        &self,
        prepared: Prepared,
        run_id: Option<&str>,
        resources: Resources,
    ) -> Result<Lease, SandboxError> {
        let _ = (run_id, resources);
        Err(SandboxError::Start(format!(
            "this backend cannot start prepared sandbox {}",
            prepared.id
        )))
    }
}

/// A sandbox made ahead but not started as a whole: on Docker its objects exist and
/// its sidecar runs (holding nothing until configured), its agent does not.
#[derive(Debug)]
pub struct Prepared {
    /// The sandbox's id (as a [`Lease`]'s).
    pub id: String,
    /// Its sidecar, when it already runs (as a [`Lease`]'s).
    pub sidecar_url: String,
    /// What configures it once started (as a [`Lease`]'s).
    pub configure_token: Secret,
}

struct Member {
    lease: Lease,
    born: Instant,
}

struct Idle {
    prepared: Prepared,
    born: Instant,
}

#[derive(Default)]
struct State {
    ready: VecDeque<Member>,
    warming: usize,
    /// The second tier, and how many of it are being made.
    prepared: VecDeque<Idle>,
    preparing: usize,
    /// Members taken from either tier and not yet handed to the caller (being
    /// checked, fitted or started): still the pool's, so the reaper leaves them.
    handing: HashSet<String>,
    hits: u64,
    misses: u64,
    prepared_hits: u64,
    recycled: u64,
    /// Consecutive refill failures (0 after a success).
    failures: u32,
    /// No refill attempt before this instant (back-off after failures).
    retry_at: Option<Instant>,
    shut: bool,
}

struct Inner<F> {
    factory: Arc<F>,
    target: usize,
    prepared_target: usize,
    ttl: Duration,
    state: Mutex<State>,
    /// Wakes the refill loop (a lease happened, a member is ready, creation failed).
    wake: Notify,
    /// Signalled whenever `warming` drops (for shutdown).
    settled: Notify,
    cancel: CancellationToken,
}

/// A warm pool of sandboxes made by `F`. Dropping it stops the refill task (idle
/// members are left as they are; call [`Pool::shutdown`] to remove them).
pub struct Pool<F: Factory> {
    inner: Arc<Inner<F>>,
}

impl<F: Factory> Drop for Pool<F> {
    fn drop(&mut self) {
        self.inner.cancel.cancel();
    }
}

impl<F: Factory> Pool<F> {
    /// Starts the pool (and its refill task, which needs a Tokio runtime).
    /// `target == 0` disables the warm tier, `prepared_target == 0` the second
    /// one; both at 0, every lease creates a sandbox.
    pub fn start(factory: Arc<F>, target: usize, prepared_target: usize, ttl: Duration) -> Self {
        let prepared_target = if factory.prepares() {
            prepared_target
        } else {
            0
        };
        let inner = Arc::new(Inner {
            factory,
            target,
            prepared_target,
            ttl: ttl.max(Duration::from_millis(100)),
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            settled: Notify::new(),
            cancel: CancellationToken::new(),
        });
        if target > 0 || prepared_target > 0 {
            tokio::spawn(refill_loop(inner.clone()));
        }
        Pool { inner }
    }

    /// The backend behind the pool.
    pub fn factory(&self) -> &Arc<F> {
        &self.inner.factory
    }

    /// A sandbox for `run_id`: an idle member when one is ready (fitted to
    /// `resources`), else one created now. Either way the pool refills behind.
    pub async fn lease(&self, run_id: &str, resources: Resources) -> Result<Lease, SandboxError> {
        let inner = &self.inner;
        loop {
            let member = {
                let mut st = inner.state.lock();
                if st.shut {
                    None
                } else {
                    let m = st.ready.pop_front();
                    if let Some(m) = &m {
                        st.handing.insert(m.lease.id.clone());
                    }
                    m
                }
            };
            let Some(member) = member else { break };
            inner.wake.notify_one();
            let id = member.lease.id.clone();
            let _handing = Handing(inner, id.clone());
            if member.born.elapsed() >= inner.ttl || !inner.factory.alive(&member.lease).await {
                tracing::debug!(sandbox = id, "discarding a stale pool member");
                spawn_destroy(inner.factory.clone(), id);
                continue;
            }
            if resources != Resources::default() {
                if let Err(e) = inner.factory.adapt(&member.lease, resources).await {
                    tracing::warn!(sandbox = id, error = %e,
                        "cannot fit a pool member to the run's resources; creating one");
                    spawn_destroy(inner.factory.clone(), id);
                    break;
                }
            }
            inner.state.lock().hits += 1;
            let mut lease = member.lease;
            lease.warm = true;
            tracing::debug!(sandbox = lease.id, run_id, "pool hit");
            return Ok(lease);
        }
        inner.state.lock().misses += 1;
        inner.wake.notify_one();
        while let Some(idle) = take_prepared(inner) {
            let id = idle.id.clone();
            let _handing = Handing(inner, id.clone());
            let started =
                start_detached(inner.factory.clone(), idle, Some(run_id), resources).await;
            inner.wake.notify_one();
            match started {
                Ok(mut lease) => {
                    inner.state.lock().prepared_hits += 1;
                    lease.warm = false;
                    tracing::debug!(
                        sandbox = id,
                        run_id,
                        "pool miss: started a prepared sandbox"
                    );
                    return Ok(lease);
                }
                Err(e) => {
                    tracing::warn!(sandbox = id, error = %e,
                        "cannot start a prepared sandbox; trying another or creating one");
                }
            }
        }
        tracing::debug!(run_id, "pool miss: creating a sandbox");
        let mut lease =
            create_detached(inner.factory.clone(), run_id.to_owned(), resources).await?;
        lease.warm = false;
        Ok(lease)
    }

    /// Metrics.
    pub fn stats(&self) -> PoolStats {
        let st = self.inner.state.lock();
        PoolStats {
            target: self.inner.target,
            ready: st.ready.len(),
            warming: st.warming,
            hits: st.hits,
            misses: st.misses,
            recycled: st.recycled,
            prepared_target: self.inner.prepared_target,
            prepared: st.prepared.len(),
            prepared_hits: st.prepared_hits,
        }
    }

    /// Ids of the members of both tiers, including those being handed out.
    pub fn members(&self) -> Vec<String> {
        let st = self.inner.state.lock();
        st.ready
            .iter()
            .map(|m| m.lease.id.clone())
            .chain(st.prepared.iter().map(|p| p.prepared.id.clone()))
            .chain(st.handing.iter().cloned())
            .collect()
    }

    /// Stops refilling, destroys the idle members and waits (bounded) for members
    /// still being created, which destroy themselves.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        let idle: Vec<String> = {
            let mut st = inner.state.lock();
            st.shut = true;
            let ready: Vec<String> = st.ready.drain(..).map(|m| m.lease.id).collect();
            ready
                .into_iter()
                .chain(st.prepared.drain(..).map(|p| p.prepared.id))
                .collect()
        };
        inner.cancel.cancel();
        futures::future::join_all(idle.iter().map(|id| async move {
            if let Err(e) = inner.factory.destroy(id).await {
                tracing::warn!(sandbox = id, error = %e, "cannot destroy a pool member");
            }
        }))
        .await;
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        loop {
            let settled = inner.settled.notified();
            let busy = {
                let st = inner.state.lock();
                st.warming + st.preparing
            };
            if busy == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                tracing::warn!("pool shutdown: members still being created after 30s");
                break;
            }
        }
    }
}

/// Creates a sandbox for `run_id` in a task of its own, so that a caller that stops
/// waiting (a cancelled run, a shutdown) never abandons a creation half-way, which
/// would leave containers `Created` and networks behind: the task finishes, and
/// destroys the sandbox if nobody is left to take it.
async fn create_detached<F: Factory>(
    factory: Arc<F>,
    run_id: String,
    resources: Resources,
) -> Result<Lease, SandboxError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let created = factory.create(Some(&run_id), resources).await;
        if let Err(Ok(lease)) = tx.send(created) {
            tracing::debug!(
                sandbox = lease.id,
                run_id,
                "creation outlived its caller; removing"
            );
            if let Err(e) = factory.destroy(&lease.id).await {
                tracing::warn!(sandbox = lease.id, error = %e, "cannot destroy an abandoned sandbox");
            }
        }
    });
    rx.await
        .map_err(|_| SandboxError::Start("the sandbox creation task panicked".into()))?
}

/// Keeps a member listed (for the reaper) while it is being handed out.
struct Handing<'a, F: Factory>(&'a Arc<Inner<F>>, String);

impl<F: Factory> Drop for Handing<'_, F> {
    fn drop(&mut self) {
        self.0.state.lock().handing.remove(&self.1);
    }
}

/// The oldest prepared member still within the TTL (older ones are recycled), now
/// listed as being handed out.
fn take_prepared<F: Factory>(inner: &Arc<Inner<F>>) -> Option<Prepared> {
    loop {
        let idle = {
            let mut st = inner.state.lock();
            if st.shut {
                return None;
            }
            let idle = st.prepared.pop_front()?;
            if idle.born.elapsed() >= inner.ttl {
                st.recycled += 1;
                Err(idle.prepared.id)
            } else {
                st.handing.insert(idle.prepared.id.clone());
                Ok(idle.prepared)
            }
        };
        match idle {
            // The refill is woken once this one has started (or failed): making the
            // next one meanwhile would slow this start down on the same engine.
            Ok(p) => return Some(p),
            Err(id) => {
                inner.wake.notify_one();
                spawn_destroy(inner.factory.clone(), id);
            }
        }
    }
}

/// Starts a prepared sandbox in a task of its own (like [`create_detached`]): a
/// start that fails, or that nobody is left to take, destroys its sandbox.
async fn start_detached<F: Factory>(
    factory: Arc<F>,
    prepared: Prepared,
    run_id: Option<&str>,
    resources: Resources,
) -> Result<Lease, SandboxError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let run_id = run_id.map(str::to_owned);
    tokio::spawn(async move {
        let id = prepared.id.clone();
        let started = factory
            .start_prepared(prepared, run_id.as_deref(), resources)
            .await;
        if started.is_err() {
            if let Err(e) = factory.destroy(&id).await {
                tracing::warn!(sandbox = id, error = %e, "cannot destroy a prepared sandbox that did not start");
            }
        }
        if let Err(Ok(lease)) = tx.send(started) {
            tracing::debug!(sandbox = lease.id, "start outlived its caller; removing");
            if let Err(e) = factory.destroy(&lease.id).await {
                tracing::warn!(sandbox = lease.id, error = %e, "cannot destroy an abandoned sandbox");
            }
        }
    });
    rx.await
        .map_err(|_| SandboxError::Start("the sandbox start task panicked".into()))?
}

fn spawn_destroy<F: Factory>(factory: Arc<F>, id: String) {
    tokio::spawn(async move {
        if let Err(e) = factory.destroy(&id).await {
            tracing::warn!(sandbox = id, error = %e, "cannot destroy a pool member");
        }
    });
}

/// The pool's only background task: recycles expired members and starts as many
/// creations as the pool lacks, sleeping until the next expiry, a wake-up or the
/// end of a back-off.
async fn refill_loop<F: Factory>(inner: Arc<Inner<F>>) {
    loop {
        let now = Instant::now();
        let (expired, to_start, to_prepare, next_wake) = {
            let mut st = inner.state.lock();
            if st.shut {
                return;
            }
            let mut expired = Vec::new();
            st.ready.retain(|m| {
                let keep = now.duration_since(m.born) < inner.ttl;
                if !keep {
                    expired.push(m.lease.id.clone());
                }
                keep
            });
            st.prepared.retain(|p| {
                let keep = now.duration_since(p.born) < inner.ttl;
                if !keep {
                    expired.push(p.prepared.id.clone());
                }
                keep
            });
            st.recycled += expired.len() as u64;
            let backing_off = st.retry_at.is_some_and(|t| t > now);
            let have = st.ready.len() + st.warming;
            let have_prepared = st.prepared.len() + st.preparing;
            let (to_start, to_prepare) = if backing_off {
                (0, 0)
            } else if st.failures > 0 {
                // After a failure probe with one creation before going wide again.
                let idle = st.warming == 0 && st.preparing == 0;
                if idle && have < inner.target {
                    (1, 0)
                } else {
                    (
                        0,
                        usize::from(idle && have_prepared < inner.prepared_target),
                    )
                }
            } else {
                (
                    inner.target.saturating_sub(have),
                    inner.prepared_target.saturating_sub(have_prepared),
                )
            };
            st.warming += to_start;
            st.preparing += to_prepare;
            let oldest_expiry = st
                .ready
                .iter()
                .map(|m| m.born)
                .chain(st.prepared.iter().map(|p| p.born))
                .min()
                .map(|b| b + inner.ttl);
            let next_wake = match (oldest_expiry, st.retry_at.filter(|t| *t > now)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            (expired, to_start, to_prepare, next_wake)
        };
        for id in expired {
            tracing::debug!(sandbox = id, "recycling an expired pool member");
            spawn_destroy(inner.factory.clone(), id);
        }
        for _ in 0..to_start {
            tokio::spawn(create_member(inner.clone()));
        }
        for _ in 0..to_prepare {
            tokio::spawn(prepare_member(inner.clone()));
        }
        let wake = inner.wake.notified();
        let sleep = async {
            match next_wake {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            _ = wake => {}
            _ = sleep => {}
        }
    }
}

/// Records a refill attempt's outcome (back-off after failures).
fn note_outcome<T>(st: &mut State, r: &Result<T, SandboxError>, what: &str) {
    match r {
        Ok(_) => {
            st.failures = 0;
            st.retry_at = None;
        }
        Err(e) => {
            st.failures = st.failures.saturating_add(1);
            let delay = BACKOFF_MIN
                .saturating_mul(1 << st.failures.saturating_sub(1).min(6))
                .min(BACKOFF_MAX);
            st.retry_at = Some(Instant::now() + delay);
            tracing::warn!(error = %e, retry_in = ?delay, failures = st.failures, "cannot create a {what}");
        }
    }
}

async fn create_member<F: Factory>(inner: Arc<Inner<F>>) {
    // Never abandoned half-way (that would leak objects): a creation that ends
    // after shutdown (or after the pool was dropped) destroys its sandbox. A
    // prepared sandbox, when there is one, only needs starting.
    let created = match take_prepared(&inner) {
        Some(p) => {
            let id = p.id.clone();
            let _handing = Handing(&inner, id);
            start_detached(inner.factory.clone(), p, None, Resources::default()).await
        }
        None => inner.factory.create(None, Resources::default()).await,
    };
    let mut orphan = None;
    {
        let mut st = inner.state.lock();
        st.warming -= 1;
        note_outcome(&mut st, &created, "pool member");
        if let Ok(lease) = created {
            if st.shut || inner.cancel.is_cancelled() {
                orphan = Some(lease.id);
            } else {
                st.ready.push_back(Member {
                    lease,
                    born: Instant::now(),
                });
            }
        }
    }
    settle(&inner, orphan).await;
}

async fn prepare_member<F: Factory>(inner: Arc<Inner<F>>) {
    let made = inner.factory.prepare().await;
    let mut orphan = None;
    {
        let mut st = inner.state.lock();
        st.preparing -= 1;
        note_outcome(&mut st, &made, "prepared sandbox");
        if let Ok(prepared) = made {
            if st.shut || inner.cancel.is_cancelled() {
                orphan = Some(prepared.id);
            } else {
                st.prepared.push_back(Idle {
                    prepared,
                    born: Instant::now(),
                });
            }
        }
    }
    settle(&inner, orphan).await;
}

async fn settle<F: Factory>(inner: &Arc<Inner<F>>, orphan: Option<String>) {
    if let Some(id) = orphan {
        if let Err(e) = inner.factory.destroy(&id).await {
            tracing::warn!(sandbox = id, error = %e, "cannot destroy a pool member");
        }
    }
    inner.settled.notify_waiters();
    inner.wake.notify_one();
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use corral_protocol::Secret;

    use super::*;
    use crate::RunnerKind;

    #[derive(Default)]
    struct Fake {
        created: AtomicU64,
        fail: AtomicBool,
        live: Mutex<HashSet<String>>,
        runs: Mutex<Vec<Option<String>>>,
        /// Made but not started (the second tier).
        made: Mutex<HashSet<String>>,
        started: AtomicU64,
    }

    #[async_trait]
    impl Factory for Fake {
        async fn create(&self, run_id: Option<&str>, _: Resources) -> Result<Lease, SandboxError> {
            let n = self.created.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            if self.fail.load(Ordering::SeqCst) {
                return Err(SandboxError::Unavailable("engine down".into()));
            }
            let id = format!("sbx_{n}");
            self.live.lock().insert(id.clone());
            self.runs.lock().push(run_id.map(str::to_owned));
            Ok(Lease {
                id,
                sidecar_url: "http://127.0.0.1:1".into(),
                configure_token: Secret::new("t"),
                warm: false,
                kind: RunnerKind::Process,
            })
        }
        async fn adapt(&self, _: &Lease, _: Resources) -> Result<(), SandboxError> {
            Ok(())
        }
        async fn alive(&self, lease: &Lease) -> bool {
            self.live.lock().contains(&lease.id)
        }
        async fn destroy(&self, id: &str) -> Result<(), SandboxError> {
            self.live.lock().remove(id);
            self.made.lock().remove(id);
            Ok(())
        }
        fn prepares(&self) -> bool {
            true
        }
        async fn prepare(&self) -> Result<Prepared, SandboxError> {
            let n = self.created.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            if self.fail.load(Ordering::SeqCst) {
                return Err(SandboxError::Unavailable("engine down".into()));
            }
            let id = format!("prep_{n}");
            self.made.lock().insert(id.clone());
            Ok(Prepared {
                id,
                sidecar_url: "http://127.0.0.1:1".into(),
                configure_token: Secret::new("t"),
            })
        }
        async fn start_prepared(
            &self,
            p: Prepared,
            run_id: Option<&str>,
            _: Resources,
        ) -> Result<Lease, SandboxError> {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if !self.made.lock().remove(&p.id) {
                return Err(SandboxError::Start(format!("{} is gone", p.id)));
            }
            self.started.fetch_add(1, Ordering::SeqCst);
            self.live.lock().insert(p.id.clone());
            self.runs.lock().push(run_id.map(str::to_owned));
            Ok(Lease {
                id: p.id,
                sidecar_url: p.sidecar_url,
                configure_token: p.configure_token,
                warm: false,
                kind: RunnerKind::Process,
            })
        }
    }

    async fn until(mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "condition not reached");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn an_abandoned_on_demand_creation_finishes_and_is_removed() {
        let fake = Arc::new(Fake::default());
        let pool = Pool::start(fake.clone(), 0, 0, Duration::from_secs(600));
        // The caller gives up while the sandbox is being made (a cancelled run).
        let lease = pool.lease("run_gone", Resources::default());
        assert!(tokio::time::timeout(Duration::from_millis(5), lease)
            .await
            .is_err());
        until(|| fake.created.load(Ordering::SeqCst) == 1).await;
        // The creation ran to its end, then its sandbox was destroyed.
        until(|| fake.runs.lock().len() == 1 && fake.live.lock().is_empty()).await;
        // A caller that waits gets its sandbox, alive.
        let kept = pool.lease("run_kept", Resources::default()).await.unwrap();
        assert!(fake.live.lock().contains(&kept.id));
    }

    #[tokio::test]
    async fn fills_serves_hits_then_misses_and_refills() {
        let fake = Arc::new(Fake::default());
        let pool = Pool::start(fake.clone(), 2, 0, Duration::from_secs(600));
        until(|| pool.stats().ready == 2).await;
        let members = pool.members();
        let a = pool.lease("run_a", Resources::default()).await.unwrap();
        assert!(a.warm);
        assert!(members.contains(&a.id));
        assert!(
            !pool.members().contains(&a.id),
            "a leased member stays listed"
        );
        let b = pool.lease("run_b", Resources::default()).await.unwrap();
        let c = pool.lease("run_c", Resources::default()).await.unwrap();
        assert!(b.warm);
        assert!(!c.warm, "the pool was empty");
        let ids: HashSet<_> = [&a.id, &b.id, &c.id].into_iter().collect();
        assert_eq!(ids.len(), 3, "a sandbox was handed out twice");
        assert!(fake.runs.lock().contains(&Some("run_c".to_owned())));
        until(|| pool.stats().ready == 2).await;
        let s = pool.stats();
        assert_eq!((s.target, s.hits, s.misses, s.warming), (2, 2, 1, 0));
        for m in pool.members() {
            assert!(![&a.id, &b.id, &c.id].contains(&&m));
        }
        pool.shutdown().await;
        assert!(pool.members().is_empty());
        let live = fake.live.lock().clone();
        assert_eq!(
            live,
            [a.id, b.id, c.id].into_iter().collect(),
            "only the leased ones remain"
        );
    }

    #[tokio::test]
    async fn size_zero_is_always_cold() {
        let fake = Arc::new(Fake::default());
        let pool = Pool::start(fake.clone(), 0, 0, Duration::from_secs(600));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(fake.created.load(Ordering::SeqCst), 0);
        let l = pool.lease("run", Resources::default()).await.unwrap();
        assert!(!l.warm);
        assert_eq!(pool.stats().misses, 1);
    }

    #[tokio::test]
    async fn recycles_expired_members() {
        let fake = Arc::new(Fake::default());
        let pool = Pool::start(fake.clone(), 1, 0, Duration::from_millis(300));
        until(|| pool.stats().ready == 1).await;
        let first = pool.members()[0].clone();
        until(|| pool.stats().recycled >= 1 && pool.stats().ready == 1).await;
        assert_ne!(pool.members()[0], first);
        until(|| !fake.live.lock().contains(&first)).await;
        pool.shutdown().await;
        assert!(fake.live.lock().is_empty());
    }

    #[tokio::test]
    async fn dead_members_are_skipped() {
        let fake = Arc::new(Fake::default());
        let pool = Pool::start(fake.clone(), 1, 0, Duration::from_secs(600));
        until(|| pool.stats().ready == 1).await;
        let member = pool.members()[0].clone();
        fake.live.lock().remove(&member);
        let l = pool.lease("run", Resources::default()).await.unwrap();
        assert_ne!(l.id, member);
        assert!(!l.warm);
        pool.shutdown().await;
    }

    #[tokio::test]
    async fn failing_refill_backs_off() {
        let fake = Arc::new(Fake::default());
        fake.fail.store(true, Ordering::SeqCst);
        let pool = Pool::start(fake.clone(), 2, 0, Duration::from_secs(600));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let attempts = fake.created.load(Ordering::SeqCst);
        // 2 at start, then one probe after 1 s, the next only after 2 s more.
        assert!((2..=3).contains(&attempts), "{attempts} attempts in 2.5s");
        assert!(pool.lease("run", Resources::default()).await.is_err());
        fake.fail.store(false, Ordering::SeqCst);
        until(|| pool.stats().ready == 2).await;
        pool.shutdown().await;
    }

    #[tokio::test]
    async fn misses_start_prepared_sandboxes_and_the_tier_refills() {
        let fake = Arc::new(Fake::default());
        let pool = Pool::start(fake.clone(), 0, 2, Duration::from_secs(600));
        until(|| pool.stats().prepared == 2).await;
        let made: HashSet<String> = fake.made.lock().clone();
        // Both tiers are listed for the reaper.
        assert_eq!(pool.members().into_iter().collect::<HashSet<_>>(), made);
        let a = pool.lease("run_a", Resources::default()).await.unwrap();
        assert!(!a.warm, "a started prepared sandbox is a miss");
        assert!(made.contains(&a.id), "not one of the prepared sandboxes");
        assert!(fake.live.lock().contains(&a.id));
        assert!(fake.runs.lock().contains(&Some("run_a".to_owned())));
        assert!(
            !pool.members().contains(&a.id),
            "a leased sandbox stays listed"
        );
        until(|| pool.stats().prepared == 2).await;
        let s = pool.stats();
        assert_eq!((s.misses, s.prepared_hits, s.prepared_target), (1, 1, 2));
        // A prepared sandbox that is gone is skipped; the next one serves.
        let gone = pool.members()[0].clone();
        fake.made.lock().remove(&gone);
        let b = pool.lease("run_b", Resources::default()).await.unwrap();
        assert_ne!(b.id, gone);
        assert_eq!(fake.started.load(Ordering::SeqCst), 2);
        pool.shutdown().await;
        assert!(
            fake.made.lock().is_empty(),
            "prepared sandboxes left after shutdown"
        );
        assert_eq!(
            fake.live.lock().clone(),
            [a.id, b.id].into_iter().collect(),
            "only the leased ones remain"
        );
    }

    #[tokio::test]
    async fn the_warm_tier_is_filled_from_the_prepared_one() {
        let fake = Arc::new(Fake::default());
        let pool = Pool::start(fake.clone(), 1, 1, Duration::from_secs(600));
        until(|| pool.stats().ready == 1 && pool.stats().prepared == 1).await;
        let a = pool.lease("run_a", Resources::default()).await.unwrap();
        assert!(a.warm);
        // The warm refill starts the prepared sandbox (no build from nothing), and the
        // second tier makes another.
        until(|| pool.stats().ready == 1 && pool.stats().prepared == 1).await;
        assert!(fake.started.load(Ordering::SeqCst) >= 1);
        pool.shutdown().await;
        assert!(fake.made.lock().is_empty());
        assert_eq!(fake.live.lock().clone(), [a.id].into_iter().collect());
    }

    #[tokio::test]
    async fn backends_without_a_second_tier_prepare_nothing() {
        struct Plain(Fake);
        #[async_trait]
        impl Factory for Plain {
            async fn create(&self, r: Option<&str>, x: Resources) -> Result<Lease, SandboxError> {
                self.0.create(r, x).await
            }
            async fn adapt(&self, l: &Lease, x: Resources) -> Result<(), SandboxError> {
                self.0.adapt(l, x).await
            }
            async fn alive(&self, l: &Lease) -> bool {
                self.0.alive(l).await
            }
            async fn destroy(&self, id: &str) -> Result<(), SandboxError> {
                self.0.destroy(id).await
            }
        }
        let plain = Arc::new(Plain(Fake::default()));
        let pool = Pool::start(plain.clone(), 0, 3, Duration::from_secs(600));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(plain.0.created.load(Ordering::SeqCst), 0);
        assert_eq!(pool.stats().prepared_target, 0);
        let l = pool.lease("run", Resources::default()).await.unwrap();
        assert!(!l.warm);
    }
}
