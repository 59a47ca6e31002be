use super::*;

// ---- seeding and the OpenRouter catalog -------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SeedModelsBody {
    /// The provider credential (of this organization) the models are bound to.
    #[schema(min_length = 1)]
    pub credential_id: String,
    /// Provider model ids (1–50).
    #[schema(min_items = 1, max_items = 50)]
    pub model_ids: Vec<String>,
}

impl Validate for SeedModelsBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check::len(&mut e, "credentialId", &self.credential_id, 1, 100);
        if self.model_ids.is_empty() || self.model_ids.len() > 50 {
            e.push(FieldError::new(
                "modelIds",
                "out_of_range",
                "must name between 1 and 50 models",
            ));
        }
        for (i, m) in self.model_ids.iter().enumerate() {
            check::len(&mut e, &format!("modelIds[{i}]"), m.trim(), 1, MODEL_ID_MAX);
        }
        e
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeededModels {
    /// How many models were created (0 when the credential already had models).
    pub created: i64,
    pub ids: Vec<String>,
    /// The first seeded model became the org default (there was none).
    pub promoted_default: bool,
}

/// Creates one model per provider model id, bound to the credential, in one
/// transaction. Idempotent: a credential that already has a model seeds nothing
/// (`created: 0`). When the organization has no default model, the first one
/// seeded becomes it.
#[utoipa::path(post, path = "/api/models/seed", tag = "Models", operation_id = "seedModels",
    request_body = SeedModelsBody,
    responses((status = 201, description = "Models seeded", body = SeededModels)))]
pub async fn seed_models(
    State(state): State<AppState>,
    ctx: Perm<perms::ModelsWrite>,
    Json(body): Json<SeedModelsBody>,
) -> ApiResult<(StatusCode, Json<SeededModels>)> {
    let org = ctx.org_id()?;
    let cred = body_credential(&state, org, &body.credential_id).await?;
    let mut wanted: Vec<&str> = Vec::new();
    for m in &body.model_ids {
        let m = m.trim();
        if !wanted.contains(&m) {
            wanted.push(m);
        }
    }
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    if store::count_models_using(&mut tx, org, &cred.id).await? > 0 {
        return Ok((
            StatusCode::CREATED,
            Json(SeededModels {
                created: 0,
                ids: Vec::new(),
                promoted_default: false,
            }),
        ));
    }
    let existing = store::list_models(&mut tx, org).await?;
    let mut taken: Vec<String> = existing.iter().map(|m| m.label.clone()).collect();
    let had_default = existing.iter().any(|m| m.is_default && m.enabled);
    let mut ids = Vec::with_capacity(wanted.len());
    for model_id in wanted {
        let label = {
            let refs: Vec<&str> = taken.iter().map(String::as_str).collect();
            unique_label(model_id, &refs)
        };
        let id = uuid::Uuid::now_v7().to_string();
        store::insert_model(
            &mut tx,
            &id,
            org,
            &store::ModelFields {
                credential_id: &cred.id,
                label: &label,
                model_id,
                enabled: true,
                input: None,
                context_window: None,
                max_tokens: None,
                reasoning: None,
                cost: None,
                aliased: false,
            },
            ctx.principal.user().map(|u| u.user_id.as_str()),
            now,
        )
        .await?;
        taken.push(label);
        ids.push(id);
    }
    let promoted_default = !had_default;
    if promoted_default {
        store::set_default(&mut tx, org, ids.first().map(String::as_str), now).await?;
    }
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    Ok((
        StatusCode::CREATED,
        Json(SeededModels {
            created: ids.len() as i64,
            ids,
            promoted_default,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OpenRouterQuery {
    /// Search text.
    pub q: Option<String>,
}

/// One OpenRouter catalog entry.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenRouterModel {
    pub id: String,
    pub name: String,
    pub context_window: Option<i64>,
    pub max_tokens: Option<i64>,
    pub input: Vec<String>,
    pub reasoning: bool,
    pub cost: Option<Cost>,
}

/// Searching OpenRouter's catalog needs a call to openrouter.ai. Corral makes no
/// outbound request for it: the answer is 502 `upstream_error`, saying so (an empty
/// list would read as "no model matches"). Add OpenRouter models with
/// `POST /api/models` and an `openai-compatible` credential instead.
#[utoipa::path(get, path = "/api/models/openrouter", tag = "Models", operation_id = "searchOpenRouterModels",
    params(OpenRouterQuery),
    responses((status = 200, description = "Model search results", body = ListOf<OpenRouterModel>),
              (status = 502, description = "OpenRouter cannot be reached from this server", body = crate::error::ProblemDetail)))]
pub async fn search_openrouter(
    ctx: Perm<perms::ModelsRead>,
    Query(_q): Query<OpenRouterQuery>,
) -> ApiResult<Json<ListOf<OpenRouterModel>>> {
    let _ = ctx.org_id()?;
    Err(ApiError::new(
        ErrorCode::UpstreamError,
        "the OpenRouter catalog is not available: this server makes no outbound request to openrouter.ai; \
         add models by id with POST /api/models",
    ))
}
