//! Sandboxes for runs (SPEC §8): one trait, [`SandboxBackend`], with a Docker
//! implementation ([`docker`], through bollard) and a process implementation
//! ([`process`], child processes on loopback), both behind the same warm pool
//! semantics ([`pool`]).
//!
//! A sandbox is a started sidecar waiting for `POST /configure` plus a started agent
//! waiting (long-polling `GET /task`) for its task. The platform [`SandboxBackend::lease`]s
//! one for a run, configures the sidecar with the one-time token of the [`Lease`],
//! watches it with [`SandboxBackend::state`], and [`SandboxBackend::destroy`]s it in
//! every outcome. A leased sandbox is never reused.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bridge;
pub mod docker;
pub mod images;
pub mod pool;
pub mod process;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use async_trait::async_trait;
use corral_protocol::Secret;
use serde::{Deserialize, Serialize};

pub use docker::{DockerBackend, DockerOptions};
pub use images::build_images;
pub use process::{ProcessBackend, ProcessOptions};

/// Label keys every Docker object Corral creates carries.
pub mod labels {
    /// `true` on everything Corral manages (the reaper only ever touches these).
    pub const MANAGED: &str = "corral.managed";
    /// The sandbox id (`sbx_…`).
    pub const SANDBOX: &str = "corral.sandbox";
    /// `agent` | `sidecar` on containers.
    pub const ROLE: &str = "corral.role";
    /// The server instance that created the object (its pool owns it until leased).
    pub const OWNER: &str = "corral.owner";
    /// The run id, on sandboxes created for a known run (cold path). Pool members are
    /// created before their run exists; the platform records `sandbox_id` on the run.
    pub const RUN: &str = "corral.run";
    /// The deployment (every server on one database) the object belongs to: a server
    /// lists and reaps only its own deployment's sandboxes, so deployments sharing an
    /// engine (staging beside production, parallel CI jobs) leave each other alone.
    pub const DEPLOYMENT: &str = "corral.deployment";
    /// `true` on the shared egress network. It is deliberately not
    /// [`MANAGED`]: it belongs to no sandbox and a reaper must leave it alone.
    pub const EGRESS: &str = "corral.egress";
}

/// Which implementation runs sandboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunnerKind {
    /// Containers on a Docker engine ([`docker::DockerBackend`]).
    Docker,
    /// Child processes of the server ([`process::ProcessBackend`]).
    Process,
}

impl RunnerKind {
    /// `docker` | `process` (the run's `runner_kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerKind::Docker => "docker",
            RunnerKind::Process => "process",
        }
    }
}

impl fmt::Display for RunnerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Resource limits of the agent (SPEC §8 defaults: 1 GiB, 1 CPU, 256 pids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    /// Memory limit; swap is limited to the same (no swap beyond it).
    pub memory_bytes: i64,
    /// Billionths of a CPU (Docker `NanoCpus`).
    pub nano_cpus: i64,
    /// Most processes and threads at once.
    pub pids_limit: i64,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            memory_bytes: 1 << 30,
            nano_cpus: 1_000_000_000,
            pids_limit: 256,
        }
    }
}

/// A sandbox handed to one run.
#[derive(Debug, Clone)]
pub struct Lease {
    /// `sbx_<hex>`; the platform stores it on the run.
    pub id: String,
    /// Base URL at which the *platform* reaches the sidecar API (`/configure`,
    /// `/health`), e.g. `http://172.18.0.5:8080` or `http://127.0.0.1:41234`.
    pub sidecar_url: String,
    /// The one-time token `POST /configure` must present.
    pub configure_token: Secret,
    /// Served from the warm pool (`false`: created on demand for this lease).
    pub warm: bool,
    /// The backend that made it.
    pub kind: RunnerKind,
}

/// What a sandbox is doing, as far as the backend can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxState {
    /// Sidecar and agent are running.
    Running,
    /// The agent exited (with its exit code when known); the sidecar may still run.
    AgentExited {
        /// The agent's exit code (`None`: killed by a signal, or unknown).
        code: Option<i64>,
    },
    /// Nothing of it exists any more (or never did).
    Gone,
}

/// A sandbox found on the engine / in the process table, for reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxInfo {
    /// The sandbox id (`sbx_…`, label `corral.sandbox`).
    pub id: String,
    /// The server instance that created it (label `corral.owner`).
    pub owner: Option<String>,
    /// Label `corral.run`, when it was created for a known run.
    pub run_id: Option<String>,
    /// Unix seconds of creation, when known.
    pub created_at: Option<i64>,
}

/// Pool metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PoolStats {
    /// Configured target per image.
    pub target: usize,
    /// Ready members right now.
    pub ready: usize,
    /// Members being created.
    pub warming: usize,
    /// Leases served from the pool.
    pub hits: u64,
    /// Leases that had to create a sandbox on demand.
    pub misses: u64,
    /// Members destroyed for age (both tiers).
    pub recycled: u64,
    /// Configured size of the second tier (0 where the backend has none).
    pub prepared_target: usize,
    /// Prepared (half-started) sandboxes right now.
    pub prepared: usize,
    /// Misses served by starting a prepared sandbox.
    pub prepared_hits: u64,
}

/// Why a sandbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The engine does not answer (Docker down, socket missing).
    #[error("sandbox engine unavailable: {0}")]
    Unavailable(String),
    /// A required image is missing; the message names the command that builds it.
    #[error("sandbox image `{image}` is missing: build it with `{command}`")]
    ImageMissing {
        /// The image reference that does not exist.
        image: String,
        /// The command that builds it.
        command: String,
    },
    /// A runtime binary is missing (process backend).
    #[error("sandbox runtime binary missing: {0}")]
    BinaryMissing(String),
    /// The sandbox started but did not become ready (sidecar never healthy, …).
    #[error("sandbox failed to start: {0}")]
    Start(String),
    /// Anything else (an engine call that failed, a filesystem error, …).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A sandbox implementation. Implementations are cheap to share (`Arc<dyn …>`), and
/// every method is safe to call concurrently.
#[async_trait]
pub trait SandboxBackend: Send + Sync + 'static {
    /// Which implementation this is.
    fn kind(&self) -> RunnerKind;

    /// Rewrites a URL the platform can reach on loopback (`127.0.0.1`, `localhost`,
    /// `[::1]`) into one the sidecar can reach: `host.docker.internal` for Docker,
    /// unchanged for processes. Other URLs are returned unchanged.
    fn sidecar_view(&self, url: &str) -> String;

    /// An address on which the platform must listen so that sidecars reach it
    /// (Docker: the host gateway address of the default bridge, which
    /// `host.docker.internal` resolves to inside the sidecar). `None`: loopback is
    /// enough (process backend).
    async fn platform_bind_ip(&self) -> Result<Option<IpAddr>, SandboxError>;

    /// A ready sandbox for `run_id`: from the warm pool when one is ready, else
    /// created now (and the pool refills in the background either way).
    async fn lease(&self, run_id: &str, resources: Resources) -> Result<Lease, SandboxError>;

    /// What sandbox `id` is doing (works for sandboxes of other instances too).
    async fn state(&self, id: &str) -> Result<SandboxState, SandboxError>;

    /// The last `max_bytes` of the agent's stdout/stderr, for crash diagnostics.
    async fn agent_logs(&self, id: &str, max_bytes: usize) -> String;

    /// Stops the agent gracefully (SIGTERM), so that it can still finalize.
    async fn signal_stop(&self, id: &str) -> Result<(), SandboxError>;

    /// Removes everything of sandbox `id` (containers, network, volume / processes,
    /// directory). Idempotent: an unknown id is not an error.
    async fn destroy(&self, id: &str) -> Result<(), SandboxError>;

    /// Every Corral-managed sandbox that exists, whoever created it.
    async fn list(&self) -> Result<Vec<SandboxInfo>, SandboxError>;

    /// Ids of this instance's idle pool members (never to be reaped).
    fn pool_members(&self) -> Vec<String>;

    /// Pool metrics of this instance.
    fn stats(&self) -> PoolStats;

    /// Stops refilling and destroys idle pool members.
    async fn shutdown(&self);
}

/// Labels for a new object of sandbox `id`.
pub fn object_labels(
    id: &str,
    owner: &str,
    deployment: &str,
    role: Option<&str>,
    run_id: Option<&str>,
) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert(labels::MANAGED.to_owned(), "true".to_owned());
    l.insert(labels::SANDBOX.to_owned(), id.to_owned());
    l.insert(labels::OWNER.to_owned(), owner.to_owned());
    l.insert(labels::DEPLOYMENT.to_owned(), deployment.to_owned());
    if let Some(role) = role {
        l.insert(labels::ROLE.to_owned(), role.to_owned());
    }
    if let Some(run) = run_id {
        l.insert(labels::RUN.to_owned(), run.to_owned());
    }
    l
}

/// The backend to run sandboxes with (SPEC §8, `CORRAL_SANDBOX`): `choice` when
/// given (failing if it cannot start), else Docker when the engine answers and both
/// images exist, else processes — with a warning saying why Docker was not used.
pub async fn select(
    choice: Option<RunnerKind>,
    docker: docker::DockerOptions,
    process: process::ProcessOptions,
) -> Result<std::sync::Arc<dyn SandboxBackend>, SandboxError> {
    match choice {
        Some(RunnerKind::Docker) => Ok(std::sync::Arc::new(
            docker::DockerBackend::connect(docker).await?,
        )),
        Some(RunnerKind::Process) => {
            Ok(std::sync::Arc::new(process::ProcessBackend::new(process)?))
        }
        None => match docker::probe(&docker).await {
            Ok(()) => Ok(std::sync::Arc::new(
                docker::DockerBackend::connect(docker).await?,
            )),
            Err(why) => {
                tracing::warn!(
                    reason = %why,
                    "running sandboxes as processes (weaker isolation): Docker is not usable"
                );
                Ok(std::sync::Arc::new(process::ProcessBackend::new(process)?))
            }
        },
    }
}
