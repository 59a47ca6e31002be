//! The platform operators' views: the cluster (`GET /api/admin/workers`: every live
//! server instance with its role, capacity and load, and the run queue by
//! organization) and the storage-deletion outbox ([`storage_jobs`]). Only for a
//! signed-in user whose email is one of the platform's operators
//! (`CORRAL_PLATFORM_ADMIN_EMAILS`); API keys are refused whatever they may do in
//! their organization, as the reference's admin surface does.

mod storage_jobs;

pub use storage_jobs::*;

use axum::extract::State;
use corral_core::time::{now_ms, to_rfc3339};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Principal;
use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::json::Json;
use crate::state::AppState;

pub fn user_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_workers))
        .routes(routes!(list_storage_deletion_jobs))
        .routes(routes!(retry_storage_deletion_job))
}

/// Refuses anyone but a signed-in platform operator.
pub(crate) fn require_operator(state: &AppState, ctx: &Ctx) -> ApiResult<()> {
    let Principal::User(user) = &ctx.principal else {
        return Err(ApiError::forbidden(
            "the operators' views need a signed-in platform operator",
        ));
    };
    let admin = state
        .config
        .platform_admin_emails
        .iter()
        .any(|e| e.trim().eq_ignore_ascii_case(&user.email));
    if !admin {
        return Err(ApiError::forbidden(
            "only the platform's operators (CORRAL_PLATFORM_ADMIN_EMAILS) see the operators' views",
        ));
    }
    Ok(())
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Worker {
    /// The instance id (`runs.server_id` of what it runs).
    pub id: String,
    /// The name its runs record as `runnerName`.
    pub name: Option<String>,
    #[schema(value_type = String, pattern = "^(all|api|worker)$")]
    pub role: String,
    /// Runs it executes at once (0 for an api replica).
    pub capacity: i64,
    /// Runs it holds now (claimed or running).
    pub in_use: i64,
    /// `docker` or `process`, once its backend is chosen.
    pub sandbox_kind: Option<String>,
    /// Stopping: it claims nothing more and lets its runs finish.
    pub draining: bool,
    pub started_at: String,
    pub last_heartbeat_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgQueue {
    pub org_id: String,
    pub queued: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workers {
    pub workers: Vec<Worker>,
    /// Sum of the live instances' capacity and load.
    pub capacity: i64,
    pub in_use: i64,
    /// Queued runs no worker has claimed yet (the cluster's queue; on SQLite, this
    /// server's own queue).
    pub queued: i64,
    pub queue_by_org: Vec<OrgQueue>,
}

/// The cluster's workers and queue (platform operators only).
#[utoipa::path(get, path = "/api/admin/workers", tag = "Admin", operation_id = "listWorkers",
    responses(
        (status = 200, description = "Live server instances and the run queue", body = Workers),
    ))]
pub async fn list_workers(State(state): State<AppState>, ctx: Ctx) -> ApiResult<Json<Workers>> {
    require_operator(&state, &ctx)?;
    let mut conn = state.db.conn().await?;
    let mut instances = corral_store::queue::instances(
        &mut conn,
        now_ms() - corral_engine::runs::reconcile::INSTANCE_TTL_MS,
    )
    .await?;
    // On SQLite the one server is the cluster; its row may be a heartbeat old.
    if !state.runs.executor.is_cluster() {
        instances.retain(|i| i.id == state.runs.instance_id);
        if instances.is_empty() {
            instances.push(corral_engine::runs::cluster::instance_info(&state));
        }
    }
    let (queued, queue_by_org) = if state.runs.executor.is_cluster() {
        let depth = corral_store::queue::depth_by_org(&mut conn).await?;
        let total = depth.iter().map(|(_, n)| n).sum();
        let by_org = depth
            .into_iter()
            .map(|(org, n)| OrgQueue {
                org_id: org.into_string(),
                queued: n,
            })
            .collect();
        (total, by_org)
    } else {
        (state.runs.executor.stats().queued as i64, Vec::new())
    };
    let workers: Vec<Worker> = instances
        .into_iter()
        .map(|i| Worker {
            id: i.id,
            name: i.name,
            role: i.role,
            capacity: i.capacity,
            in_use: i.in_use,
            sandbox_kind: i.sandbox_kind,
            draining: i.draining,
            started_at: to_rfc3339(i.started_at),
            last_heartbeat_at: to_rfc3339(i.heartbeat_at),
        })
        .collect();
    Ok(Json(Workers {
        capacity: workers.iter().map(|w| w.capacity).sum(),
        in_use: workers.iter().map(|w| w.in_use).sum(),
        workers,
        queued,
        queue_by_org,
    }))
}
