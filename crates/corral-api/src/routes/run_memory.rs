//! A run's memory tools, called by its sidecar with the run token
//! (`/internal/run-history`, `/internal/memories`, SPEC §13): the agent's past runs
//! and its archive memories, scoped to the run's agent, application and actor (an
//! end-user's run never sees another end-user's rows).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use corral_protocol::platform_api::{
    MemoriesPage, Memory, RunHistoryPage, DEFAULT_LIMIT, MAX_LIMIT,
};
use corral_store::run_history::{self, Actor};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::routes::internal::run_of;
use crate::routes::rfc3339;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_run_history))
        .routes(routes!(recall_memories))
}

fn limit(raw: Option<i64>) -> ApiResult<i64> {
    match raw {
        None => Ok(DEFAULT_LIMIT as i64),
        Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid_param(
            "limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        )),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// 1–50 (default 10).
    pub limit: Option<i64>,
    /// Comma-separated: `checkpoint`, `result` (default `checkpoint`).
    pub fields: Option<String>,
}

/// The finished runs of this run's agent by the same actor in the same application,
/// newest first: status, date, duration and, as asked, checkpoint and result.
#[utoipa::path(get, path = "/internal/run-history", tag = "Internal", operation_id = "getRunHistory",
    params(HistoryQuery),
    responses((status = 200, description = "Run history", body = RunHistoryPage)),
    security(("bearerExecToken" = [])))]
pub async fn get_run_history(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<RunHistoryPage>> {
    let run = run_of(&state, &headers).await?;
    let limit = limit(q.limit)?;
    let fields = q.fields.as_deref().unwrap_or("checkpoint");
    let mut want_checkpoint = false;
    let mut want_result = false;
    for f in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        match f {
            "checkpoint" => want_checkpoint = true,
            "result" => want_result = true,
            other => {
                return Err(ApiError::invalid_param(
                    "fields",
                    format!("unknown field {other:?}; use checkpoint, result"),
                ))
            }
        }
    }
    let Some(package_id) = run.package_id.as_deref().filter(|_| run.kind == "package") else {
        return Ok(Json(RunHistoryPage {
            object: "list".into(),
            data: Vec::new(),
            has_more: false,
        }));
    };
    let actor = match (&run.end_user_id, &run.user_id, &run.api_key_id) {
        (Some(eu), _, _) => Actor::EndUser(eu),
        (None, Some(u), _) => Actor::User(u),
        (None, None, Some(k)) => Actor::ApiKey(k),
        (None, None, None) => Actor::ApiKey(""),
    };
    let mut conn = state.db.conn().await?;
    let mut past = run_history::past_runs(
        &mut conn,
        &run.org_id,
        &run.application_id,
        package_id,
        actor,
        &run.id,
        limit,
    )
    .await?;
    let has_more = past.len() as i64 > limit;
    past.truncate(limit as usize);
    let data = past
        .into_iter()
        .map(|p| {
            let mut item = json!({
                "id": p.id,
                "status": p.status,
                "date": rfc3339(p.created_at),
                "duration": p.duration_ms,
            });
            if want_checkpoint {
                item["checkpoint"] = p
                    .checkpoint
                    .as_deref()
                    .and_then(|c| serde_json::from_str::<Value>(c).ok())
                    .and_then(|c| c.get("value").cloned())
                    .unwrap_or(Value::Null);
            }
            if want_result {
                item["result"] = p
                    .result
                    .as_deref()
                    .and_then(|r| serde_json::from_str::<Value>(r).ok())
                    .and_then(|r| r.get("output").cloned())
                    .unwrap_or(Value::Null);
            }
            item
        })
        .collect();
    Ok(Json(RunHistoryPage {
        object: "list".into(),
        data,
        has_more,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecallQuery {
    /// Words to search for (full-text, ranked; then case-insensitive substring).
    /// Absent: the most recent memories.
    pub q: Option<String>,
    /// 1–50 (default 10).
    pub limit: Option<i64>,
}

/// Archive memories of this run's agent visible to its actor (theirs and the
/// application's shared ones), best match first.
#[utoipa::path(get, path = "/internal/memories", tag = "Internal", operation_id = "recallMemories",
    params(RecallQuery),
    responses((status = 200, description = "Recalled memories", body = MemoriesPage)),
    security(("bearerExecToken" = [])))]
pub async fn recall_memories(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<RecallQuery>,
) -> ApiResult<Json<MemoriesPage>> {
    let run = run_of(&state, &headers).await?;
    let limit = limit(q.limit)?;
    if q.q.as_deref().is_some_and(|s| s.len() > 1000) {
        return Err(ApiError::invalid_param("q", "at most 1000 bytes"));
    }
    let mut conn = state.db.conn().await?;
    let Some(scope) = corral_engine::memory::scope_of(&mut conn, &run).await? else {
        return Ok(Json(MemoriesPage {
            memories: Vec::new(),
        }));
    };
    let items =
        corral_store::memory::recall(&mut conn, state.db.backend(), &scope, q.q.as_deref(), limit)
            .await?;
    Ok(Json(MemoriesPage {
        memories: items
            .into_iter()
            .map(|i| Memory {
                id: i.id,
                content: Value::String(i.content),
                created_at: rfc3339(i.created_at),
                actor_type: i.actor_type,
                actor_id: i.actor_id,
            })
            .collect(),
    }))
}
