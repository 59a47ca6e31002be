//! Outbound proxies (`/api/proxies…`, `/api/agents/{scope}/{name}/proxy`): an
//! organization's custom proxies, the built-in one from configuration
//! (`CORRAL_PROXY_URL`, id `system`, read-only), the organization's default, the
//! proxy an application runs an agent with, and a test call through a proxy.
//!
//! A proxy URL may carry credentials: it is sealed on arrival, opened only to test
//! the proxy and when a run starts, and only its masked form (`urlPrefix`) is ever
//! returned. Reading needs `proxies:read` (members), changing `proxies:write`
//! (admins), like the organization's models.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use corral_connect::proxies::{self as svc, NONE, SYSTEM_ID};
use corral_core::time::now_ms;
use corral_core::{ErrorCode, OrgId};
use corral_store::proxies as store;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Ctx, Perm};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::json::{check, Json, Validate};
use crate::routes::models::ModelTestResult;
use crate::routes::{rfc3339, ListOf};
use crate::state::AppState;

pub fn org_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_proxies, create_proxy))
        .routes(routes!(set_default_proxy))
        .routes(routes!(update_proxy, delete_proxy))
        .routes(routes!(test_proxy))
}

pub fn app_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_agent_proxy, set_agent_proxy))
}

const LABEL_MAX: usize = 200;
const URL_MAX: usize = 2048;

/// An outbound proxy (the reference's `OrgProxy`). Its URL is never part of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProxyView {
    /// `prx_…`, or `system` for the built-in proxy.
    pub id: String,
    pub label: String,
    /// The URL with its credentials masked (`http://user:****@host:port`).
    #[serde(rename = "urlPrefix")]
    pub url_prefix: String,
    pub enabled: bool,
    /// Whether runs use it when nothing more specific is chosen.
    pub is_default: bool,
    /// `built-in` (from configuration, read-only) or `custom`.
    #[schema(value_type = String, pattern = "^(built-in|custom)$")]
    pub source: &'static str,
    pub created_by: Option<String>,
    #[serde(rename = "createdAt")]
    #[schema(format = DateTime)]
    pub created_at: String,
    #[serde(rename = "updatedAt")]
    #[schema(format = DateTime)]
    pub updated_at: String,
}

fn view(p: &store::Proxy) -> ProxyView {
    ProxyView {
        id: p.id.clone(),
        label: p.label.clone(),
        url_prefix: p.url_prefix.clone(),
        enabled: p.enabled,
        is_default: p.is_default && p.enabled,
        source: "custom",
        created_by: p.created_by.clone(),
        created_at: rfc3339(p.created_at),
        updated_at: rfc3339(p.updated_at),
    }
}

/// The built-in proxy's entry, when configured.
fn system_view(state: &AppState, is_default: bool) -> Option<ProxyView> {
    let url = svc::system_url(&state.connect)?;
    let since = rfc3339(now_ms() - state.started.elapsed().as_millis() as i64);
    Some(ProxyView {
        id: SYSTEM_ID.into(),
        label: svc::SYSTEM_LABEL.into(),
        url_prefix: svc::mask(&url),
        enabled: true,
        is_default,
        source: "built-in",
        created_by: None,
        created_at: since.clone(),
        updated_at: since,
    })
}

fn built_in_refused() -> ApiError {
    ApiError::new(
        ErrorCode::OperationNotAllowed,
        "the built-in proxy comes from configuration (CORRAL_PROXY_URL) and cannot be changed here",
    )
}

fn missing(param: &str) -> ApiError {
    let mut e = ApiError::not_found("proxy");
    e.param = Some(param.to_owned());
    e
}

/// Refuses a proxy choice (an agent's, a schedule's) that names no proxy of the
/// organization: 404 on `param`. `none` and the built-in proxy pass.
pub(crate) async fn check_choice(
    state: &AppState,
    org: &OrgId,
    choice: Option<&str>,
    param: &str,
) -> ApiResult<()> {
    match choice.map(str::trim) {
        None | Some(NONE) => Ok(()),
        Some(p) if svc::exists(&state.connect, org, p).await? => Ok(()),
        Some(_) => Err(missing(param)),
    }
}

async fn load(state: &AppState, org: &OrgId, id: &str) -> ApiResult<store::Proxy> {
    let mut conn = state.db.conn().await?;
    store::get(&mut conn, org, id)
        .await?
        .ok_or_else(|| ApiError::not_found("proxy"))
}

fn url_error(e: String) -> ApiError {
    ApiError::field("url", "invalid_url", e)
}

fn address_error(e: String) -> ApiError {
    ApiError::field("url", "forbidden_address", e)
}

/// Every proxy of the organization: the built-in one first (when configured), then
/// its own, oldest first.
#[utoipa::path(get, path = "/api/proxies", tag = "Proxies", operation_id = "listProxies",
    responses((status = 200, description = "Proxy list", body = ListOf<ProxyView>)))]
pub async fn list_proxies(
    State(state): State<AppState>,
    ctx: Perm<perms::ProxiesRead>,
) -> ApiResult<Json<ListOf<ProxyView>>> {
    let mut conn = state.db.conn().await?;
    let rows = store::list(&mut conn, ctx.org_id()?).await?;
    let org_default = rows.iter().any(|p| p.is_default && p.enabled);
    let data = system_view(&state, !org_default)
        .into_iter()
        .chain(rows.iter().map(view))
        .collect();
    Ok(Json(ListOf::all(data)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProxyBody {
    /// Display name.
    pub label: String,
    /// `http://[user:password@]host:port`. Write-only: stored encrypted, shown masked.
    pub url: String,
}

impl Validate for CreateProxyBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check::len(&mut e, "label", self.label.trim(), 1, LABEL_MAX);
        check::len(&mut e, "url", self.url.trim(), 1, URL_MAX);
        e
    }
}

/// Add a custom proxy (enabled, not the default). The URL is encrypted at rest. Its
/// host must not be a loopback (in production), private, link-local or metadata
/// address unless the operator allows the range (`CORRAL_EGRESS_ALLOWED_RANGES`).
#[utoipa::path(post, path = "/api/proxies", tag = "Proxies", operation_id = "createProxy",
    request_body = CreateProxyBody,
    responses((status = 201, description = "Proxy created", body = ProxyView)))]
pub async fn create_proxy(
    State(state): State<AppState>,
    ctx: Perm<perms::ProxiesWrite>,
    Json(body): Json<CreateProxyBody>,
) -> ApiResult<(StatusCode, Json<ProxyView>)> {
    let url = svc::check_url(&body.url).map_err(url_error)?;
    svc::check_address(&state.connect, &url)
        .await
        .map_err(address_error)?;
    let org = ctx.org_id()?;
    let id = corral_core::ids::prefixed("prx");
    let sealed = svc::seal_url(&state.connect, &id, &url);
    let mut conn = state.db.conn().await?;
    store::insert(
        &mut conn,
        &store::NewProxy {
            id: &id,
            org_id: org,
            label: body.label.trim(),
            url: &sealed,
            url_prefix: &svc::mask(&url),
            created_by: ctx.principal.user().map(|u| u.user_id.as_str()),
            now: now_ms(),
        },
    )
    .await?;
    drop(conn);
    let p = load(&state, org, &id).await?;
    Ok((StatusCode::CREATED, Json(view(&p))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProxyBody {
    pub label: Option<String>,
    /// A new URL (write-only).
    pub url: Option<String>,
    /// A disabled proxy is no longer the default, and runs that name it are refused.
    pub enabled: Option<bool>,
}

impl Validate for UpdateProxyBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if let Some(l) = &self.label {
            check::len(&mut e, "label", l.trim(), 1, LABEL_MAX);
        }
        if let Some(u) = &self.url {
            check::len(&mut e, "url", u.trim(), 1, URL_MAX);
        }
        e
    }
}

/// Change a custom proxy's label, URL or enabled flag. The built-in proxy cannot be
/// changed (403).
#[utoipa::path(put, path = "/api/proxies/{id}", tag = "Proxies", operation_id = "updateProxy",
    params(("id" = String, Path, description = "Proxy id")),
    request_body = UpdateProxyBody,
    responses((status = 200, description = "Proxy updated", body = ProxyView)))]
pub async fn update_proxy(
    State(state): State<AppState>,
    ctx: Perm<perms::ProxiesWrite>,
    Path(id): Path<String>,
    Json(body): Json<UpdateProxyBody>,
) -> ApiResult<Json<ProxyView>> {
    if id == SYSTEM_ID {
        return Err(built_in_refused());
    }
    let org = ctx.org_id()?;
    load(&state, org, &id).await?;
    let url = body
        .url
        .as_deref()
        .map(svc::check_url)
        .transpose()
        .map_err(url_error)?;
    if let Some(u) = &url {
        svc::check_address(&state.connect, u)
            .await
            .map_err(address_error)?;
    }
    let sealed = url
        .as_deref()
        .map(|u| (svc::seal_url(&state.connect, &id, u), svc::mask(u)));
    let mut conn = state.db.conn().await?;
    store::update(
        &mut conn,
        org,
        &id,
        &store::Change {
            label: body.label.as_deref().map(str::trim),
            url: sealed.as_ref().map(|(s, m)| (s.as_str(), m.as_str())),
            enabled: body.enabled,
            now: now_ms(),
        },
    )
    .await?;
    drop(conn);
    Ok(Json(view(&load(&state, org, &id).await?)))
}

/// Delete a custom proxy; agents and schedules that chose it fall back to the
/// organization's default. The built-in proxy cannot be deleted (403).
#[utoipa::path(delete, path = "/api/proxies/{id}", tag = "Proxies", operation_id = "deleteProxy",
    params(("id" = String, Path, description = "Proxy id")),
    responses((status = 204, description = "Proxy deleted")))]
pub async fn delete_proxy(
    State(state): State<AppState>,
    ctx: Perm<perms::ProxiesWrite>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if id == SYSTEM_ID {
        return Err(built_in_refused());
    }
    let org = ctx.org_id()?;
    load(&state, org, &id).await?;
    let mut tx = state.db.begin().await?;
    store::delete(&mut tx, org, &id).await?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{proxyId}`: a proxy id, or `null`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetDefaultProxyBody {
    /// A proxy id, or `null` to clear the organization's default.
    #[serde(default, deserialize_with = "crate::json::nullable")]
    #[schema(value_type = Option<String>)]
    pub proxy_id: Option<Option<String>>,
}

impl Validate for SetDefaultProxyBody {
    fn validate(&self) -> Vec<FieldError> {
        match &self.proxy_id {
            None => vec![FieldError::new(
                "proxyId",
                "required",
                "proxyId is required (null clears the default)",
            )],
            _ => Vec::new(),
        }
    }
}

/// Set or clear the organization's default proxy. Answers with the proxy now in
/// effect (the built-in one when the organization has none), or 204 when no proxy
/// remains in effect.
#[utoipa::path(put, path = "/api/proxies/default", tag = "Proxies", operation_id = "setDefaultProxy",
    request_body = SetDefaultProxyBody,
    responses((status = 200, description = "The effective default proxy", body = ProxyView),
              (status = 204, description = "Default cleared and no proxy remains in effect")))]
pub async fn set_default_proxy(
    State(state): State<AppState>,
    ctx: Perm<perms::ProxiesWrite>,
    Json(body): Json<SetDefaultProxyBody>,
) -> ApiResult<Response> {
    let org = ctx.org_id()?;
    let target = body.proxy_id.flatten();
    let custom = match target.as_deref().map(str::trim) {
        None => None,
        Some(SYSTEM_ID) if svc::system_url(&state.connect).is_some() => None,
        Some(id) => {
            let mut conn = state.db.conn().await?;
            let p = store::get(&mut conn, org, id)
                .await?
                .ok_or_else(|| missing("proxyId"))?;
            if !p.enabled {
                return Err(ApiError::invalid_param(
                    "proxyId",
                    "a disabled proxy cannot be the default; enable it first",
                ));
            }
            Some(p.id)
        }
    };
    let mut tx = state.db.begin().await?;
    store::set_default(&mut tx, org, custom.as_deref(), now_ms()).await?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    let effective = match &custom {
        Some(id) => Some(view(&load(&state, org, id).await?)),
        None => system_view(&state, true),
    };
    Ok(match effective {
        Some(v) => Json(v).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// Test a proxy: one request through it to `CORRAL_PROXY_TEST_URL` (10 s at most).
/// A proxy that does not answer, refuses the credentials or cannot reach the target
/// is a result (`ok: false`), not an error.
#[utoipa::path(post, path = "/api/proxies/{id}/test", tag = "Proxies", operation_id = "testProxy",
    params(("id" = String, Path, description = "Proxy id")),
    responses((status = 200, description = "Test result", body = ModelTestResult)))]
pub async fn test_proxy(
    State(state): State<AppState>,
    ctx: Perm<perms::ProxiesWrite>,
    Path(id): Path<String>,
) -> ApiResult<Json<ModelTestResult>> {
    let url = match svc::system_url(&state.connect).filter(|_| id == SYSTEM_ID) {
        Some(u) => u,
        None => {
            let p = load(&state, ctx.org_id()?, &id).await?;
            match svc::open_url(&state.connect, &p.id, &p.url) {
                Ok(u) => {
                    // Names can resolve elsewhere since the proxy was saved.
                    if let Err(e) = svc::check_address(&state.connect, &u).await {
                        return Ok(Json(ModelTestResult {
                            ok: false,
                            latency: 0.0,
                            error: Some("forbidden_address".into()),
                            message: Some(e),
                            status: None,
                        }));
                    }
                    u
                }
                Err(_) => {
                    return Ok(Json(ModelTestResult {
                        ok: false,
                        latency: 0.0,
                        error: Some("needs_reconnection".into()),
                        message: Some(
                            "the stored URL can no longer be decrypted; set a new url".into(),
                        ),
                        status: None,
                    }))
                }
            }
        }
    };
    Ok(Json(
        svc::probe(&url, &state.config.proxy_test_url).await.into(),
    ))
}

// ---- the proxy of an agent ----------------------------------------------------------

/// The proxy an application runs an agent with.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentProxy {
    /// A proxy id, `none` (never proxied), or `null` (the organization's default).
    pub proxy_id: Option<String>,
    /// Whether the agent's runs go through a proxy (the chosen one, or the default).
    pub resolved: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetAgentProxyBody {
    /// A proxy id, `none` to opt out of proxying, or `null` for the organization's
    /// default.
    #[serde(default, deserialize_with = "crate::json::nullable")]
    #[schema(value_type = Option<String>)]
    pub proxy_id: Option<Option<String>>,
}

impl Validate for SetAgentProxyBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        match &self.proxy_id {
            None => e.push(FieldError::new(
                "proxyId",
                "required",
                "proxyId is required (null uses the organization's default)",
            )),
            Some(Some(p)) => check::len(&mut e, "proxyId", p.trim(), 1, 100),
            Some(None) => {}
        }
        e
    }
}

async fn agent_proxy(state: &AppState, ctx: &Ctx, choice: Option<String>) -> ApiResult<AgentProxy> {
    let choices = svc::Choices {
        agent: choice.as_deref(),
        ..svc::Choices::default()
    };
    let resolved = match svc::resolve_for_run(&state.connect, ctx.org_id()?, choices).await {
        Ok(p) => p.is_some(),
        Err(e) if e.code == ErrorCode::ProxyUnavailable => false,
        Err(e) => return Err(e.into()),
    };
    Ok(AgentProxy {
        proxy_id: choice,
        resolved,
    })
}

/// The proxy the application runs the agent with (`null`: the organization's
/// default), and whether its runs go through one.
#[utoipa::path(get, path = "/api/agents/{scope}/{name}/proxy", tag = "Agents", operation_id = "getAgentProxy",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name")),
    responses((status = 200, description = "Agent proxy config", body = AgentProxy)))]
pub async fn get_agent_proxy(
    State(state): State<AppState>,
    ctx: Perm<perms::AgentsRead>,
    Path((scope, name)): Path<(String, String)>,
) -> ApiResult<Json<AgentProxy>> {
    let org_id = ctx.org_id()?;
    let id = format!("{scope}/{name}");
    crate::routes::models::agent_visible(&state, org_id, &id).await?;
    let mut conn = state.db.conn().await?;
    let installed = corral_store::app_packages::get(&mut conn, org_id, ctx.app_id()?, &id).await?;
    drop(conn);
    let choice = installed.and_then(|i| i.proxy_id);
    Ok(Json(agent_proxy(&state, &ctx, choice).await?))
}

/// Choose the proxy the application runs the agent with (installing the agent in the
/// application when needed): an enabled proxy of the organization or the built-in
/// one, `none`, or `null` for the organization's default.
#[utoipa::path(put, path = "/api/agents/{scope}/{name}/proxy", tag = "Agents", operation_id = "setAgentProxy",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name")),
    request_body = SetAgentProxyBody,
    responses((status = 200, description = "Agent proxy updated", body = AgentProxy)))]
pub async fn set_agent_proxy(
    State(state): State<AppState>,
    ctx: Perm<perms::PackagesWrite>,
    Path((scope, name)): Path<(String, String)>,
    Json(body): Json<SetAgentProxyBody>,
) -> ApiResult<Json<AgentProxy>> {
    let org_id = ctx.org_id()?;
    let app_id = ctx.app_id()?;
    let id = format!("{scope}/{name}");
    crate::routes::models::agent_visible(&state, org_id, &id).await?;
    let choice = body.proxy_id.flatten().map(|p| p.trim().to_owned());
    match choice.as_deref() {
        None | Some(NONE) => {}
        Some(SYSTEM_ID) if svc::system_url(&state.connect).is_some() => {}
        Some(p) => {
            let mut conn = state.db.conn().await?;
            let row = store::get(&mut conn, org_id, p)
                .await?
                .ok_or_else(|| missing("proxyId"))?;
            if !row.enabled {
                return Err(ApiError::invalid_param(
                    "proxyId",
                    "a disabled proxy cannot be chosen; enable it first",
                ));
            }
        }
    }
    let now = now_ms();
    let mut conn = state.db.conn().await?;
    let cur =
        corral_store::app_packages::get_or_install(&mut conn, org_id, app_id, &id, now).await?;
    corral_store::app_packages::update(
        &mut conn,
        org_id,
        app_id,
        &id,
        &corral_store::app_packages::Settings {
            enabled: cur.enabled,
            version_id: cur.version_id,
            model_id: cur.model_id.as_deref(),
            proxy_id: choice.as_deref(),
            generation_config: cur.generation_config.as_deref(),
            input_settings: &cur.input_settings,
            now,
        },
    )
    .await?;
    drop(conn);
    Ok(Json(agent_proxy(&state, &ctx, choice).await?))
}
