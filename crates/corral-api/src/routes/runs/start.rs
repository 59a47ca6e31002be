use super::*;

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
    /// The outbound proxy of this run: a proxy id (`GET /api/proxies`), or `none`;
    /// takes priority over the agent's setting and the organization's default.
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

pub(super) fn created(run: &store::Run) -> Response {
    (StatusCode::CREATED, Json(RunView::from(run))).into_response()
}

/// Run an agent. Returns at once with the `pending` run; execution continues in a
/// sandbox. Every check happens before the run row exists, so a refused trigger
/// leaves nothing behind.
#[utoipa::path(post, path = "/api/agents/{scope}/{name}/run", tag = "Runs", operation_id = "runAgent",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name"), RunQuery),
    request_body = RunBody,
    responses((status = 201, description = "Run created", body = RunView),
              (status = 409, description = "rerun_from names a run of another agent", body = crate::error::ProblemDetail),
              (status = 412, description = "A required integration has no usable connection", body = crate::error::ProblemDetail),
              (status = 422, description = "A dependency has no matching version, or no model is configured", body = crate::error::ProblemDetail)))]
pub async fn run_agent(
    State(state): State<AppState>,
    ctx: Perm<perms::AgentsRun>,
    Path((scope, name)): Path<(String, String)>,
    Query(q): Query<RunQuery>,
    Json(mut body): Json<RunBody>,
) -> ApiResult<Response> {
    let org_id = ctx.org_id()?;
    let id = format!("{scope}/{name}");
    let agent = trigger::resolve_agent(&state, org_id, &id, q.version.as_deref()).await?;
    let input = match &body.rerun_from {
        Some(prev) => {
            let mut conn = state.db.conn().await?;
            let prev = store::get(&mut conn, org_id, ctx.app_id()?, &RunId::new(prev.as_str()))
                .await?
                .filter(|r| ctx.end_user_id.is_none() || r.end_user_id == ctx.end_user_id)
                .ok_or_else(|| ApiError::not_found("run"))?;
            if prev.package_id.as_deref() != Some(id.as_str()) {
                return Err(ApiError::new(
                    ErrorCode::RerunAgentMismatch,
                    "rerun_from names a run of another agent",
                ));
            }
            match parse_json(&prev.input) {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            }
        }
        None => body.input.take().unwrap_or_default(),
    };
    let req = trigger::Request {
        agent: &agent,
        kind: "package",
        generation: body.generation.as_ref(),
        model_id: body.model_id.as_deref(),
        dependency_overrides: body.dependency_overrides.as_ref(),
        connection_overrides: body.connection_overrides.as_ref(),
        schedule: None,
        proxy_id: body.proxy_id.as_deref(),
        schedule_proxy_id: None,
    };
    let run = trigger::trigger(&state, &ctx.caller()?, &req, input).await?;
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
            generation: self.generation.as_ref(),
            model_id: self.model_id.as_deref(),
            dependency_overrides: None,
            connection_overrides: self.connection_overrides.as_ref(),
            schedule: None,
            proxy_id: self.proxy_id.as_deref(),
            schedule_proxy_id: None,
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
              (status = 412, description = "A required integration has no usable connection", body = crate::error::ProblemDetail),
              (status = 422, description = "A dependency has no matching version, or no model is configured", body = crate::error::ProblemDetail)))]
pub async fn run_inline(
    State(state): State<AppState>,
    ctx: Perm<perms::AgentsRun>,
    Json(mut body): Json<InlineBody>,
) -> ApiResult<Response> {
    let agent = trigger::inline_agent(&body.manifest, &body.prompt)?;
    let input = body.input.take().unwrap_or_default();
    let run = trigger::trigger(&state, &ctx.caller()?, &body.request(&agent), input).await?;
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
    Json(mut body): Json<InlineBody>,
) -> ApiResult<Json<Valid>> {
    let agent = trigger::inline_agent(&body.manifest, &body.prompt)?;
    let input = body.input.take().unwrap_or_default();
    trigger::check(&state, &ctx.caller()?, &body.request(&agent), input).await?;
    Ok(Json(Valid { valid: true }))
}
