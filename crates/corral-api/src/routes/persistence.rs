//! An agent's memory (`/api/agents/{scope}/{name}/persistence…`, SPEC §13): the
//! archive memories its runs noted and the slots they pinned, per actor. A caller
//! sees and deletes their own actor's rows (an end-user theirs, a member theirs, an
//! API key its creator's); an admin may name another actor with `actor_type` and
//! `actor_id`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use corral_core::Permission;
use corral_store::memory::{self as store, Actor, Filter, Item};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Ctx, Perm};
use crate::error::{ApiError, ApiResult};
use crate::json::Json;
use crate::query::Query;
use crate::routes::rfc3339;
use crate::state::AppState;

pub fn app_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_agent_persistence, delete_agent_persistence))
        .routes(routes!(delete_agent_persistence_memory))
        .routes(routes!(delete_agent_persistence_pinned_slot))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PersistenceQuery {
    /// `pinned` or `memory`; omitted → both.
    #[param(pattern = "^(pinned|memory)$")]
    pub kind: Option<String>,
    /// Admin only: `user`, `end_user` or `shared` (default: the caller's actor).
    #[param(pattern = "^(user|end_user|shared)$")]
    pub actor_type: Option<String>,
    /// Required with `actor_type` `user` or `end_user`.
    pub actor_id: Option<String>,
    /// Only rows written by this run.
    #[serde(rename = "runId")]
    pub run_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PinnedView {
    pub id: i64,
    pub key: String,
    #[schema(value_type = Object)]
    pub content: Value,
    #[serde(rename = "runId")]
    pub run_id: Option<String>,
    pub actor_type: String,
    pub actor_id: Option<String>,
    #[serde(rename = "createdAt")]
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[serde(rename = "updatedAt")]
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryView {
    pub id: i64,
    pub content: String,
    #[serde(rename = "runId")]
    pub run_id: Option<String>,
    pub actor_type: String,
    pub actor_id: Option<String>,
    #[serde(rename = "createdAt")]
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PersistenceView {
    pub pinned: Vec<PinnedView>,
    pub memories: Vec<MemoryView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PersistenceDeleted {
    /// Memory rows deleted.
    pub memories_deleted: u64,
    /// Whether the `checkpoint` slot was deleted.
    pub checkpoint_deleted: bool,
    /// Pinned slots deleted (the checkpoint included).
    pub pinned_deleted: u64,
}

fn pinned_view(i: Item) -> PinnedView {
    PinnedView {
        id: i.id,
        key: i.key.unwrap_or_default(),
        content: serde_json::from_str(&i.content).unwrap_or(Value::String(i.content)),
        run_id: i.run_id,
        actor_type: i.actor_type,
        actor_id: i.actor_id,
        created_at: Some(rfc3339(i.created_at)),
        updated_at: Some(rfc3339(i.updated_at)),
    }
}

fn memory_view(i: Item) -> MemoryView {
    MemoryView {
        id: i.id,
        content: i.content,
        run_id: i.run_id,
        actor_type: i.actor_type,
        actor_id: i.actor_id,
        created_at: Some(rfc3339(i.created_at)),
    }
}

/// The caller's own memory actor.
fn own_actor(ctx: &Ctx) -> Actor {
    if let Some(eu) = &ctx.end_user_id {
        return Actor::end_user(eu);
    }
    match &ctx.principal {
        crate::auth::Principal::User(u) => Actor::user(&u.user_id),
        crate::auth::Principal::ApiKey(k) => match &k.created_by {
            Some(c) => Actor::user(c),
            None => Actor::shared(),
        },
    }
}

/// An admin of the application, not acting for an end-user (an end-user's request
/// only ever touches that end-user's rows).
fn is_admin(ctx: &Ctx) -> bool {
    ctx.end_user_id.is_none() && ctx.permissions.contains(Permission::ApplicationsWrite)
}

/// The actor a request reads or deletes: the caller's, or (admins) the one named.
fn actor_of(ctx: &Ctx, q: &PersistenceQuery) -> ApiResult<Actor> {
    let Some(kind) = q.actor_type.as_deref() else {
        if q.actor_id.is_some() {
            return Err(ApiError::invalid_param(
                "actor_id",
                "actor_id needs actor_type",
            ));
        }
        return Ok(own_actor(ctx));
    };
    let requested = match (kind, q.actor_id.as_deref()) {
        ("shared", None) => Actor::shared(),
        ("user", Some(id)) => Actor::user(id),
        ("end_user", Some(id)) => Actor::end_user(id),
        ("shared", Some(_)) => {
            return Err(ApiError::invalid_param(
                "actor_id",
                "shared memory has no actor_id",
            ))
        }
        ("user" | "end_user", None) => {
            return Err(ApiError::invalid_param(
                "actor_id",
                "actor_id is required with actor_type user or end_user",
            ))
        }
        _ => {
            return Err(ApiError::invalid_param(
                "actor_type",
                "actor_type must be user, end_user or shared",
            ))
        }
    };
    if requested != own_actor(ctx) && !is_admin(ctx) {
        return Err(ApiError::forbidden(
            "only an admin may read or delete another actor's memory",
        ));
    }
    Ok(requested)
}

/// The agent's package id, or 404.
async fn agent_id(state: &AppState, ctx: &Ctx, scope: &str, name: &str) -> ApiResult<String> {
    let mut conn = state.db.conn().await?;
    Ok(corral_store::packages::get_visible(
        &mut conn,
        ctx.org_id()?,
        &format!("{scope}/{name}"),
        Some("agent"),
    )
    .await?
    .ok_or_else(|| ApiError::not_found("agent"))?
    .id)
}

/// The rows of the caller's application and agent, narrowed to an actor and a run.
fn filter<'a>(
    ctx: &'a Ctx,
    package_id: &'a str,
    actor: Option<&'a Actor>,
    run_id: Option<&'a str>,
) -> ApiResult<Filter<'a>> {
    Ok(Filter {
        org_id: ctx.org_id()?,
        app_id: ctx.app_id()?,
        package_id,
        actor,
        run_id,
    })
}

fn kinds(q: &PersistenceQuery) -> ApiResult<(bool, bool)> {
    match q.kind.as_deref() {
        None => Ok((true, true)),
        Some("pinned") => Ok((true, false)),
        Some("memory") => Ok((false, true)),
        Some(_) => Err(ApiError::invalid_param(
            "kind",
            "kind must be pinned or memory",
        )),
    }
}

/// The agent's pinned slots and archive memories for one actor.
#[utoipa::path(get, path = "/api/agents/{scope}/{name}/persistence", tag = "Agents",
    operation_id = "listAgentPersistence",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name"), PersistenceQuery),
    responses((status = 200, description = "Persistence rows", body = PersistenceView)))]
pub async fn list_agent_persistence(
    State(state): State<AppState>,
    ctx: Perm<perms::AgentsRead>,
    Path((scope, name)): Path<(String, String)>,
    Query(q): Query<PersistenceQuery>,
) -> ApiResult<Json<PersistenceView>> {
    let (pinned, memories) = kinds(&q)?;
    let actor = actor_of(&ctx, &q)?;
    let package_id = agent_id(&state, &ctx, &scope, &name).await?;
    let f = filter(&ctx, &package_id, Some(&actor), q.run_id.as_deref())?;
    let mut conn = state.db.conn().await?;
    let mut view = PersistenceView {
        pinned: Vec::new(),
        memories: Vec::new(),
    };
    if pinned {
        view.pinned = store::list(&mut conn, &f, true)
            .await?
            .into_iter()
            .map(pinned_view)
            .collect();
    }
    if memories {
        view.memories = store::list(&mut conn, &f, false)
            .await?
            .into_iter()
            .map(memory_view)
            .collect();
    }
    Ok(Json(view))
}

/// Delete an actor's memories and/or pinned slots of the agent.
#[utoipa::path(delete, path = "/api/agents/{scope}/{name}/persistence", tag = "Agents",
    operation_id = "deleteAgentPersistence",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name"), PersistenceQuery),
    responses((status = 200, description = "Counts of deleted rows", body = PersistenceDeleted)))]
pub async fn delete_agent_persistence(
    State(state): State<AppState>,
    ctx: Perm<perms::AgentsWrite>,
    Path((scope, name)): Path<(String, String)>,
    Query(q): Query<PersistenceQuery>,
) -> ApiResult<Json<PersistenceDeleted>> {
    let (pinned, memories) = kinds(&q)?;
    let actor = actor_of(&ctx, &q)?;
    let package_id = agent_id(&state, &ctx, &scope, &name).await?;
    let f = filter(&ctx, &package_id, Some(&actor), q.run_id.as_deref())?;
    let mut tx = state.db.begin().await?;
    let mut out = PersistenceDeleted {
        memories_deleted: 0,
        checkpoint_deleted: false,
        pinned_deleted: 0,
    };
    if memories {
        out.memories_deleted = store::delete(&mut tx, &f, false, None, None).await?;
    }
    if pinned {
        out.checkpoint_deleted =
            store::delete(&mut tx, &f, true, None, Some("checkpoint")).await? > 0;
        out.pinned_deleted =
            store::delete(&mut tx, &f, true, None, None).await? + out.checkpoint_deleted as u64;
    }
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    Ok(Json(out))
}

async fn delete_one(
    state: &AppState,
    ctx: &Ctx,
    scope: &str,
    name: &str,
    id: &str,
    pinned: bool,
) -> ApiResult<StatusCode> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::invalid_param("id", "id must be an integer"))?;
    let package_id = agent_id(state, ctx, scope, name).await?;
    let own = own_actor(ctx);
    // An admin may delete any actor's row; others only their own.
    let actor = (!is_admin(ctx)).then_some(&own);
    let f = filter(ctx, &package_id, actor, None)?;
    let mut conn = state.db.conn().await?;
    if store::delete(&mut conn, &f, pinned, Some(id), None).await? == 0 {
        return Err(ApiError::not_found(if pinned {
            "pinned slot"
        } else {
            "memory"
        }));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/agents/{scope}/{name}/persistence/memories/{id}", tag = "Agents",
    operation_id = "deleteAgentPersistenceMemory",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name"), ("id" = i64, Path, description = "Memory id")),
    responses((status = 204, description = "Memory deleted")))]
pub async fn delete_agent_persistence_memory(
    State(state): State<AppState>,
    ctx: Perm<perms::AgentsWrite>,
    Path((scope, name, id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    delete_one(&state, &ctx, &scope, &name, &id, false).await
}

#[utoipa::path(delete, path = "/api/agents/{scope}/{name}/persistence/pinned/{id}", tag = "Agents",
    operation_id = "deleteAgentPersistencePinnedSlot",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name"), ("id" = i64, Path, description = "Pinned slot id")),
    responses((status = 204, description = "Pinned slot deleted")))]
pub async fn delete_agent_persistence_pinned_slot(
    State(state): State<AppState>,
    ctx: Perm<perms::AgentsWrite>,
    Path((scope, name, id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    delete_one(&state, &ctx, &scope, &name, &id, true).await
}
