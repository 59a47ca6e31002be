//! The SSE endpoints of the reference contract. Each frame's `id:` is the durable
//! per-organization event number, so a client that reconnects with `Last-Event-ID`
//! gets every matching event after it (read back from `realtime_events`), then the
//! live stream, with no gap and no duplicate: the subscription is registered before
//! the replay is read, and live frames at or below the last replayed number are
//! skipped.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use corral_core::{AppId, OrgId, RunId};
use futures::StreamExt as _;
use serde_json::Value;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::context::{perms, Ctx, Perm};
use crate::error::{ApiError, ApiResult};
use crate::routes::runs::RunView;
use crate::state::AppState;
use corral_realtime::{parse_channels, unnumbered, Filter, Holder, Revocation};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stream_all_runs))
        .routes(routes!(stream_run))
        .routes(routes!(stream_agent_runs))
}

/// Query parameters of every realtime stream. `orgId`, `applicationId` and `token`
/// are read by the authentication pipeline (EventSource cannot send headers).
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "documents the query; parsed by hand to keep errors problem+json"
)]
pub struct SseQuery {
    /// Organization id (session auth; EventSource cannot send `X-Org-Id`).
    #[param(rename = "orgId")]
    org_id: Option<String>,
    /// Application id (session auth). Not needed with an API key.
    #[param(rename = "applicationId")]
    application_id: Option<String>,
    /// API key (`ask_…`), since EventSource cannot send `Authorization`.
    token: Option<String>,
    /// Include `result` (run updates) and `data` (log entries).
    verbose: Option<bool>,
    /// Comma-separated subset of `run_update,run_log,run_metric,connection_update,chat_session_update`.
    channels: Option<String>,
}

/// One Server-Sent Event of a realtime stream, as a client's SSE parser yields it:
/// `run_update`, `run_log`, `run_metric`, `connection_update` or `ping`, its JSON
/// `data` (empty for a ping), and `id`, the organization's event number to resume
/// from with `Last-Event-ID` (absent on snapshots and pings).
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "documents the stream's frames for the contract")]
pub struct SseEvent {
    event: String,
    data: String,
    id: Option<String>,
    retry: Option<u64>,
}

struct Options {
    verbose: bool,
    channels: u8,
}

fn options(raw: Option<&str>) -> ApiResult<Options> {
    let mut verbose = false;
    let mut channels = None;
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "verbose" => {
                verbose = match v.as_ref() {
                    "true" | "1" => true,
                    "false" | "0" | "" => false,
                    _ => {
                        return Err(ApiError::invalid_param(
                            "verbose",
                            "verbose must be true or false",
                        ))
                    }
                }
            }
            "channels" => channels = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok(Options {
        verbose,
        channels: parse_channels(channels.as_deref()),
    })
}

/// `Last-Event-ID`: a number we handed out. Anything else (another server's format,
/// garbage) means "no replay", as a fresh connection.
fn last_event_id(headers: &HeaderMap) -> Option<i64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| *n >= 0)
}

async fn open(
    state: AppState,
    ctx: &Ctx,
    filter: Filter,
    opts: &Options,
    headers: &HeaderMap,
    first: impl std::future::Future<Output = corral_store::Result<Vec<Bytes>>>,
) -> ApiResult<Response> {
    let org = ctx.org_id()?;
    // Subscribed before the stream opens, so a revocation racing the open still ends it.
    let revoked = until_revoked(
        state.runs.bus.revocations(),
        holder(ctx, org, ctx.app_id()?),
    );
    let stream = state
        .realtime
        .stream(org, filter, opts.verbose, last_event_id(headers), first)
        .await?
        .take_until(revoked)
        .map(Ok::<_, std::convert::Infallible>);
    let mut res = Body::from_stream(stream).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell reverse proxies (nginx) not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(res)
}

/// The identity the stream is opened with, as revocations name it.
fn holder(ctx: &Ctx, org: &OrgId, app: &AppId) -> Holder {
    match &ctx.principal {
        Principal::ApiKey(k) => Holder {
            org: org.clone(),
            app: app.clone(),
            api_key: Some(k.key_id.clone()),
            session: None,
            user: k.created_by.clone(),
        },
        Principal::User(u) => Holder {
            org: org.clone(),
            app: app.clone(),
            api_key: None,
            session: Some(u.session_id.clone()),
            user: Some(u.user_id.clone()),
        },
    }
}

/// Resolves when a revocation takes away what `holder` opened the stream with (or
/// when revocations were missed: the client reconnects and is checked again).
async fn until_revoked(
    mut revocations: tokio::sync::broadcast::Receiver<Revocation>,
    holder: Holder,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match revocations.recv().await {
            Ok(r) if holder.affected_by(&r) => return,
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

fn base_filter(ctx: &Ctx, opts: &Options) -> ApiResult<Filter> {
    Ok(Filter {
        application_id: ctx.app_id()?.to_owned(),
        end_user_id: ctx.end_user_id.clone(),
        run_id: None,
        package_id: None,
        channels: opts.channels,
    })
}

/// SSE: every run change of the application.
#[utoipa::path(get, path = "/api/realtime/runs", tag = "Realtime", operation_id = "streamAllRuns",
    params(SseQuery),
    responses((status = 200, description = "SSE stream", content_type = "text/event-stream", body = SseEvent)))]
pub async fn stream_all_runs(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsRead>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let opts = options(raw.as_deref())?;
    let filter = base_filter(&ctx, &opts)?;
    open(state, &ctx, filter, &opts, &headers, async {
        Ok(Vec::new())
    })
    .await
}

/// The run `id` of this application, if the caller (an end user: only theirs) sees it.
async fn visible_run(
    state: &AppState,
    org_id: &OrgId,
    app_id: &AppId,
    end_user: Option<&str>,
    id: &RunId,
) -> corral_store::Result<Option<corral_store::runs::Run>> {
    let mut conn = state.db.conn().await?;
    Ok(corral_store::runs::get(&mut conn, org_id, app_id, id)
        .await?
        .filter(|r| end_user.is_none() || r.end_user_id.as_deref() == end_user))
}

/// SSE: one run — a snapshot of the run first, then its events.
#[utoipa::path(get, path = "/api/realtime/runs/{id}", tag = "Realtime", operation_id = "streamRun",
    params(("id" = String, Path, description = "Run id"), SseQuery),
    responses((status = 200, description = "SSE stream", content_type = "text/event-stream", body = SseEvent)))]
pub async fn stream_run(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsRead>,
    Path(id): Path<RunId>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let opts = options(raw.as_deref())?;
    let (org_id, app_id) = (ctx.org_id()?, ctx.app_id()?);
    let end_user = ctx.end_user_id.as_deref();
    // 404 before anything opens; the snapshot itself is read again once subscribed,
    // so a run that changes meanwhile (one that finishes in milliseconds) is not left
    // showing its older state.
    if visible_run(&state, org_id, app_id, end_user, &id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("run"));
    }
    let snapshot = async {
        let Some(run) = visible_run(&state, org_id, app_id, end_user, &id).await? else {
            return Ok(Vec::new());
        };
        let mut snapshot = serde_json::to_value(RunView::from(&run)).unwrap_or_default();
        if !opts.verbose {
            if let Value::Object(m) = &mut snapshot {
                m.insert("input".into(), Value::Null);
                m.insert("result".into(), Value::Null);
            }
        }
        Ok(vec![unnumbered("run_update", &snapshot)])
    };
    let mut filter = base_filter(&ctx, &opts)?;
    filter.run_id = Some(id.clone());
    open(state.clone(), &ctx, filter, &opts, &headers, snapshot).await
}

/// SSE: the runs of one agent (`@scope/name`, URL-encoded).
#[utoipa::path(get, path = "/api/realtime/agents/{packageId}/runs", tag = "Realtime", operation_id = "streamAgentRuns",
    params(("packageId" = String, Path, description = "Agent package id (`@scope/name`, URL-encoded)"), SseQuery),
    responses((status = 200, description = "SSE stream", content_type = "text/event-stream", body = SseEvent)))]
pub async fn stream_agent_runs(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsRead>,
    Path(package_id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let opts = options(raw.as_deref())?;
    if !package_id.starts_with('@') || !package_id.contains('/') {
        return Err(ApiError::invalid_param(
            "packageId",
            "packageId must be an agent id such as @scope/name",
        ));
    }
    let mut filter = base_filter(&ctx, &opts)?;
    filter.package_id = Some(package_id);
    open(state, &ctx, filter, &opts, &headers, async {
        Ok(Vec::new())
    })
    .await
}
