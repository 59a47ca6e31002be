use super::*;

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

pub(super) fn restrict_end_user<'a>(ctx: &'a Ctx, f: &mut store::ListFilter<'a>) {
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
    Page { limit, offset }: Page<20>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let mut f = store::ListFilter {
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
                    // An API key is no user: "" matches no run (a NUL here was a
                    // 500 on PostgreSQL, which refuses it in text).
                    .unwrap_or(""),
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
        Some(s) if store::RunStatus::parse(s).is_some() => f.status = Some(s),
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
        })
        .into_response());
    }
    restrict_end_user(&ctx, &mut f);
    run_list(&state, ctx.org_id()?, ctx.app_id()?, f, limit).await
}

pub(super) async fn load_run(state: &AppState, ctx: &Ctx, id: &RunId) -> ApiResult<store::Run> {
    let mut conn = state.db.conn().await?;
    store::get(&mut conn, ctx.org_id()?, ctx.app_id()?, id)
        .await?
        .filter(|r| ctx.end_user_id.is_none() || r.end_user_id == ctx.end_user_id)
        .ok_or_else(|| ApiError::not_found("run"))
}

pub(super) fn wait_seconds(raw: Option<&str>) -> ApiResult<u64> {
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

/// A long poll in flight, counted against its identity: in Redis when the replicas
/// share one (tier 2), else (or while it does not answer) in this server's state.
pub(super) struct WaitSlot {
    state: AppState,
    identity: String,
    in_redis: bool,
}

impl WaitSlot {
    async fn take(state: &AppState, identity: &str) -> Option<WaitSlot> {
        if let Some(redis) = &state.redis {
            let ttl_ms = (MAX_WAIT_SECS + 10) * 1000;
            match crate::tier2::waits::take(redis, identity, MAX_WAITS_PER_IDENTITY, ttl_ms).await {
                Some(true) => {
                    return Some(WaitSlot {
                        state: state.clone(),
                        identity: identity.to_owned(),
                        in_redis: true,
                    })
                }
                Some(false) => return None,
                None => {}
            }
        }
        let mut n = state.long_polls.entry(identity.to_owned()).or_insert(0);
        if *n >= MAX_WAITS_PER_IDENTITY {
            return None;
        }
        *n += 1;
        Some(WaitSlot {
            state: state.clone(),
            identity: identity.to_owned(),
            in_redis: false,
        })
    }
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        if self.in_redis {
            let (state, identity) = (self.state.clone(), std::mem::take(&mut self.identity));
            tokio::spawn(async move {
                if let Some(redis) = &state.redis {
                    crate::tier2::waits::release(redis, &identity).await;
                }
            });
            return;
        }
        let polls = &self.state.long_polls;
        if let Some(mut n) = polls.get_mut(&self.identity) {
            *n = n.saturating_sub(1);
        }
        polls.remove_if(&self.identity, |_, n| *n == 0);
    }
}

pub(super) fn identity(ctx: &Ctx) -> String {
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
    Path(id): Path<RunId>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<RunView>> {
    let wait = wait_seconds(raw.as_deref())?;
    let mut signals = state.runs.bus.subscribe();
    let run = load_run(&state, &ctx, &id).await?;
    if wait == 0 || run.status.is_terminal() {
        return Ok(Json(RunView::from(&run)));
    }
    let Some(_slot) = WaitSlot::take(&state, &identity(&ctx)).await else {
        return Ok(Json(RunView::from(&run)));
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        match tokio::time::timeout_at(deadline, signals.recv()).await {
            Err(_) => break,
            Ok(Ok(s)) if s.run_id == id && s.status.is_terminal() => break,
            Ok(Ok(_)) => continue,
            // Missed signals: look at the row itself.
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                let r = load_run(&state, &ctx, &id).await?;
                if r.status.is_terminal() {
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
    Path(id): Path<RunId>,
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
    let mut rows =
        corral_store::run_logs::logs(&mut conn, &run.id, since, &all[from..], limit + 1).await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = rows.last().map(|r| r.id);
    let data = rows
        .into_iter()
        .map(|r| RunLog {
            id: r.id,
            run_id: r.run_id.into(),
            org_id: run.org_id.clone().into(),
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
