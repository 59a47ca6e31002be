//! Packages installed in an application (`/api/applications/{applicationId}/packages…`):
//! install, list, read, update the application's settings for a package (enabled,
//! version pin, model, generation settings), uninstall.

use crate::query::Query;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use corral_core::time::now_ms;
use corral_core::{AppId, ErrorCode};
use corral_store::app_packages as store;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Ctx, Perm};
use crate::error::{ApiError, ApiResult, FieldError, ProblemDetail};
use crate::json::{Json, Validate};
use crate::routes::rfc3339;
use crate::state::AppState;

pub fn org_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_installed, install))
        .routes(routes!(get_installed, update_installed, uninstall))
        .routes(routes!(get_run_config))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationPackage {
    #[schema(value_type = String, pattern = "^application_package$")]
    pub object: &'static str,
    pub package_id: String,
    #[schema(value_type = Option<Object>)]
    pub generation_config: Option<Value>,
    pub model_id: Option<String>,
    pub proxy_id: Option<String>,
    #[serde(rename = "version_id")]
    pub version_id: Option<i64>,
    pub enabled: bool,
    #[serde(rename = "installed_at")]
    #[schema(format = DateTime)]
    pub installed_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[serde(rename = "package_type")]
    pub package_type: String,
    #[serde(rename = "package_source")]
    #[schema(value_type = String, pattern = "^(system|local)$")]
    pub package_source: &'static str,
    #[serde(rename = "draft_manifest")]
    #[schema(value_type = Option<Object>)]
    pub draft_manifest: Option<Value>,
}

impl From<store::Installed> for ApplicationPackage {
    fn from(i: store::Installed) -> ApplicationPackage {
        ApplicationPackage {
            object: "application_package",
            package_id: i.package_id,
            generation_config: i
                .generation_config
                .and_then(|g| serde_json::from_str(&g).ok()),
            model_id: i.model_id,
            proxy_id: i.proxy_id,
            version_id: i.version_id,
            enabled: i.enabled,
            installed_at: rfc3339(i.installed_at),
            updated_at: rfc3339(i.updated_at),
            package_type: i.package_type,
            package_source: if i.package_org_id.is_none() {
                "system"
            } else {
                "local"
            },
            draft_manifest: serde_json::from_str(&i.draft_manifest).ok(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstalledList {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<ApplicationPackage>,
    pub total: i64,
    pub has_more: bool,
}

/// The application, checked to belong to the caller's org (404 otherwise).
async fn app_in_org(state: &AppState, ctx: &Ctx, app_id: &AppId) -> ApiResult<()> {
    let mut conn = state.db.conn().await?;
    corral_store::applications::get(&mut conn, ctx.org_id()?, app_id)
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found("application"))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TypeQuery {
    /// `agent`, `skill`, `mcp-server` or `integration`.
    #[serde(rename = "type")]
    pub ptype: Option<String>,
}

/// Packages installed in the application.
#[utoipa::path(get, path = "/api/applications/{applicationId}/packages", tag = "Applications", operation_id = "listInstalledPackages",
    params(("applicationId" = String, Path, description = "Application id"), TypeQuery),
    responses((status = 200, description = "Installed packages", body = InstalledList)))]
pub async fn list_installed(
    State(state): State<AppState>,
    ctx: Perm<perms::PackagesRead>,
    Path(app_id): Path<AppId>,
    Query(q): Query<TypeQuery>,
) -> ApiResult<Json<InstalledList>> {
    app_in_org(&state, &ctx, &app_id).await?;
    if let Some(t) = &q.ptype {
        if corral_afps::PackageType::parse(t).is_none() {
            return Err(ApiError::invalid_param(
                "type",
                "type must be agent, skill, mcp-server or integration",
            ));
        }
    }
    let mut conn = state.db.conn().await?;
    let rows = store::list(&mut conn, ctx.org_id()?, &app_id, q.ptype.as_deref()).await?;
    let data: Vec<ApplicationPackage> = rows.into_iter().map(ApplicationPackage::from).collect();
    Ok(Json(InstalledList {
        object: "list",
        total: data.len() as i64,
        data,
        has_more: false,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstallBody {
    /// `@scope/name` of a package visible to the organization.
    pub package_id: String,
}

impl Validate for InstallBody {
    fn validate(&self) -> Vec<FieldError> {
        if corral_afps::PackageName::parse(&self.package_id).is_none() {
            vec![FieldError::new(
                "packageId",
                "invalid_format",
                "must be @scope/name",
            )]
        } else {
            Vec::new()
        }
    }
}

/// Install a package in the application.
#[utoipa::path(post, path = "/api/applications/{applicationId}/packages", tag = "Applications", operation_id = "installPackage",
    params(("applicationId" = String, Path, description = "Application id")),
    request_body = InstallBody,
    responses((status = 201, description = "Installed", body = ApplicationPackage),
              (status = 409, description = "Already installed", body = ProblemDetail)))]
pub async fn install(
    State(state): State<AppState>,
    ctx: Perm<perms::PackagesWrite>,
    Path(app_id): Path<AppId>,
    Json(body): Json<InstallBody>,
) -> ApiResult<(StatusCode, Json<ApplicationPackage>)> {
    app_in_org(&state, &ctx, &app_id).await?;
    let org_id = ctx.org_id()?;
    let mut conn = state.db.conn().await?;
    if corral_store::packages::get_visible(&mut conn, org_id, &body.package_id, None)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("package"));
    }
    match store::install(&mut conn, org_id, &app_id, &body.package_id, now_ms()).await {
        Err(corral_store::StoreError::Conflict { .. }) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("{} is already installed", body.package_id),
            ))
        }
        other => other?,
    }
    let row = store::get(&mut conn, org_id, &app_id, &body.package_id)
        .await?
        .ok_or_else(|| ApiError::not_found("package"))?;
    Ok((StatusCode::CREATED, Json(ApplicationPackage::from(row))))
}

fn package_id(scope: &str, name: &str) -> String {
    format!("{scope}/{name}")
}

/// One installed package.
#[utoipa::path(get, path = "/api/applications/{applicationId}/packages/{scope}/{name}", tag = "Applications", operation_id = "getInstalledPackage",
    params(("applicationId" = String, Path, description = "Application id"), ("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name")),
    responses((status = 200, description = "Installed package", body = ApplicationPackage)))]
pub async fn get_installed(
    State(state): State<AppState>,
    ctx: Perm<perms::PackagesRead>,
    Path((app_id, scope, name)): Path<(AppId, String, String)>,
) -> ApiResult<Json<ApplicationPackage>> {
    app_in_org(&state, &ctx, &app_id).await?;
    let mut conn = state.db.conn().await?;
    let row = store::get(
        &mut conn,
        ctx.org_id()?,
        &app_id,
        &package_id(&scope, &name),
    )
    .await?
    .ok_or_else(|| ApiError::not_found("installed package"))?;
    Ok(Json(ApplicationPackage::from(row)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateInstalledBody {
    #[schema(value_type = Option<Object>)]
    pub generation_config: Option<Value>,
    pub model_id: Option<String>,
    pub proxy_id: Option<String>,
    /// Pin to a version by its id; `null` follows `latest`.
    #[serde(
        rename = "version_id",
        default,
        deserialize_with = "crate::json::nullable"
    )]
    #[schema(value_type = Option<i64>)]
    pub version_id: Option<Option<i64>>,
    pub enabled: Option<bool>,
}

impl Validate for UpdateInstalledBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if let Some(Value::Object(g)) = &self.generation_config {
            if let Some(t) = g.get("temperature").filter(|t| !t.is_null()) {
                if !t.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t)) {
                    e.push(FieldError::new(
                        "generationConfig.temperature",
                        "out_of_range",
                        "must be between 0 and 1",
                    ));
                }
            }
        } else if self
            .generation_config
            .as_ref()
            .is_some_and(|g| !g.is_null())
        {
            e.push(FieldError::new(
                "generationConfig",
                "invalid_type",
                "must be an object or null",
            ));
        }
        e
    }
}

/// Change the application's settings for an installed package.
#[utoipa::path(put, path = "/api/applications/{applicationId}/packages/{scope}/{name}", tag = "Applications", operation_id = "updateInstalledPackage",
    params(("applicationId" = String, Path, description = "Application id"), ("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name")),
    request_body = UpdateInstalledBody,
    responses((status = 200, description = "Updated", body = ApplicationPackage)))]
pub async fn update_installed(
    State(state): State<AppState>,
    ctx: Perm<perms::PackagesWrite>,
    Path((app_id, scope, name)): Path<(AppId, String, String)>,
    Json(body): Json<UpdateInstalledBody>,
) -> ApiResult<Json<ApplicationPackage>> {
    app_in_org(&state, &ctx, &app_id).await?;
    let org_id = ctx.org_id()?;
    let id = package_id(&scope, &name);
    let mut conn = state.db.conn().await?;
    let cur = store::get(&mut conn, org_id, &app_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("installed package"))?;
    let version_id = match body.version_id {
        Some(Some(v)) => {
            if store::version_by_id(&mut conn, &id, v).await?.is_none() {
                return Err(ApiError::field(
                    "version_id",
                    "not_found",
                    "no such version of this package",
                ));
            }
            Some(v)
        }
        Some(None) => None,
        None => cur.version_id,
    };
    crate::routes::proxies::check_choice(&state, org_id, body.proxy_id.as_deref(), "proxyId")
        .await?;
    let generation = match &body.generation_config {
        Some(Value::Null) => None,
        Some(g) => Some(g.to_string()),
        None => cur.generation_config.clone(),
    };
    store::update(
        &mut conn,
        org_id,
        &app_id,
        &id,
        &store::Settings {
            enabled: body.enabled.unwrap_or(cur.enabled),
            version_id,
            model_id: body.model_id.as_deref().or(cur.model_id.as_deref()),
            proxy_id: body.proxy_id.as_deref().or(cur.proxy_id.as_deref()),
            generation_config: generation.as_deref(),
            input_settings: &cur.input_settings,
            now: now_ms(),
        },
    )
    .await?;
    let row = store::get(&mut conn, org_id, &app_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("installed package"))?;
    Ok(Json(ApplicationPackage::from(row)))
}

/// Uninstall a package from the application.
#[utoipa::path(delete, path = "/api/applications/{applicationId}/packages/{scope}/{name}", tag = "Applications", operation_id = "uninstallPackage",
    params(("applicationId" = String, Path, description = "Application id"), ("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name")),
    responses((status = 204, description = "Uninstalled")))]
pub async fn uninstall(
    State(state): State<AppState>,
    ctx: Perm<perms::PackagesWrite>,
    Path((app_id, scope, name)): Path<(AppId, String, String)>,
) -> ApiResult<StatusCode> {
    app_in_org(&state, &ctx, &app_id).await?;
    let mut conn = state.db.conn().await?;
    if !store::uninstall(
        &mut conn,
        ctx.org_id()?,
        &app_id,
        &package_id(&scope, &name),
    )
    .await?
    {
        return Err(ApiError::not_found("installed package"));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunConfig {
    /// Generation settings (`temperature`, `reasoningLevel`), or null.
    #[schema(value_type = Option<Object>)]
    pub generation: Option<Value>,
    #[serde(rename = "modelId")]
    pub model_id: Option<String>,
    #[serde(rename = "proxyId")]
    pub proxy_id: Option<String>,
    /// The pinned version, or null (the latest published version runs).
    pub version_pin: Option<String>,
    /// The stored input layer: values and locked fields.
    pub input: crate::routes::agents::AgentInputSettings,
}

/// What the application applies when it runs the package: model, generation
/// settings, proxy, version pin and stored input. A package not installed in the
/// application runs with none of them (all null, empty input).
#[utoipa::path(get, path = "/api/applications/{applicationId}/packages/{scope}/{name}/run-config", tag = "Applications", operation_id = "getApplicationPackageRunConfig",
    params(("applicationId" = String, Path, description = "Application id"), ("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name")),
    responses((status = 200, description = "The run configuration", body = RunConfig)))]
pub async fn get_run_config(
    State(state): State<AppState>,
    ctx: Perm<perms::PackagesRead>,
    Path((app_id, scope, name)): Path<(AppId, String, String)>,
) -> ApiResult<Json<RunConfig>> {
    app_in_org(&state, &ctx, &app_id).await?;
    let id = package_id(&scope, &name);
    let mut conn = state.db.conn().await?;
    corral_store::packages::get_visible(&mut conn, ctx.org_id()?, &id, None)
        .await?
        .ok_or_else(|| ApiError::not_found("package"))?;
    let Some(row) = store::get(&mut conn, ctx.org_id()?, &app_id, &id).await? else {
        return Ok(Json(RunConfig {
            generation: None,
            model_id: None,
            proxy_id: None,
            version_pin: None,
            input: Default::default(),
        }));
    };
    let version_pin = match row.version_id {
        Some(v) => store::version_by_id(&mut conn, &id, v).await?,
        None => None,
    };
    Ok(Json(RunConfig {
        generation: row
            .generation_config
            .and_then(|g| serde_json::from_str(&g).ok())
            .filter(|g: &Value| g.is_object()),
        model_id: row.model_id,
        proxy_id: row.proxy_id,
        version_pin,
        input: serde_json::from_str(&row.input_settings).unwrap_or_default(),
    }))
}
