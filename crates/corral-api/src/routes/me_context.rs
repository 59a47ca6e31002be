//! `GET /api/me/context` (the caller's working context for an AI agent: who they
//! are, their role, the integrations they could attach, their recent runs, the agents
//! and skills they could use) and `POST /api/welcome/setup` (the display name after
//! an invitation sign-up).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use corral_core::time::now_ms;
use corral_core::Permission;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::Ctx;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::json::{check, Json, Validate};
use crate::routes::rfc3339;
use crate::state::AppState;

/// How many agents and skills the context lists at most (the rest: `listAgents`).
const CAP: usize = 50;
const RECENT_RUNS: i64 = 10;

pub fn app_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(my_context))
}

pub fn user_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(welcome_setup))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContextUser {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContextOrg {
    pub id: String,
    /// `owner`, `admin`, `member`, `viewer` or `end_user`.
    #[schema(value_type = String, pattern = "^(owner|admin|member|viewer|end_user)$")]
    pub role: String,
    pub name: Option<String>,
    pub slug: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContextConnection {
    pub integration_id: String,
    pub name: String,
    /// `own`, `shared` or `both`.
    #[schema(value_type = String, pattern = "^(own|shared|both)$")]
    pub source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContextRun {
    pub package_id: String,
    pub status: String,
    pub run_number: Option<i64>,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContextAgent {
    pub package_id: String,
    pub display_name: String,
    pub description: String,
    pub takes_input: bool,
    pub published: bool,
    #[schema(value_type = String, pattern = "^(system|local)$")]
    pub source: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContextSkill {
    pub package_id: String,
    pub display_name: String,
    pub description: String,
    pub version: Option<String>,
    pub published: bool,
    #[schema(value_type = String, pattern = "^(system|local)$")]
    pub source: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MyContext {
    pub user: ContextUser,
    pub org: ContextOrg,
    /// Integrations the caller could attach to an agent (own or org-shared connections).
    pub connections: Vec<ContextConnection>,
    /// The caller's own most recent runs in this application, newest first.
    pub recent_runs: Vec<ContextRun>,
    /// Agents the caller can run (empty without `agents:run`), at most 50.
    pub agents: Vec<ContextAgent>,
    pub agents_truncated: bool,
    pub agents_total: i64,
    /// Skills the caller could attach (empty without `agents:run`), at most 50.
    pub skills: Vec<ContextSkill>,
    pub skills_truncated: bool,
    pub skills_total: i64,
}

/// The caller's identity, role, attachable integrations, recent runs, agents and
/// skills in the current application.
#[utoipa::path(get, path = "/api/me/context", tag = "Profile", operation_id = "getMyContext",
    responses((status = 200, description = "Caller context", body = MyContext)))]
pub async fn my_context(State(state): State<AppState>, ctx: Ctx) -> ApiResult<Json<MyContext>> {
    let org_id = ctx.org_id()?.clone();
    let app_id = ctx.app_id()?.clone();
    let mut conn = state.db.conn().await?;
    let org = corral_store::orgs::by_id(&mut conn, &org_id)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;

    // Who: the end user, the signed-in user, or the API key's creator.
    let (user, role) = if let Some(eu) = &ctx.end_user_id {
        let row = corral_store::end_users::get(&mut conn, &org_id, &app_id, eu).await?;
        (
            ContextUser {
                id: eu.clone(),
                name: row.as_ref().and_then(|r| r.name.clone()),
                email: row.as_ref().and_then(|r| r.email.clone()),
            },
            "end_user".to_owned(),
        )
    } else {
        let user_id = ctx.principal.actor_user_id().map(str::to_owned);
        let row = match &user_id {
            Some(id) => corral_store::users::by_id(&mut conn, id).await?,
            None => None,
        };
        (
            ContextUser {
                id: user_id.unwrap_or_default(),
                name: row
                    .as_ref()
                    .map(|u| u.display_name.clone().unwrap_or_else(|| u.name.clone())),
                email: row.map(|u| u.email),
            },
            ctx.role()
                .map(|r| r.as_str())
                .unwrap_or("member")
                .to_owned(),
        )
    };

    // Integrations with a connection the caller may use.
    let actor = ctx.actor();
    let usable = corral_store::integrations::usable(
        &mut conn,
        &app_id,
        None,
        actor.owner_type,
        &actor.owner_id,
        actor.include_shared,
    )
    .await?;
    let mut by_integration: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for c in &usable {
        let entry = by_integration.entry(c.package_id.clone()).or_default();
        if c.owner_type == actor.owner_type && c.owner_id == actor.owner_id {
            entry.0 = true;
        } else {
            entry.1 = true;
        }
    }
    let mut connections = Vec::new();
    for (id, (own, shared)) in by_integration {
        let pkg = corral_store::packages::get_visible(&mut conn, &org_id, &id, None).await?;
        connections.push(ContextConnection {
            name: pkg
                .as_ref()
                .and_then(|p| p.display_name.clone())
                .unwrap_or_else(|| id.clone()),
            version: pkg.and_then(|p| p.latest_version),
            source: match (own, shared) {
                (true, true) => "both",
                (true, false) => "own",
                _ => "shared",
            },
            integration_id: id,
        });
    }

    // The caller's own recent runs.
    let (user_filter, end_user_filter) = match (&ctx.end_user_id, ctx.principal.user()) {
        (Some(eu), _) => (None, Some(eu.as_str())),
        (None, Some(u)) => (Some(u.user_id.as_str()), None),
        (None, None) => (ctx.principal.actor_user_id(), None),
    };
    let recent_runs = if user_filter.is_none() && end_user_filter.is_none() {
        Vec::new()
    } else {
        let (runs, _) = corral_store::runs::list(
            &mut conn,
            &org_id,
            &app_id,
            &corral_store::runs::ListFilter {
                package_id: None,
                user_id: user_filter,
                end_user_id: end_user_filter,
                schedule_id: None,
                kind: None,
                status: None,
                created_from: None,
                created_to: None,
                limit: RECENT_RUNS,
                offset: 0,
            },
        )
        .await?;
        runs.into_iter()
            .map(|r| ContextRun {
                package_id: r.package_id.unwrap_or_else(|| "inline".to_owned()),
                status: r.status.as_str().to_owned(),
                run_number: Some(r.run_number),
                started_at: r.started_at.map(rfc3339),
                error: r.error,
            })
            .collect()
    };

    // Agents and skills, for callers who may run agents.
    let may_run = ctx.permissions.contains(Permission::AgentsRun);
    let (mut agents, mut agents_total, mut skills, mut skills_total) =
        (Vec::new(), 0, Vec::new(), 0);
    if may_run {
        let rows = corral_store::packages::list_visible(&mut conn, &org_id, Some("agent")).await?;
        agents_total = rows.len() as i64;
        for p in rows.into_iter().take(CAP) {
            let manifest: Value = serde_json::from_str(&p.draft_manifest).unwrap_or(Value::Null);
            let takes_input = manifest["input"]["schema"]["properties"]
                .as_object()
                .is_some_and(|o| !o.is_empty());
            agents.push(ContextAgent {
                display_name: p.display_name.clone().unwrap_or_else(|| p.name.clone()),
                description: p.description.clone().unwrap_or_default(),
                takes_input,
                published: p.latest_version.is_some() || p.org_id.is_none(),
                source: if p.org_id.is_none() {
                    "system"
                } else {
                    "local"
                },
                package_id: p.id,
            });
        }
        let rows = corral_store::packages::list_visible(&mut conn, &org_id, Some("skill")).await?;
        skills_total = rows.len() as i64;
        for p in rows.into_iter().take(CAP) {
            skills.push(ContextSkill {
                display_name: p.display_name.clone().unwrap_or_else(|| p.name.clone()),
                description: p.description.clone().unwrap_or_default(),
                published: p.latest_version.is_some() || p.org_id.is_none(),
                version: p.latest_version.clone(),
                source: if p.org_id.is_none() {
                    "system"
                } else {
                    "local"
                },
                package_id: p.id,
            });
        }
    }
    Ok(Json(MyContext {
        user,
        org: ContextOrg {
            id: org.id.to_string(),
            role,
            name: Some(org.name),
            slug: Some(org.slug),
        },
        connections,
        recent_runs,
        agents_truncated: agents_total > agents.len() as i64,
        agents,
        agents_total,
        skills_truncated: skills_total > skills.len() as i64,
        skills,
        skills_total,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WelcomeSetupBody {
    #[schema(max_length = 100)]
    pub display_name: Option<String>,
}

impl Validate for WelcomeSetupBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if let Some(n) = &self.display_name {
            check::len(&mut e, "displayName", n.trim(), 1, 100);
        }
        e
    }
}

/// Sets the display name after an invitation sign-up.
#[utoipa::path(post, path = "/api/welcome/setup", tag = "Profile", operation_id = "welcomeSetup",
    request_body = WelcomeSetupBody,
    responses((status = 204, description = "Profile updated")))]
pub async fn welcome_setup(
    State(state): State<AppState>,
    ctx: Ctx,
    Json(body): Json<WelcomeSetupBody>,
) -> ApiResult<StatusCode> {
    let user = ctx.user()?;
    if let Some(name) = body.display_name.as_deref().map(str::trim) {
        let mut conn = state.db.conn().await?;
        corral_store::users::update_profile(&mut conn, &user.user_id, Some(name), None, now_ms())
            .await?
            .ok_or_else(|| ApiError::not_found("user"))?;
    }
    Ok(StatusCode::NO_CONTENT)
}
