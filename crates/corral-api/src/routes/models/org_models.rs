use super::*;

// ---- models -----------------------------------------------------------------------

/// Cost per million tokens.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cost {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
}

pub(super) fn check_cost(e: &mut Vec<FieldError>, c: Option<&Cost>) {
    if let Some(c) = c {
        for (name, v) in [
            ("input", c.input),
            ("output", c.output),
            ("cacheRead", c.cache_read),
            ("cacheWrite", c.cache_write),
        ] {
            if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
                e.push(FieldError::new(
                    format!("cost.{name}"),
                    "out_of_range",
                    "must be 0 or more",
                ));
            }
        }
    }
}

pub(super) fn check_positive(e: &mut Vec<FieldError>, field: &str, v: Option<i64>) {
    if v.is_some_and(|v| v < 1) {
        e.push(FieldError::new(field, "out_of_range", "must be at least 1"));
    }
}

/// The reasoning part of [`GenerationCapabilities`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ReasoningCapabilities {
    /// `supported` | `unsupported` | `unknown`.
    pub supported: &'static str,
    pub adaptive: Option<bool>,
    #[schema(value_type = Object)]
    pub levels: serde_json::Map<String, Value>,
}

/// Generation controls the model supports. Corral has no model catalog: temperature
/// is `unknown`, reasoning follows the model's `reasoning` flag.
#[derive(Debug, Serialize, ToSchema)]
pub struct GenerationCapabilities {
    /// `supported` | `unsupported` | `unknown`.
    pub temperature: &'static str,
    pub reasoning: ReasoningCapabilities,
}

pub(super) fn capabilities(reasoning: Option<bool>) -> GenerationCapabilities {
    let supported = match reasoning {
        Some(true) => "supported",
        Some(false) => "unsupported",
        None => "unknown",
    };
    GenerationCapabilities {
        temperature: "unknown",
        reasoning: ReasoningCapabilities {
            supported,
            adaptive: None,
            levels: serde_json::Map::new(),
        },
    }
}

/// A model the organization can run agents with: the built-in system model (from
/// configuration) or one of its own.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelView {
    /// The id runs and settings name (`modelId`).
    pub id: String,
    pub label: String,
    #[serde(rename = "apiShape")]
    pub api_shape: Option<String>,
    #[serde(rename = "providerId")]
    pub provider_id: Option<String>,
    #[serde(rename = "providerName")]
    pub provider_name: Option<String>,
    #[serde(rename = "baseUrl")]
    pub base_url: Option<String>,
    /// The provider's model id.
    #[serde(rename = "modelId")]
    pub model_id: Option<String>,
    pub generation: Option<GenerationCapabilities>,
    pub input: Option<Vec<String>>,
    #[serde(rename = "contextWindow")]
    pub context_window: Option<i64>,
    #[serde(rename = "maxTokens")]
    pub max_tokens: Option<i64>,
    pub reasoning: Option<bool>,
    pub enabled: bool,
    /// The model runs use when neither the trigger nor the agent names one.
    pub is_default: bool,
    /// True when the credential's key can no longer be decrypted.
    pub needs_reconnection: bool,
    /// Managed model: the binding fields are `null`.
    pub aliased: bool,
    #[serde(rename = "iconUrl")]
    pub icon_url: Option<String>,
    /// `built-in` (the system model from configuration) or `custom`.
    #[schema(value_type = String, pattern = "^(built-in|custom)$")]
    pub source: &'static str,
    #[serde(rename = "credentialId")]
    pub credential_id: Option<String>,
    pub cost: Option<Cost>,
    pub created_by: Option<String>,
    #[serde(rename = "createdAt")]
    #[schema(format = DateTime)]
    pub created_at: String,
    #[serde(rename = "updatedAt")]
    #[schema(format = DateTime)]
    pub updated_at: String,
}

pub(super) fn model_view(state: &AppState, m: &store::Model) -> ModelView {
    let provider = svc::provider(&m.provider_id);
    let bound = !m.aliased;
    let show = |v: Option<String>| v.filter(|_| bound);
    ModelView {
        id: m.id.clone(),
        label: m.label.clone(),
        api_shape: show(provider.map(|p| p.api_shape.to_owned())),
        provider_id: show(Some(m.provider_id.clone())),
        provider_name: show(provider.map(|p| p.display_name.to_owned())),
        base_url: show(Some(m.base_url.clone())),
        model_id: show(Some(m.model_id.clone())),
        generation: bound.then(|| capabilities(m.reasoning)),
        input: m
            .input
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
            .filter(|_| bound),
        context_window: m.context_window.filter(|_| bound),
        max_tokens: m.max_tokens.filter(|_| bound),
        reasoning: m.reasoning.filter(|_| bound),
        enabled: m.enabled,
        is_default: m.is_default && m.enabled,
        needs_reconnection: m.needs_reconnection
            || svc::open_key(&state.connect, &m.credential_id, &m.api_key).is_err(),
        aliased: m.aliased,
        icon_url: provider
            .filter(|p| !p.needs_base_url())
            .map(|p| p.id.to_owned()),
        source: "custom",
        credential_id: show(Some(m.credential_id.clone())),
        cost: m
            .cost
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
            .filter(|_| bound),
        created_by: m.created_by.clone(),
        created_at: rfc3339(m.created_at),
        updated_at: rfc3339(m.updated_at),
    }
}

/// The built-in entry for the system model, when configured.
pub(super) fn system_view(state: &AppState, is_default: bool) -> Option<ModelView> {
    let sys = state.config.system_model()?;
    let provider = svc::provider(&sys.api);
    let since = rfc3339(now_ms() - state.started.elapsed().as_millis() as i64);
    Some(ModelView {
        id: sys.model.clone(),
        label: sys.model.clone(),
        api_shape: provider.map(|p| p.api_shape.to_owned()),
        provider_id: Some(sys.api.clone()),
        provider_name: provider.map(|p| p.display_name.to_owned()),
        base_url: Some(sys.base_url.clone()),
        model_id: Some(sys.model.clone()),
        generation: Some(capabilities(None)),
        input: None,
        context_window: None,
        max_tokens: None,
        reasoning: None,
        enabled: true,
        is_default,
        needs_reconnection: false,
        aliased: false,
        icon_url: Some(sys.api.clone()),
        source: "built-in",
        credential_id: None,
        cost: None,
        created_by: None,
        created_at: since.clone(),
        updated_at: since,
    })
}

pub(super) fn is_system(state: &AppState, id: &str) -> bool {
    state.config.system_model().is_some_and(|s| s.model == id)
}

pub(super) fn built_in_refused() -> ApiError {
    ApiError::new(
        ErrorCode::OperationNotAllowed,
        "the built-in system model comes from configuration and cannot be changed here",
    )
}

pub(super) async fn load_model(state: &AppState, ctx: &Ctx, id: &str) -> ApiResult<store::Model> {
    let mut conn = state.db.conn().await?;
    store::get_model(&mut conn, ctx.org_id()?, id)
        .await?
        .ok_or_else(|| ApiError::not_found("model"))
}

/// Every model of the organization: the built-in system model first (when
/// configured), then its own, oldest first.
#[utoipa::path(get, path = "/api/models", tag = "Models", operation_id = "listModels",
    responses((status = 200, description = "Model list", body = ListOf<ModelView>)))]
pub async fn list_models(
    State(state): State<AppState>,
    ctx: Perm<perms::ModelsRead>,
) -> ApiResult<Json<ListOf<ModelView>>> {
    let mut conn = state.db.conn().await?;
    let rows = store::list_models(&mut conn, ctx.org_id()?).await?;
    let org_default = rows.iter().any(|m| m.is_default && m.enabled);
    let data = system_view(&state, !org_default)
        .into_iter()
        .chain(rows.iter().map(|m| model_view(&state, m)))
        .collect();
    Ok(Json(ListOf::all(data)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateModelBody {
    /// Display name; derived from `modelId` when omitted.
    pub label: Option<String>,
    /// The provider's model id, e.g. `gpt-4o` or `llama3.2`.
    pub model_id: String,
    /// The provider credential (of this organization) to call it with.
    pub credential_id: String,
    pub input: Option<Vec<String>>,
    pub context_window: Option<i64>,
    pub max_tokens: Option<i64>,
    pub reasoning: Option<bool>,
    pub cost: Option<Cost>,
    pub aliased: Option<bool>,
}

impl Validate for CreateModelBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if let Some(l) = &self.label {
            check::len(&mut e, "label", l.trim(), 1, LABEL_MAX);
        }
        check::len(&mut e, "modelId", self.model_id.trim(), 1, MODEL_ID_MAX);
        check::len(&mut e, "credentialId", &self.credential_id, 1, 100);
        check_positive(&mut e, "contextWindow", self.context_window);
        check_positive(&mut e, "maxTokens", self.max_tokens);
        check_cost(&mut e, self.cost.as_ref());
        e
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateModelBody {
    pub label: Option<String>,
    pub model_id: Option<String>,
    /// Another credential of the organization.
    pub credential_id: Option<String>,
    /// A disabled model cannot be chosen, and stops being the default.
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "crate::json::nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    pub input: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "crate::json::nullable")]
    #[schema(value_type = Option<i64>)]
    pub context_window: Option<Option<i64>>,
    #[serde(default, deserialize_with = "crate::json::nullable")]
    #[schema(value_type = Option<i64>)]
    pub max_tokens: Option<Option<i64>>,
    #[serde(default, deserialize_with = "crate::json::nullable")]
    #[schema(value_type = Option<bool>)]
    pub reasoning: Option<Option<bool>>,
    #[serde(default, deserialize_with = "crate::json::nullable")]
    #[schema(value_type = Option<Cost>)]
    pub cost: Option<Option<Cost>>,
    pub aliased: Option<bool>,
}

impl Validate for UpdateModelBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if let Some(l) = &self.label {
            check::len(&mut e, "label", l.trim(), 1, LABEL_MAX);
        }
        if let Some(m) = &self.model_id {
            check::len(&mut e, "modelId", m.trim(), 1, MODEL_ID_MAX);
        }
        if let Some(c) = &self.credential_id {
            check::len(&mut e, "credentialId", c, 1, 100);
        }
        check_positive(&mut e, "contextWindow", self.context_window.flatten());
        check_positive(&mut e, "maxTokens", self.max_tokens.flatten());
        check_cost(&mut e, self.cost.as_ref().and_then(Option::as_ref));
        e
    }
}

/// A credential of the organization named in a body (400 when it is not one).
pub(super) async fn body_credential(
    state: &AppState,
    org: &OrgId,
    id: &str,
) -> ApiResult<store::Credential> {
    let mut conn = state.db.conn().await?;
    store::get_credential(&mut conn, org, id)
        .await?
        .ok_or_else(|| {
            ApiError::field(
                "credentialId",
                "not_found",
                "no model provider credential with this id in the organization",
            )
        })
}

pub(super) fn json_of<T: Serialize>(v: Option<&T>) -> ApiResult<Option<String>> {
    v.map(|v| serde_json::to_string(v).map_err(ApiError::internal))
        .transpose()
}

/// Add a model: a provider model id called with one of the organization's
/// credentials. It is enabled and not the default.
#[utoipa::path(post, path = "/api/models", tag = "Models", operation_id = "createModel",
    request_body = CreateModelBody,
    responses((status = 201, description = "Model created", body = ModelView)))]
pub async fn create_model(
    State(state): State<AppState>,
    ctx: Perm<perms::ModelsWrite>,
    Json(body): Json<CreateModelBody>,
) -> ApiResult<(StatusCode, Json<ModelView>)> {
    let org = ctx.org_id()?;
    let cred = body_credential(&state, org, &body.credential_id).await?;
    let model_id = body.model_id.trim();
    let mut conn = state.db.conn().await?;
    let label = match body.label.as_deref().map(str::trim) {
        Some(l) => l.to_owned(),
        None => {
            let existing = store::list_models(&mut conn, org).await?;
            let taken: Vec<&str> = existing.iter().map(|m| m.label.as_str()).collect();
            unique_label(model_id, &taken)
        }
    };
    let input = json_of(body.input.as_ref())?;
    let cost = json_of(body.cost.as_ref())?;
    let id = uuid::Uuid::now_v7().to_string();
    store::insert_model(
        &mut conn,
        &id,
        org,
        &store::ModelFields {
            credential_id: &cred.id,
            label: &label,
            model_id,
            enabled: true,
            input: input.as_deref(),
            context_window: body.context_window,
            max_tokens: body.max_tokens,
            reasoning: body.reasoning,
            cost: cost.as_deref(),
            aliased: body.aliased.unwrap_or(false),
        },
        ctx.principal.user().map(|u| u.user_id.as_str()),
        now_ms(),
    )
    .await?;
    drop(conn);
    let m = load_model(&state, &ctx, &id).await?;
    Ok((StatusCode::CREATED, Json(model_view(&state, &m))))
}

/// Change a model. The built-in system model cannot be changed (403).
#[utoipa::path(put, path = "/api/models/{id}", tag = "Models", operation_id = "updateModel",
    params(("id" = String, Path, description = "Model id")),
    request_body = UpdateModelBody,
    responses((status = 200, description = "Model updated", body = ModelView)))]
pub async fn update_model(
    State(state): State<AppState>,
    ctx: Perm<perms::ModelsWrite>,
    Path(id): Path<String>,
    Json(body): Json<UpdateModelBody>,
) -> ApiResult<Json<ModelView>> {
    if is_system(&state, &id) {
        return Err(built_in_refused());
    }
    let org = ctx.org_id()?;
    let m = load_model(&state, &ctx, &id).await?;
    let credential_id = match &body.credential_id {
        Some(c) => body_credential(&state, org, c).await?.id,
        None => m.credential_id.clone(),
    };
    let input = match &body.input {
        Some(v) => json_of(v.as_ref())?,
        None => m.input.clone(),
    };
    let cost = match &body.cost {
        Some(v) => json_of(v.as_ref())?,
        None => m.cost.clone(),
    };
    let mut conn = state.db.conn().await?;
    store::update_model(
        &mut conn,
        org,
        &id,
        &store::ModelFields {
            credential_id: &credential_id,
            label: body.label.as_deref().map(str::trim).unwrap_or(&m.label),
            model_id: body
                .model_id
                .as_deref()
                .map(str::trim)
                .unwrap_or(&m.model_id),
            enabled: body.enabled.unwrap_or(m.enabled),
            input: input.as_deref(),
            context_window: body.context_window.unwrap_or(m.context_window),
            max_tokens: body.max_tokens.unwrap_or(m.max_tokens),
            reasoning: body.reasoning.unwrap_or(m.reasoning),
            cost: cost.as_deref(),
            aliased: body.aliased.unwrap_or(m.aliased),
        },
        now_ms(),
    )
    .await?;
    drop(conn);
    let m = load_model(&state, &ctx, &id).await?;
    Ok(Json(model_view(&state, &m)))
}

/// Delete a model; agents that chose it fall back to the default. The built-in
/// system model cannot be deleted (403).
#[utoipa::path(delete, path = "/api/models/{id}", tag = "Models", operation_id = "deleteModel",
    params(("id" = String, Path, description = "Model id")),
    responses((status = 204, description = "Model deleted")))]
pub async fn delete_model(
    State(state): State<AppState>,
    ctx: Perm<perms::ModelsWrite>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if is_system(&state, &id) {
        return Err(built_in_refused());
    }
    load_model(&state, &ctx, &id).await?;
    let mut tx = state.db.begin().await?;
    store::delete_model(&mut tx, ctx.org_id()?, &id).await?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetDefaultBody {
    /// A model id, or `null` to clear the organization's default.
    #[serde(default, deserialize_with = "crate::json::nullable")]
    #[schema(value_type = Option<String>)]
    pub model_id: Option<Option<String>>,
}

impl Validate for SetDefaultBody {
    fn validate(&self) -> Vec<FieldError> {
        match &self.model_id {
            None => vec![FieldError::new(
                "modelId",
                "required",
                "modelId is required (null clears the default)",
            )],
            _ => Vec::new(),
        }
    }
}

/// Set or clear the organization's default model. Answers with the model now in
/// effect (the system model when the organization has none), or 204 when no model
/// remains in effect.
#[utoipa::path(put, path = "/api/models/default", tag = "Models", operation_id = "setDefaultModel",
    request_body = SetDefaultBody,
    responses((status = 200, description = "The effective default model", body = ModelView),
              (status = 204, description = "Default cleared and no model remains in effect"),
              (status = 409, description = "The model's key can no longer be decrypted (model_needs_reconnection)", body = crate::error::ProblemDetail)))]
pub async fn set_default_model(
    State(state): State<AppState>,
    ctx: Perm<perms::ModelsWrite>,
    Json(body): Json<SetDefaultBody>,
) -> ApiResult<Response> {
    let org = ctx.org_id()?;
    let target = body.model_id.flatten();
    let org_model = match target.as_deref() {
        None => None,
        Some(id) if is_system(&state, id) => None,
        Some(id) => {
            let mut conn = state.db.conn().await?;
            let m = store::get_model(&mut conn, org, id)
                .await?
                .ok_or_else(|| missing("model", "modelId"))?;
            if !m.enabled {
                return Err(ApiError::invalid_param(
                    "modelId",
                    "a disabled model cannot be the default; enable it first",
                ));
            }
            if m.needs_reconnection
                || svc::open_key(&state.connect, &m.credential_id, &m.api_key).is_err()
            {
                let mut e = ApiError::new(
                    ErrorCode::ModelNeedsReconnection,
                    "the model's credential must be reconnected first (a new apiKey, or pair the OAuth account again)",
                );
                e.param = Some("modelId".into());
                return Err(e);
            }
            Some(m.id)
        }
    };
    let mut tx = state.db.begin().await?;
    store::set_default(&mut tx, org, org_model.as_deref(), now_ms()).await?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    let view = match &org_model {
        Some(id) => Some(model_view(&state, &load_model(&state, &ctx, id).await?)),
        None => system_view(&state, true),
    };
    Ok(match view {
        Some(v) => Json(v).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}
