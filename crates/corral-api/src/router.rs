//! The application router: every route group behind the pipeline of SPEC §4, in
//! order, and the routers of the sandbox-facing and metrics listeners.

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, Method};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use corral_config::Config;
use corral_core::ErrorCode;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa_axum::router::OpenApiRouter;

use crate::context::Scope;
use crate::{context, pipeline, routes};

use crate::error::ApiError;
use crate::routes::{
    agents, api_keys, applications, auth as auth_routes, docs, end_users, health, installs,
    integrations as integration_routes, me, models as model_routes, orgs, package_archives,
    packages as package_routes, runs as run_routes, webhooks as webhook_routes,
};
use crate::state::AppState;

/// Where a group of routes sits in the pipeline.
pub(crate) enum Group {
    Public,
    Auth,
    Scoped(Scope),
}

pub(crate) fn groups() -> Vec<(Group, OpenApiRouter<AppState>)> {
    vec![
        (
            Group::Public,
            health::router()
                .merge(orgs::public_router())
                .merge(docs::router())
                .merge(routes::run_events::router())
                .merge(routes::run_documents::router())
                .merge(routes::uploads::public_router())
                .merge(routes::internal::router())
                .merge(integration_routes::public_router())
                .merge(model_routes::public_router()),
        ),
        (
            Group::Auth,
            auth_routes::router().merge(routes::bootstrap::router()),
        ),
        (
            Group::Scoped(Scope::User),
            orgs::user_router()
                .merge(me::user_router())
                .merge(routes::admin::user_router())
                .merge(routes::me_context::user_router())
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
                .merge(package_routes::version_info_router())
                .merge(package_routes::fork_router())
                .merge(package_archives::app_router())
                .merge(agents::app_router()),
        ),
        (
            Group::Scoped(Scope::App),
            run_routes::app_router().merge(routes::me_context::app_router()),
        ),
        (
            Group::Scoped(Scope::App),
            routes::schedules::app_router().merge(routes::persistence::app_router()),
        ),
        (Group::Scoped(Scope::App), routes::realtime::router()),
        (Group::Scoped(Scope::App), webhook_routes::app_router()),
        (
            Group::Scoped(Scope::App),
            routes::notifications::app_router(),
        ),
        (
            Group::Scoped(Scope::App),
            routes::uploads::app_router().merge(routes::documents::app_router()),
        ),
        (Group::Scoped(Scope::App), integration_routes::app_router()),
        (
            Group::Scoped(Scope::Org),
            model_routes::org_router().merge(routes::proxies::org_router()),
        ),
        (Group::Scoped(Scope::Org), run_routes::org_router()),
        (
            Group::Scoped(Scope::App),
            model_routes::app_router()
                .merge(routes::proxies::app_router())
                .merge(routes::llm_proxy::app_router())
                .merge(routes::credential_proxy::app_router()),
        ),
    ]
}

/// The main listener's fallback: a dashboard page, else the problem+json 404.
async fn dashboard_or_not_found(req: axum::extract::Request) -> Response {
    match crate::dashboard::answer(&req) {
        Some(page) => page,
        None => route_not_found(req).await,
    }
}

pub(crate) async fn route_not_found(req: axum::extract::Request) -> Response {
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
    let app = app
        .route("/api/docs/docs.js", get(docs::docs_js))
        .fallback(dashboard_or_not_found)
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
                .layer(from_fn(pipeline::limits::layer))
                .layer(from_fn(pipeline::nul::layer))
                .layer(from_fn_with_state(state.clone(), pipeline::gates::boot))
                .layer(from_fn_with_state(state.clone(), pipeline::gates::shutdown)),
        )
        .with_state(state);
    // Rewrites that must happen before routing wrap the routed application.
    Router::new()
        .fallback_service(app)
        .layer(from_fn(pipeline::package_paths::layer))
}

/// `/metrics` (Prometheus text format), alone on the metrics listener.
pub(crate) fn metrics_router(state: AppState) -> Router {
    async fn metrics(
        axum::extract::State(state): axum::extract::State<AppState>,
    ) -> impl IntoResponse {
        let mut text = corral_engine::metrics::render(&state).await;
        if state.db.backend() == corral_store::Backend::Sqlite {
            state.run_pages.render_metrics(&mut text);
        }
        if let Some(redis) = &state.redis {
            redis.render_metrics(&mut text);
        }
        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
    }
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// A worker's main listener: no user API, only `/health`, `/metrics` and the routes
/// its sandboxes call (process sandboxes post their events there).
pub(crate) fn worker_router(state: AppState) -> Router {
    let (health, _) = routes::health::router().split_for_parts();
    sandbox_router(state.clone())
        .merge(health.with_state(state.clone()))
        .merge(metrics_router(state))
}

/// The routes sandboxes call (run events, the internal API), alone on the
/// sandbox-facing listener.
pub(crate) fn sandbox_router(state: AppState) -> Router {
    let (r, _) = routes::run_events::router()
        .merge(routes::run_documents::router())
        .merge(routes::internal::router())
        .split_for_parts();
    r.fallback(route_not_found)
        .layer(from_fn(pipeline::nul::layer))
        .layer(from_fn(pipeline::request_id::layer))
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .with_state(state)
}
