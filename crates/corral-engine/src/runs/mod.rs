//! Runs (SPEC §7–§8): what a trigger freezes into a run ([`Definition`]), the
//! sandbox backend chosen at boot, the executor that leases sandboxes and supervises
//! runs ([`executor`]), the ingestion of the events sandboxes send ([`ingest`]), the
//! state bus ([`bus`]) and the reconciliation of runs and sandboxes left behind by a
//! dead server ([`reconcile`]).

pub mod cluster;
pub mod executor;
pub mod ingest;
mod input;
pub mod reconcile;
pub mod remote;
pub mod trigger;
pub mod watchdog;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use corral_core::RunId;
use corral_protocol::Limits;
use corral_sandbox::SandboxBackend;
use corral_store::runs as store;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use crate::Engine;

/// Everything the executor needs to run, frozen at trigger time in `runs.definition`
/// (never a secret: the model key is opened from the model's credential, or read from
/// configuration for the system model, when the run starts).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Definition {
    pub prompt: String,
    #[serde(default)]
    pub output_schema: Option<Value>,
    #[serde(default)]
    pub skills: Vec<corral_protocol::Skill>,
    pub model: corral_connect::models::DefinitionModel,
    pub limits: Limits,
    /// Resolved dependency versions (`@scope/name` → version).
    #[serde(default)]
    pub dependencies: BTreeMap<String, String>,
    /// The connection each integration uses and how its credential is delivered;
    /// the credentials themselves are read (and refreshed) when the run starts.
    #[serde(default)]
    pub integrations: Vec<corral_connect::integrations::RunIntegration>,
    /// The outbound proxy the run's traffic goes through (its URL is opened when the
    /// run starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<corral_connect::proxies::RunProxy>,
}

/// The sandbox side, once chosen.
#[derive(Clone)]
pub struct Sandboxes {
    pub backend: Arc<dyn SandboxBackend>,
    /// Base URL sidecars post run events to (`…/api/runs/{id}/events`).
    pub platform_url: String,
}

/// The runs subsystem of one server instance.
pub struct Runs {
    /// This server instance (`corral.owner` of its sandboxes, `runs.server_id`).
    pub instance_id: String,
    /// What runs record as their runner (`runs.runner_name`).
    pub worker_name: String,
    /// What this instance does in the cluster.
    pub role: corral_config::Role,
    /// When this instance started (ms), for its liveness row.
    pub started_at: i64,
    pub bus: corral_realtime::RunBus,
    pub executor: executor::Executor,
    /// Calls to sidecars (`/configure`).
    pub sidecar_http: reqwest::Client,
    sandboxes: watch::Sender<Option<Result<Sandboxes, String>>>,
}

impl Runs {
    pub fn new(db: corral_store::Db, config: &corral_config::Config) -> Runs {
        let cluster = db.backend() == corral_store::Backend::Postgres;
        Runs {
            instance_id: format!("srv_{}", uuid::Uuid::now_v7().simple()),
            worker_name: config.worker_name(),
            role: config.role,
            started_at: corral_core::time::now_ms(),
            bus: corral_realtime::RunBus::new(db),
            executor: executor::Executor::new(cluster),
            sidecar_http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default(),
            sandboxes: watch::channel(None).0,
        }
    }

    /// Where a new run waits: `None` in the cluster's queue (any worker claims it),
    /// else this server's id (its own executor starts it).
    pub fn queue_owner(&self) -> Option<&str> {
        (!self.executor.is_cluster()).then_some(self.instance_id.as_str())
    }

    /// Records the outcome of the backend selection (at boot).
    pub fn set_sandboxes(&self, s: Result<Sandboxes, String>) {
        self.sandboxes.send_replace(Some(s));
    }

    /// The backend, waiting for the boot-time selection if it is still running.
    pub async fn sandboxes(&self) -> Result<Sandboxes, String> {
        let mut rx = self.sandboxes.subscribe();
        let v = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| "sandbox backend never selected".to_owned())?;
        v.clone()
            .unwrap_or_else(|| Err("sandbox backend never selected".into()))
    }

    /// `(status, backend, error)` for `/health`: `starting` while the backend is
    /// being chosen, `ready`, or `unavailable` with the reason; `none` on an api
    /// replica (it executes no runs).
    pub fn sandbox_status(&self) -> (&'static str, Option<Sandboxes>, Option<String>) {
        if !self.role.executes() {
            return ("none", None, None);
        }
        match &*self.sandboxes.borrow() {
            None => ("starting", None, None),
            Some(Ok(s)) => ("ready", Some(s.clone()), None),
            Some(Err(e)) => ("unavailable", None, Some(e.clone())),
        }
    }

    /// The backend if already selected.
    pub fn sandboxes_now(&self) -> Option<Sandboxes> {
        self.sandboxes
            .borrow()
            .as_ref()
            .and_then(|r| r.as_ref().ok().cloned())
    }
}

/// The terminal write of a run plus its announcement; true when this call made the
/// transition (a terminal state is written once).
pub async fn finish(state: &Engine, run_id: &RunId, f: &store::Finish<'_>) -> anyhow::Result<bool> {
    let mut conn = state.db.conn().await?;
    let won = store::finish(&mut conn, run_id, f).await?;
    drop(conn);
    if won {
        tracing::info!(%run_id, status = %f.status, code = ?f.error_code, "run finished");
        state.runs.bus.publish(run_id, f.status).await;
    }
    Ok(won)
}

/// The `failed` terminal state with a code and message.
pub async fn fail(
    state: &Engine,
    run_id: &RunId,
    code: &str,
    message: &str,
) -> anyhow::Result<bool> {
    finish(
        state,
        run_id,
        &store::Finish {
            error: Some(message),
            error_code: Some(code),
            ..store::Finish::new(store::RunStatus::Failed, corral_core::time::now_ms())
        },
    )
    .await
}

/// Associated data of a run's sealed sink secret: the envelope opens only there.
pub fn sink_aad(run_id: &str) -> String {
    format!("runs.sink_secret:{run_id}")
}

/// The run's sink secret, opened.
pub fn open_sink_secret(state: &Engine, run: &store::Run) -> anyhow::Result<String> {
    state
        .keyring
        .open_str(&run.sink_secret, &sink_aad(run.id.as_str()))
        .map_err(|e| anyhow::anyhow!("opening the sink secret of {}: {e}", run.id))
}

/// Error codes the platform itself records on runs.
pub mod codes {
    pub const SANDBOX_UNAVAILABLE: &str = "sandbox_unavailable";
    pub const SANDBOX_START_FAILED: &str = "sandbox_start_failed";
    pub const BOOT_TIMEOUT: &str = "boot_timeout";
    pub const STALLED: &str = "stalled";
    pub const TIMEOUT: &str = "timeout";
    pub const CANCELLED: &str = "cancelled";
    pub const AGENT_CRASHED: &str = "agent_crashed";
    pub const SERVER_RESTARTED: &str = "server_restarted";
    pub const SERVER_SHUTDOWN: &str = "server_shutdown";
    pub const OUTPUT_SCHEMA_MISMATCH: &str = "output_schema_mismatch";
    /// An integration's credentials could not be produced (refresh refused or failed).
    pub const CONNECTION_UNAVAILABLE: &str = "connection_unavailable";
    /// The model's provider key could not be had when the run started.
    pub const MODEL_CREDENTIAL_UNAVAILABLE: &str = "model_credential_unavailable";
    /// The run's outbound proxy was deleted, disabled or unreadable when it started.
    pub const PROXY_UNAVAILABLE: &str = "proxy_unavailable";
}

/// Chooses the sandbox backend (SPEC §8) and, for Docker, binds the listener sidecars
/// reach the platform through: the engine's host gateway address, serving only the
/// run-event routes. Returns the listener to serve (if any) alongside.
pub async fn select_backend(
    state: &Engine,
    main_addr: SocketAddr,
) -> Result<(Sandboxes, Option<tokio::net::TcpListener>), String> {
    use corral_sandbox::{docker::DockerOptions, process::ProcessOptions, RunnerKind};
    let c = &state.config;
    let choice = match c.sandbox.as_deref() {
        Some("docker") => Some(RunnerKind::Docker),
        Some("process") => Some(RunnerKind::Process),
        _ => None,
    };
    let agent_env: Vec<(String, String)> = c
        .agent_env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let ttl = std::time::Duration::from_secs(c.warm_pool_ttl_seconds);
    let deployment = {
        let mut conn = state.db.conn().await.map_err(|e| e.to_string())?;
        let candidate = format!("dep_{}", uuid::Uuid::now_v7().simple());
        corral_store::cluster::deployment_id(&mut conn, &candidate, corral_core::time::now_ms())
            .await
            .map_err(|e| format!("reading the deployment id: {e}"))?
    };
    let docker = DockerOptions {
        agent_image: c.agent_image.clone(),
        sidecar_image: c.sidecar_image.clone(),
        owner: state.runs.instance_id.clone(),
        deployment,
        pool_size: c.warm_pool_size,
        prepared_pool_size: c.prepared_pool_size,
        pool_ttl: ttl,
        agent_env: agent_env.clone(),
        subnet_pool: c
            .sandbox_subnets
            .parse()
            .map_err(|e| format!("CORRAL_SANDBOX_SUBNETS: {e}"))?,
        ..DockerOptions::default()
    };
    let process = ProcessOptions {
        root_dir: c.data_dir.join("sandboxes"),
        owner: state.runs.instance_id.clone(),
        pool_size: c.warm_pool_size,
        pool_ttl: ttl,
        agent_env,
        ..ProcessOptions::default()
    };
    let backend = corral_sandbox::select(choice, docker, process)
        .await
        .map_err(|e| e.to_string())?;
    let loopback = |port: u16| format!("http://127.0.0.1:{port}");
    let (platform_url, listener) = match backend.platform_bind_ip().await {
        Ok(Some(ip)) => {
            let listener = bind_sandbox_listener(ip, c.sandbox_listen_port, &c.data_dir).await?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            (backend.sidecar_view(&loopback(port)), Some(listener))
        }
        Ok(None) => (loopback(main_addr.port()), None),
        Err(e) => return Err(e.to_string()),
    };
    let platform_url = c.internal_url.clone().unwrap_or(platform_url);
    tracing::info!(
        backend = %backend.kind(),
        platform_url,
        pool = c.warm_pool_size,
        prepared = c.prepared_pool_size,
        "sandbox backend ready"
    );
    Ok((
        Sandboxes {
            backend,
            platform_url,
        },
        listener,
    ))
}

/// Where the sandbox-facing port chosen by a previous boot is remembered.
const LISTENER_STATE: &str = "sandbox-listener.json";

/// Binds the sandbox-facing listener. Sandboxes that outlive this server (a crash, a
/// restart) keep posting to the address they were configured with, so with no port
/// configured (0) the port picked at the first boot is remembered under the data dir
/// and taken again by every later boot; only when it is taken by someone else does
/// the server pick another (and says so: sandboxes still running will not reach it).
pub async fn bind_sandbox_listener(
    ip: std::net::IpAddr,
    configured: u16,
    data_dir: &std::path::Path,
) -> Result<tokio::net::TcpListener, String> {
    use tokio::net::TcpListener;
    let fail = |e: std::io::Error| format!("cannot listen on the sandbox gateway {ip}: {e}");
    if configured != 0 {
        return TcpListener::bind(SocketAddr::new(ip, configured))
            .await
            .map_err(fail);
    }
    let path = data_dir.join(LISTENER_STATE);
    let remembered = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .filter(|v| v["ip"].as_str() == Some(ip.to_string().as_str()))
        .and_then(|v| v["port"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0);
    if let Some(port) = remembered {
        match TcpListener::bind(SocketAddr::new(ip, port)).await {
            Ok(l) => return Ok(l),
            Err(e) => tracing::warn!(
                %ip, port, error = %e,
                "the sandbox-facing port of the previous boot is taken; sandboxes still \
                 running from before will not reach this server (set CORRAL_SANDBOX_LISTEN_PORT \
                 to pin one)"
            ),
        }
    }
    let listener = TcpListener::bind(SocketAddr::new(ip, 0))
        .await
        .map_err(fail)?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let state = serde_json::json!({ "ip": ip.to_string(), "port": port });
    if let Err(e) =
        std::fs::create_dir_all(data_dir).and_then(|()| std::fs::write(&path, state.to_string()))
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remember the sandbox-facing port");
    }
    Ok(listener)
}

#[cfg(test)]
mod listener_tests {
    use super::*;

    #[tokio::test]
    async fn a_restart_takes_the_port_of_the_previous_boot() {
        let dir = tempfile::tempdir().unwrap();
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let first = bind_sandbox_listener(ip, 0, dir.path()).await.unwrap();
        let port = first.local_addr().unwrap().port();
        drop(first); // the server dies
        let second = bind_sandbox_listener(ip, 0, dir.path()).await.unwrap();
        assert_eq!(second.local_addr().unwrap().port(), port);

        // Taken meanwhile: another port, remembered for the next boot.
        let third = bind_sandbox_listener(ip, 0, dir.path()).await.unwrap();
        let other = third.local_addr().unwrap().port();
        assert_ne!(other, port);
        drop((second, third));
        let fourth = bind_sandbox_listener(ip, 0, dir.path()).await.unwrap();
        assert_eq!(fourth.local_addr().unwrap().port(), other);

        // A pinned port is used as is.
        drop(fourth);
        let pinned = bind_sandbox_listener(ip, other, dir.path()).await.unwrap();
        assert_eq!(pinned.local_addr().unwrap().port(), other);
    }
}
