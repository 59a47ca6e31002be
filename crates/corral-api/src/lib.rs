//! Corral's HTTP API: the request pipeline of SPEC §3–§4, the handlers, the OpenAPI
//! contract generated from them, and [`serve`], the one start function that the
//! binary and the tests both call.

pub mod auth;
pub mod context;
pub mod error;
pub mod idempotency;
pub mod json;
pub mod pipeline;
pub mod ratelimit;
pub mod routes;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, Method};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use corral_config::Config;
use corral_core::ErrorCode;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use context::Scope;
pub use corral_config as config;
use error::ApiError;
use routes::{
    agents, api_keys, applications, auth as auth_routes, docs, end_users, health, installs,
    integrations as integration_routes, me, models as model_routes, orgs, package_archives,
    packages as package_routes, runs as run_routes, webhooks as webhook_routes,
};
use state::{AppState, Gates, Inner};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Corral API",
        description = "Corral runs autonomous AI agents in throw-away sandboxes. This contract is generated from the server's code; it is compatible with Appstrate's API.",
        license(name = "Apache-2.0")
    ),
    components(schemas(error::ProblemDetail, error::FieldError)),
    modifiers(&SecuritySchemes),
    security(("bearerApiKey" = []), ("cookieAuth" = [])),
    tags(
        (name = "Auth", description = "Sign-up, sign-in, sessions"),
        (name = "Organizations", description = "Organizations, members, invitations, settings"),
        (name = "Profile", description = "The signed-in user"),
        (name = "Applications", description = "Applications inside an organization"),
        (name = "End Users", description = "External users of an application"),
        (name = "API Keys", description = "API keys of an application"),
        (name = "Health", description = "Liveness and readiness"),
        (name = "Packages", description = "AFPS package archives, bundles, files and the library"),
        (name = "Agents", description = "Agent packages"),
        (name = "Skills", description = "Skill packages"),
        (name = "Integration Packages", description = "Integration packages"),
        (name = "MCP Servers", description = "MCP server packages"),
        (name = "Runs", description = "Running agents in sandboxes, and what runs report"),
        (name = "Integrations", description = "Integration connections: credential fields, OAuth2 with PKCE, OAuth clients"),
        (name = "Models", description = "The organization's models, its default, test calls"),
        (name = "Model Provider Credentials", description = "LLM provider keys (write-only) and model discovery"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerApiKey",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("API key: `Authorization: Bearer ask_…`. The org and application come from the key."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "bearerExecToken",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Run token for container-to-host internal routes: `Authorization: Bearer rt_…`, valid while its run is active."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookieAuth",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                auth::session::COOKIE,
                "Session cookie. Org-scoped routes need `X-Org-Id`, app-scoped routes `X-App-Id`.",
            ))),
        );
    }
}

/// Operations that need no authentication.
const PUBLIC_OPERATIONS: &[&str] = &[
    "/health",
    "/api/auth/sign-up/email",
    "/api/auth/sign-in/email",
    "/api/auth/get-session",
    "/api/auth/sign-out",
    "/invite/{token}/info",
    "/api/runs/{runId}/events",
    "/api/runs/{runId}/events/heartbeat",
    "/api/runs/{runId}/events/finalize",
    "/api/integrations/callback",
];

/// Documents the problem responses the pipeline itself can give on every operation
/// (bad headers, body limit, media type, rate limit, gates, internal errors), so the
/// contract lists every status a client can see, not only the handler's own.
struct PipelineResponses;

impl utoipa::Modify for PipelineResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::HttpMethod;
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ProblemDetail")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                (HttpMethod::Get, &mut item.get),
                (HttpMethod::Post, &mut item.post),
                (HttpMethod::Put, &mut item.put),
                (HttpMethod::Patch, &mut item.patch),
                (HttpMethod::Delete, &mut item.delete),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                let m: Method = match method {
                    HttpMethod::Get => Method::GET,
                    HttpMethod::Post => Method::POST,
                    HttpMethod::Put => Method::PUT,
                    HttpMethod::Patch => Method::PATCH,
                    _ => Method::DELETE,
                };
                let public = PUBLIC_OPERATIONS.contains(&path.as_str());
                let mut add = |status: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| problem(description).into());
                };
                if !public || op.request_body.is_some() {
                    add("400", "Invalid request: a malformed header, an unsupported API version, or an invalid body");
                }
                if !public {
                    add("401", "Missing or invalid authentication");
                    add(
                        "403",
                        "Insufficient permissions or wrong organization/application context",
                    );
                }
                if op.request_body.is_some() {
                    add("413", "The request body is larger than the limit");
                    add("415", "The request body must be application/json");
                }
                if ratelimit::rule_for(&m, path).is_some() || path.starts_with("/api/auth/sign-") {
                    add("429", "Rate limited");
                }
                if path.contains('{') || !public {
                    add(
                        "404",
                        "Not found, or not visible to this caller (also an unknown X-App-Id)",
                    );
                }
                add("500", "Unexpected server error");
                add(
                    "503",
                    "Starting, shutting down, or the database is unavailable",
                );
            }
        }
    }
}

/// Where a group of routes sits in the pipeline.
enum Group {
    Public,
    Auth,
    Scoped(Scope),
}

fn groups() -> Vec<(Group, OpenApiRouter<AppState>)> {
    vec![
        (
            Group::Public,
            health::router()
                .merge(orgs::public_router())
                .merge(routes::run_events::router())
                .merge(routes::internal::router())
                .merge(integration_routes::public_router()),
        ),
        (Group::Auth, auth_routes::router()),
        (
            Group::Scoped(Scope::User),
            orgs::user_router()
                .merge(me::user_router())
                .merge(integration_routes::user_router()),
        ),
        (Group::Scoped(Scope::OrgPath), orgs::org_path_router()),
        (
            Group::Scoped(Scope::Org),
            applications::org_router()
                .merge(me::org_router())
                .merge(installs::org_router()),
        ),
        (
            Group::Scoped(Scope::App),
            end_users::app_router().merge(api_keys::app_router()),
        ),
        (
            Group::Scoped(Scope::App),
            package_routes::agents::router()
                .merge(package_routes::skills::router())
                .merge(package_routes::integrations::router())
                .merge(package_routes::mcp_servers::router())
                .merge(package_archives::app_router())
                .merge(agents::app_router()),
        ),
        (Group::Scoped(Scope::App), run_routes::app_router()),
        (Group::Scoped(Scope::App), routes::realtime::router()),
        (Group::Scoped(Scope::App), webhook_routes::app_router()),
        (Group::Scoped(Scope::App), integration_routes::app_router()),
        (Group::Scoped(Scope::Org), model_routes::org_router()),
        (Group::Scoped(Scope::App), model_routes::app_router()),
    ]
}

/// The OpenAPI document of every route the server serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut router = OpenApiRouter::with_openapi(ApiDoc::openapi());
    for (_, g) in groups() {
        router = router.merge(g);
    }
    let mut doc = router.split_for_parts().1;
    // After the merge: the modifier needs every path in place.
    utoipa::Modify::modify(&PipelineResponses, &mut doc);
    doc
}

/// Routes that are deliberately not part of the contract (the contract itself, its
/// docs page). Checked by a test: every other route must be in `/api/openapi.json`.
pub const UNDOCUMENTED_ROUTES: &[&str] = &[
    "/api/openapi.json",
    "/api/docs",
    "/api/docs/docs.js",
    // On the separate metrics listener, not the API.
    "/metrics",
];

async fn route_not_found(req: axum::extract::Request) -> Response {
    ApiError::new(
        ErrorCode::RouteNotFound,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
    .into_response()
}

fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".into());
    ApiError::internal(anyhow::anyhow!("handler panicked: {what}")).into_response()
}

fn cors(config: &Config) -> CorsLayer {
    let origins: Vec<_> = config
        .trusted_origins
        .iter()
        .filter_map(|o| o.parse().ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-org-id"),
            HeaderName::from_static("x-app-id"),
            HeaderName::from_static("x-application-id"),
            HeaderName::from_static("appstrate-version"),
            HeaderName::from_static("appstrate-user"),
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            HeaderName::from_static("request-id"),
            HeaderName::from_static("ratelimit"),
            HeaderName::from_static("ratelimit-policy"),
            header::RETRY_AFTER,
            HeaderName::from_static("appstrate-version"),
            HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(Duration::from_secs(600))
}

/// The full application: every route behind the pipeline of SPEC §4, in order.
pub fn router(state: AppState) -> Router {
    let mut app: Router<AppState> = Router::new();
    for (group, routes) in groups() {
        let (r, _) = routes.split_for_parts();
        let r = match group {
            Group::Public => r,
            Group::Auth => r.route_layer(from_fn_with_state(state.clone(), auth_routes::ip_limit)),
            Group::Scoped(scope) => {
                r.route_layer(from_fn_with_state((state.clone(), scope), context::layer))
            }
        };
        app = app.merge(r);
    }
    app.route("/api/openapi.json", get(docs::openapi_json))
        .route("/api/docs", get(docs::docs_page))
        .route("/api/docs/docs.js", get(docs::docs_js))
        .fallback(route_not_found)
        .method_not_allowed_fallback(|req: axum::extract::Request| async move {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("{} is not allowed on {}", req.method(), req.uri().path()),
            )
            .into_response()
        })
        // Outermost first. The panic catcher sits inside the request id so a panic's
        // problem body carries the same id as the `Request-Id` header.
        .layer(
            ServiceBuilder::new()
                .layer(from_fn(pipeline::request_id::layer))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(from_fn_with_state(
                    state.clone(),
                    pipeline::client_ip::layer,
                ))
                .layer(cors(&state.config))
                .layer(from_fn_with_state(
                    state.clone(),
                    pipeline::security::headers,
                ))
                .layer(from_fn_with_state(
                    state.clone(),
                    pipeline::security::body_limit,
                ))
                .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
                .layer(from_fn_with_state(state.clone(), pipeline::gates::boot))
                .layer(from_fn_with_state(state.clone(), pipeline::gates::shutdown)),
        )
        .with_state(state)
}

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
    let engine = corral_engine::Engine::new(config, secrets, db, routes::runs::run_object)?;
    Ok(AppState {
        inner: Arc::new(Inner {
            engine,
            auth: auth::Authenticator::new(Vec::new()),
            rate_limiter: Arc::new(ratelimit::InProcessLimiter::default()),
            gates: Gates::default(),
            started: Instant::now(),
            openapi_json,
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
    let app = router(state.clone());
    let stop = http_stop.clone();
    let write_timeout = Duration::from_secs(state.config.write_timeout_seconds.max(1));
    // A peer that stops reading (an SSE client gone silent, a stalled download)
    // would hold its connection and queue forever: data unacknowledged for the
    // write timeout (zero-window probes included) aborts the connection.
    let listener = axum::serve::ListenerExt::tap_io(listener, move |tcp| {
        if let Err(e) = socket2::SockRef::from(&*tcp).set_tcp_user_timeout(Some(write_timeout)) {
            tracing::debug!(error = %e, "cannot set TCP_USER_TIMEOUT");
        }
    });
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { stop.cancelled().await });
    let mut server_task = tokio::spawn(async move { server.await });

    let tier = match state.db.backend() {
        corral_store::Backend::Sqlite => "tier 0 (embedded)",
        corral_store::Backend::Postgres if state.config.redis_url.is_some() => {
            "tier 2 (PostgreSQL + Redis)"
        }
        corral_store::Backend::Postgres => "tier 1 (PostgreSQL)",
    };
    tracing::info!(
        %addr,
        tier,
        database = state.db.backend().name(),
        rate_limits = "in-process",
        idempotency = "database",
        env = ?state.config.env,
        "listening; applying migrations behind the boot gate"
    );
    if state.config.redis_url.is_some() {
        tracing::warn!("REDIS_URL is set but shared rate limits over Redis are not built yet; limits stay in-process");
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
    jobs.spawn(
        "sandbox-backend",
        sandbox_backend(state.clone(), addr, jobs.stop_token()),
    );
    if let Some(metrics_addr) = state.config.metrics_listen {
        match TcpListener::bind(metrics_addr).await {
            Ok(l) => {
                tracing::info!(addr = %metrics_addr, "metrics listening");
                let app = metrics_router(state.clone());
                let stop = jobs.stop_token();
                jobs.spawn("metrics-listener", async move {
                    let _ = axum::serve(l, app)
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
    tracing::info!(
        in_flight = state.gates.in_flight(),
        grace_s = grace.as_secs(),
        "shutting down: draining work"
    );
    if tokio::time::timeout_at(deadline, state.gates.drained())
        .await
        .is_err()
    {
        tracing::warn!(
            in_flight = state.gates.in_flight(),
            "grace period over with work still running"
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

/// `/metrics` (Prometheus text format), alone on the metrics listener.
fn metrics_router(state: AppState) -> Router {
    async fn metrics(
        axum::extract::State(state): axum::extract::State<AppState>,
    ) -> impl IntoResponse {
        (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            corral_engine::metrics::render(&state).await,
        )
    }
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The routes sandboxes call (run events, the internal API), alone on the
/// sandbox-facing listener.
fn sandbox_router(state: AppState) -> Router {
    let (r, _) = routes::run_events::router()
        .merge(routes::internal::router())
        .split_for_parts();
    r.fallback(route_not_found)
        .layer(from_fn(pipeline::request_id::layer))
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .with_state(state)
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
