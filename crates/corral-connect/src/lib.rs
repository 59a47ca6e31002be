//! Connections and models (SPEC §11–§12), without HTTP: integration manifests' auths
//! and how a credential is delivered, the choice of the connection a run uses, the
//! OAuth2 flows (authorization code + PKCE, discovery, refresh under a lock), the
//! model provider registry, key tests and discovery, OAuth model providers (pairing
//! redeem, token refresh), and the choice of a run's model.
//! Every stored secret here is sealed with the server's keyring.
//!
//! [`Connect`] holds what these services share for the life of a server: the
//! database, the keyring, configuration, the per-connection refresh locks, the OAuth
//! discovery cache and the HTTP clients — one set per server, never per process.

pub mod integrations;
pub mod model_oauth;
pub mod models;
pub mod oauth;
pub mod proxies;

use std::sync::Arc;
use std::time::Instant;

use corral_config::crypto::Keyring;
use corral_config::Config;
use corral_store::Db;
use corral_webhooks::Policy;
use dashmap::DashMap;

pub use integrations::{Actor, RunIntegration};
pub use models::DefinitionModel;

/// The connection and model services of one server. Cheap to clone.
#[derive(Clone)]
pub struct Connect(Arc<Inner>);

pub struct Inner {
    pub db: Db,
    pub keyring: Keyring,
    pub config: Config,
    /// Serializes refreshes of one connection inside this server (a row lock does
    /// across replicas).
    pub(crate) refresh_locks: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// One SSRF-guarded client per policy (`true`: strict).
    pub(crate) oauth_clients: DashMap<bool, reqwest::Client>,
    /// RFC 8414 discovery results by issuer.
    pub(crate) discovery: DashMap<String, (Instant, oauth::Endpoints)>,
    /// Calls to model providers (key tests, discovery).
    pub(crate) probe_http: reqwest::Client,
}

impl std::ops::Deref for Connect {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Connect {
    pub fn new(db: Db, keyring: Keyring, config: Config) -> Connect {
        Connect(Arc::new(Inner {
            db,
            keyring,
            config,
            refresh_locks: DashMap::new(),
            oauth_clients: DashMap::new(),
            discovery: DashMap::new(),
            probe_http: models::probe_client(),
        }))
    }

    /// Outbound calls to user-supplied URLs: http to loopback is accepted in
    /// development mode only.
    pub fn policy(&self) -> Policy {
        match self.config.env {
            corral_config::Environment::Development => Policy::AllowLoopback,
            corral_config::Environment::Production => Policy::Strict,
        }
    }
}
