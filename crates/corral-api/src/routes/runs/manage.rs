use super::*;

/// Cancel a pending or running run: the run is `cancelled` at once and its sandbox is
/// removed by whichever server runs it.
#[utoipa::path(post, path = "/api/runs/{id}/cancel", tag = "Runs", operation_id = "cancelRun",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "The cancelled run", body = RunView),
              (status = 409, description = "The run is already finished", body = crate::error::ProblemDetail)))]
pub async fn cancel_run(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsCancel>,
    Path(id): Path<RunId>,
) -> ApiResult<Json<RunView>> {
    let run = load_run(&state, &ctx, &id).await?;
    let not_cancellable = |status: &store::RunStatus| {
        ApiError::new(
            ErrorCode::RunNotCancellable,
            format!("the run is already {status}"),
        )
    };
    if run.status.is_terminal() {
        return Err(not_cancellable(&run.status));
    }
    let won = corral_engine::runs::finish(
        &state,
        &id,
        &store::Finish {
            error: Some("Cancelled by user"),
            error_code: Some(corral_engine::runs::codes::CANCELLED),
            ..store::Finish::new(store::RunStatus::Cancelled, now_ms())
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
    Page { limit, offset }: Page<50>,
) -> ApiResult<Response> {
    let org_id = ctx.org_id()?;
    let id = format!("{scope}/{name}");
    {
        let mut conn = state.db.conn().await?;
        corral_store::packages::get_visible(&mut conn, org_id, &id, Some("agent"))
            .await?
            .ok_or_else(|| ApiError::not_found("agent"))?;
    }
    let mut f = store::ListFilter {
        package_id: Some(&id),
        offset,
        ..Default::default()
    };
    restrict_end_user(&ctx, &mut f);
    run_list(&state, org_id, ctx.app_id()?, f, limit).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub deleted_count: u64,
}

/// Delete the application's finished runs of an agent (409 while some still run).
#[utoipa::path(delete, path = "/api/agents/{scope}/{name}/runs", tag = "Runs", operation_id = "deleteAgentRuns",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name")),
    responses((status = 200, description = "Deleted", body = Deleted),
              (status = 409, description = "Runs of the agent are still pending or running", body = crate::error::ProblemDetail)))]
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
    drop(conn);
    // The runs' documents (their outputs and consumed uploads) cascade with them;
    // their blobs go through the storage-deletion outbox, queued in the same
    // transaction.
    let mut tx = state.db.begin().await?;
    let keys = corral_store::storage_deletions::keys_of_finished_runs(
        &mut tx,
        org_id.as_str(),
        app_id.as_str(),
        &id,
    )
    .await?;
    let deleted_count = store::delete_finished_for_package(&mut tx, org_id, app_id, &id).await?;
    corral_store::storage_deletions::enqueue_all(
        &mut tx,
        &keys,
        corral_store::storage_deletions::reasons::DOCUMENT_DELETED,
        corral_core::time::now_ms(),
    )
    .await?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    if !keys.is_empty() {
        state.storage_deletions.wake();
    }
    Ok(Json(Deleted { deleted_count }))
}

/// The longest a sink may be extended to, from now (seconds).
pub const SINK_MAX_TTL_SECONDS: i64 = 86_400;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendSinkBody {
    /// 1–86400: the sink stays open this long from now.
    pub ttl_seconds: i64,
}

impl Validate for ExtendSinkBody {
    fn validate(&self) -> Vec<FieldError> {
        if (1..=SINK_MAX_TTL_SECONDS).contains(&self.ttl_seconds) {
            Vec::new()
        } else {
            vec![FieldError::new(
                "ttl_seconds",
                "out_of_range",
                format!("ttl_seconds must be between 1 and {SINK_MAX_TTL_SECONDS}"),
            )]
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SinkExpiry {
    pub id: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// Keep a run's event sink open longer: its expiry becomes now + `ttl_seconds`. Only
/// an open sink (run active, not expired) of the caller's application; else 404.
#[utoipa::path(patch, path = "/api/runs/{runId}/sink/extend", tag = "Runs", operation_id = "extendRunSink",
    params(("runId" = String, Path, description = "Run id")),
    request_body = ExtendSinkBody,
    responses((status = 200, description = "The new expiry", body = SinkExpiry)))]
pub async fn extend_run_sink(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsWrite>,
    Path(id): Path<RunId>,
    Json(body): Json<ExtendSinkBody>,
) -> ApiResult<Json<SinkExpiry>> {
    let now = now_ms();
    let until = now + body.ttl_seconds * 1000;
    let mut conn = state.db.conn().await?;
    let extended =
        store::extend_sink(&mut conn, ctx.org_id()?, ctx.app_id()?, &id, now, until).await?;
    if !extended {
        return Err(ApiError::not_found("open run sink"));
    }
    Ok(Json(SinkExpiry {
        id: id.into_string(),
        expires_at: to_rfc3339(until),
    }))
}
