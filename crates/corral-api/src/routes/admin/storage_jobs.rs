//! The storage-deletion outbox for the platform's operators
//! (`GET /api/admin/storage-deletion-jobs`, `POST …/{id}/retry`): instance-global,
//! every organization's jobs, newest first, keyset-paginated on `(created_at, id)`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use corral_core::time::now_ms;
use corral_engine::storage_deletions::DEAD_AFTER_ATTEMPTS;
use corral_store::storage_deletions::{self as store, Status};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::require_operator;
use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::json::Json;
use crate::query::Query;
use crate::routes::rfc3339;
use crate::state::AppState;

/// One blob to delete.
#[derive(Debug, Serialize, ToSchema)]
pub struct StorageDeletionJob {
    /// `sdj_…`.
    pub id: String,
    /// The first segment of the object's key (`documents`, `uploads`).
    pub bucket: String,
    /// The object's key inside its bucket.
    pub storage_key: String,
    /// `document_deleted`, `document_expired`, `upload_expired`, `org_deleted`,
    /// `application_deleted` or `materialization_failed`.
    pub reason: String,
    /// Delete attempts made so far.
    pub attempts: i64,
    #[schema(format = DateTime)]
    pub next_attempt_at: String,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
    pub last_error: Option<String>,
    #[serde(rename = "createdAt")]
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageDeletionJobList {
    /// Always `list`.
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<StorageDeletionJob>,
    /// Another page follows (its URL is in the `Link` header).
    pub has_more: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct JobsQuery {
    /// `pending` (default: not completed, under the dead-letter threshold), `dead`
    /// (not completed, past it: still retried) or `completed`.
    pub status: Option<String>,
    /// 1–200 (default 50).
    pub limit: Option<i64>,
    /// The id of the last job of the previous page.
    pub starting_after: Option<String>,
}

fn job_view(j: store::Job) -> StorageDeletionJob {
    StorageDeletionJob {
        id: j.id,
        bucket: j.bucket,
        storage_key: j.storage_key,
        reason: j.reason,
        attempts: j.attempts,
        next_attempt_at: rfc3339(j.next_attempt_at),
        completed_at: j.completed_at.map(rfc3339),
        last_error: j.last_error,
        created_at: rfc3339(j.created_at),
    }
}

/// The storage-deletion outbox, newest first (platform operators only).
#[utoipa::path(get, path = "/api/admin/storage-deletion-jobs", tag = "Admin",
    operation_id = "listStorageDeletionJobs",
    params(JobsQuery),
    responses((status = 200, description = "A page of storage-deletion jobs.", body = StorageDeletionJobList)))]
pub async fn list_storage_deletion_jobs(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(q): Query<JobsQuery>,
) -> ApiResult<Response> {
    require_operator(&state, &ctx)?;
    let (status, status_name) = match q.status.as_deref().unwrap_or("pending") {
        "pending" => (Status::Pending, "pending"),
        "dead" => (Status::Dead, "dead"),
        "completed" => (Status::Completed, "completed"),
        _ => {
            return Err(ApiError::invalid_param(
                "status",
                "status must be pending, dead or completed",
            ))
        }
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid_param(
            "limit",
            "limit must be an integer between 1 and 200",
        ));
    }
    let mut conn = state.db.conn().await?;
    let mut rows = store::list(
        &mut conn,
        status,
        DEAD_AFTER_ATTEMPTS,
        q.starting_after.as_deref(),
        limit,
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = rows.last().map(|j| j.id.clone());
    let mut resp = Json(StorageDeletionJobList {
        object: "list",
        data: rows.into_iter().map(job_view).collect(),
        has_more,
    })
    .into_response();
    if let (true, Some(last)) = (has_more, next) {
        let link = format!(
            "</api/admin/storage-deletion-jobs?status={status_name}&limit={limit}&startingAfter={last}>; rel=\"next\""
        );
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(resp)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    pub id: String,
    /// Always true.
    pub retried: bool,
}

/// Makes a pending job due now: the next pass of the worker retries it (this
/// server's worker is woken at once). 404 for a completed or unknown job.
#[utoipa::path(post, path = "/api/admin/storage-deletion-jobs/{id}/retry", tag = "Admin",
    operation_id = "retryStorageDeletionJob",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, description = "Job scheduled for immediate retry.", body = Retried)))]
pub async fn retry_storage_deletion_job(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Retried>> {
    require_operator(&state, &ctx)?;
    let mut conn = state.db.conn().await?;
    if !store::retry_now(&mut conn, &id, now_ms()).await? {
        return Err(ApiError::not_found("pending storage-deletion job"));
    }
    drop(conn);
    state.storage_deletions.wake();
    Ok(Json(Retried { id, retried: true }))
}
