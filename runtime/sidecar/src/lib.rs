//! `corral-sidecar`: the process next to the agent that holds every secret of a
//! run. It is configured once by the platform ([`api`]), proxies the model provider
//! ([`llm`]), serves MCP tools ([`mcp`]), guards the agent's outbound traffic
//! ([`proxy`], [`egress`]) and forwards signed run events ([`events`]).
//!
//! The HTTP contract lives in `corral_protocol::sidecar_api`; this crate implements
//! the sidecar side of it.
#![forbid(unsafe_code)]

pub mod api;
pub mod egress;
pub mod events;
pub mod llm;
pub mod mcp;
pub mod model_key;
pub mod proxy;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use corral_protocol::Secret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Command line and environment of the sidecar.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "corral-sidecar",
    version,
    about = "Corral's in-sandbox sidecar"
)]
pub struct Options {
    /// Address of the API (configure, task, events, /llm, /mcp, health).
    #[arg(long, env = "CORRAL_SIDECAR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Address of the forward proxy for the agent's outbound traffic.
    #[arg(long, env = "CORRAL_PROXY_LISTEN", default_value = "0.0.0.0:8081")]
    pub proxy_listen: SocketAddr,
    /// The one-time token `POST /configure` must present.
    #[arg(long, env = corral_protocol::sidecar_api::ENV_CONFIGURE_TOKEN, hide_env_values = true)]
    pub configure_token: Secret,
    /// Largest integration response body (bytes) handed to the agent by
    /// `{ns}__api_call`; the rest is cut off and the cut is reported.
    #[arg(long, env = "CORRAL_MAX_RESPONSE_BYTES", default_value_t = 256 * 1024)]
    pub max_response_bytes: usize,
    /// `Host` values `/mcp` accepts (DNS-rebinding protection); a name without a
    /// port matches any port.
    #[arg(
        long,
        env = "CORRAL_MCP_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "sidecar,localhost,127.0.0.1,::1"
    )]
    pub mcp_allowed_hosts: Vec<String>,
    /// Attempts to deliver one event to the platform before the agent gets `502`.
    #[arg(long, env = "CORRAL_EVENT_ATTEMPTS", default_value_t = 5)]
    pub event_attempts: u32,
}

/// The addresses actually bound, printed as one JSON line on stdout at start so a
/// supervisor (or a test) that asked for port 0 learns them.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Bound {
    pub api: SocketAddr,
    pub proxy: SocketAddr,
}

/// Binds both listeners, announces them and serves until `shutdown`.
pub async fn run(options: Options, shutdown: CancellationToken) -> anyhow::Result<()> {
    let api = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("binding {}", options.listen))?;
    let proxy = TcpListener::bind(options.proxy_listen)
        .await
        .with_context(|| format!("binding {}", options.proxy_listen))?;
    let bound = Bound {
        api: api.local_addr()?,
        proxy: proxy.local_addr()?,
    };
    println!("{}", serde_json::to_string(&bound)?);
    tracing::info!(api = %bound.api, proxy = %bound.proxy, "corral-sidecar listening");
    serve(options, api, proxy, shutdown).await
}

/// Serves the API and the proxy on the given listeners until `shutdown`.
pub async fn serve(
    options: Options,
    api: TcpListener,
    proxy: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = Arc::new(state::AppState::new(&options)?);
    let router = api::router(
        state.clone(),
        options.mcp_allowed_hosts.clone(),
        shutdown.child_token(),
    );
    let proxy_task = tokio::spawn(proxy::serve(proxy, state.clone(), shutdown.clone()));
    let api_shutdown = shutdown.clone();
    // The agent waits on every answer (events, streamed LLM frames): Nagle would
    // hold each small write for the peer's delayed ACK (40 ms).
    let api = axum::serve::ListenerExt::tap_io(api, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(api, router)
        .with_graceful_shutdown(async move { api_shutdown.cancelled().await })
        .await
        .context("API server")?;
    shutdown.cancel();
    // Dropping the run kills bundled MCP servers (`kill_on_drop`).
    state.shutdown();
    proxy_task.await.context("proxy task")?;
    Ok(())
}

/// Cancels `token` on SIGTERM or SIGINT.
pub fn watch_signals(token: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        token.cancel();
    });
    Ok(())
}
