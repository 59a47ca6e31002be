//! Models (`/api/models…`, `/api/model-provider-credentials…`,
//! `/api/agents/{scope}/{name}/model`; SPEC §12): an organization's provider keys,
//! its models (one may be the default), the built-in system model from
//! configuration, test calls and model discovery against the provider, and the model
//! an application runs an agent with.
//!
//! Keys are write-only: sealed on arrival, opened only to call the provider, never in
//! a response.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use corral_core::time::now_ms;
use corral_core::ErrorCode;
use corral_store::models as store;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Ctx, Perm};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::json::{check, Json, Validate};
use crate::routes::{rfc3339, ListOf};
use crate::state::AppState;
use corral_connect::models::{self as svc, Probe, Provider};

pub fn org_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_registry))
        .routes(routes!(list_credentials, create_credential))
        .routes(routes!(test_credential_inline))
        .routes(routes!(update_credential, delete_credential))
        .routes(routes!(test_credential))
        .routes(routes!(refresh_credential_models))
        .routes(routes!(list_models, create_model))
        .routes(routes!(set_default_model))
        .routes(routes!(test_model_inline))
        .routes(routes!(update_model, delete_model))
        .routes(routes!(test_model))
}

pub fn app_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_agent_model, set_agent_model))
}

const LABEL_MAX: usize = 200;
const KEY_MAX: usize = 8192;
const MODEL_ID_MAX: usize = 256;
const REASONING_LEVELS: &[&str] = &["off", "minimal", "low", "medium", "high", "xhigh", "max"];

fn missing(what: &str, param: &str) -> ApiError {
    let mut e = ApiError::not_found(what);
    e.param = Some(param.to_owned());
    e
}

/// `base` if free, else `base (2)`, `base (3)`, …
fn unique_label(base: &str, taken: &[&str]) -> String {
    if !taken.contains(&base) {
        return base.to_owned();
    }
    (2..)
        .map(|n| format!("{base} ({n})"))
        .find(|l| !taken.contains(&l.as_str()))
        .unwrap_or_else(|| base.to_owned())
}

// ---- the registry -----------------------------------------------------------------

/// A provider Corral can talk to. Fields outside the `fields` projection are omitted.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryProvider {
    pub provider_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docs_url: Option<String>,
    /// `openai-completions` | `anthropic-messages`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_shape: Option<String>,
    /// Empty when a credential must give its own (`openai-compatible`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_base_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url_overridable: Option<bool>,
    /// Always `api_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub featured: Option<bool>,
    /// Corral vendors no model catalog: discover a credential's models with
    /// `POST /api/model-provider-credentials/{id}/refresh-models`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub models: Option<Vec<Value>>,
}

const REGISTRY_FIELDS: &[&str] = &[
    "providerId",
    "displayName",
    "iconUrl",
    "description",
    "docsUrl",
    "apiShape",
    "defaultBaseUrl",
    "baseUrlOverridable",
    "authMode",
    "featured",
    "models",
];

fn registry_entry(p: &Provider, want: &dyn Fn(&str) -> bool) -> RegistryProvider {
    fn pick<T>(on: bool, v: T) -> Option<T> {
        on.then_some(v)
    }
    RegistryProvider {
        provider_id: p.id.to_owned(),
        display_name: pick(want("displayName"), p.display_name.to_owned()),
        icon_url: pick(want("iconUrl"), p.id.to_owned()),
        description: pick(want("description"), p.description.to_owned()),
        docs_url: pick(want("docsUrl"), p.docs_url.to_owned()),
        api_shape: pick(want("apiShape"), p.api_shape.to_owned()),
        default_base_url: pick(want("defaultBaseUrl"), p.default_base_url.to_owned()),
        base_url_overridable: pick(want("baseUrlOverridable"), true),
        auth_mode: pick(want("authMode"), "api_key".to_owned()),
        featured: pick(want("featured"), p.featured),
        models: pick(want("models"), Vec::new()),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RegistryQuery {
    /// 1–100, default 100.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// Comma-separated fields to return (`providerId` always is).
    pub fields: Option<String>,
}

/// The providers Corral can talk to.
#[utoipa::path(get, path = "/api/model-provider-credentials/registry", tag = "Model Provider Credentials",
    operation_id = "listModelProviderRegistry",
    params(RegistryQuery),
    responses((status = 200, description = "Model provider registry list", body = ListOf<RegistryProvider>)))]
pub async fn list_registry(
    _ctx: Perm<perms::ModelsRead>,
    Query(q): Query<RegistryQuery>,
) -> ApiResult<Json<ListOf<RegistryProvider>>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_param(
            "limit",
            "limit must be between 1 and 100",
        ));
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid_param(
            "offset",
            "offset must be 0 or more",
        ));
    }
    let fields: Option<Vec<String>> = match q.fields.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(list) => {
            let fields: Vec<String> = list.split(',').map(|f| f.trim().to_owned()).collect();
            if let Some(bad) = fields
                .iter()
                .find(|f| !REGISTRY_FIELDS.contains(&f.as_str()))
            {
                return Err(ApiError::invalid_param(
                    "fields",
                    format!(
                        "unknown field {bad:?}; allowed: {}",
                        REGISTRY_FIELDS.join(", ")
                    ),
                ));
            }
            Some(fields)
        }
    };
    let want = |f: &str| fields.as_ref().is_none_or(|l| l.iter().any(|x| x == f));
    let all = svc::PROVIDERS;
    let data: Vec<RegistryProvider> = all
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|p| registry_entry(p, &want))
        .collect();
    Ok(Json(ListOf {
        object: "list",
        has_more: (offset + limit) < all.len() as i64,
        total: all.len() as i64,
        data,
    }))
}

// ---- credentials --------------------------------------------------------------------

/// A provider credential. Its key is never part of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialView {
    pub id: String,
    pub label: String,
    #[serde(rename = "providerId")]
    pub provider_id: Option<String>,
    /// `openai-completions` | `anthropic-messages`.
    #[serde(rename = "apiShape")]
    pub api_shape: Option<String>,
    #[serde(rename = "baseUrl")]
    pub base_url: Option<String>,
    /// Always `custom`.
    #[schema(value_type = String, pattern = "^(built-in|custom)$")]
    pub source: &'static str,
    /// Always `api_key`.
    #[serde(rename = "authMode")]
    #[schema(value_type = String, pattern = "^(api_key|oauth2)$")]
    pub auth_mode: &'static str,
    /// True when the stored key can no longer be decrypted: set a new `apiKey`.
    pub needs_reconnection: bool,
    /// Model ids the provider listed for this key at the last discovery.
    pub available_model_ids: Option<Vec<String>>,
    pub created_by: Option<String>,
    #[serde(rename = "createdAt")]
    #[schema(format = DateTime)]
    pub created_at: String,
    #[serde(rename = "updatedAt")]
    #[schema(format = DateTime)]
    pub updated_at: String,
}

fn credential_view(state: &AppState, c: &store::Credential) -> CredentialView {
    CredentialView {
        id: c.id.clone(),
        label: c.label.clone(),
        provider_id: Some(c.provider_id.clone()),
        api_shape: svc::provider(&c.provider_id).map(|p| p.api_shape.to_owned()),
        base_url: Some(c.base_url.clone()),
        source: "custom",
        auth_mode: "api_key",
        needs_reconnection: svc::open_key(&state.connect, &c.id, &c.api_key).is_err(),
        available_model_ids: c
            .available_model_ids
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok()),
        created_by: c.created_by.clone(),
        created_at: rfc3339(c.created_at),
        updated_at: rfc3339(c.updated_at),
    }
}

async fn load_credential(state: &AppState, ctx: &Ctx, id: &str) -> ApiResult<store::Credential> {
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
    /// (`GET /api/model-provider-credentials/registry`).
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

fn url_error(field: &str, msg: String) -> ApiError {
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
    let provider = svc::provider(&body.provider_id).ok_or_else(|| {
        ApiError::invalid_param(
            "providerId",
            format!(
                "unknown provider {:?}; one of {}",
                body.provider_id,
                svc::PROVIDERS
                    .iter()
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
              (status = 409, description = "Credential is still referenced by one or more models (credential_in_use)", body = crate::error::ProblemDetail, content_type = "application/problem+json")))]
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

fn undecryptable() -> ModelTestResult {
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
    let key = match (&body.api_key, &body.existing_key_id) {
        (Some(k), _) => k.clone(),
        (None, Some(existing)) => {
            let mut conn = state.db.conn().await?;
            let c = store::get_credential(&mut conn, ctx.org_id()?, existing)
                .await?
                .ok_or_else(|| missing("model provider credential", "existingKeyId"))?;
            match svc::open_key(&state.connect, &c.id, &c.api_key) {
                Ok(k) => k,
                Err(_) => return Ok(Json(undecryptable())),
            }
        }
        (None, None) => return Err(ApiError::field("apiKey", "required", "apiKey is required")),
    };
    Ok(Json(
        svc::probe_key(&state.connect, api, &base, &key)
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
    let api = svc::provider(&c.provider_id)
        .map(|p| p.api)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("unknown provider")))?;
    Ok(Json(
        svc::probe_key(&state.connect, api, &c.base_url, &key)
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
    let api = svc::provider(&c.provider_id)
        .map(|p| p.api)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("unknown provider")))?;
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

fn check_cost(e: &mut Vec<FieldError>, c: Option<&Cost>) {
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

fn check_positive(e: &mut Vec<FieldError>, field: &str, v: Option<i64>) {
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

fn capabilities(reasoning: Option<bool>) -> GenerationCapabilities {
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

fn model_view(state: &AppState, m: &store::Model) -> ModelView {
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
        needs_reconnection: svc::open_key(&state.connect, &m.credential_id, &m.api_key).is_err(),
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
fn system_view(state: &AppState, is_default: bool) -> Option<ModelView> {
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

fn is_system(state: &AppState, id: &str) -> bool {
    state.config.system_model().is_some_and(|s| s.model == id)
}

fn built_in_refused() -> ApiError {
    ApiError::new(
        ErrorCode::OperationNotAllowed,
        "the built-in system model comes from configuration and cannot be changed here",
    )
}

async fn load_model(state: &AppState, ctx: &Ctx, id: &str) -> ApiResult<store::Model> {
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
async fn body_credential(state: &AppState, org: &str, id: &str) -> ApiResult<store::Credential> {
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

fn json_of<T: Serialize>(v: Option<&T>) -> ApiResult<Option<String>> {
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
              (status = 409, description = "The model's key can no longer be decrypted (model_needs_reconnection)", body = crate::error::ProblemDetail, content_type = "application/problem+json")))]
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
            if svc::open_key(&state.connect, &m.credential_id, &m.api_key).is_err() {
                let mut e = ApiError::new(
                    ErrorCode::ModelNeedsReconnection,
                    "the model's key can no longer be decrypted; update its credential's apiKey first",
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
    let api = svc::provider(&cred.provider_id)
        .map(|p| p.api)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("unknown provider")))?;
    Ok(Json(
        svc::probe_model(
            &state.connect,
            api,
            &cred.base_url,
            &key,
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
    let (api, base_url, key, model) = match state.config.system_model().filter(|s| s.model == id) {
        Some(sys) => {
            let api = svc::provider(&sys.api)
                .map(|p| p.api)
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("unknown provider")))?;
            let key = sys
                .api_key
                .as_ref()
                .map(|k| k.expose().to_owned())
                .unwrap_or_default();
            (api, sys.base_url, key, sys.model)
        }
        None => {
            let m = load_model(&state, &ctx, &id).await?;
            let Ok(key) = svc::open_key(&state.connect, &m.credential_id, &m.api_key) else {
                return Ok(Json(undecryptable()));
            };
            let api = svc::provider(&m.provider_id)
                .map(|p| p.api)
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("unknown provider")))?;
            (api, m.base_url, key, m.model_id)
        }
    };
    Ok(Json(
        svc::probe_model(&state.connect, api, &base_url, &key, &model)
            .await
            .into(),
    ))
}

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

async fn agent_visible(state: &AppState, org_id: &str, id: &str) -> ApiResult<()> {
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
