use super::*;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TestModelInlineBody {
    /// The credential to call with (its provider and base URL).
    pub credential_id: String,
    /// The provider's model id.
    pub model_id: String,
    /// A key to try instead of the stored one.
    pub api_key: Option<String>,
    /// A model whose credential's key to use when `apiKey` is omitted.
    pub existing_model_id: Option<String>,
}

impl Validate for TestModelInlineBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check::len(&mut e, "credentialId", &self.credential_id, 1, 100);
        check::len(&mut e, "modelId", self.model_id.trim(), 1, MODEL_ID_MAX);
        if let Some(k) = &self.api_key {
            check::len(&mut e, "apiKey", k, 1, KEY_MAX);
        }
        e
    }
}

/// Test a model before saving it: one completion of at most one token.
#[utoipa::path(post, path = "/api/models/test", tag = "Models", operation_id = "testModelInline",
    request_body = TestModelInlineBody,
    responses((status = 200, description = "Test result", body = ModelTestResult)))]
pub async fn test_model_inline(
    State(state): State<AppState>,
    ctx: Perm<perms::ModelsWrite>,
    Json(body): Json<TestModelInlineBody>,
) -> ApiResult<Json<ModelTestResult>> {
    let org = ctx.org_id()?;
    let mut conn = state.db.conn().await?;
    let cred = store::get_credential(&mut conn, org, &body.credential_id)
        .await?
        .ok_or_else(|| missing("model provider credential", "credentialId"))?;
    let kind = svc::KeyKind::of(&cred.auth_mode);
    let key = match (&body.api_key, &body.existing_model_id) {
        (Some(k), _) => Ok(k.clone()),
        (None, Some(existing)) => {
            let m = store::get_model(&mut conn, org, existing)
                .await?
                .ok_or_else(|| missing("model", "existingModelId"))?;
            svc::open_key(&state.connect, &m.credential_id, &m.api_key)
        }
        (None, None) => svc::open_key(&state.connect, &cred.id, &cred.api_key),
    };
    drop(conn);
    let Ok(key) = key else {
        return Ok(Json(undecryptable()));
    };
    let api = svc::provider_api(&cred.provider_id)?;
    Ok(Json(
        svc::probe_model(
            &state.connect,
            api,
            &cred.base_url,
            (&key, kind),
            body.model_id.trim(),
        )
        .await
        .into(),
    ))
}

/// Test a model: one completion of at most one token with its key.
#[utoipa::path(post, path = "/api/models/{id}/test", tag = "Models", operation_id = "testModel",
    params(("id" = String, Path, description = "Model id")),
    responses((status = 200, description = "Test result", body = ModelTestResult)))]
pub async fn test_model(
    State(state): State<AppState>,
    ctx: Perm<perms::ModelsWrite>,
    Path(id): Path<String>,
) -> ApiResult<Json<ModelTestResult>> {
    let (api, base_url, key, kind, model) =
        match state.config.system_model().filter(|s| s.model == id) {
            Some(sys) => {
                let api = svc::provider_api(&sys.api)?;
                let key = sys
                    .api_key
                    .as_ref()
                    .map(|k| k.expose().to_owned())
                    .unwrap_or_default();
                (api, sys.base_url, key, svc::KeyKind::ApiKey, sys.model)
            }
            None => {
                let m = load_model(&state, &ctx, &id).await?;
                let Ok(key) = svc::open_key(&state.connect, &m.credential_id, &m.api_key) else {
                    return Ok(Json(undecryptable()));
                };
                let api = svc::provider_api(&m.provider_id)?;
                let kind = svc::KeyKind::of(&m.auth_mode);
                (api, m.base_url, key, kind, m.model_id)
            }
        };
    Ok(Json(
        svc::probe_model(&state.connect, api, &base_url, (&key, kind), &model)
            .await
            .into(),
    ))
}
