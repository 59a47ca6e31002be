//! The executor (SPEC §7): a queue per organization with a per-org concurrency cap
//! and a server-wide one. Runs that cannot start stay `pending`; when a slot frees,
//! organizations are served in rotation (each org's runs in arrival order), so one
//! org's burst never starves another.
//!
//! Each started run gets a supervisor task: lease a sandbox, mark the run `running`,
//! configure the sidecar, then watch the run until it is terminal — finalized by the
//! agent, cancelled (on any replica), timed out, stalled, crashed, or the server
//! stopping — and tear the sandbox down in every case.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use corral_core::time::now_ms;
use corral_core::{OrgId, RunId};
use corral_protocol::{Secret, SidecarConfig, Sink, Task};
use corral_sandbox::{Resources, SandboxError};
use corral_store::runs::{self as store, RunStatus};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::watchdog::{watch, Watch};
use super::{codes, fail, Definition, Sandboxes};
use crate::Engine;

#[derive(Default)]
struct Sched {
    queues: HashMap<OrgId, VecDeque<RunId>>,
    /// Orgs with queued runs, in service order.
    rotation: VecDeque<OrgId>,
    running: HashMap<OrgId, usize>,
    total: usize,
    queued: HashSet<RunId>,
}

#[derive(Default)]
pub struct Executor {
    /// PostgreSQL: the runs table is the cluster's queue ([`super::cluster`]); the
    /// in-memory queues stay empty and only this server's load is counted here.
    cluster: bool,
    sched: Mutex<Sched>,
    wake: Notify,
    /// Sandboxes leased by this server whose run is not finished (the reaper keeps them).
    leased: Mutex<HashSet<String>>,
    tasks: TaskTracker,
    /// Set when the server starts a graceful stop: no queued run starts any more.
    draining: std::sync::atomic::AtomicBool,
}

/// Counts for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutorStats {
    pub queued: usize,
    pub running: usize,
}

impl Executor {
    /// An executor whose queue is the database's (`cluster`) or its own.
    pub fn new(cluster: bool) -> Executor {
        Executor {
            cluster,
            ..Executor::default()
        }
    }

    /// Whether runs are queued in the database for any worker of the cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Queues a pending run of `org_id` (a run already queued is not queued twice).
    /// In cluster mode the run is already queued by its row: this only wakes the
    /// local dispatcher (the other workers wake on the run bus).
    pub fn enqueue(&self, org_id: &OrgId, run_id: &RunId) {
        if self.cluster {
            self.wake.notify_one();
            return;
        }
        let mut s = self.sched.lock();
        if !s.queued.insert(run_id.to_owned()) {
            return;
        }
        let q = s.queues.entry(org_id.to_owned()).or_default();
        q.push_back(run_id.to_owned());
        if q.len() == 1 && !s.rotation.iter().any(|o| o == org_id) {
            s.rotation.push_back(org_id.to_owned());
        }
        drop(s);
        self.wake.notify_one();
    }

    pub fn stats(&self) -> ExecutorStats {
        let s = self.sched.lock();
        ExecutorStats {
            queued: s.queued.len(),
            running: s.total,
        }
    }

    /// Sandbox ids this server leased for runs that are still being supervised.
    pub fn leased_sandboxes(&self) -> HashSet<String> {
        self.leased.lock().clone()
    }

    /// A graceful stop begins: queued runs stay `pending` (the next boot, or another
    /// replica, starts them) while the runs already started may finish.
    pub fn stop_dispatch(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Runs this server supervises right now (started here or re-attached).
    pub fn supervised(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Counts a run claimed from the cluster's queue (released by `done`).
    pub(crate) fn begin(&self, org: &OrgId) {
        let mut s = self.sched.lock();
        *s.running.entry(org.clone()).or_default() += 1;
        s.total += 1;
    }

    /// Waits until a local event may have made a run startable.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// The next run to start, respecting both caps, orgs in rotation.
    fn pick(&self, max_total: usize, max_per_org: usize) -> Option<(OrgId, RunId)> {
        if self.draining.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let mut s = self.sched.lock();
        if s.total >= max_total {
            return None;
        }
        for _ in 0..s.rotation.len() {
            let org = s.rotation.pop_front()?;
            let running = s.running.get(&org).copied().unwrap_or(0);
            let run = if running < max_per_org {
                s.queues.get_mut(&org).and_then(VecDeque::pop_front)
            } else {
                None
            };
            let has_more = s.queues.get(&org).is_some_and(|q| !q.is_empty());
            if has_more {
                s.rotation.push_back(org.clone());
            } else if run.is_some() || s.queues.get(&org).is_some_and(VecDeque::is_empty) {
                s.queues.remove(&org);
            }
            if let Some(run) = run {
                *s.running.entry(org.clone()).or_default() += 1;
                s.total += 1;
                s.queued.remove(&run);
                return Some((org, run));
            }
        }
        None
    }

    pub(crate) fn done(&self, org: &OrgId) {
        let mut s = self.sched.lock();
        if let Some(n) = s.running.get_mut(org) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.running.remove(org);
            }
        }
        s.total = s.total.saturating_sub(1);
        drop(s);
        self.wake.notify_one();
    }

    /// Marks a sandbox as in use by a run this server supervises.
    pub fn adopt(&self, sandbox_id: String) {
        self.leased.lock().insert(sandbox_id);
    }

    pub fn release(&self, sandbox_id: &str) {
        self.leased.lock().remove(sandbox_id);
    }

    /// Runs a supervision task that [`Executor::drain`] waits for.
    pub fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(fut);
    }

    /// Waits for every supervisor to finish (they stop on `stop`).
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Starts queued runs as slots free up, until `stop`.
pub async fn dispatch(state: Engine, stop: CancellationToken) {
    if state.runs.executor.cluster {
        return super::cluster::dispatch(state, stop).await;
    }
    let max = state.config.max_concurrent_runs;
    let per_org = state.config.org_max_concurrent_runs;
    loop {
        while let Some((org, run_id)) = state.runs.executor.pick(max, per_org) {
            start(&state, org, run_id, &stop);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = state.runs.executor.wake.notified() => {}
        }
    }
}

/// Supervises a run this server took (from its queue or the cluster's) until it is
/// terminal or handed back, then frees its slot.
pub(crate) fn start(state: &Engine, org: OrgId, run_id: RunId, stop: &CancellationToken) {
    let st = state.clone();
    let stop = stop.clone();
    state.runs.executor.tasks.spawn(async move {
        if let Err(e) = supervise(&st, &run_id, &stop).await {
            tracing::error!(%run_id, error = %format!("{e:#}"), "run supervision failed");
            let _ = fail(
                &st,
                &run_id,
                "internal_error",
                "the platform failed while running this run",
            )
            .await;
        }
        st.runs.executor.done(&org);
    });
}

/// The run token handed to the sidecar: derived from the server's run-token secret, so
/// only its hash needs storing and any replica can recompute it.
pub fn run_token(state: &Engine, run_id: &RunId) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(state.secrets.run_token.expose().as_bytes())
            .expect("HMAC accepts any key length");
    mac.update(run_id.as_str().as_bytes());
    format!("rt_{}", hex::encode(mac.finalize().into_bytes()))
}

/// How a run token is stored and looked up: SHA-256, hex (never the token itself).
pub fn run_token_hash(token: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn sandbox_error_code(e: &SandboxError) -> &'static str {
    match e {
        SandboxError::Unavailable(_)
        | SandboxError::ImageMissing { .. }
        | SandboxError::BinaryMissing(_) => codes::SANDBOX_UNAVAILABLE,
        _ => codes::SANDBOX_START_FAILED,
    }
}

async fn supervise(state: &Engine, run_id: &RunId, stop: &CancellationToken) -> anyhow::Result<()> {
    let mut conn = state.db.conn().await?;
    let Some(run) = store::get_internal(&mut conn, run_id).await? else {
        return Ok(());
    };
    drop(conn);
    if run.status != RunStatus::Pending {
        return Ok(());
    }
    // Claimed from the cluster's queue, then handed to another worker meanwhile
    // (this one looked dead): the other one runs it.
    if state.runs.executor.cluster && run.server_id.as_deref() != Some(&state.runs.instance_id) {
        tracing::info!(%run_id, owner = ?run.server_id, "claim lost before the start");
        return Ok(());
    }
    let def: Definition = serde_json::from_str(&run.definition)?;
    // Before any sandbox: a run whose key cannot be had fails with the reason, rather
    // than reaching the provider with an empty key.
    let api_key =
        match corral_connect::models::run_key(&state.connect, &run.org_id, &def.model).await {
            Ok(k) => k,
            Err(reason) => {
                tracing::warn!(%run_id, reason, "no model key for run");
                fail(state, run_id, codes::MODEL_CREDENTIAL_UNAVAILABLE, &reason).await?;
                return Ok(());
            }
        };
    // Likewise a run whose proxy cannot be had fails, rather than going out directly.
    let proxy_url = match &def.proxy {
        Some(p) => match corral_connect::proxies::run_url(&state.connect, &run.org_id, p).await {
            Ok(u) => Some(u),
            Err(reason) => {
                tracing::warn!(%run_id, reason, "no proxy for run");
                fail(state, run_id, codes::PROXY_UNAVAILABLE, &reason).await?;
                return Ok(());
            }
        },
        None => None,
    };
    let sbx = match state.runs.sandboxes().await {
        Ok(s) => s,
        Err(msg) => {
            fail(
                state,
                run_id,
                codes::SANDBOX_UNAVAILABLE,
                &format!("no sandbox backend: {msg}"),
            )
            .await?;
            return Ok(());
        }
    };
    let lease = sbx.backend.lease(run_id.as_str(), Resources::default());
    tokio::pin!(lease);
    let lease = tokio::select! {
        l = &mut lease => l,
        _ = stop.cancelled() => {
            // The run stays `pending`: the next boot (or another replica) starts it.
            // Dropping a start half-way would leave its network and containers
            // behind: let it finish (its own timeout bounds it) and remove it.
            if let Ok(l) = lease.await {
                teardown(&sbx, &l.id).await;
            }
            return Ok(());
        }
    };
    let lease = match lease {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%run_id, error = %e, "no sandbox for run");
            fail(state, run_id, sandbox_error_code(&e), &e.to_string()).await?;
            return Ok(());
        }
    };
    state.runs.executor.adopt(lease.id.clone());
    let secrets = RunSecrets { api_key, proxy_url };
    let result = run_in(state, &run, &def, secrets, &sbx, &lease, stop).await;
    if !matches!(result, Ok(Watch::Detached)) {
        teardown(&sbx, &lease.id).await;
    }
    state.runs.executor.release(&lease.id);
    result.map(|_| ())
}

/// Removes a sandbox, retrying briefly: a sandbox must never outlive its run.
pub async fn teardown(sbx: &Sandboxes, sandbox_id: &str) {
    for attempt in 0..5u32 {
        match sbx.backend.destroy(sandbox_id).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(sandbox_id, attempt, error = %e, "sandbox teardown failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
            }
        }
    }
    tracing::error!(
        sandbox_id,
        "sandbox teardown failed; the reaper will remove it"
    );
}

/// What the supervisor opened for the sidecar before leasing the sandbox.
struct RunSecrets {
    api_key: corral_connect::models::RunKey,
    proxy_url: Option<String>,
}

async fn run_in(
    state: &Engine,
    run: &store::Run,
    def: &Definition,
    secrets: RunSecrets,
    sbx: &Sandboxes,
    lease: &corral_sandbox::Lease,
    stop: &CancellationToken,
) -> anyhow::Result<Watch> {
    let run_id = &run.id;
    let mut conn = state.db.conn().await?;
    let started = store::mark_running(
        &mut conn,
        run_id,
        &store::Start {
            server_id: &state.runs.instance_id,
            runner_name: &state.runs.worker_name,
            sandbox_id: &lease.id,
            runner_kind: lease.kind.as_str(),
            now: now_ms(),
        },
    )
    .await?;
    drop(conn);
    if !started {
        // Cancelled while the sandbox was being leased (or, in a cluster, handed to
        // another worker because this one looked dead).
        return Ok(Watch::Ended);
    }
    state.runs.bus.publish(run_id, RunStatus::Running).await;
    tracing::info!(%run_id, sandbox = %lease.id, warm = lease.warm, kind = %lease.kind, "run started");

    if let Err(e) = configure(state, run, def, secrets, sbx, lease).await {
        if let Some(ConfigureError::Connection(msg)) = e.downcast_ref::<ConfigureError>() {
            tracing::warn!(%run_id, error = %msg, "a connection's credentials are unavailable");
            fail(
                state,
                run_id,
                codes::CONNECTION_UNAVAILABLE,
                &format!("integration credentials unavailable: {msg}"),
            )
            .await?;
            return Ok(Watch::Ended);
        }
        tracing::warn!(%run_id, error = %format!("{e:#}"), "configuring the sidecar failed");
        fail(
            state,
            run_id,
            codes::SANDBOX_START_FAILED,
            &format!("the sandbox could not be configured: {e}"),
        )
        .await?;
        return Ok(Watch::Ended);
    }
    watch(state, run, sbx, &lease.id, stop).await
}

/// Why a sidecar could not be configured, when it is not the sandbox's fault.
#[derive(Debug, thiserror::Error)]
enum ConfigureError {
    #[error("{0}")]
    Connection(String),
}

async fn configure(
    state: &Engine,
    run: &store::Run,
    def: &Definition,
    secrets: RunSecrets,
    sbx: &Sandboxes,
    lease: &corral_sandbox::Lease,
) -> anyhow::Result<()> {
    let input = run
        .input
        .as_deref()
        .map(serde_json::from_str)
        .transpose()?
        .unwrap_or(serde_json::Value::Null);
    let mut integrations = Vec::with_capacity(def.integrations.len());
    for i in &def.integrations {
        let fresh = corral_connect::integrations::fresh_credentials(
            &state.connect,
            &i.connection_id,
            false,
        )
        .await
        .map_err(|e| ConfigureError::Connection(format!("{}: {e}", i.package_id)))?;
        // OAuth tokens change during a run: the sidecar asks for them again.
        let credentials_url = (fresh.auth_type == "oauth2").then(|| {
            format!(
                "{}{}/{}",
                sbx.platform_url.trim_end_matches('/'),
                corral_protocol::platform_api::INTEGRATION_CREDENTIALS_PATH,
                i.package_id
            )
        });
        integrations.push(corral_protocol::Integration {
            namespace: i.namespace.clone(),
            delivery: i.delivery.clone(),
            authorized_uris: i.authorized_uris.clone(),
            credentials: fresh
                .values
                .into_iter()
                .map(|(k, v)| (k, Secret::new(v)))
                .collect(),
            expires_at_ms: fresh.expires_at,
            credentials_url,
        });
    }
    // The agent's pinned slots as they are now (a run that finished after this one
    // was queued counts), and the platform's internal API for its memory tools.
    let pinned = {
        let mut conn = state.db.conn().await?;
        crate::memory::pinned_for_run(&mut conn, run)
            .await?
            .into_iter()
            .map(|(key, value)| corral_protocol::PinnedSlot { key, value })
            .collect()
    };
    let platform_url = (run.kind == "package").then(|| sbx.platform_url.clone());
    let config = SidecarConfig {
        run_id: run.id.to_string(),
        run_token: Secret::new(run_token(state, &run.id)),
        task: Task {
            prompt: def.prompt.clone(),
            input,
            output_schema: def.output_schema.clone(),
            skills: def.skills.clone(),
            model: corral_protocol::ModelConfig {
                api: def.model.api,
                model: def.model.model.clone(),
                base_url: sbx.backend.sidecar_view(&def.model.base_url),
                // An OAuth token changes during the run: the sidecar asks for it again.
                oauth: secrets.api_key.oauth.map(|o| corral_protocol::ModelOAuth {
                    token_url: format!(
                        "{}{}/{}",
                        sbx.platform_url.trim_end_matches('/'),
                        corral_protocol::platform_api::OAUTH_TOKEN_PATH,
                        o.credential_id
                    ),
                    expires_at_ms: o.expires_at,
                    account_id: o.account_id,
                }),
                api_key: Secret::new(secrets.api_key.key),
            },
            limits: def.limits,
            pinned,
        },
        integrations,
        sink: Sink {
            events_url: format!(
                "{}/api/runs/{}/events",
                sbx.platform_url.trim_end_matches('/'),
                run.id
            ),
            secret: Secret::new(super::open_sink_secret(state, run)?),
        },
        platform_url,
        mcp_servers: Vec::new(),
        egress: corral_protocol::Egress {
            allowed_hosts: state.config.egress_allowed_hosts.clone(),
            allowed_ranges: state.config.egress_allowed_ranges.clone(),
            // Seen from the sidecar: a proxy on the server's loopback is reached
            // through the host gateway from a container.
            upstream_proxy: secrets
                .proxy_url
                .map(|u| Secret::new(sbx.backend.sidecar_view(&u))),
        },
    };
    let url = format!(
        "{}{}",
        lease.sidecar_url.trim_end_matches('/'),
        corral_protocol::sidecar_api::CONFIGURE_PATH
    );
    let resp = state
        .runs
        .sidecar_http
        .post(url)
        .bearer_auth(lease.configure_token.expose())
        .json(&config)
        .timeout(Duration::from_secs(15))
        .send()
        .await?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        anyhow::bail!(
            "sidecar answered {status}: {}",
            body.chars().take(300).collect::<String>()
        );
    }
    Ok(())
}
