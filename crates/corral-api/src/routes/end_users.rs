//! End-users (`/api/end-users…`): the external users of a headless application.
//! Listed newest first with `startingAfter` / `endingBefore` cursors.

use crate::query::Query;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use corral_core::time::now_ms;
use corral_core::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Perm};
use crate::error::{ApiError, ApiResult, FieldError, ProblemDetail};
use crate::json::{check, Json, Validate};
use crate::routes::rfc3339;
use crate::state::AppState;
use corral_store::end_users::{self as store, EndUser};

pub fn app_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_end_users, create_end_user))
        .routes(routes!(get_end_user, update_end_user, delete_end_user))
}

const MAX_METADATA_KEYS: usize = 50;
const MAX_METADATA_KEY_LEN: usize = 40;
const MAX_METADATA_VALUE_LEN: usize = 500;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndUserObject {
    pub id: String,
    /// Always `end_user`.
    #[schema(value_type = String, pattern = "^end_user$")]
    pub object: &'static str,
    pub application_id: String,
    pub name: Option<String>,
    #[schema(format = Email)]
    pub email: Option<String>,
    pub external_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<EndUser> for EndUserObject {
    fn from(e: EndUser) -> EndUserObject {
        EndUserObject {
            id: e.id,
            object: "end_user",
            application_id: e.application_id.into(),
            name: e.name,
            email: e.email,
            external_id: e.external_id,
            metadata: e.metadata.and_then(|m| serde_json::from_str(&m).ok()),
            created_at: rfc3339(e.created_at),
            updated_at: rfc3339(e.updated_at),
        }
    }
}

/// The body of create and update. `null` clears a field on update.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndUserBody {
    #[serde(default, deserialize_with = "crate::json::nullable")]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::json::nullable")]
    #[schema(value_type = Option<String>, format = Email)]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::json::nullable")]
    #[schema(value_type = Option<String>, max_length = 255)]
    pub external_id: Option<Option<String>>,
    /// Flat map of string, number, boolean or null values.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

impl Validate for EndUserBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if let Some(Some(n)) = &self.name {
            check::len(&mut e, "name", n, 0, 200);
        }
        if let Some(Some(m)) = &self.email {
            check::email(&mut e, "email", m);
        }
        if let Some(Some(x)) = &self.external_id {
            check::len(&mut e, "externalId", x, 1, 255);
        }
        if let Some(meta) = &self.metadata {
            if meta.len() > MAX_METADATA_KEYS {
                e.push(FieldError::new(
                    "metadata",
                    "too_many",
                    format!("at most {MAX_METADATA_KEYS} keys"),
                ));
            }
            for (k, v) in meta {
                let field = format!("metadata.{k}");
                if k.is_empty() || k.chars().count() > MAX_METADATA_KEY_LEN {
                    e.push(FieldError::new(
                        &field,
                        "invalid_key",
                        format!("keys are 1 to {MAX_METADATA_KEY_LEN} characters"),
                    ));
                }
                match v {
                    Value::String(s) if s.chars().count() > MAX_METADATA_VALUE_LEN => {
                        e.push(FieldError::new(
                            &field,
                            "too_long",
                            format!("must be at most {MAX_METADATA_VALUE_LEN} characters"),
                        ))
                    }
                    Value::Array(_) | Value::Object(_) => e.push(FieldError::new(
                        &field,
                        "invalid_type",
                        "values must be a string, number, boolean or null",
                    )),
                    _ => {}
                }
            }
        }
        e
    }
}

fn external_id_taken() -> ApiError {
    let mut e = ApiError::new(
        ErrorCode::ExternalIdTaken,
        "an end-user with this externalId already exists in the application",
    );
    e.param = Some("externalId".into());
    e
}

/// Create an end-user. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/api/end-users", tag = "End Users", operation_id = "createEndUser",
    params(
        ("X-Org-Id" = Option<String>, Header, description = "Organization id (session auth)"),
        ("X-Application-Id" = Option<String>, Header, description = "Application id (session auth; also X-App-Id)"),
        ("Idempotency-Key" = Option<String>, Header, description = "Unique key for idempotent requests (max 255 chars)"),
    ),
    request_body = EndUserBody,
    responses(
        (status = 201, description = "End-user created", body = EndUserObject),
        (status = 409, description = "externalId taken, or idempotent request in progress", body = ProblemDetail),
        (status = 422, description = "Idempotency-Key reused with another body", body = ProblemDetail),
        (status = 429, description = "Rate limited", body = ProblemDetail),
    ))]
pub async fn create_end_user(
    State(state): State<AppState>,
    ctx: Perm<perms::EndUsersWrite>,
    Json(body): Json<EndUserBody>,
) -> ApiResult<(StatusCode, Json<EndUserObject>)> {
    let now = now_ms();
    let eu = EndUser {
        id: corral_core::ids::prefixed(corral_core::ids::END_USER),
        org_id: ctx.org_id()?.to_owned(),
        application_id: ctx.app_id()?.to_owned(),
        name: body.name.flatten(),
        email: body.email.flatten().map(|e| e.trim().to_owned()),
        external_id: body.external_id.flatten(),
        metadata: body.metadata.map(|m| Value::Object(m).to_string()),
        created_at: now,
        updated_at: now,
    };
    let mut conn = state.db.conn().await?;
    match store::insert(&mut conn, &eu).await {
        Err(e) if e.is_conflict_on("external") => return Err(external_id_taken()),
        other => other?,
    }
    Ok((StatusCode::CREATED, Json(EndUserObject::from(eu))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub external_id: Option<String>,
    pub email: Option<String>,
    /// Case-insensitive substring of name, email or externalId.
    pub search: Option<String>,
    /// 1 to 100, default 20.
    pub limit: Option<String>,
    pub starting_after: Option<String>,
    pub ending_before: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndUserList {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<EndUserObject>,
    pub has_more: bool,
    pub limit: i64,
}

/// End-users of the application, newest first, with cursor pagination.
#[utoipa::path(get, path = "/api/end-users", tag = "End Users", operation_id = "listEndUsers",
    params(ListQuery,
        ("X-Org-Id" = Option<String>, Header, description = "Organization id (session auth)"),
        ("X-Application-Id" = Option<String>, Header, description = "Application id (session auth; also X-App-Id)"),
    ),
    responses(
        (status = 200, description = "End-user list", body = EndUserList),
        (status = 400, description = "Invalid query", body = ProblemDetail),
        (status = 429, description = "Rate limited", body = ProblemDetail),
    ))]
pub async fn list_end_users(
    State(state): State<AppState>,
    ctx: Perm<perms::EndUsersRead>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<EndUserList>> {
    let limit = match q.limit.as_deref() {
        None => 20,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_param("limit", "limit must be an integer from 1 to 100")
            })?,
    };
    if q.starting_after.is_some() && q.ending_before.is_some() {
        return Err(ApiError::invalid_param(
            "startingAfter",
            "startingAfter and endingBefore are mutually exclusive",
        ));
    }
    let filter = store::ListFilter {
        external_id: q.external_id.as_deref(),
        email: q.email.as_deref(),
        search: q.search.as_deref().filter(|s| !s.is_empty()),
        limit,
        starting_after: q.starting_after.as_deref(),
        ending_before: q.ending_before.as_deref(),
    };
    let mut conn = state.db.conn().await?;
    let page = store::list(&mut conn, ctx.org_id()?, ctx.app_id()?, &filter).await?;
    Ok(Json(EndUserList {
        object: "list",
        data: page.items.into_iter().map(EndUserObject::from).collect(),
        has_more: page.has_more,
        limit,
    }))
}

async fn load(state: &AppState, ctx: &crate::context::Ctx, id: &str) -> ApiResult<EndUser> {
    let mut conn = state.db.conn().await?;
    store::get(&mut conn, ctx.org_id()?, ctx.app_id()?, id)
        .await?
        .ok_or_else(|| ApiError::not_found("end-user"))
}

/// One end-user.
#[utoipa::path(get, path = "/api/end-users/{id}", tag = "End Users", operation_id = "getEndUser",
    params(("id" = String, Path, description = "End-user id (eu_…)"),
        ("X-Org-Id" = Option<String>, Header, description = "Organization id (session auth)"),
        ("X-Application-Id" = Option<String>, Header, description = "Application id (session auth; also X-App-Id)"),
    ),
    responses(
        (status = 200, description = "End-user", body = EndUserObject),
        (status = 429, description = "Rate limited", body = ProblemDetail),
    ))]
pub async fn get_end_user(
    State(state): State<AppState>,
    ctx: Perm<perms::EndUsersRead>,
    Path(id): Path<String>,
) -> ApiResult<Json<EndUserObject>> {
    Ok(Json(EndUserObject::from(load(&state, &ctx, &id).await?)))
}

/// Update an end-user: given fields change, `null` clears, `metadata` replaces.
#[utoipa::path(patch, path = "/api/end-users/{id}", tag = "End Users", operation_id = "updateEndUser",
    params(("id" = String, Path, description = "End-user id (eu_…)"),
        ("X-Org-Id" = Option<String>, Header, description = "Organization id (session auth)"),
        ("X-Application-Id" = Option<String>, Header, description = "Application id (session auth; also X-App-Id)"),
    ),
    request_body = EndUserBody,
    responses(
        (status = 200, description = "Updated end-user", body = EndUserObject),
        (status = 409, description = "externalId taken", body = ProblemDetail),
        (status = 429, description = "Rate limited", body = ProblemDetail),
    ))]
pub async fn update_end_user(
    State(state): State<AppState>,
    ctx: Perm<perms::EndUsersWrite>,
    Path(id): Path<String>,
    Json(body): Json<EndUserBody>,
) -> ApiResult<Json<EndUserObject>> {
    let mut eu = load(&state, &ctx, &id).await?;
    if let Some(v) = body.name {
        eu.name = v;
    }
    if let Some(v) = body.email {
        eu.email = v.map(|e| e.trim().to_owned());
    }
    if let Some(v) = body.external_id {
        eu.external_id = v;
    }
    if let Some(m) = body.metadata {
        eu.metadata = Some(Value::Object(m).to_string());
    }
    eu.updated_at = now_ms();
    let mut conn = state.db.conn().await?;
    match store::update(&mut conn, &eu).await {
        Err(e) if e.is_conflict_on("external") => return Err(external_id_taken()),
        Ok(false) => return Err(ApiError::not_found("end-user")),
        other => {
            other?;
        }
    }
    Ok(Json(EndUserObject::from(eu)))
}

/// Delete an end-user.
#[utoipa::path(delete, path = "/api/end-users/{id}", tag = "End Users", operation_id = "deleteEndUser",
    params(("id" = String, Path, description = "End-user id (eu_…)"),
        ("X-Org-Id" = Option<String>, Header, description = "Organization id (session auth)"),
        ("X-Application-Id" = Option<String>, Header, description = "Application id (session auth; also X-App-Id)"),
    ),
    responses(
        (status = 204, description = "End-user deleted"),
        (status = 429, description = "Rate limited", body = ProblemDetail),
    ))]
pub async fn delete_end_user(
    State(state): State<AppState>,
    ctx: Perm<perms::EndUsersWrite>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let mut conn = state.db.conn().await?;
    if !store::delete(&mut conn, ctx.org_id()?, ctx.app_id()?, &id).await? {
        return Err(ApiError::not_found("end-user"));
    }
    Ok(StatusCode::NO_CONTENT)
}
