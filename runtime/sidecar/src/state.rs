//! The sidecar's shared state: the one-time configure token, the run once
//! configured (its config, signing key, token meter, egress guard, event queue and
//! bundled MCP servers) and the HTTP clients.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use corral_protocol::{AgentTask, Secret, SidecarConfig, SigningSecret};
use tokio::sync::watch;

use crate::egress::EgressGuard;
use crate::events::Forwarder;
use crate::mcp::bundled::BundledServer;
use crate::Options;

pub struct AppState {
    pub configure_token: Secret,
    /// `None` until `POST /configure` succeeded; set at most once.
    pub run: watch::Sender<Option<Arc<Run>>>,
    /// For the model provider and the platform: redirects are not followed so a
    /// credential never travels to a host it was not meant for.
    pub http: reqwest::Client,
    pub max_response_bytes: usize,
    pub event_attempts: u32,
    /// The guard the proxy uses before any run exists: nothing but public hosts.
    pub default_guard: Arc<EgressGuard>,
}

/// One configured run.
pub struct Run {
    pub config: SidecarConfig,
    pub task: AgentTask,
    pub signing: SigningSecret,
    /// Input + output tokens the provider reported so far.
    pub tokens_used: AtomicU64,
    pub guard: Arc<EgressGuard>,
    /// For integration API calls: the shared client, or one that goes through the
    /// run's upstream proxy.
    pub api_http: reqwest::Client,
    pub events: Forwarder,
    /// Each integration's current credentials, by namespace.
    pub live: std::collections::HashMap<String, crate::mcp::api_call::Live>,
    /// The model key (an OAuth token changes during the run).
    pub model_key: crate::model_key::LiveKey,
    /// The started bundled MCP servers; `None` while they are still starting.
    pub bundled: watch::Sender<Option<Arc<Vec<Arc<BundledServer>>>>>,
}

impl AppState {
    pub fn new(options: &Options) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !options.configure_token.expose().is_empty(),
            "the configure token is empty"
        );
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            configure_token: options.configure_token.clone(),
            run: watch::channel(None).0,
            http,
            max_response_bytes: options.max_response_bytes,
            event_attempts: options.event_attempts.max(1),
            default_guard: Arc::new(EgressGuard::new(&Default::default())?),
        })
    }

    pub fn current(&self) -> Option<Arc<Run>> {
        self.run.borrow().clone()
    }

    /// Stops the run's subprocesses.
    pub fn shutdown(&self) {
        if let Some(run) = self.current() {
            run.bundled.send_replace(None);
        }
    }
}
