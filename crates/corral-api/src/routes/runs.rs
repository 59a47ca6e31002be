//! Runs (`/api/agents/{scope}/{name}/run`, `/api/runs…`): the trigger pipeline of
//! SPEC §7 in order, inline runs, reading (with the `?wait=` long poll), logs, cancel,
//! and an agent's run history.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use corral_core::time::{now_ms, to_rfc3339};
use corral_core::ErrorCode;
use corral_store::runs as store;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Ctx, Perm};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::json::{Json, Validate};
use crate::state::AppState;
use corral_engine::runs::trigger;

pub fn app_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(run_agent))
        .routes(routes!(run_inline))
        .routes(routes!(validate_inline))
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
        .routes(routes!(get_run_logs))
        .routes(routes!(cancel_run))
        .routes(routes!(list_agent_runs, delete_agent_runs))
}

/// `?wait=` ceiling (below common 60 s proxy idle timeouts).
const MAX_WAIT_SECS: u64 = 55;
/// Concurrent long polls per identity; beyond it `wait` is ignored.
const MAX_WAITS_PER_IDENTITY: usize = 10;

// ---- the run object ---------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentCounts {
    pub input: i64,
    pub output: i64,
}

/// A run, as every run endpoint returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    pub id: String,
    #[serde(rename = "packageId")]
    pub package_id: Option<String>,
    #[serde(rename = "userId")]
    pub user_id: Option<String>,
    #[serde(rename = "endUserId")]
    pub end_user_id: Option<String>,
    #[serde(rename = "apiKeyId")]
    pub api_key_id: Option<String>,
    #[serde(rename = "orgId")]
    pub org_id: String,
    #[serde(rename = "applicationId")]
    pub application_id: String,
    #[serde(rename = "scheduleId")]
    pub schedule_id: Option<String>,
    #[schema(value_type = String, pattern = "^(pending|running|success|failed|timeout|cancelled)$")]
    pub status: String,
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    /// `{"output": …}` once an output was emitted.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub artifacts: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub checkpoint: Option<Value>,
    /// Error message of a failed run.
    pub error: Option<String>,
    /// Machine code of the error (`output_schema_mismatch`, `stalled`, …) and details.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub generation: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub generation_override: Option<Value>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    /// Milliseconds.
    pub duration: Option<i64>,
    pub cost: Option<f64>,
    pub cost_pricing_status: Option<String>,
    #[serde(rename = "runNumber")]
    pub run_number: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub token_usage: Option<Value>,
    pub version_label: Option<String>,
    pub version_ref: String,
    pub proxy_label: Option<String>,
    pub model_label: Option<String>,
    pub model_source: Option<String>,
    pub runner_name: Option<String>,
    /// `docker` | `process` once the run has a sandbox.
    pub runner_kind: Option<String>,
    pub agent_scope: Option<String>,
    pub agent_name: Option<String>,
    #[serde(rename = "runOrigin")]
    pub run_origin: Option<String>,
    #[serde(rename = "contextSnapshot")]
    #[schema(value_type = Option<Object>)]
    pub context_snapshot: Option<Value>,
    #[serde(rename = "modelCredentialId")]
    pub model_credential_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub connection_overrides: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub dependency_overrides: Option<Value>,
    pub user_name: Option<String>,
    pub end_user_name: Option<String>,
    pub api_key_name: Option<String>,
    pub schedule_name: Option<String>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub connections_used: Option<Value>,
    pub package_ephemeral: bool,
    pub unread: bool,
    pub document_counts: DocumentCounts,
    pub primary_document_id: Option<String>,
}

fn parse_json(s: &Option<String>) -> Option<Value> {
    s.as_deref().and_then(|t| serde_json::from_str(t).ok())
}

impl From<&store::Run> for RunView {
    fn from(r: &store::Run) -> RunView {
        let metadata = r.error_code.as_ref().map(|code| {
            json!({
                "error_code": code,
                "error_details": parse_json(&r.error_details),
            })
        });
        RunView {
            id: r.id.clone(),
            package_id: r.package_id.clone(),
            user_id: r.user_id.clone(),
            end_user_id: r.end_user_id.clone(),
            api_key_id: r.api_key_id.clone(),
            org_id: r.org_id.clone(),
            application_id: r.application_id.clone(),
            schedule_id: r.schedule_id.clone(),
            status: r.status.clone(),
            input: parse_json(&r.input),
            result: parse_json(&r.result),
            artifacts: None,
            checkpoint: None,
            error: r.error.clone(),
            metadata,
            generation: parse_json(&r.generation),
            generation_override: None,
            started_at: Some(to_rfc3339(r.created_at)),
            completed_at: r.completed_at.map(to_rfc3339),
            duration: r.duration_ms,
            cost: None,
            cost_pricing_status: None,
            run_number: Some(r.run_number),
            token_usage: parse_json(&r.token_usage),
            version_label: r.version_label.clone(),
            version_ref: r.version_ref.clone(),
            proxy_label: None,
            model_label: r.model_label.clone(),
            model_source: r.model_source.clone(),
            runner_name: r.runner_name.clone(),
            runner_kind: r.runner_kind.clone(),
            agent_scope: r.agent_scope.clone(),
            agent_name: r.agent_name.clone(),
            run_origin: Some("platform".into()),
            context_snapshot: None,
            model_credential_id: None,
            connection_overrides: None,
            dependency_overrides: None,
            user_name: r.user_name.clone(),
            end_user_name: r.end_user_name.clone(),
            api_key_name: r.api_key_name.clone(),
            schedule_name: None,
            connections_used: None,
            package_ephemeral: r.kind == "inline",
            unread: r.unread,
            document_counts: DocumentCounts {
                input: 0,
                output: 0,
            },
            primary_document_id: None,
        }
    }
}

/// The run object as JSON (webhook payloads carry it; see [`corral_engine::RunObject`]).
pub fn run_object(r: &store::Run) -> Value {
    serde_json::to_value(RunView::from(r)).unwrap_or(Value::Null)
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunList {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<RunView>,
    pub total: i64,
    pub has_more: bool,
}

// ---- trigger ----------------------------------------------------------------------

/// Body of `POST /api/agents/{scope}/{name}/run`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// Input values, validated against the agent's input schema.
    #[schema(value_type = Option<Object>)]
    pub input: Option<Map<String, Value>>,
    /// Replay the input of this earlier run of the same agent.
    pub rerun_from: Option<String>,
    /// Pin this run to a model.
    #[serde(rename = "modelId")]
    pub model_id: Option<String>,
    #[serde(rename = "proxyId")]
    pub proxy_id: Option<String>,
    /// Per-integration connection picks (`{"@scope/integration": "<connection id>"}`).
    #[schema(value_type = Option<Object>)]
    pub connection_overrides: Option<BTreeMap<String, String>>,
    /// Per-run dependency version overrides (`{"@scope/skill": "<spec>"}`).
    #[schema(value_type = Option<Object>)]
    pub dependency_overrides: Option<BTreeMap<String, String>>,
    /// `{temperature, reasoningLevel}`.
    #[schema(value_type = Option<Object>)]
    pub generation: Option<Value>,
}

impl Validate for RunBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if self.input.is_some() && self.rerun_from.is_some() {
            e.push(FieldError::new(
                "rerun_from",
                "mutually_exclusive",
                "send either input or rerun_from, not both",
            ));
        }
        if let Some(Value::Object(_)) | None = &self.generation {
        } else if !matches!(self.generation, Some(Value::Null)) {
            e.push(FieldError::new(
                "generation",
                "invalid_type",
                "must be an object",
            ));
        }
        e
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// `draft`, `published` (default) or a version spec (exact, dist-tag, range).
    pub version: Option<String>,
}

fn created(run: &store::Run) -> Response {
    (StatusCode::CREATED, Json(RunView::from(run))).into_response()
}

/// Run an agent. Returns at once with the `pending` run; execution continues in a
/// sandbox. Every check happens before the run row exists, so a refused trigger
/// leaves nothing behind.
#[utoipa::path(post, path = "/api/agents/{scope}/{name}/run", tag = "Runs", operation_id = "runAgent",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name"), RunQuery),
    request_body = RunBody,
    responses((status = 201, description = "Run created", body = RunView),
              (status = 409, description = "rerun_from names a run of another agent", body = crate::error::ProblemDetail, content_type = "application/problem+json"),
              (status = 412, description = "A required integration has no usable connection", body = crate::error::ProblemDetail, content_type = "application/problem+json"),
              (status = 422, description = "A dependency has no matching version, or no model is configured", body = crate::error::ProblemDetail, content_type = "application/problem+json")))]
pub async fn run_agent(
    State(state): State<AppState>,
    ctx: Perm<perms::AgentsRun>,
    Path((scope, name)): Path<(String, String)>,
    Query(q): Query<RunQuery>,
    Json(body): Json<RunBody>,
) -> ApiResult<Response> {
    let org_id = ctx.org_id()?;
    let id = format!("{scope}/{name}");
    let agent = trigger::resolve_agent(&state, org_id, &id, q.version.as_deref()).await?;
    let input = match &body.rerun_from {
        Some(prev) => {
            let mut conn = state.db.conn().await?;
            let prev = store::get(&mut conn, org_id, ctx.app_id()?, prev)
                .await?
                .filter(|r| ctx.end_user_id.is_none() || r.end_user_id == ctx.end_user_id)
                .ok_or_else(|| ApiError::not_found("run"))?;
            if prev.package_id.as_deref() != Some(id.as_str()) {
                return Err(ApiError::new(
                    ErrorCode::RerunAgentMismatch,
                    "rerun_from names a run of another agent",
                ));
            }
            parse_json(&prev.input).unwrap_or(Value::Null)
        }
        None => Value::Object(body.input.clone().unwrap_or_default()),
    };
    let req = trigger::Request {
        agent: &agent,
        kind: "package",
        input,
        generation: body.generation.as_ref(),
        model_id: body.model_id.as_deref(),
        dependency_overrides: body.dependency_overrides.as_ref(),
        connection_overrides: body.connection_overrides.as_ref(),
    };
    let run = trigger::trigger(&state, &ctx.caller()?, &req).await?;
    Ok(created(&run))
}

/// Body of the inline run endpoints.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InlineBody {
    /// A full AFPS agent manifest.
    #[schema(value_type = Object)]
    pub manifest: Value,
    /// `prompt.md`.
    pub prompt: String,
    #[schema(value_type = Option<Object>)]
    pub input: Option<Map<String, Value>>,
    pub context_documents: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub connection_overrides: Option<BTreeMap<String, String>>,
    #[serde(rename = "modelId")]
    pub model_id: Option<String>,
    #[serde(rename = "proxyId")]
    pub proxy_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub generation: Option<Value>,
}

impl InlineBody {
    fn request<'a>(&'a self, agent: &'a trigger::Agent) -> trigger::Request<'a> {
        trigger::Request {
            agent,
            kind: "inline",
            input: Value::Object(self.input.clone().unwrap_or_default()),
            generation: self.generation.as_ref(),
            model_id: self.model_id.as_deref(),
            dependency_overrides: None,
            connection_overrides: self.connection_overrides.as_ref(),
        }
    }
}

impl Validate for InlineBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if !self.manifest.is_object() {
            e.push(FieldError::new(
                "manifest",
                "invalid_type",
                "must be an object",
            ));
        }
        if self.prompt.trim().is_empty() {
            e.push(FieldError::new("prompt", "required", "must not be empty"));
        }
        if self
            .context_documents
            .as_ref()
            .is_some_and(|d| !d.is_empty())
        {
            e.push(FieldError::new(
                "context_documents",
                "unsupported",
                "documents are not supported yet",
            ));
        }
        e
    }
}

/// Run an agent defined entirely in the request body.
#[utoipa::path(post, path = "/api/runs/inline", tag = "Runs", operation_id = "runInline",
    request_body = InlineBody,
    responses((status = 201, description = "Run created", body = RunView),
              (status = 412, description = "A required integration has no usable connection", body = crate::error::ProblemDetail, content_type = "application/problem+json"),
              (status = 422, description = "A dependency has no matching version, or no model is configured", body = crate::error::ProblemDetail, content_type = "application/problem+json")))]
pub async fn run_inline(
    State(state): State<AppState>,
    ctx: Perm<perms::AgentsRun>,
    Json(body): Json<InlineBody>,
) -> ApiResult<Response> {
    let agent = trigger::inline_agent(&body.manifest, &body.prompt)?;
    let run = trigger::trigger(&state, &ctx.caller()?, &body.request(&agent)).await?;
    Ok(created(&run))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Valid {
    pub valid: bool,
}

/// Dry run of `POST /api/runs/inline`: the same checks, nothing created.
#[utoipa::path(post, path = "/api/runs/inline/validate", tag = "Runs", operation_id = "validateInlineRun",
    request_body = InlineBody,
    responses((status = 200, description = "Valid", body = Valid)))]
pub async fn validate_inline(
    State(state): State<AppState>,
    ctx: Perm<perms::AgentsRun>,
    Json(body): Json<InlineBody>,
) -> ApiResult<Json<Valid>> {
    let agent = trigger::inline_agent(&body.manifest, &body.prompt)?;
    trigger::check(&state, &ctx.caller()?, &body.request(&agent)).await?;
    Ok(Json(Valid { valid: true }))
}

// ---- reading ------------------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `me`: only the caller's runs.
    pub user: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// `all` | `package` | `inline`.
    pub kind: Option<String>,
    pub status: Option<String>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub chat_session_id: Option<String>,
}

fn restrict_end_user<'a>(ctx: &'a Ctx, f: &mut store::ListFilter<'a>) {
    if let Some(eu) = &ctx.end_user_id {
        f.end_user_id = Some(eu);
    }
}

/// The application's runs, newest first.
#[utoipa::path(get, path = "/api/runs", tag = "Runs", operation_id = "listRuns",
    params(ListQuery),
    responses((status = 200, description = "Runs", body = RunList)))]
pub async fn list_runs(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsRead>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<RunList>> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_param(
            "limit",
            "limit must be between 1 and 100",
        ));
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid_param(
            "offset",
            "offset must be 0 or more",
        ));
    }
    let mut f = store::ListFilter {
        limit: limit + 1,
        offset,
        ..Default::default()
    };
    match q.user.as_deref() {
        None | Some("") => {}
        Some("me") => {
            f.user_id = Some(
                ctx.principal
                    .user()
                    .map(|u| u.user_id.as_str())
                    .unwrap_or("\u{0}no-user"),
            );
        }
        Some(_) => return Err(ApiError::invalid_param("user", "user must be `me`")),
    }
    match q.kind.as_deref() {
        None | Some("") | Some("all") => {}
        Some(k @ ("package" | "inline")) => f.kind = Some(k),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "kind",
                "kind must be all, package or inline",
            ))
        }
    }
    match q.status.as_deref() {
        None | Some("") => {}
        Some(s) if store::ACTIVE.contains(&s) || store::TERMINAL.contains(&s) => f.status = Some(s),
        Some(_) => return Err(ApiError::invalid_param("status", "unknown status")),
    }
    for (name, value, slot) in [
        ("start_date", &q.start_date, &mut f.created_from),
        ("end_date", &q.end_date, &mut f.created_to),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            *slot = Some(corral_core::time::parse_rfc3339(v).ok_or_else(|| {
                ApiError::invalid_param(name, format!("{name} must be an RFC 3339 date-time"))
            })?);
        }
    }
    if q.chat_session_id.is_some() {
        // No chat sessions exist, so no run was launched from one.
        return Ok(Json(RunList {
            object: "list",
            data: Vec::new(),
            total: 0,
            has_more: false,
        }));
    }
    restrict_end_user(&ctx, &mut f);
    let mut conn = state.db.conn().await?;
    let (mut rows, total) = store::list(&mut conn, ctx.org_id()?, ctx.app_id()?, &f).await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok(Json(RunList {
        object: "list",
        data: rows.iter().map(RunView::from).collect(),
        total,
        has_more,
    }))
}

async fn load_run(state: &AppState, ctx: &Ctx, id: &str) -> ApiResult<store::Run> {
    let mut conn = state.db.conn().await?;
    store::get(&mut conn, ctx.org_id()?, ctx.app_id()?, id)
        .await?
        .filter(|r| ctx.end_user_id.is_none() || r.end_user_id == ctx.end_user_id)
        .ok_or_else(|| ApiError::not_found("run"))
}

fn wait_seconds(raw: Option<&str>) -> ApiResult<u64> {
    let Some(q) = raw else { return Ok(0) };
    let mut wait = 0;
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
        if k != "wait" {
            continue;
        }
        wait = match v.as_ref() {
            "" | "false" => 0,
            "true" => MAX_WAIT_SECS,
            n => n
                .parse::<u64>()
                .map_err(|_| {
                    ApiError::invalid_param(
                        "wait",
                        "wait must be true, false or a whole number of seconds",
                    )
                })?
                .min(MAX_WAIT_SECS),
        };
    }
    Ok(wait)
}

fn waits() -> &'static DashMap<String, usize> {
    static WAITS: std::sync::OnceLock<DashMap<String, usize>> = std::sync::OnceLock::new();
    WAITS.get_or_init(DashMap::new)
}

struct WaitSlot(String);

impl WaitSlot {
    fn take(identity: &str) -> Option<WaitSlot> {
        let mut n = waits().entry(identity.to_owned()).or_insert(0);
        if *n >= MAX_WAITS_PER_IDENTITY {
            return None;
        }
        *n += 1;
        Some(WaitSlot(identity.to_owned()))
    }
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        if let Some(mut n) = waits().get_mut(&self.0) {
            *n = n.saturating_sub(1);
        }
        waits().remove_if(&self.0, |_, n| *n == 0);
    }
}

fn identity(ctx: &Ctx) -> String {
    match &ctx.principal {
        crate::auth::Principal::User(u) => u.user_id.clone(),
        crate::auth::Principal::ApiKey(k) => k.key_id.clone(),
    }
}

/// A run. With `?wait=N` (or `true` = 55 s), holds the request until the run is
/// terminal or the wait elapses; woken by the run's state change, not by polling.
#[utoipa::path(get, path = "/api/runs/{id}", tag = "Runs", operation_id = "getRun",
    params(("id" = String, Path, description = "Run id"),
           ("wait" = Option<String>, Query, description = "Seconds to wait for a terminal status (max 55), or true/false")),
    responses((status = 200, description = "The run", body = RunView)))]
pub async fn get_run(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsRead>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<RunView>> {
    let wait = wait_seconds(raw.as_deref())?;
    let mut signals = state.runs.bus.subscribe();
    let run = load_run(&state, &ctx, &id).await?;
    if wait == 0 || store::is_terminal(&run.status) {
        return Ok(Json(RunView::from(&run)));
    }
    let Some(_slot) = WaitSlot::take(&identity(&ctx)) else {
        return Ok(Json(RunView::from(&run)));
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        match tokio::time::timeout_at(deadline, signals.recv()).await {
            Err(_) => break,
            Ok(Ok(s)) if s.run_id == id && store::is_terminal(&s.status) => break,
            Ok(Ok(_)) => continue,
            // Missed signals: look at the row itself.
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                let r = load_run(&state, &ctx, &id).await?;
                if store::is_terminal(&r.status) {
                    return Ok(Json(RunView::from(&r)));
                }
            }
            Ok(Err(_)) => break,
        }
    }
    let run = load_run(&state, &ctx, &id).await?;
    Ok(Json(RunView::from(&run)))
}

/// One persisted log entry of a run.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunLog {
    pub id: i64,
    pub run_id: String,
    pub org_id: String,
    #[serde(rename = "type")]
    pub log_type: String,
    #[schema(value_type = String, pattern = "^(debug|info|warn|error)$")]
    pub level: String,
    pub event: Option<String>,
    pub message: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunLogList {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<RunLog>,
    pub has_more: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only entries with `id > since`.
    pub since: Option<String>,
    /// Minimum level: debug (default), info, warn, error.
    pub level: Option<String>,
    /// 1–1000 (default 1000).
    pub limit: Option<String>,
}

/// A run's logs in order. Invalid `since`/`level`/`limit` fall back to the defaults so
/// a stale cursor never breaks a polling tail.
#[utoipa::path(get, path = "/api/runs/{id}/logs", tag = "Runs", operation_id = "getRunLogs",
    params(("id" = String, Path, description = "Run id"), LogsQuery),
    responses((status = 200, description = "Log entries", body = RunLogList)))]
pub async fn get_run_logs(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsRead>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Response> {
    let run = load_run(&state, &ctx, &id).await?;
    let since = q
        .since
        .as_deref()
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|s| *s >= 0)
        .unwrap_or(0);
    let limit = q
        .limit
        .as_deref()
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|l| (1..=1000).contains(l))
        .unwrap_or(1000);
    let all = ["debug", "info", "warn", "error"];
    let from = q
        .level
        .as_deref()
        .and_then(|l| all.iter().position(|x| *x == l))
        .unwrap_or(0);
    let mut conn = state.db.conn().await?;
    let mut rows = store::logs(&mut conn, &run.id, since, &all[from..], limit + 1).await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = rows.last().map(|r| r.id);
    let data = rows
        .into_iter()
        .map(|r| RunLog {
            id: r.id,
            run_id: r.run_id,
            org_id: run.org_id.clone(),
            log_type: r.log_type,
            level: r.level,
            event: None,
            message: r.message,
            data: parse_json(&r.data),
            created_at: to_rfc3339(r.created_at),
        })
        .collect();
    let mut resp = Json(RunLogList {
        object: "list",
        data,
        has_more,
    })
    .into_response();
    if let (true, Some(last)) = (has_more, next) {
        let link = format!(
            "</api/runs/{}/logs?since={last}&limit={limit}>; rel=\"next\"",
            run.id
        );
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(resp)
}

/// Cancel a pending or running run: the run is `cancelled` at once and its sandbox is
/// removed by whichever server runs it.
#[utoipa::path(post, path = "/api/runs/{id}/cancel", tag = "Runs", operation_id = "cancelRun",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "The cancelled run", body = RunView),
              (status = 409, description = "The run is already finished", body = crate::error::ProblemDetail, content_type = "application/problem+json")))]
pub async fn cancel_run(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsCancel>,
    Path(id): Path<String>,
) -> ApiResult<Json<RunView>> {
    let run = load_run(&state, &ctx, &id).await?;
    let not_cancellable = |status: &str| {
        ApiError::new(
            ErrorCode::RunNotCancellable,
            format!("the run is already {status}"),
        )
    };
    if store::is_terminal(&run.status) {
        return Err(not_cancellable(&run.status));
    }
    let won = corral_engine::runs::finish(
        &state,
        &id,
        &store::Finish {
            status: "cancelled",
            error: Some("Cancelled by user"),
            error_code: Some(corral_engine::runs::codes::CANCELLED),
            now: now_ms(),
            ..Default::default()
        },
    )
    .await
    .map_err(ApiError::internal)?;
    let run = load_run(&state, &ctx, &id).await?;
    if !won {
        return Err(not_cancellable(&run.status));
    }
    // The supervising server tears the sandbox down when it sees the change; when
    // that server is gone, the reaper does.
    Ok(Json(RunView::from(&run)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgentRunsQuery {
    /// 1–100 (default 50).
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// The application's runs of one agent, newest first.
#[utoipa::path(get, path = "/api/agents/{scope}/{name}/runs", tag = "Runs", operation_id = "listAgentRuns",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name"), AgentRunsQuery),
    responses((status = 200, description = "Runs", body = RunList)))]
pub async fn list_agent_runs(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsRead>,
    Path((scope, name)): Path<(String, String)>,
    Query(q): Query<AgentRunsQuery>,
) -> ApiResult<Json<RunList>> {
    let org_id = ctx.org_id()?;
    let id = format!("{scope}/{name}");
    let mut conn = state.db.conn().await?;
    corral_store::packages::get_visible(&mut conn, org_id, &id, Some("agent"))
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_param(
            "limit",
            "limit must be between 1 and 100",
        ));
    }
    let mut f = store::ListFilter {
        package_id: Some(&id),
        limit: limit + 1,
        offset: q.offset.unwrap_or(0).max(0),
        ..Default::default()
    };
    restrict_end_user(&ctx, &mut f);
    let (mut rows, total) = store::list(&mut conn, org_id, ctx.app_id()?, &f).await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok(Json(RunList {
        object: "list",
        data: rows.iter().map(RunView::from).collect(),
        total,
        has_more,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub deleted_count: u64,
}

/// Delete the application's finished runs of an agent (409 while some still run).
#[utoipa::path(delete, path = "/api/agents/{scope}/{name}/runs", tag = "Runs", operation_id = "deleteAgentRuns",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name")),
    responses((status = 200, description = "Deleted", body = Deleted),
              (status = 409, description = "Runs of the agent are still pending or running", body = crate::error::ProblemDetail, content_type = "application/problem+json")))]
pub async fn delete_agent_runs(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsWrite>,
    Path((scope, name)): Path<(String, String)>,
) -> ApiResult<Json<Deleted>> {
    let org_id = ctx.org_id()?;
    let app_id = ctx.app_id()?;
    let id = format!("{scope}/{name}");
    let mut conn = state.db.conn().await?;
    corral_store::packages::get_visible(&mut conn, org_id, &id, Some("agent"))
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let active = store::running_by_package(&mut conn, org_id, app_id)
        .await?
        .into_iter()
        .any(|(p, n)| p == id && n > 0);
    if active {
        return Err(ApiError::new(
            ErrorCode::RunsActive,
            "runs of this agent are still pending or running; cancel them first",
        ));
    }
    let deleted_count = store::delete_finished_for_package(&mut conn, org_id, app_id, &id).await?;
    Ok(Json(Deleted { deleted_count }))
}
