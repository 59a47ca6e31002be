//! Corral's engine: everything a run needs between the HTTP layer and the sandbox,
//! usable from a process with no HTTP listener (the later scheduler and worker role
//! call it).
//!
//! - [`runs`]: what a trigger freezes into a run, the executor (per-org queues and
//!   caps), the per-run supervisor (lease, configure, watch, tear down), event
//!   ingestion, liveness and the reconciler of runs and sandboxes a dead server left;
//! - [`packages`]: publishing versions, reading archives back verified, resolving
//!   versions, and the system packages loaded at boot;
//! - [`schedules`]: cron timetables and the scheduler that fires them as runs;
//! - [`memory`]: what agents `note` and `pin`, kept per agent, application and actor;
//! - [`webhooks`]: the delivery worker of the webhook outbox;
//! - [`metrics`]: what the server counts, rendered for Prometheus;
//! - [`jobs`]: the named background jobs, started and stopped in one place;
//! - [`secrets`]: re-sealing every stored secret under the primary key;
//! - [`storage_deletions`]: the worker of the storage-deletion outbox.
//!
//! [`Engine`] is built from explicit parts (configuration, secrets, database,
//! keyring, blob store, the realtime hub and bus, the connection services) and is
//! what every service here takes; it knows nothing of HTTP.

pub mod documents;
pub mod jobs;
pub mod memory;
pub mod metrics;
pub mod packages;
pub mod runs;
pub mod schedules;
pub mod secrets;
pub mod storage;
pub mod storage_deletions;
pub mod webhooks;

use std::sync::Arc;

use corral_config::crypto::Keyring;
use corral_config::{Config, Secrets};
use corral_connect::Connect;
use corral_realtime::Hub;
use corral_store::Db;

pub use jobs::Jobs;

/// Renders a run as the API shows it (webhook payloads carry that object).
pub type RunObject = fn(&corral_store::runs::Run) -> serde_json::Value;

/// The engine of one server. Cheap to clone.
#[derive(Clone)]
pub struct Engine(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub secrets: Secrets,
    /// Seals and opens every stored secret (`v1:<kid>:…` envelopes).
    pub keyring: Keyring,
    pub db: Db,
    /// Object storage for package archives.
    pub blobs: corral_storage::Blobs,
    /// Runs: executor, sandbox backend, run bus.
    pub runs: runs::Runs,
    /// Realtime fan-out to live subscribers.
    pub realtime: Hub,
    /// Connections, OAuth and models.
    pub connect: Connect,
    pub metrics: metrics::Metrics,
    /// Wakes the scheduler when a schedule changes.
    pub schedules: schedules::Schedules,
    /// Wakes the storage-deletion worker when blobs were queued for deletion.
    pub storage_deletions: storage_deletions::Outbox,
    pub run_object: RunObject,
}

impl std::ops::Deref for Engine {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Engine {
    /// Builds the engine on a connected database: the keyring from `secrets`, local
    /// object storage under the data dir, the run bus and realtime hub, connections.
    pub fn new(
        config: Config,
        secrets: Secrets,
        db: Db,
        run_object: RunObject,
    ) -> anyhow::Result<Engine> {
        let keyring = Keyring::from_secrets(&secrets);
        let blobs = storage::open_blobs(&config)?;
        let runs = runs::Runs::new(db.clone(), &config);
        let realtime = Hub::new(
            db.clone(),
            runs.bus.events.clone(),
            config.realtime_queue_size,
        );
        let connect = Connect::new(db.clone(), keyring.clone(), config.clone());
        Ok(Engine(Arc::new(Inner {
            config,
            secrets,
            keyring,
            db,
            blobs,
            runs,
            realtime,
            connect,
            metrics: metrics::Metrics::default(),
            schedules: schedules::Schedules::default(),
            storage_deletions: storage_deletions::Outbox::default(),
            run_object,
        })))
    }
}
