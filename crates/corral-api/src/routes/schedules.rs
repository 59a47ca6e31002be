//! Schedules (`/api/schedules…`, `/api/agents/{scope}/{name}/schedules`, SPEC §13):
//! an agent's runs on a cron timetable in an IANA timezone, as an actor (a member,
//! or an end-user of the application). The input is validated against the agent's
//! input schema when the schedule is written; each fire is a normal run through the
//! trigger pipeline (see `corral_engine::schedules`). A fire the pipeline refuses is
//! recorded on the schedule (`last_error`).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use corral_core::time::now_ms;
use corral_engine::runs::trigger;
use corral_engine::schedules::Timetable;
use corral_store::schedules::{self as store, Fields, Schedule};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Ctx, Perm};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::json::{Json, Validate};
use crate::pagination::Page;
use crate::routes::runs::RunView;
use crate::routes::{rfc3339, ListOf};
use crate::state::AppState;

/// Schedules per organization.
pub const MAX_PER_ORG: i64 = 500;

pub fn app_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_schedules))
        .routes(routes!(list_agent_schedules, create_schedule))
        .routes(routes!(get_schedule, update_schedule, delete_schedule))
        .routes(routes!(list_schedule_runs))
}

/// The last fire the run pipeline refused (cleared by the next successful fire).
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleError {
    pub code: String,
    pub message: String,
    #[schema(format = DateTime)]
    pub at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleView {
    pub id: String,
    pub package_id: String,
    pub user_id: Option<String>,
    pub end_user_id: Option<String>,
    pub org_id: String,
    pub application_id: String,
    pub name: Option<String>,
    pub enabled: bool,
    #[serde(rename = "cron_expression")]
    pub cron_expression: String,
    pub timezone: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    #[serde(rename = "generation_config_override")]
    #[schema(value_type = Option<Object>)]
    pub generation_config_override: Option<Value>,
    #[serde(rename = "model_id_override")]
    pub model_id_override: Option<String>,
    #[serde(rename = "proxy_id_override")]
    pub proxy_id_override: Option<String>,
    #[serde(rename = "version_override")]
    pub version_override: Option<String>,
    #[serde(rename = "connection_overrides")]
    #[schema(value_type = Option<Object>)]
    pub connection_overrides: Option<Value>,
    #[serde(rename = "dependency_overrides")]
    #[schema(value_type = Option<Object>)]
    pub dependency_overrides: Option<Value>,
    #[serde(rename = "last_run_at")]
    #[schema(format = DateTime)]
    pub last_run_at: Option<String>,
    /// The next fire (also shown while disabled: when it would fire).
    #[serde(rename = "next_run_at")]
    #[schema(format = DateTime)]
    pub next_run_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[serde(rename = "actor_name")]
    pub actor_name: Option<String>,
    /// `user` or `end_user`.
    #[serde(rename = "actor_type")]
    pub actor_type: Option<String>,
    /// Runs of this schedule pending or running.
    #[serde(rename = "running_runs")]
    pub running_runs: i64,
    #[serde(rename = "unread_count")]
    pub unread_count: i64,
    /// Highest run number this schedule produced; 0 when it never fired.
    #[serde(rename = "last_run_number")]
    pub last_run_number: i64,
    /// The run of the last successful fire.
    #[serde(rename = "last_run_id")]
    pub last_run_id: Option<String>,
    /// Why the last fire created no run (connection missing, concurrency cap, no
    /// model, no published version…); `null` once a fire succeeds.
    #[serde(rename = "last_error")]
    pub last_error: Option<ScheduleError>,
}

fn parse(raw: &Option<String>) -> Option<Value> {
    raw.as_deref().and_then(|r| serde_json::from_str(r).ok())
}

impl From<&Schedule> for ScheduleView {
    fn from(s: &Schedule) -> ScheduleView {
        ScheduleView {
            id: s.id.clone(),
            package_id: s.package_id.clone(),
            user_id: s.user_id.clone(),
            end_user_id: s.end_user_id.clone(),
            org_id: s.org_id.to_string(),
            application_id: s.application_id.to_string(),
            name: s.name.clone(),
            enabled: s.enabled,
            cron_expression: s.cron_expression.clone(),
            timezone: Some(s.timezone.clone()),
            input: parse(&s.input),
            generation_config_override: parse(&s.generation_config_override),
            model_id_override: s.model_id_override.clone(),
            proxy_id_override: s.proxy_id_override.clone(),
            version_override: s.version_override.clone(),
            connection_overrides: parse(&s.connection_overrides),
            dependency_overrides: parse(&s.dependency_overrides),
            last_run_at: s.last_run_at.map(rfc3339),
            next_run_at: (s.next_run_at < i64::MAX).then(|| rfc3339(s.next_run_at)),
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
            actor_name: s.actor_name.clone(),
            actor_type: if s.end_user_id.is_some() {
                Some("end_user".into())
            } else if s.user_id.is_some() {
                Some("user".into())
            } else {
                None
            },
            running_runs: s.running_runs,
            unread_count: s.unread_count,
            last_run_number: s.last_run_number,
            last_run_id: s.last_run_id.clone(),
            last_error: match (&s.last_error_code, &s.last_error, s.last_error_at) {
                (Some(code), Some(message), Some(at)) => Some(ScheduleError {
                    code: code.clone(),
                    message: message.clone(),
                    at: rfc3339(at),
                }),
                _ => None,
            },
        }
    }
}

/// Who a schedule's runs run as: exactly one of a member or an end-user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActorBody {
    pub user_id: Option<String>,
    pub end_user_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateScheduleBody {
    pub name: Option<String>,
    /// 5 fields (`0 9 * * 1-5`), or 6 with seconds first.
    pub cron_expression: String,
    /// IANA timezone (default `UTC`).
    pub timezone: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub input: Option<Map<String, Value>>,
    pub enabled: Option<bool>,
    #[schema(value_type = Option<Object>)]
    pub generation_config_override: Option<Value>,
    pub model_id_override: Option<String>,
    pub proxy_id_override: Option<String>,
    /// `draft`, `published` (default) or a version spec.
    pub version_override: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub connection_overrides: Option<BTreeMap<String, String>>,
    #[schema(value_type = Option<Object>)]
    pub dependency_overrides: Option<BTreeMap<String, String>>,
    pub actor: Option<ActorBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateScheduleBody {
    pub name: Option<String>,
    pub cron_expression: Option<String>,
    pub timezone: Option<String>,
    pub enabled: Option<bool>,
    #[schema(value_type = Option<Object>)]
    pub input: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "crate::json::nullable")]
    #[schema(value_type = Option<Object>)]
    pub generation_config_override: Option<Option<Value>>,
    #[serde(default, deserialize_with = "crate::json::nullable")]
    #[schema(value_type = Option<String>)]
    pub model_id_override: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::json::nullable")]
    #[schema(value_type = Option<String>)]
    pub proxy_id_override: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::json::nullable")]
    #[schema(value_type = Option<String>)]
    pub version_override: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::json::nullable")]
    #[schema(value_type = Option<Object>)]
    pub connection_overrides: Option<Option<BTreeMap<String, String>>>,
    #[serde(default, deserialize_with = "crate::json::nullable")]
    #[schema(value_type = Option<Object>)]
    pub dependency_overrides: Option<Option<BTreeMap<String, String>>>,
    pub actor: Option<ActorBody>,
}

fn check_name(e: &mut Vec<FieldError>, name: Option<&str>) {
    if name.is_some_and(|n| n.chars().count() > 200) {
        e.push(FieldError::new(
            "name",
            "too_long",
            "at most 200 characters",
        ));
    }
}

fn check_actor(e: &mut Vec<FieldError>, actor: Option<&ActorBody>) {
    if let Some(a) = actor {
        if a.user_id.is_some() == a.end_user_id.is_some() {
            e.push(FieldError::new(
                "actor",
                "invalid",
                "give exactly one of actor.user_id or actor.end_user_id",
            ));
        }
    }
}

fn check_generation(e: &mut Vec<FieldError>, g: Option<&Value>) {
    if g.is_some_and(|g| !g.is_object() && !g.is_null()) {
        e.push(FieldError::new(
            "generation_config_override",
            "invalid_type",
            "must be an object",
        ));
    }
}

impl Validate for CreateScheduleBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check_name(&mut e, self.name.as_deref());
        check_actor(&mut e, self.actor.as_ref());
        check_generation(&mut e, self.generation_config_override.as_ref());
        e
    }
}

impl Validate for UpdateScheduleBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check_name(&mut e, self.name.as_deref());
        check_actor(&mut e, self.actor.as_ref());
        check_generation(
            &mut e,
            self.generation_config_override
                .as_ref()
                .and_then(|g| g.as_ref()),
        );
        e
    }
}

fn timetable(expr: &str, tz: &str) -> ApiResult<Timetable> {
    Timetable::parse(expr, tz)
        .map_err(|i| ApiError::validation(vec![FieldError::new(i.field, "invalid", i.message)]))
}

/// The member or end-user a schedule runs as: the one the body names (checked),
/// else the caller.
async fn actor(
    state: &AppState,
    ctx: &Ctx,
    body: Option<&ActorBody>,
) -> ApiResult<(Option<String>, Option<String>)> {
    let mut conn = state.db.conn().await?;
    match body {
        Some(ActorBody {
            user_id: Some(u), ..
        }) => {
            if ctx.end_user_id.is_some() {
                return Err(ApiError::forbidden(
                    "an end-user's schedule runs as that end-user",
                ));
            }
            corral_store::orgs::member(&mut conn, ctx.org_id()?, u)
                .await?
                .ok_or_else(|| {
                    ApiError::field(
                        "actor.user_id",
                        "unknown",
                        "not a member of this organization",
                    )
                })?;
            Ok((Some(u.clone()), None))
        }
        Some(ActorBody {
            end_user_id: Some(eu),
            ..
        }) => {
            if ctx.end_user_id.as_ref().is_some_and(|own| own != eu)
                || !corral_store::end_users::exists_in_app(&mut conn, ctx.app_id()?, eu).await?
            {
                return Err(ApiError::field(
                    "actor.end_user_id",
                    "unknown",
                    "not an end-user of this application",
                ));
            }
            Ok((None, Some(eu.clone())))
        }
        _ => Ok(match (&ctx.end_user_id, &ctx.principal) {
            (Some(eu), _) => (None, Some(eu.clone())),
            (None, crate::auth::Principal::User(u)) => (Some(u.user_id.clone()), None),
            (None, crate::auth::Principal::ApiKey(k)) => (k.created_by.clone(), None),
        }),
    }
}

/// Checks a schedule's input against its agent (at the version it will run).
async fn check_input(
    state: &AppState,
    ctx: &Ctx,
    package_id: &str,
    version: Option<&str>,
    input: &Map<String, Value>,
) -> ApiResult<()> {
    let agent = trigger::resolve_agent(state, ctx.org_id()?, package_id, version).await;
    let agent = match agent {
        Ok(a) => a,
        // A schedule may wait for its agent's first published version.
        Err(e) if e.code == corral_core::ErrorCode::NoPublishedVersion => return Ok(()),
        Err(e) => return Err(ApiError(e)),
    };
    trigger::validate_input(state, &ctx.caller()?, &agent, input.clone()).await?;
    Ok(())
}

fn json_text<T: Serialize>(v: &Option<T>) -> Option<String> {
    v.as_ref()
        .map(|v| serde_json::to_string(v).unwrap_or_default())
}

/// A schedule of the caller's application (an end-user sees only theirs).
async fn load(state: &AppState, ctx: &Ctx, id: &str) -> ApiResult<Schedule> {
    let mut conn = state.db.conn().await?;
    store::get(&mut conn, ctx.org_id()?, ctx.app_id()?, id)
        .await?
        .filter(|s| ctx.end_user_id.is_none() || s.end_user_id == ctx.end_user_id)
        .ok_or_else(|| ApiError::not_found("schedule"))
}

fn list_of(items: &[Schedule]) -> ListOf<ScheduleView> {
    ListOf::all(items.iter().map(ScheduleView::from).collect())
}

/// The application's schedules, oldest first.
#[utoipa::path(get, path = "/api/schedules", tag = "Schedules", operation_id = "listSchedules",
    responses((status = 200, description = "Schedules", body = ListOf<ScheduleView>)))]
pub async fn list_schedules(
    State(state): State<AppState>,
    ctx: Perm<perms::SchedulesRead>,
) -> ApiResult<Json<ListOf<ScheduleView>>> {
    let mut conn = state.db.conn().await?;
    let items = store::list(
        &mut conn,
        ctx.org_id()?,
        ctx.app_id()?,
        None,
        ctx.end_user_id.as_deref(),
    )
    .await?;
    Ok(Json(list_of(&items)))
}

/// The schedules of one agent.
#[utoipa::path(get, path = "/api/agents/{scope}/{name}/schedules", tag = "Schedules",
    operation_id = "listAgentSchedules",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name")),
    responses((status = 200, description = "Schedules", body = ListOf<ScheduleView>)))]
pub async fn list_agent_schedules(
    State(state): State<AppState>,
    ctx: Perm<perms::SchedulesRead>,
    Path((scope, name)): Path<(String, String)>,
) -> ApiResult<Json<ListOf<ScheduleView>>> {
    let id = format!("{scope}/{name}");
    let mut conn = state.db.conn().await?;
    corral_store::packages::get_visible(&mut conn, ctx.org_id()?, &id, Some("agent"))
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let items = store::list(
        &mut conn,
        ctx.org_id()?,
        ctx.app_id()?,
        Some(&id),
        ctx.end_user_id.as_deref(),
    )
    .await?;
    Ok(Json(list_of(&items)))
}

/// Schedule an agent. The input is validated against its input schema now.
#[utoipa::path(post, path = "/api/agents/{scope}/{name}/schedules", tag = "Schedules",
    operation_id = "createSchedule",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name")),
    request_body = CreateScheduleBody,
    responses((status = 201, description = "Created", body = ScheduleView),
              (status = 409, description = "The organization has the most schedules it may", body = crate::error::ProblemDetail)))]
pub async fn create_schedule(
    State(state): State<AppState>,
    ctx: Perm<perms::SchedulesWrite>,
    Path((scope, name)): Path<(String, String)>,
    Json(body): Json<CreateScheduleBody>,
) -> ApiResult<(StatusCode, Json<ScheduleView>)> {
    let (org, app) = (ctx.org_id()?.clone(), ctx.app_id()?.clone());
    let package_id = {
        let mut conn = state.db.conn().await?;
        corral_store::packages::get_visible(
            &mut conn,
            &org,
            &format!("{scope}/{name}"),
            Some("agent"),
        )
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?
        .id
    };
    let tz = body.timezone.clone().unwrap_or_else(|| "UTC".into());
    let tt = timetable(&body.cron_expression, &tz)?;
    let input = body.input.clone().unwrap_or_default();
    check_input(
        &state,
        &ctx,
        &package_id,
        body.version_override.as_deref(),
        &input,
    )
    .await?;
    crate::routes::proxies::check_choice(
        &state,
        &org,
        body.proxy_id_override.as_deref(),
        "proxy_id_override",
    )
    .await?;
    let (user_id, end_user_id) = actor(&state, &ctx, body.actor.as_ref()).await?;
    let now = now_ms();
    let next = tt.next_after(now).unwrap_or(i64::MAX);
    let id = corral_core::ids::prefixed("sched");
    let (input_json, gen, conns, deps) = (
        Some(Value::Object(input).to_string()),
        json_text(&body.generation_config_override.filter(|g| !g.is_null())),
        json_text(&body.connection_overrides),
        json_text(&body.dependency_overrides),
    );
    let fields = Fields {
        name: body.name.as_deref(),
        enabled: body.enabled.unwrap_or(true),
        cron_expression: body.cron_expression.trim(),
        timezone: &tz,
        input: input_json.as_deref(),
        generation_config_override: gen.as_deref(),
        model_id_override: body.model_id_override.as_deref(),
        proxy_id_override: body.proxy_id_override.as_deref(),
        version_override: body.version_override.as_deref(),
        connection_overrides: conns.as_deref(),
        dependency_overrides: deps.as_deref(),
        user_id: user_id.as_deref(),
        end_user_id: end_user_id.as_deref(),
        next_run_at: next,
    };
    let mut tx = state.db.begin().await?;
    corral_store::webhooks::lock_org(
        &mut tx,
        state.db.backend() == corral_store::Backend::Postgres,
        &org,
    )
    .await?;
    if store::count_for_org(&mut tx, &org).await? >= MAX_PER_ORG {
        return Err(ApiError::new(
            corral_core::ErrorCode::Conflict,
            format!("the organization already has {MAX_PER_ORG} schedules; delete some first"),
        ));
    }
    store::insert(&mut tx, &id, &org, &app, &package_id, &fields, now).await?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    state.schedules.changed();
    let s = load(&state, &ctx, &id).await?;
    Ok((StatusCode::CREATED, Json(ScheduleView::from(&s))))
}

#[utoipa::path(get, path = "/api/schedules/{id}", tag = "Schedules", operation_id = "getSchedule",
    params(("id" = String, Path, description = "Schedule id")),
    responses((status = 200, description = "The schedule", body = ScheduleView)))]
pub async fn get_schedule(
    State(state): State<AppState>,
    ctx: Perm<perms::SchedulesRead>,
    Path(id): Path<String>,
) -> ApiResult<Json<ScheduleView>> {
    Ok(Json(ScheduleView::from(&load(&state, &ctx, &id).await?)))
}

/// Change a schedule; `null` clears an override. A new timetable or re-enabling
/// computes the next fire from now.
#[utoipa::path(put, path = "/api/schedules/{id}", tag = "Schedules", operation_id = "updateSchedule",
    params(("id" = String, Path, description = "Schedule id")),
    request_body = UpdateScheduleBody,
    responses((status = 200, description = "Updated", body = ScheduleView)))]
pub async fn update_schedule(
    State(state): State<AppState>,
    ctx: Perm<perms::SchedulesWrite>,
    Path(id): Path<String>,
    Json(body): Json<UpdateScheduleBody>,
) -> ApiResult<Json<ScheduleView>> {
    let mut s = load(&state, &ctx, &id).await?;
    let retime = body.cron_expression.is_some()
        || body.timezone.is_some()
        || (body.enabled == Some(true) && !s.enabled);
    if let Some(c) = &body.cron_expression {
        s.cron_expression = c.trim().to_owned();
    }
    if let Some(tz) = &body.timezone {
        s.timezone = tz.clone();
    }
    let tt = timetable(&s.cron_expression, &s.timezone)?;
    if let Some(n) = &body.name {
        s.name = Some(n.clone());
    }
    if let Some(e) = body.enabled {
        s.enabled = e;
    }
    if let Some(g) = &body.generation_config_override {
        s.generation_config_override = json_text(&g.clone().filter(|g| !g.is_null()));
    }
    if let Some(m) = &body.model_id_override {
        s.model_id_override = m.clone();
    }
    if let Some(p) = &body.proxy_id_override {
        crate::routes::proxies::check_choice(
            &state,
            ctx.org_id()?,
            p.as_deref(),
            "proxy_id_override",
        )
        .await?;
        s.proxy_id_override = p.clone();
    }
    if let Some(v) = &body.version_override {
        s.version_override = v.clone();
    }
    if let Some(c) = &body.connection_overrides {
        s.connection_overrides = json_text(c);
    }
    if let Some(d) = &body.dependency_overrides {
        s.dependency_overrides = json_text(d);
    }
    if let Some(a) = &body.actor {
        let (u, eu) = actor(&state, &ctx, Some(a)).await?;
        if (u.clone(), eu.clone()) != (s.user_id.clone(), s.end_user_id.clone())
            && body.connection_overrides.is_none()
        {
            // Another actor's connections are not this one's.
            s.connection_overrides = None;
        }
        s.user_id = u;
        s.end_user_id = eu;
    }
    if body.input.is_some() || body.version_override.is_some() {
        let input = body
            .input
            .clone()
            .or_else(|| match parse(&s.input) {
                Some(Value::Object(m)) => Some(m),
                _ => None,
            })
            .unwrap_or_default();
        check_input(
            &state,
            &ctx,
            &s.package_id,
            s.version_override.as_deref(),
            &input,
        )
        .await?;
        s.input = Some(Value::Object(input).to_string());
    }
    let now = now_ms();
    if retime {
        s.next_run_at = tt.next_after(now).unwrap_or(i64::MAX);
    }
    let mut conn = state.db.conn().await?;
    if !store::update(
        &mut conn,
        ctx.org_id()?,
        ctx.app_id()?,
        &id,
        &Fields::of(&s),
        now,
    )
    .await?
    {
        return Err(ApiError::not_found("schedule"));
    }
    drop(conn);
    state.schedules.changed();
    Ok(Json(ScheduleView::from(&load(&state, &ctx, &id).await?)))
}

#[utoipa::path(delete, path = "/api/schedules/{id}", tag = "Schedules", operation_id = "deleteSchedule",
    params(("id" = String, Path, description = "Schedule id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_schedule(
    State(state): State<AppState>,
    ctx: Perm<perms::SchedulesWrite>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    load(&state, &ctx, &id).await?;
    let mut conn = state.db.conn().await?;
    if !store::delete(&mut conn, ctx.org_id()?, ctx.app_id()?, &id).await? {
        return Err(ApiError::not_found("schedule"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Paging of a schedule's runs.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// The runs a schedule fired, newest first.
#[utoipa::path(get, path = "/api/schedules/{id}/runs", tag = "Schedules", operation_id = "listScheduleRuns",
    params(("id" = String, Path, description = "Schedule id"), PageParams),
    responses((status = 200, description = "Runs", body = ListOf<RunView>)))]
pub async fn list_schedule_runs(
    State(state): State<AppState>,
    ctx: Perm<perms::SchedulesRead>,
    Path(id): Path<String>,
    page: Page<20>,
) -> ApiResult<Json<ListOf<RunView>>> {
    load(&state, &ctx, &id).await?;
    let mut conn = state.db.conn().await?;
    let (runs, total) = corral_store::runs::list(
        &mut conn,
        ctx.org_id()?,
        ctx.app_id()?,
        &corral_store::runs::ListFilter {
            schedule_id: Some(&id),
            end_user_id: ctx.end_user_id.as_deref(),
            limit: page.limit,
            offset: page.offset,
            ..Default::default()
        },
    )
    .await?;
    Ok(Json(ListOf {
        object: "list",
        has_more: page.has_more(total),
        data: runs.into_iter().map(RunView::from).collect(),
        total,
    }))
}
