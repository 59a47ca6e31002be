//! Starting and stopping a server: the state built from configuration, migrations
//! and system packages behind the boot gate, the engine's jobs, the listeners, and
//! the graceful drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use corral_config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::openapi::openapi;
use crate::router::{metrics_router, router, sandbox_router, worker_router};
use crate::{auth, ratelimit, routes};

use crate::state::{AppState, Gates, Inner};

/// Resolves secrets and connects the database: everything the server needs before it
/// can listen. Migrations run after the listener is up, behind the boot gate.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let secrets = config.resolve_secrets()?;
    if !secrets.generated.is_empty() {
        tracing::warn!(generated = ?secrets.generated, "development mode: generated secrets under the data dir");
    }
    if config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating the data dir {}", config.data_dir.display()))?;
    }
    let url = config.effective_database_url();
    let db = corral_store::Db::connect(&url, config.database_max_connections)
        .await
        .with_context(|| format!("connecting to the database ({})", redact_url(&url)))?;
    let openapi_json = bytes::Bytes::from(
        openapi()
            .to_json()
            .context("serializing the OpenAPI document")?,
    );
    let limits =
        ratelimit::Rules::from_config(&config.rate_limits()?).map_err(anyhow::Error::msg)?;
    let redis = match &config.redis_url {
        Some(url) => Some(Arc::new(crate::tier2::Redis::new(
            url.expose(),
            &config.redis_prefix,
        )?)),
        None => None,
    };
    let rate_limiter: Arc<dyn ratelimit::RateLimiter> = match &redis {
        Some(r) => Arc::new(crate::tier2::limiter::RedisLimiter::new(r.clone())),
        None => Arc::new(ratelimit::InProcessLimiter::default()),
    };
    let engine = corral_engine::Engine::new(config, secrets, db, routes::runs::run_object)?;
    Ok(AppState {
        inner: Arc::new(Inner {
            engine,
            auth: auth::Authenticator::new(Vec::new()),
            rate_limiter,
            limits,
            redis,
            gates: Gates::default(),
            started: Instant::now(),
            openapi_json,
            long_polls: Default::default(),
            run_pages: Default::default(),
        }),
    })
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Starts Corral on `listener` and runs until `shutdown` is cancelled, then drains:
/// new unsafe requests get 503 while tracked work finishes (bounded by
/// `shutdown_grace_seconds`), and the HTTP server stops.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = build_state(config).await?;
    serve_with_state(state, listener, shutdown).await
}

pub async fn serve_with_state(
    state: AppState,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let http_stop = CancellationToken::new();
    let role = state.config.role;
    let app = if role.serves_api() {
        router(state.clone())
    } else {
        worker_router(state.clone())
    };
    let stop = http_stop.clone();
    let write_timeout = Duration::from_secs(state.config.write_timeout_seconds.max(1));
    // A peer that stops reading (an SSE client gone silent, a stalled download)
    // would hold its connection and queue forever: data unacknowledged for the
    // write timeout (zero-window probes included) aborts the connection.
    let tap = move |tcp: &tokio::net::TcpStream| {
        // Small writes (a streamed frame, a response after its headers) leave at
        // once: with Nagle a second write waits for the peer's delayed ACK (40 ms).
        let _ = tcp.set_nodelay(true);
        if let Err(e) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(write_timeout)) {
            tracing::debug!(error = %e, "cannot set TCP_USER_TIMEOUT");
        }
    };
    // Connections that open with a live stream are served without hyper's buffers
    // (`sse_conn`); `tap_io` only makes `ConnectInfo` available for the rest.
    let listener =
        crate::sse_conn::split(listener, app.clone(), http_stop.clone(), tap)?.tap_io(|_| {});
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { stop.cancelled().await });
    let mut server_task = tokio::spawn(async move { server.await });

    let s3 = state.blobs.kind() == "s3";
    let tier = match state.db.backend() {
        corral_store::Backend::Sqlite => "tier 0 (embedded)",
        corral_store::Backend::Postgres if state.redis.is_some() && s3 => {
            "tier 3 (PostgreSQL + Redis + S3)"
        }
        corral_store::Backend::Postgres if state.redis.is_some() => "tier 2 (PostgreSQL + Redis)",
        corral_store::Backend::Postgres => "tier 1 (PostgreSQL)",
    };
    let shared = state.redis.is_some();
    tracing::info!(
        %addr,
        tier,
        role = role.as_str(),
        database = state.db.backend().name(),
        storage = state.blobs.describe(),
        rate_limits = if shared { "redis" } else { "in-process" },
        idempotency = if shared { "redis" } else { "database" },
        env = ?state.config.env,
        "listening; applying migrations behind the boot gate"
    );
    if state.limits.all_off() {
        tracing::warn!(
            production = state.config.is_production(),
            "RATE LIMITS ARE OFF (CORRAL_RATE_LIMITS=off): no route is limited by Corral"
        );
    } else if !state.limits.changed().is_empty() {
        tracing::info!(changed = ?state.limits.changed(), "rate limits differ from the defaults (CORRAL_RATE_LIMITS)");
    }
    if let Some(redis) = &state.redis {
        if redis.ping().await {
            tracing::info!("Redis answers (REDIS_URL)");
        } else {
            tracing::warn!("Redis does not answer (REDIS_URL): serving with per-server fallbacks until it does");
        }
    }
    if state.redis.is_some() && state.db.backend() == corral_store::Backend::Sqlite {
        tracing::warn!(
            "REDIS_URL with SQLite: limits are shared, but SQLite cannot be shared by replicas"
        );
    }
    if let Err(e) = state.db.migrate().await {
        http_stop.cancel();
        let _ = server_task.await;
        return Err(anyhow::Error::new(e).context("applying database migrations"));
    }
    if let Err(e) = corral_engine::packages::system::load(&state).await {
        http_stop.cancel();
        let _ = server_task.await;
        return Err(e.context("loading system packages"));
    }
    state.gates.set_ready();
    tracing::info!(
        elapsed_ms = state.started.elapsed().as_millis() as u64,
        "ready"
    );
    let mut jobs = corral_engine::Jobs::start(&state);
    if role.executes() {
        jobs.spawn(
            "sandbox-backend",
            sandbox_backend(state.clone(), addr, jobs.stop_token()),
        );
    }
    if let Some(metrics_addr) = state.config.metrics_listen {
        match TcpListener::bind(metrics_addr).await {
            Ok(l) => {
                tracing::info!(addr = %metrics_addr, "metrics listening");
                let app = metrics_router(state.clone());
                let stop = jobs.stop_token();
                jobs.spawn("metrics-listener", async move {
                    let _ = axum::serve(
                        l.tap_io(|tcp| {
                            let _ = tcp.set_nodelay(true);
                        }),
                        app,
                    )
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                });
            }
            Err(e) => {
                tracing::error!(addr = %metrics_addr, error = %e, "cannot listen for metrics")
            }
        }
    }

    tokio::select! {
        _ = shutdown.cancelled() => {}
        res = &mut server_task => {
            jobs.stop(&state).await;
            return match res {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(anyhow::Error::new(e).context("HTTP server failed")),
                Err(e) => Err(anyhow::Error::new(e).context("HTTP server task")),
            };
        }
    }

    let grace = Duration::from_secs(state.config.shutdown_grace_seconds);
    let deadline = tokio::time::Instant::now() + grace;
    state.gates.start_draining();
    state.runs.executor.stop_dispatch();
    tracing::info!(
        in_flight = state.gates.in_flight(),
        runs = state.runs.executor.supervised(),
        grace_s = grace.as_secs(),
        "shutting down: draining requests and letting running runs finish"
    );
    let runs_done = async {
        while state.runs.executor.supervised() > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let drained = async { tokio::join!(state.gates.drained(), runs_done) };
    if tokio::time::timeout_at(deadline, drained).await.is_err() {
        tracing::warn!(
            in_flight = state.gates.in_flight(),
            runs = state.runs.executor.supervised(),
            "grace period over: the runs still going stay running for the next boot to re-attach"
        );
    }
    jobs.stop(&state).await;
    http_stop.cancel();
    let http_deadline = deadline.max(tokio::time::Instant::now() + Duration::from_secs(1));
    if tokio::time::timeout_at(http_deadline, &mut server_task)
        .await
        .is_err()
    {
        tracing::warn!("closing connections that outlived the grace period");
        server_task.abort();
    }
    state.db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Chooses the sandbox backend in the background (boot does not wait on the Docker
/// engine) and serves the sandbox-facing listener it may need, until `stop`.
async fn sandbox_backend(state: AppState, addr: SocketAddr, stop: CancellationToken) {
    match corral_engine::runs::select_backend(&state, addr).await {
        Ok((sandboxes, listener)) => {
            state.runs.set_sandboxes(Ok(sandboxes));
            if let Some(listener) = listener {
                let app = sandbox_router(state.clone());
                // The sidecars' events: each waits for its answer, so Nagle's 40 ms
                // would be paid per event.
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "sandbox listener failed");
                }
            }
        }
        Err(msg) => {
            tracing::warn!(error = %msg, "no sandbox backend: runs will fail with sandbox_unavailable");
            state.runs.set_sandboxes(Err(msg));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("postgres://corral:s3cret@127.0.0.1:5432/corral"),
            "postgres://corral:***@127.0.0.1:5432/corral"
        );
        assert_eq!(
            super::redact_url("sqlite://./data/corral.db"),
            "sqlite://./data/corral.db"
        );
    }
}
