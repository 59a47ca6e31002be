use super::*;
use corral_core::OrgId;

// ---- the model of an agent ----------------------------------------------------------

/// Sampling and reasoning controls; omitted or `null` inherits.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GenerationSettings {
    /// 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// `off`, `minimal`, `low`, `medium`, `high`, `xhigh` or `max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_level: Option<String>,
}

/// The model an application runs an agent with.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentModel {
    /// A model id (`GET /api/models`), or `null` for the organization's default.
    #[serde(default, deserialize_with = "crate::json::nullable")]
    #[schema(value_type = Option<String>)]
    pub model_id: Option<Option<String>>,
    /// Generation settings; `null` inherits.
    #[serde(default)]
    pub generation: Option<GenerationSettings>,
}

impl Validate for AgentModel {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        match &self.model_id {
            None => e.push(FieldError::new(
                "modelId",
                "required",
                "modelId is required (null uses the organization's default)",
            )),
            Some(Some(m)) => check::len(&mut e, "modelId", m.trim(), 1, MODEL_ID_MAX),
            Some(None) => {}
        }
        if let Some(g) = &self.generation {
            if g.temperature.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
                e.push(FieldError::new(
                    "generation.temperature",
                    "out_of_range",
                    "must be between 0 and 1",
                ));
            }
            if let Some(l) = &g.reasoning_level {
                check::one_of(&mut e, "generation.reasoningLevel", l, REASONING_LEVELS);
            }
        }
        e
    }
}

pub(crate) async fn agent_visible(state: &AppState, org_id: &OrgId, id: &str) -> ApiResult<()> {
    let mut conn = state.db.conn().await?;
    corral_store::packages::get_visible(&mut conn, org_id, id, Some("agent"))
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found("agent"))
}

/// The model the application runs the agent with (`null`: the organization's
/// default, then the system model).
#[utoipa::path(get, path = "/api/agents/{scope}/{name}/model", tag = "Agents", operation_id = "getAgentModel",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name")),
    responses((status = 200, description = "Agent model config", body = AgentModel)))]
pub async fn get_agent_model(
    State(state): State<AppState>,
    ctx: Perm<perms::AgentsRead>,
    Path((scope, name)): Path<(String, String)>,
) -> ApiResult<Json<AgentModel>> {
    let org_id = ctx.org_id()?;
    let id = format!("{scope}/{name}");
    agent_visible(&state, org_id, &id).await?;
    let mut conn = state.db.conn().await?;
    let installed = corral_store::app_packages::get(&mut conn, org_id, ctx.app_id()?, &id).await?;
    Ok(Json(AgentModel {
        model_id: Some(installed.as_ref().and_then(|i| i.model_id.clone())),
        generation: installed
            .and_then(|i| i.generation_config)
            .and_then(|g| serde_json::from_str(&g).ok()),
    }))
}

/// Choose the model the application runs the agent with (installing the agent in the
/// application when needed). The model must be the system model or one of the
/// organization's (404 otherwise).
#[utoipa::path(put, path = "/api/agents/{scope}/{name}/model", tag = "Agents", operation_id = "setAgentModel",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name")),
    request_body = AgentModel,
    responses((status = 200, description = "Agent model updated", body = AgentModel)))]
pub async fn set_agent_model(
    State(state): State<AppState>,
    ctx: Perm<perms::PackagesWrite>,
    Path((scope, name)): Path<(String, String)>,
    Json(body): Json<AgentModel>,
) -> ApiResult<Json<AgentModel>> {
    let org_id = ctx.org_id()?;
    let app_id = ctx.app_id()?;
    let id = format!("{scope}/{name}");
    agent_visible(&state, org_id, &id).await?;
    let model_id = body.model_id.clone().flatten().map(|m| m.trim().to_owned());
    let mut conn = state.db.conn().await?;
    if let Some(m) = &model_id {
        if !is_system(&state, m) && store::get_model(&mut conn, org_id, m).await?.is_none() {
            return Err(missing("model", "modelId"));
        }
    }
    let now = now_ms();
    let cur =
        corral_store::app_packages::get_or_install(&mut conn, org_id, app_id, &id, now).await?;
    let generation = json_of(body.generation.as_ref())?;
    corral_store::app_packages::update(
        &mut conn,
        org_id,
        app_id,
        &id,
        &corral_store::app_packages::Settings {
            enabled: cur.enabled,
            version_id: cur.version_id,
            model_id: model_id.as_deref(),
            proxy_id: cur.proxy_id.as_deref(),
            generation_config: generation.as_deref(),
            input_settings: &cur.input_settings,
            now,
        },
    )
    .await?;
    Ok(Json(AgentModel {
        model_id: Some(model_id),
        generation: body.generation,
    }))
}
