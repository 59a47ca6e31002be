use super::*;

// ---- credentials --------------------------------------------------------------------

/// A provider credential. Its key is never part of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialView {
    pub id: String,
    pub label: String,
    #[serde(rename = "providerId")]
    pub provider_id: Option<String>,
    /// `openai-completions` | `anthropic-messages` | `openai-codex-responses`.
    #[serde(rename = "apiShape")]
    pub api_shape: Option<String>,
    #[serde(rename = "baseUrl")]
    pub base_url: Option<String>,
    /// Always `custom`.
    #[schema(value_type = String, pattern = "^(built-in|custom)$")]
    pub source: &'static str,
    /// `api_key`, or `oauth2` for an account paired with the connect helper.
    #[serde(rename = "authMode")]
    #[schema(value_type = String, pattern = "^(api_key|oauth2)$")]
    pub auth_mode: &'static str,
    /// The OAuth account's email, when known.
    pub oauth_email: Option<String>,
    /// True when the stored key can no longer be decrypted (set a new `apiKey`), or
    /// the provider refused the OAuth refresh token (pair the account again).
    pub needs_reconnection: bool,
    /// Model ids the provider listed for this key at the last discovery; for an OAuth
    /// (subscription) provider, the models it serves.
    pub available_model_ids: Option<Vec<String>>,
    pub created_by: Option<String>,
    #[serde(rename = "createdAt")]
    #[schema(format = DateTime)]
    pub created_at: String,
    #[serde(rename = "updatedAt")]
    #[schema(format = DateTime)]
    pub updated_at: String,
}

pub(super) fn credential_view(state: &AppState, c: &store::Credential) -> CredentialView {
    let provider = svc::provider(&c.provider_id);
    let available_model_ids = if c.is_oauth() {
        // Derived on every read from the provider definition, never stored.
        provider.map(corral_connect::model_oauth::model_ids)
    } else {
        c.available_model_ids
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
    };
    CredentialView {
        id: c.id.clone(),
        label: c.label.clone(),
        provider_id: Some(c.provider_id.clone()),
        api_shape: provider.map(|p| p.api_shape.to_owned()),
        base_url: Some(c.base_url.clone()),
        source: "custom",
        auth_mode: if c.is_oauth() { "oauth2" } else { "api_key" },
        oauth_email: c.oauth_email.clone(),
        needs_reconnection: c.needs_reconnection
            || svc::open_key(&state.connect, &c.id, &c.api_key).is_err(),
        available_model_ids,
        created_by: c.created_by.clone(),
        created_at: rfc3339(c.created_at),
        updated_at: rfc3339(c.updated_at),
    }
}

pub(super) async fn load_credential(
    state: &AppState,
    ctx: &Ctx,
    id: &str,
) -> ApiResult<store::Credential> {
    let mut conn = state.db.conn().await?;
    store::get_credential(&mut conn, ctx.org_id()?, id)
        .await?
        .ok_or_else(|| ApiError::not_found("model provider credential"))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateCredentialBody {
    /// Display name; derived from the provider's name when omitted.
    pub label: Option<String>,
    /// `openai`, `anthropic` or `openai-compatible`
    /// (`GET /api/model-provider-credentials/registry`). OAuth providers (`authMode:
    /// oauth2`) are connected with the pairing flow instead.
    pub provider_id: String,
    /// Write-only: stored encrypted, never returned.
    pub api_key: String,
    /// The provider's API root (OpenAI convention with the version, e.g.
    /// `http://localhost:11434/v1`; Anthropic's without). Required for
    /// `openai-compatible`; replaces the default of the others.
    pub base_url_override: Option<String>,
}

impl Validate for CreateCredentialBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if let Some(l) = &self.label {
            check::len(&mut e, "label", l.trim(), 1, LABEL_MAX);
        }
        check::len(&mut e, "apiKey", &self.api_key, 1, KEY_MAX);
        check::len(&mut e, "providerId", &self.provider_id, 1, 100);
        e
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateCredentialBody {
    pub label: Option<String>,
    /// A new key (write-only). The provider and base URL cannot change: create another
    /// credential instead.
    pub api_key: Option<String>,
}

impl Validate for UpdateCredentialBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if let Some(l) = &self.label {
            check::len(&mut e, "label", l.trim(), 1, LABEL_MAX);
        }
        if let Some(k) = &self.api_key {
            check::len(&mut e, "apiKey", k, 1, KEY_MAX);
        }
        e
    }
}

pub(super) fn url_error(field: &str, msg: String) -> ApiError {
    ApiError::field(field, "invalid_url", msg)
}

/// The organization's provider credentials, oldest first.
#[utoipa::path(get, path = "/api/model-provider-credentials", tag = "Model Provider Credentials",
    operation_id = "listModelProviderCredentials",
    responses((status = 200, description = "Model provider credentials list", body = ListOf<CredentialView>)))]
pub async fn list_credentials(
    State(state): State<AppState>,
    ctx: Perm<perms::ModelsRead>,
) -> ApiResult<Json<ListOf<CredentialView>>> {
    let mut conn = state.db.conn().await?;
    let rows = store::list_credentials(&mut conn, ctx.org_id()?).await?;
    Ok(Json(ListOf::all(
        rows.iter().map(|c| credential_view(&state, c)).collect(),
    )))
}

/// Add a provider key. The key is encrypted at rest and never returned.
#[utoipa::path(post, path = "/api/model-provider-credentials", tag = "Model Provider Credentials",
    operation_id = "createModelProviderCredential",
    request_body = CreateCredentialBody,
    responses((status = 201, description = "Model provider credential created", body = CredentialView)))]
pub async fn create_credential(
    State(state): State<AppState>,
    ctx: Perm<perms::ModelsWrite>,
    Json(body): Json<CreateCredentialBody>,
) -> ApiResult<(StatusCode, Json<CredentialView>)> {
    let provider = svc::provider(&body.provider_id)
        .filter(|p| p.oauth.is_none())
        .ok_or_else(|| {
            let oauth = svc::provider(&body.provider_id).is_some();
            ApiError::invalid_param(
                "providerId",
                format!(
                    "{} {:?}; one of {}",
                    if oauth {
                        "an OAuth provider is connected with POST /api/model-providers-oauth/pairing, not an API key:"
                    } else {
                        "unknown provider"
                    },
                    body.provider_id,
                    svc::PROVIDERS
                        .iter()
                        .filter(|p| p.oauth.is_none())
                        .map(|p| p.id)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
    let base_url = match body.base_url_override.as_deref().map(str::trim) {
        Some(u) if !u.is_empty() => {
            svc::check_base_url(u).map_err(|m| url_error("baseUrlOverride", m))?
        }
        _ if provider.needs_base_url() => {
            return Err(ApiError::field(
                "baseUrlOverride",
                "required",
                format!("{} needs the server's base URL", provider.id),
            ))
        }
        _ => provider.default_base_url.to_owned(),
    };
    let org = ctx.org_id()?;
    let id = uuid::Uuid::now_v7().to_string();
    let sealed = svc::seal_key(&state.connect, &id, &body.api_key);
    let mut conn = state.db.conn().await?;
    let label = match body.label.as_deref().map(str::trim) {
        Some(l) => l.to_owned(),
        None => {
            let existing = store::list_credentials(&mut conn, org).await?;
            let taken: Vec<&str> = existing.iter().map(|c| c.label.as_str()).collect();
            unique_label(provider.display_name, &taken)
        }
    };
    store::insert_credential(
        &mut conn,
        &store::NewCredential {
            id: &id,
            org_id: org,
            provider_id: provider.id,
            label: &label,
            base_url: &base_url,
            api_key: &sealed,
            created_by: ctx.principal.user().map(|u| u.user_id.as_str()),
            now: now_ms(),
        },
    )
    .await?;
    drop(conn);
    let c = load_credential(&state, &ctx, &id).await?;
    Ok((StatusCode::CREATED, Json(credential_view(&state, &c))))
}

/// Change a credential's label or key.
#[utoipa::path(put, path = "/api/model-provider-credentials/{id}", tag = "Model Provider Credentials",
    operation_id = "updateModelProviderCredential",
    params(("id" = String, Path, description = "Credential id")),
    request_body = UpdateCredentialBody,
    responses((status = 200, description = "Model provider credential updated", body = CredentialView)))]
pub async fn update_credential(
    State(state): State<AppState>,
    ctx: Perm<perms::ModelsWrite>,
    Path(id): Path<String>,
    Json(body): Json<UpdateCredentialBody>,
) -> ApiResult<Json<CredentialView>> {
    let c = load_credential(&state, &ctx, &id).await?;
    if c.is_oauth() && body.api_key.is_some() {
        return Err(ApiError::invalid_param(
            "apiKey",
            "an OAuth credential has no API key; pair the account again to renew its tokens",
        ));
    }
    let sealed = body
        .api_key
        .as_deref()
        .map(|k| svc::seal_key(&state.connect, &id, k));
    let label = body.label.as_deref().map(str::trim).unwrap_or(&c.label);
    let mut conn = state.db.conn().await?;
    store::update_credential(
        &mut conn,
        ctx.org_id()?,
        &id,
        label,
        sealed.as_deref(),
        now_ms(),
    )
    .await?;
    drop(conn);
    let c = load_credential(&state, &ctx, &id).await?;
    Ok(Json(credential_view(&state, &c)))
}

/// Delete a credential no model uses (409 `credential_in_use` otherwise).
#[utoipa::path(delete, path = "/api/model-provider-credentials/{id}", tag = "Model Provider Credentials",
    operation_id = "deleteModelProviderCredential",
    params(("id" = String, Path, description = "Credential id")),
    responses((status = 204, description = "Model provider credential deleted"),
              (status = 409, description = "Credential is still referenced by one or more models (credential_in_use)", body = crate::error::ProblemDetail)))]
pub async fn delete_credential(
    State(state): State<AppState>,
    ctx: Perm<perms::ModelsWrite>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    load_credential(&state, &ctx, &id).await?;
    let org = ctx.org_id()?;
    let in_use = |n: i64| {
        ApiError::new(
            ErrorCode::CredentialInUse,
            format!("{n} model(s) still use this credential; delete them or move them to another credential first"),
        )
    };
    let mut conn = state.db.conn().await?;
    let n = store::count_models_using(&mut conn, org, &id).await?;
    if n > 0 {
        return Err(in_use(n));
    }
    match store::delete_credential(&mut conn, org, &id).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        // A model attached meanwhile: the foreign key refuses.
        Err(corral_store::StoreError::Conflict { .. }) => Err(in_use(1)),
        Err(e) => Err(e.into()),
    }
}

/// The reference's `TestResult`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelTestResult {
    pub ok: bool,
    /// Response time in milliseconds.
    pub latency: f64,
    /// Why it failed: `auth_failed`, `model_not_found`, `rate_limited`,
    /// `upstream_error`, `network_error`, `timeout`, `needs_reconnection`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The provider's HTTP status when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

impl From<Probe> for ModelTestResult {
    fn from(p: Probe) -> ModelTestResult {
        ModelTestResult {
            ok: p.ok,
            latency: p.latency_ms,
            error: p.error,
            message: p.message,
            status: p.status,
        }
    }
}

pub(super) fn undecryptable() -> ModelTestResult {
    ModelTestResult {
        ok: false,
        latency: 0.0,
        error: Some("needs_reconnection".into()),
        message: Some("the stored key can no longer be decrypted; set a new apiKey".into()),
        status: None,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TestCredentialInlineBody {
    /// `openai-completions` or `anthropic-messages`.
    pub api_shape: String,
    pub base_url: String,
    /// Required unless `existingKeyId` names a credential whose key to use.
    pub api_key: Option<String>,
    pub existing_key_id: Option<String>,
}

impl Validate for TestCredentialInlineBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check::one_of(
            &mut e,
            "apiShape",
            &self.api_shape,
            &["openai-completions", "anthropic-messages"],
        );
        if let Some(k) = &self.api_key {
            check::len(&mut e, "apiKey", k, 1, KEY_MAX);
        }
        if self.api_key.is_none() && self.existing_key_id.is_none() {
            e.push(FieldError::new(
                "apiKey",
                "required",
                "give apiKey, or existingKeyId to test with a stored key",
            ));
        }
        e
    }
}

/// Test a key and base URL before saving them (lists the provider's models).
#[utoipa::path(post, path = "/api/model-provider-credentials/test", tag = "Model Provider Credentials",
    operation_id = "testModelProviderCredentialInline",
    request_body = TestCredentialInlineBody,
    responses((status = 200, description = "Test result", body = ModelTestResult)))]
pub async fn test_credential_inline(
    State(state): State<AppState>,
    ctx: Perm<perms::ModelsWrite>,
    Json(body): Json<TestCredentialInlineBody>,
) -> ApiResult<Json<ModelTestResult>> {
    let base = svc::check_base_url(&body.base_url).map_err(|m| url_error("baseUrl", m))?;
    let api = svc::api_for_shape(&body.api_shape)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("validated shape")))?;
    let (key, kind) = match (&body.api_key, &body.existing_key_id) {
        (Some(k), _) => (k.clone(), svc::KeyKind::ApiKey),
        (None, Some(existing)) => {
            let mut conn = state.db.conn().await?;
            let c = store::get_credential(&mut conn, ctx.org_id()?, existing)
                .await?
                .ok_or_else(|| missing("model provider credential", "existingKeyId"))?;
            match svc::open_key(&state.connect, &c.id, &c.api_key) {
                Ok(k) => (k, svc::KeyKind::of(&c.auth_mode)),
                Err(_) => return Ok(Json(undecryptable())),
            }
        }
        (None, None) => return Err(ApiError::field("apiKey", "required", "apiKey is required")),
    };
    Ok(Json(
        svc::probe_key(&state.connect, api, &base, &key, kind)
            .await
            .into(),
    ))
}

/// Test a stored credential (lists the provider's models with its key).
#[utoipa::path(post, path = "/api/model-provider-credentials/{id}/test", tag = "Model Provider Credentials",
    operation_id = "testModelProviderCredential",
    params(("id" = String, Path, description = "Credential id")),
    responses((status = 200, description = "Test result", body = ModelTestResult)))]
pub async fn test_credential(
    State(state): State<AppState>,
    ctx: Perm<perms::ModelsWrite>,
    Path(id): Path<String>,
) -> ApiResult<Json<ModelTestResult>> {
    let c = load_credential(&state, &ctx, &id).await?;
    let Ok(key) = svc::open_key(&state.connect, &c.id, &c.api_key) else {
        return Ok(Json(undecryptable()));
    };
    let api = svc::provider_api(&c.provider_id)?;
    let kind = svc::KeyKind::of(&c.auth_mode);
    Ok(Json(
        svc::probe_key(&state.connect, api, &c.base_url, &key, kind)
            .await
            .into(),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefreshResult {
    /// `ok`, `auth_failed`, `nothing_verified` or `no_candidates`.
    #[schema(value_type = String, pattern = "^(ok|auth_failed|nothing_verified|no_candidates)$")]
    pub outcome: &'static str,
    /// Models the provider listed for the key this time.
    pub probed_count: i64,
    /// The credential's list after this discovery (unchanged unless `ok`).
    pub available_model_ids: Option<Vec<String>>,
}

/// Discover the models the credential serves (the provider's model list) and keep
/// them as `available_model_ids`. A failure keeps the previous list.
#[utoipa::path(post, path = "/api/model-provider-credentials/{id}/refresh-models", tag = "Model Provider Credentials",
    operation_id = "refreshModelProviderCredentialModels",
    params(("id" = String, Path, description = "Credential id")),
    responses((status = 200, description = "Discovery outcome + the credential's current verified list", body = RefreshResult)))]
pub async fn refresh_credential_models(
    State(state): State<AppState>,
    ctx: Perm<perms::ModelsWrite>,
    Path(id): Path<String>,
) -> ApiResult<Json<RefreshResult>> {
    let c = load_credential(&state, &ctx, &id).await?;
    if c.is_oauth() {
        // A subscription provider's servable set comes from its definition: no
        // upstream call, nothing stored.
        return Ok(Json(RefreshResult {
            outcome: "ok",
            probed_count: 0,
            available_model_ids: svc::provider(&c.provider_id)
                .map(corral_connect::model_oauth::model_ids),
        }));
    }
    let previous: Option<Vec<String>> = c
        .available_model_ids
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok());
    let Ok(key) = svc::open_key(&state.connect, &c.id, &c.api_key) else {
        return Ok(Json(RefreshResult {
            outcome: "auth_failed",
            probed_count: 0,
            available_model_ids: previous,
        }));
    };
    let api = svc::provider_api(&c.provider_id)?;
    match svc::discover(&state.connect, api, &c.base_url, &key).await {
        Ok(ids) if ids.is_empty() => Ok(Json(RefreshResult {
            outcome: "no_candidates",
            probed_count: 0,
            available_model_ids: previous,
        })),
        Ok(ids) => {
            let json = serde_json::to_string(&ids).map_err(ApiError::internal)?;
            let mut conn = state.db.conn().await?;
            store::set_available_models(&mut conn, ctx.org_id()?, &id, &json, now_ms()).await?;
            Ok(Json(RefreshResult {
                outcome: "ok",
                probed_count: ids.len() as i64,
                available_model_ids: Some(ids),
            }))
        }
        Err(p) => Ok(Json(RefreshResult {
            outcome: if matches!(p.status, Some(401 | 403)) {
                "auth_failed"
            } else {
                "nothing_verified"
            },
            probed_count: 0,
            available_model_ids: previous,
        })),
    }
}
