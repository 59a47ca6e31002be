//! Applications (`/api/applications…`): workspaces inside the org. The default one
//! cannot be deleted; deleting another removes its keys and end-users with it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use corral_core::time::now_ms;
use corral_core::AppId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Perm};
use crate::error::{ApiError, ApiResult, FieldError, ProblemDetail};
use crate::json::{check, Json, Validate};
use crate::routes::{rfc3339, ListOf};
use crate::state::AppState;

pub fn org_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_applications, create_application))
        .routes(routes!(
            get_application,
            update_application,
            delete_application
        ))
}

#[derive(Debug, Serialize, Deserialize, ToSchema, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApplicationSettings {
    #[serde(default)]
    #[schema(max_items = 20)]
    pub allowed_redirect_domains: Vec<String>,
}

impl ApplicationSettings {
    fn validate_into(&self, errors: &mut Vec<FieldError>) {
        if self.allowed_redirect_domains.len() > 20 {
            errors.push(FieldError::new(
                "settings.allowedRedirectDomains",
                "too_many",
                "at most 20 domains",
            ));
        }
        for (i, d) in self.allowed_redirect_domains.iter().enumerate() {
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '*'));
            if !ok {
                errors.push(FieldError::new(
                    format!("settings.allowedRedirectDomains[{i}]"),
                    "invalid_format",
                    "must be a host name such as app.example.com",
                ));
            }
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationObject {
    pub id: String,
    /// Always `application`.
    #[schema(value_type = String, pattern = "^application$")]
    pub object: &'static str,
    pub org_id: String,
    pub name: String,
    pub is_default: bool,
    pub settings: ApplicationSettings,
    #[serde(rename = "created_by")]
    pub created_by: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<corral_store::applications::Application> for ApplicationObject {
    fn from(a: corral_store::applications::Application) -> ApplicationObject {
        ApplicationObject {
            id: a.id.into(),
            object: "application",
            org_id: a.org_id.into(),
            name: a.name,
            is_default: a.is_default,
            settings: serde_json::from_str(&a.settings).unwrap_or_default(),
            created_by: a.created_by,
            created_at: rfc3339(a.created_at),
            updated_at: rfc3339(a.updated_at),
        }
    }
}

/// Applications of the organization, default first.
#[utoipa::path(get, path = "/api/applications", tag = "Applications", operation_id = "listApplications",
    params(("X-Org-Id" = Option<String>, Header, description = "Organization id (session auth)")),
    responses(
        (status = 200, description = "Application list", body = ListOf<ApplicationObject>),
    ))]
pub async fn list_applications(
    State(state): State<AppState>,
    ctx: Perm<perms::ApplicationsRead>,
) -> ApiResult<Json<ListOf<ApplicationObject>>> {
    let mut conn = state.db.conn().await?;
    let apps = corral_store::applications::list(&mut conn, ctx.org_id()?).await?;
    Ok(Json(ListOf::all(
        apps.into_iter().map(ApplicationObject::from).collect(),
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApplicationBody {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    pub settings: Option<ApplicationSettings>,
}

impl Validate for CreateApplicationBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check::len(&mut e, "name", self.name.trim(), 1, 100);
        if let Some(s) = &self.settings {
            s.validate_into(&mut e);
        }
        e
    }
}

/// Create an application.
#[utoipa::path(post, path = "/api/applications", tag = "Applications", operation_id = "createApplication",
    params(("X-Org-Id" = Option<String>, Header, description = "Organization id (session auth)")),
    request_body = CreateApplicationBody,
    responses(
        (status = 201, description = "Application created", body = ApplicationObject),
    ))]
pub async fn create_application(
    State(state): State<AppState>,
    ctx: Perm<perms::ApplicationsWrite>,
    Json(body): Json<CreateApplicationBody>,
) -> ApiResult<(StatusCode, Json<ApplicationObject>)> {
    let org_id = ctx.org_id()?;
    let id = AppId::generate();
    let settings =
        serde_json::to_string(&body.settings.unwrap_or_default()).map_err(ApiError::internal)?;
    let mut conn = state.db.conn().await?;
    corral_store::applications::insert(
        &mut conn,
        &corral_store::applications::NewApplication {
            id: &id,
            org_id,
            name: body.name.trim(),
            is_default: false,
            settings: &settings,
            created_by: ctx.principal.actor_user_id(),
            now: now_ms(),
        },
    )
    .await?;
    let app = corral_store::applications::get(&mut conn, org_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("application"))?;
    Ok((StatusCode::CREATED, Json(ApplicationObject::from(app))))
}

/// One application.
#[utoipa::path(get, path = "/api/applications/{id}", tag = "Applications", operation_id = "getApplication",
    params(("id" = String, Path, description = "Application id"), ("X-Org-Id" = Option<String>, Header, description = "Organization id (session auth)")),
    responses(
        (status = 200, description = "Application", body = ApplicationObject),
    ))]
pub async fn get_application(
    State(state): State<AppState>,
    ctx: Perm<perms::ApplicationsRead>,
    Path(id): Path<AppId>,
) -> ApiResult<Json<ApplicationObject>> {
    let mut conn = state.db.conn().await?;
    let app = corral_store::applications::get(&mut conn, ctx.org_id()?, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("application"))?;
    Ok(Json(ApplicationObject::from(app)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApplicationBody {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    pub settings: Option<ApplicationSettings>,
}

impl Validate for UpdateApplicationBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if let Some(n) = &self.name {
            check::len(&mut e, "name", n.trim(), 1, 100);
        }
        if let Some(s) = &self.settings {
            s.validate_into(&mut e);
        }
        e
    }
}

/// Rename an application or change its settings.
#[utoipa::path(patch, path = "/api/applications/{id}", tag = "Applications", operation_id = "updateApplication",
    params(("id" = String, Path, description = "Application id"), ("X-Org-Id" = Option<String>, Header, description = "Organization id (session auth)")),
    request_body = UpdateApplicationBody,
    responses(
        (status = 200, description = "Updated application", body = ApplicationObject),
    ))]
pub async fn update_application(
    State(state): State<AppState>,
    ctx: Perm<perms::ApplicationsWrite>,
    Path(id): Path<AppId>,
    Json(body): Json<UpdateApplicationBody>,
) -> ApiResult<Json<ApplicationObject>> {
    let org_id = ctx.org_id()?;
    let settings = match &body.settings {
        Some(s) => Some(serde_json::to_string(s).map_err(ApiError::internal)?),
        None => None,
    };
    let mut conn = state.db.conn().await?;
    let found = corral_store::applications::update(
        &mut conn,
        org_id,
        &id,
        body.name.as_deref().map(str::trim),
        settings.as_deref(),
        now_ms(),
    )
    .await?;
    if !found {
        return Err(ApiError::not_found("application"));
    }
    let app = corral_store::applications::get(&mut conn, org_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("application"))?;
    Ok(Json(ApplicationObject::from(app)))
}

/// Delete an application and everything scoped to it (not the default one).
#[utoipa::path(delete, path = "/api/applications/{id}", tag = "Applications", operation_id = "deleteApplication",
    params(("id" = String, Path, description = "Application id"), ("X-Org-Id" = Option<String>, Header, description = "Organization id (session auth)")),
    responses(
        (status = 204, description = "Application deleted"),
        (status = 400, description = "The default application cannot be deleted", body = ProblemDetail),
    ))]
pub async fn delete_application(
    State(state): State<AppState>,
    ctx: Perm<perms::ApplicationsWrite>,
    Path(id): Path<AppId>,
) -> ApiResult<StatusCode> {
    let org_id = ctx.org_id()?;
    let mut tx = state.db.begin().await?;
    let app = corral_store::applications::get(&mut tx, org_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("application"))?;
    if app.is_default {
        return Err(ApiError::invalid_param(
            "id",
            "the default application cannot be deleted",
        ));
    }
    // Its documents and uploads go with it; their blobs through the outbox.
    let keys =
        corral_store::storage_deletions::keys_of_application(&mut tx, org_id.as_str(), id.as_str())
            .await?;
    corral_store::applications::delete(&mut tx, org_id, &id).await?;
    corral_store::storage_deletions::enqueue_all(
        &mut tx,
        &keys,
        corral_store::storage_deletions::reasons::APPLICATION_DELETED,
        corral_core::time::now_ms(),
    )
    .await?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    if !keys.is_empty() {
        state.storage_deletions.wake();
    }
    state
        .runs
        .bus
        .revoke(corral_realtime::Revocation::Application {
            org: org_id.clone(),
            app: id.clone(),
        })
        .await;
    tracing::info!(org_id = %org_id, application_id = %id, "application deleted");
    Ok(StatusCode::NO_CONTENT)
}
