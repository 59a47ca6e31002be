//! The signed-in user: their organizations, profile and password; and profile look-ups
//! of fellow members.

use axum::extract::State;
use corral_core::time::now_ms;
use corral_core::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::Ctx;
use crate::error::{ApiError, ApiResult, FieldError, ProblemDetail};
use crate::json::{check, Json, Validate};
use crate::routes::orgs::Organization;
use crate::routes::ListOf;
use crate::state::AppState;

pub fn user_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_orgs))
        .routes(routes!(get_profile, update_profile))
        .routes(routes!(set_password))
}

pub fn org_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(batch_profiles))
}

/// Organizations of the signed-in user.
#[utoipa::path(get, path = "/api/me/orgs", tag = "Profile", operation_id = "listMyOrgs",
    responses(
        (status = 200, description = "Organization list", body = ListOf<Organization>),
    ))]
pub async fn my_orgs(state: State<AppState>, ctx: Ctx) -> ApiResult<Json<ListOf<Organization>>> {
    crate::routes::orgs::list_orgs(state, ctx).await
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    pub id: String,
    pub display_name: Option<String>,
    #[schema(value_type = String, pattern = "^(fr|en)$")]
    pub language: String,
    #[schema(format = Email)]
    pub email: String,
    pub name: String,
}

impl From<corral_store::users::User> for UserProfile {
    fn from(u: corral_store::users::User) -> UserProfile {
        UserProfile {
            id: u.id,
            display_name: u.display_name,
            language: u.language,
            email: u.email,
            name: u.name,
        }
    }
}

/// The signed-in user's profile.
#[utoipa::path(get, path = "/api/profile", tag = "Profile", operation_id = "getProfile",
    responses(
        (status = 200, description = "Profile", body = UserProfile),
        (status = 403, description = "Not a user session", body = ProblemDetail),
    ))]
pub async fn get_profile(State(state): State<AppState>, ctx: Ctx) -> ApiResult<Json<UserProfile>> {
    let user = ctx.user()?;
    let mut conn = state.db.conn().await?;
    let u = corral_store::users::by_id(&mut conn, &user.user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(UserProfile::from(u)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateProfileBody {
    #[schema(min_length = 1, max_length = 100)]
    pub display_name: Option<String>,
    #[schema(value_type = Option<String>, pattern = "^(fr|en)$")]
    pub language: Option<String>,
}

impl Validate for UpdateProfileBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if let Some(d) = &self.display_name {
            check::len(&mut e, "displayName", d.trim(), 1, 100);
        }
        if let Some(l) = &self.language {
            check::one_of(&mut e, "language", l, &["fr", "en"]);
        }
        e
    }
}

/// Update display name and/or language.
#[utoipa::path(patch, path = "/api/profile", tag = "Profile", operation_id = "updateProfile",
    request_body = UpdateProfileBody,
    responses(
        (status = 200, description = "Updated profile", body = UserProfile),
        (status = 403, description = "Not a user session", body = ProblemDetail),
    ))]
pub async fn update_profile(
    State(state): State<AppState>,
    ctx: Ctx,
    Json(body): Json<UpdateProfileBody>,
) -> ApiResult<Json<UserProfile>> {
    let user = ctx.user()?;
    let mut conn = state.db.conn().await?;
    let u = corral_store::users::update_profile(
        &mut conn,
        &user.user_id,
        body.display_name.as_deref().map(str::trim),
        body.language.as_deref(),
        now_ms(),
    )
    .await?
    .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(UserProfile::from(u)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetPasswordBody {
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

impl Validate for SetPasswordBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check::len(&mut e, "newPassword", &self.new_password, 8, 128);
        e
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    pub status: bool,
}

/// Set a password on an account that has none (one created without a password).
/// An account that already has a password gets 409 `password_already_set`.
#[utoipa::path(post, path = "/api/profile/password", tag = "Profile", operation_id = "setProfilePassword",
    request_body = SetPasswordBody,
    responses(
        (status = 200, description = "Password set", body = StatusResponse),
        (status = 403, description = "Not a user session", body = ProblemDetail),
        (status = 409, description = "A password is already set", body = ProblemDetail),
    ))]
pub async fn set_password(
    State(state): State<AppState>,
    ctx: Ctx,
    Json(body): Json<SetPasswordBody>,
) -> ApiResult<Json<StatusResponse>> {
    let user = ctx.user()?;
    let mut conn = state.db.conn().await?;
    let u = corral_store::users::by_id(&mut conn, &user.user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    if !u.password_hash.is_empty() {
        return Err(ApiError::new(
            ErrorCode::PasswordAlreadySet,
            "this account already has a password",
        ));
    }
    drop(conn);
    let hash = crate::auth::password::hash(body.new_password).await?;
    let mut tx = state.db.begin().await?;
    corral_store::users::set_password(&mut tx, &user.user_id, &hash, now_ms()).await?;
    corral_store::sessions::delete_others(&mut tx, &user.user_id, &user.session_id).await?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    state
        .runs
        .bus
        .revoke(corral_realtime::Revocation::UserSessions {
            user: user.user_id.clone(),
            except: Some(user.session_id.clone()),
        })
        .await;
    Ok(Json(StatusResponse { status: true }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchProfilesBody {
    #[schema(max_items = 100)]
    pub ids: Vec<String>,
}

impl Validate for BatchProfilesBody {
    fn validate(&self) -> Vec<FieldError> {
        if self.ids.len() > 100 {
            vec![FieldError::new("ids", "too_many", "at most 100 ids")]
        } else {
            Vec::new()
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileBatchItem {
    pub id: String,
    pub display_name: Option<String>,
}

/// Display names of members of the current organization.
#[utoipa::path(post, path = "/api/profiles/batch", tag = "Profile", operation_id = "batchGetProfiles",
    request_body = BatchProfilesBody,
    params(("X-Org-Id" = Option<String>, Header, description = "Organization id (session auth)")),
    responses(
        (status = 200, description = "Profiles", body = ListOf<ProfileBatchItem>),
    ))]
pub async fn batch_profiles(
    State(state): State<AppState>,
    ctx: Ctx,
    Json(body): Json<BatchProfilesBody>,
) -> ApiResult<Json<ListOf<ProfileBatchItem>>> {
    let mut conn = state.db.conn().await?;
    let found = corral_store::users::profiles_in_org(&mut conn, ctx.org_id()?, &body.ids).await?;
    Ok(Json(ListOf::all(
        found
            .into_iter()
            .map(|p| ProfileBatchItem {
                id: p.id,
                display_name: Some(p.display_name.unwrap_or(p.name)),
            })
            .collect(),
    )))
}
