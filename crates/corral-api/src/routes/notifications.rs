//! Notifications (`/api/notifications…`): what the caller's finished runs left unread.
//! A run reaching a terminal state notifies its recipient (the end-user it ran for,
//! else the user who started it, else the creator of the API key that did) in the
//! transaction of the terminal write ([`corral_store::runs::finish`]). Every route
//! reads only the caller's notifications in the current application.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use corral_core::time::now_ms;
use corral_core::ErrorCode;
use corral_store::notifications::{self as store, Recipient};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
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
        .routes(routes!(list_notifications))
        .routes(routes!(unread_count))
        .routes(routes!(unread_counts_by_agent))
        .routes(routes!(mark_run_read))
        .routes(routes!(mark_read))
        .routes(routes!(mark_all_read))
}

/// The caller as a recipient: `(type, id)` of [`Ctx::actor`].
fn recipient(ctx: &Ctx) -> ApiResult<(corral_core::OrgId, corral_core::AppId, String, String)> {
    let actor = ctx.actor();
    Ok((
        ctx.org_id()?.clone(),
        ctx.app_id()?.clone(),
        actor.owner_type.to_owned(),
        actor.owner_id,
    ))
}

macro_rules! to {
    ($r:expr) => {
        Recipient {
            org_id: &$r.0,
            app_id: &$r.1,
            kind: &$r.2,
            id: &$r.3,
        }
    };
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationView {
    /// Notification id (UUID).
    #[schema(format = Uuid)]
    pub id: String,
    /// The kind: `run_completed`.
    #[serde(rename = "type")]
    pub kind: String,
    pub run_id: Option<String>,
    /// `{agent_id, status}`.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    #[schema(format = DateTime)]
    pub read_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationList {
    pub data: Vec<NotificationView>,
    /// Another page follows (its URL is in the `Link` header).
    pub has_more: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    /// Only unread notifications.
    pub unread: Option<bool>,
    /// 1–100 (default 20).
    pub limit: Option<i64>,
    /// The id of the last notification of the previous page.
    #[param(format = Uuid)]
    pub starting_after: Option<String>,
}

/// The caller's notifications, newest first; `Link: rel="next"` pages on.
#[utoipa::path(get, path = "/api/notifications", tag = "Notifications", operation_id = "listNotifications",
    params(ListQuery),
    responses((status = 200, description = "Notification list", body = NotificationList)))]
pub async fn list_notifications(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsRead>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_param(
            "limit",
            "limit must be an integer between 1 and 100",
        ));
    }
    if let Some(after) = &q.starting_after {
        if uuid::Uuid::parse_str(after).is_err() {
            return Err(ApiError::invalid_param(
                "startingAfter",
                "startingAfter must be a notification id (UUID)",
            ));
        }
    }
    let r = recipient(&ctx)?;
    let unread = q.unread.unwrap_or(false);
    let mut conn = state.db.conn().await?;
    let mut rows = store::list(
        &mut conn,
        to!(r),
        unread,
        q.starting_after.as_deref(),
        limit,
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = rows.last().map(|n| n.id.clone());
    let data = rows
        .into_iter()
        .map(|n| NotificationView {
            id: n.id,
            kind: n.kind,
            run_id: n.run_id,
            payload: n.payload.and_then(|p| serde_json::from_str(&p).ok()),
            read_at: n.read_at.map(rfc3339),
            created_at: rfc3339(n.created_at),
        })
        .collect();
    let mut resp = Json(NotificationList { data, has_more }).into_response();
    if let (true, Some(last)) = (has_more, next) {
        let link = format!(
            "</api/notifications?startingAfter={last}&limit={limit}{}>; rel=\"next\"",
            if unread { "&unread=true" } else { "" }
        );
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(resp)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadCount {
    pub count: i64,
}

/// How many of the caller's notifications are unread.
#[utoipa::path(get, path = "/api/notifications/unread-count", tag = "Notifications", operation_id = "getUnreadNotificationCount",
    responses((status = 200, description = "Unread count", body = UnreadCount)))]
pub async fn unread_count(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsRead>,
) -> ApiResult<Json<UnreadCount>> {
    let r = recipient(&ctx)?;
    let mut conn = state.db.conn().await?;
    let count = store::unread_count(&mut conn, to!(r)).await?;
    Ok(Json(UnreadCount { count }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadCounts {
    /// Agent package id → unread notifications.
    pub counts: BTreeMap<String, i64>,
}

/// The caller's unread notifications per agent.
#[utoipa::path(get, path = "/api/notifications/unread-counts-by-agent", tag = "Notifications", operation_id = "getUnreadCountsByAgent",
    responses((status = 200, description = "Unread counts keyed by package ID", body = UnreadCounts)))]
pub async fn unread_counts_by_agent(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsRead>,
) -> ApiResult<Json<UnreadCounts>> {
    let r = recipient(&ctx)?;
    let mut conn = state.db.conn().await?;
    let counts = store::unread_by_package(&mut conn, to!(r))
        .await?
        .into_iter()
        .collect();
    Ok(Json(UnreadCounts { counts }))
}

/// Marks the caller's notification of a run read. Idempotent: an unknown run, or a
/// run that did not notify the caller, is a no-op.
#[utoipa::path(put, path = "/api/notifications/read/{runId}", tag = "Notifications", operation_id = "markNotificationRead",
    params(("runId" = String, Path, description = "Run id")),
    responses((status = 204, description = "Notification marked as read")))]
pub async fn mark_run_read(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsRead>,
    Path(run_id): Path<String>,
) -> ApiResult<StatusCode> {
    let r = recipient(&ctx)?;
    let mut conn = state.db.conn().await?;
    store::mark_run_read(&mut conn, to!(r), &run_id, now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Marks one of the caller's notifications read (204 if it already was).
#[utoipa::path(put, path = "/api/notifications/{id}/read", tag = "Notifications", operation_id = "markNotificationReadById",
    params(("id" = String, Path, description = "Notification id", format = Uuid)),
    responses((status = 204, description = "Notification marked as read"),
              (status = 404, description = "Not the caller's notification", body = crate::error::ProblemDetail)))]
pub async fn mark_read(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsRead>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let r = recipient(&ctx)?;
    let mut conn = state.db.conn().await?;
    store::mark_read(&mut conn, to!(r), &id, now_ms())
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no notification {id}")))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UpdatedCount {
    pub updated_count: u64,
}

/// Marks every unread notification of the caller read.
#[utoipa::path(put, path = "/api/notifications/read-all", tag = "Notifications", operation_id = "markAllNotificationsRead",
    responses((status = 200, description = "Update result", body = UpdatedCount)))]
pub async fn mark_all_read(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsRead>,
) -> ApiResult<Json<UpdatedCount>> {
    let r = recipient(&ctx)?;
    let mut conn = state.db.conn().await?;
    let updated_count = store::mark_all_read(&mut conn, to!(r), now_ms()).await?;
    Ok(Json(UpdatedCount { updated_count }))
}
