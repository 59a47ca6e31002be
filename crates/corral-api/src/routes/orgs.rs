//! Organizations (`/api/orgs…`): create/list for the signed-in user; detail, update,
//! delete, members, invitations and settings under `{orgId}`; and the invitation
//! links (`/invite/{token}/…`). Who may manage whom: owners manage any non-owner,
//! admins manage members and viewers; nobody changes or removes the owner here.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use corral_core::time::{now_ms, DAY_MS};
use corral_core::{ErrorCode, Role};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Ctx, Perm, CURRENT_API_VERSION};
use crate::error::{ApiError, ApiResult, FieldError, ProblemDetail};
use crate::json::{check, Json, Validate};
use crate::routes::{rfc3339, ListOf};
use crate::state::AppState;

const INVITATION_TTL_MS: i64 = 7 * DAY_MS;

/// Routes for a signed-in user, no org context.
pub fn user_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orgs, create_org))
        .routes(routes!(accept_invitation))
}

/// Routes under `/api/orgs/{orgId}`.
pub fn org_path_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_org, update_org, delete_org))
        .routes(routes!(invite_member))
        .routes(routes!(change_member_role, remove_member))
        .routes(routes!(change_invitation_role, cancel_invitation))
        .routes(routes!(get_settings, update_settings))
}

/// Unauthenticated routes.
pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(invitation_info))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub slug: String,
    #[schema(value_type = String, pattern = "^(owner|admin|member|viewer)$")]
    pub role: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<corral_store::orgs::OrgWithRole> for Organization {
    fn from(o: corral_store::orgs::OrgWithRole) -> Organization {
        Organization {
            id: o.id,
            name: o.name,
            slug: o.slug,
            role: o.role,
            created_at: rfc3339(o.created_at),
        }
    }
}

/// List the organizations the signed-in user belongs to.
#[utoipa::path(get, path = "/api/orgs", tag = "Organizations", operation_id = "listOrganizations",
    responses(
        (status = 200, description = "Organization list", body = ListOf<Organization>),
        (status = 401, description = "Unauthorized", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 403, description = "Not a user session", body = ProblemDetail, content_type = "application/problem+json"),
    ))]
pub async fn list_orgs(
    State(state): State<AppState>,
    ctx: Ctx,
) -> ApiResult<Json<ListOf<Organization>>> {
    let user = ctx.user()?;
    let mut conn = state.db.conn().await?;
    let orgs = corral_store::orgs::list_for_user(&mut conn, &user.user_id).await?;
    Ok(Json(ListOf::all(
        orgs.into_iter().map(Organization::from).collect(),
    )))
}

fn valid_slug(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Slugs an org may not take: they are scopes of system packages.
fn reserved_slug(s: &str) -> bool {
    s == corral_engine::packages::system::SYSTEM_SCOPE
}

fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out: String = out.trim_matches('-').chars().take(40).collect();
    let out = out.trim_matches('-').to_owned();
    if out.is_empty() {
        "org".to_owned()
    } else if reserved_slug(&out) {
        format!("{out}-org")
    } else {
        out
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgBody {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")]
    pub slug: Option<String>,
}

impl Validate for CreateOrgBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check::len(&mut e, "name", self.name.trim(), 1, 100);
        if let Some(slug) = &self.slug {
            if !valid_slug(slug) {
                e.push(FieldError::new(
                    "slug",
                    "invalid_format",
                    "must be lowercase letters, digits and inner hyphens (at most 63)",
                ));
            } else if reserved_slug(slug) {
                e.push(FieldError::new("slug", "reserved", "this slug is reserved"));
            }
        }
        e
    }
}

/// Create an organization; the caller becomes its owner and a default application is created.
#[utoipa::path(post, path = "/api/orgs", tag = "Organizations", operation_id = "createOrganization",
    request_body = CreateOrgBody,
    responses(
        (status = 201, description = "Organization created", body = Organization),
        (status = 400, description = "Validation error", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 403, description = "Forbidden", body = ProblemDetail, content_type = "application/problem+json"),
    ))]
pub async fn create_org(
    State(state): State<AppState>,
    ctx: Ctx,
    Json(body): Json<CreateOrgBody>,
) -> ApiResult<(StatusCode, Json<Organization>)> {
    let user = ctx.user()?;
    let name = body.name.trim();
    let id = corral_core::ids::uuid();
    let now = now_ms();
    let explicit = body.slug.is_some();
    let base = body.slug.clone().unwrap_or_else(|| slugify(name));
    for attempt in 0..5 {
        let slug = if attempt == 0 {
            base.clone()
        } else {
            format!("{base}-{}", &uuid::Uuid::new_v4().simple().to_string()[..6])
        };
        let mut tx = state.db.begin().await?;
        let res = corral_store::orgs::insert_with_owner(
            &mut tx,
            &corral_store::orgs::NewOrg {
                id: &id,
                name,
                slug: &slug,
                api_version: CURRENT_API_VERSION,
                owner_id: &user.user_id,
                default_app_id: &corral_core::ids::prefixed(corral_core::ids::APPLICATION),
                now,
            },
        )
        .await;
        match res {
            Ok(()) => {
                tx.commit().await.map_err(corral_store::StoreError::from)?;
                tracing::info!(org_id = %id, user_id = %user.user_id, "organization created");
                return Ok((
                    StatusCode::CREATED,
                    Json(Organization {
                        id,
                        name: name.to_owned(),
                        slug,
                        role: "owner".into(),
                        created_at: rfc3339(now),
                    }),
                ));
            }
            Err(e) if e.is_conflict_on("slug") => {
                drop(tx);
                if explicit {
                    return Err(ApiError::field(
                        "slug",
                        "taken",
                        "this slug is already taken",
                    ));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::field(
        "slug",
        "taken",
        "could not find a free slug; pass one explicitly",
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Storage {
    pub used_bytes: i64,
    pub limit_bytes: Option<i64>,
    pub effective_limit_bytes: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgMember {
    pub user_id: String,
    pub display_name: Option<String>,
    pub email: String,
    #[schema(value_type = String, pattern = "^(owner|admin|member|viewer)$")]
    pub role: String,
    #[schema(format = DateTime)]
    pub joined_at: String,
}

impl From<corral_store::orgs::Member> for OrgMember {
    fn from(m: corral_store::orgs::Member) -> OrgMember {
        OrgMember {
            user_id: m.user_id,
            display_name: Some(m.display_name.unwrap_or(m.name)),
            email: m.email,
            role: m.role,
            joined_at: rfc3339(m.joined_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgInvitationInfo {
    pub id: String,
    pub email: String,
    #[schema(value_type = String, pattern = "^(admin|member|viewer)$")]
    pub role: String,
    /// The invitation token; share `/invite/{token}` with the invitee.
    pub token: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<corral_store::invitations::Invitation> for OrgInvitationInfo {
    fn from(i: corral_store::invitations::Invitation) -> OrgInvitationInfo {
        OrgInvitationInfo {
            id: i.id,
            email: i.email,
            role: i.role,
            token: i.token,
            expires_at: rfc3339(i.expires_at),
            created_at: rfc3339(i.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgDetail {
    pub id: String,
    pub name: String,
    pub slug: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub storage: Storage,
    pub members: Vec<OrgMember>,
    pub invitations: Vec<OrgInvitationInfo>,
}

async fn org_detail(
    state: &AppState,
    org_id: &str,
    with_invitations: bool,
) -> ApiResult<OrgDetail> {
    let mut conn = state.db.conn().await?;
    let org = corral_store::orgs::by_id(&mut conn, org_id)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    let members = corral_store::orgs::members(&mut conn, org_id).await?;
    let invitations = if with_invitations {
        corral_store::invitations::pending(&mut conn, org_id).await?
    } else {
        Vec::new()
    };
    Ok(OrgDetail {
        id: org.id,
        name: org.name,
        slug: org.slug,
        created_at: rfc3339(org.created_at),
        storage: Storage {
            used_bytes: 0,
            limit_bytes: None,
            effective_limit_bytes: None,
        },
        members: members.into_iter().map(OrgMember::from).collect(),
        invitations: invitations
            .into_iter()
            .map(OrgInvitationInfo::from)
            .collect(),
    })
}

/// Organization detail with members and pending invitations (invitations need `members:write`).
#[utoipa::path(get, path = "/api/orgs/{orgId}", tag = "Organizations", operation_id = "getOrganization",
    params(("orgId" = String, Path, description = "Organization id")),
    responses(
        (status = 200, description = "Organization detail", body = OrgDetail),
        (status = 401, description = "Unauthorized", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 403, description = "Forbidden", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = ProblemDetail, content_type = "application/problem+json"),
    ))]
pub async fn get_org(
    State(state): State<AppState>,
    ctx: Perm<perms::OrgsRead>,
) -> ApiResult<Json<OrgDetail>> {
    let can_see_invites = ctx
        .permissions
        .contains(corral_core::Permission::MembersWrite);
    Ok(Json(
        org_detail(&state, ctx.org_id()?, can_see_invites).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrgBody {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")]
    pub slug: Option<String>,
}

impl Validate for UpdateOrgBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if let Some(n) = &self.name {
            check::len(&mut e, "name", n.trim(), 1, 100);
        }
        if let Some(s) = &self.slug {
            if !valid_slug(s) {
                e.push(FieldError::new(
                    "slug",
                    "invalid_format",
                    "must be lowercase letters, digits and inner hyphens",
                ));
            }
        }
        e
    }
}

/// Update the organization's name and/or slug. Owner only.
#[utoipa::path(put, path = "/api/orgs/{orgId}", tag = "Organizations", operation_id = "updateOrganization",
    params(("orgId" = String, Path, description = "Organization id")),
    request_body = UpdateOrgBody,
    responses(
        (status = 200, description = "Updated organization", body = OrgDetail),
        (status = 400, description = "Validation error", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 403, description = "Forbidden", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = ProblemDetail, content_type = "application/problem+json"),
    ))]
pub async fn update_org(
    State(state): State<AppState>,
    ctx: Perm<perms::OrgsWrite>,
    Json(body): Json<UpdateOrgBody>,
) -> ApiResult<Json<OrgDetail>> {
    let org_id = ctx.org_id()?;
    let mut conn = state.db.conn().await?;
    let res = corral_store::orgs::update(
        &mut conn,
        org_id,
        body.name.as_deref().map(str::trim),
        body.slug.as_deref(),
        now_ms(),
    )
    .await;
    match res {
        Err(e) if e.is_conflict_on("slug") => {
            return Err(ApiError::field(
                "slug",
                "taken",
                "this slug is already taken",
            ))
        }
        other => other?,
    }
    drop(conn);
    Ok(Json(org_detail(&state, org_id, true).await?))
}

/// Delete the organization and everything in it. Owner only.
#[utoipa::path(delete, path = "/api/orgs/{orgId}", tag = "Organizations", operation_id = "deleteOrganization",
    params(("orgId" = String, Path, description = "Organization id")),
    responses(
        (status = 204, description = "Organization deleted"),
        (status = 401, description = "Unauthorized", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 403, description = "Forbidden", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = ProblemDetail, content_type = "application/problem+json"),
    ))]
pub async fn delete_org(
    State(state): State<AppState>,
    ctx: Perm<perms::OrgsDelete>,
) -> ApiResult<StatusCode> {
    let org_id = ctx.org_id()?;
    let mut tx = state.db.begin().await?;
    if !corral_store::orgs::delete(&mut tx, org_id).await? {
        return Err(ApiError::not_found("organization"));
    }
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    tracing::info!(org_id = %org_id, "organization deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// May `actor` change someone whose role is `target`, to `new` (if given)?
fn may_manage(actor: Option<Role>, target: Role, new: Option<Role>) -> ApiResult<()> {
    let Some(actor) = actor else {
        return Err(ApiError::forbidden(
            "members are managed by signed-in users",
        ));
    };
    let ceiling = match actor {
        Role::Owner => Role::Admin,
        Role::Admin => Role::Member,
        _ => return Err(ApiError::forbidden("only owners and admins manage members")),
    };
    if target == Role::Owner {
        return Err(ApiError::forbidden(
            "the owner cannot be changed or removed",
        ));
    }
    if target > ceiling || new.is_some_and(|n| n > ceiling) {
        return Err(ApiError::forbidden(format!(
            "a {} cannot manage or grant that role",
            actor.as_str()
        )));
    }
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    #[schema(format = Email)]
    pub email: String,
    #[schema(value_type = Option<String>, pattern = "^(admin|member|viewer)$")]
    #[serde(default = "default_member")]
    pub role: String,
}

fn default_member() -> String {
    "member".into()
}

const INVITABLE: &[&str] = &["admin", "member", "viewer"];

impl Validate for InviteBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check::email(&mut e, "email", self.email.trim());
        check::one_of(&mut e, "role", &self.role, INVITABLE);
        e
    }
}

/// Invite someone by email. The returned token is the invitation link's secret.
#[utoipa::path(post, path = "/api/orgs/{orgId}/members", tag = "Organizations", operation_id = "inviteMember",
    params(("orgId" = String, Path, description = "Organization id")),
    request_body = InviteBody,
    responses(
        (status = 201, description = "Invitation created", body = OrgInvitationInfo),
        (status = 400, description = "Validation error", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 403, description = "Forbidden", body = ProblemDetail, content_type = "application/problem+json"),
    ))]
pub async fn invite_member(
    State(state): State<AppState>,
    ctx: Perm<perms::MembersWrite>,
    Json(body): Json<InviteBody>,
) -> ApiResult<(StatusCode, Json<OrgInvitationInfo>)> {
    let org_id = ctx.org_id()?.to_owned();
    let role = Role::parse(&body.role)
        .ok_or_else(|| ApiError::field("role", "invalid_enum", "unknown role"))?;
    may_manage(ctx.role(), Role::Viewer, Some(role))?;
    let email = body.email.trim().to_lowercase();
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    if let Some(user) = corral_store::users::by_email(&mut tx, &email).await? {
        if corral_store::orgs::member(&mut tx, &org_id, &user.id)
            .await?
            .is_some()
        {
            return Err(ApiError::field(
                "email",
                "already_member",
                "this person is already a member",
            ));
        }
    }
    // Inviting again replaces the pending invitation (new token, new expiry).
    if let Some(old) =
        corral_store::invitations::pending_for_email(&mut tx, &org_id, &email).await?
    {
        corral_store::invitations::delete(&mut tx, &org_id, &old.id).await?;
    }
    let inv = corral_store::invitations::Invitation {
        id: corral_core::ids::prefixed(corral_core::ids::INVITATION),
        org_id,
        email,
        role: role.as_str().to_owned(),
        token: crate::auth::session::new_token(),
        inviter_id: ctx.principal.actor_user_id().map(str::to_owned),
        expires_at: now + INVITATION_TTL_MS,
        accepted_at: None,
        created_at: now,
    };
    corral_store::invitations::insert(&mut tx, &inv).await?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    Ok((StatusCode::CREATED, Json(OrgInvitationInfo::from(inv))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    #[schema(value_type = String, pattern = "^(admin|member|viewer)$")]
    pub role: String,
}

impl Validate for RoleBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check::one_of(&mut e, "role", &self.role, INVITABLE);
        e
    }
}

/// Change a member's role.
#[utoipa::path(put, path = "/api/orgs/{orgId}/members/{userId}", tag = "Organizations", operation_id = "changeMemberRole",
    params(("orgId" = String, Path, description = "Organization id"), ("userId" = String, Path, description = "User id")),
    request_body = RoleBody,
    responses(
        (status = 200, description = "Updated member", body = OrgMember),
        (status = 400, description = "Validation error", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 403, description = "Forbidden", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = ProblemDetail, content_type = "application/problem+json"),
    ))]
pub async fn change_member_role(
    State(state): State<AppState>,
    ctx: Perm<perms::MembersWrite>,
    Path((_org, user_id)): Path<(String, String)>,
    Json(body): Json<RoleBody>,
) -> ApiResult<Json<OrgMember>> {
    let org_id = ctx.org_id()?;
    let new = Role::parse(&body.role)
        .ok_or_else(|| ApiError::field("role", "invalid_enum", "unknown role"))?;
    let mut tx = state.db.begin().await?;
    let member = corral_store::orgs::member(&mut tx, org_id, &user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    let target = Role::parse(&member.role).unwrap_or(Role::Viewer);
    may_manage(ctx.role(), target, Some(new))?;
    corral_store::orgs::set_member_role(&mut tx, org_id, &user_id, new.as_str()).await?;
    let member = corral_store::orgs::member(&mut tx, org_id, &user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    Ok(Json(OrgMember::from(member)))
}

/// Remove a member (anyone but the owner may also remove themself: leaving).
#[utoipa::path(delete, path = "/api/orgs/{orgId}/members/{userId}", tag = "Organizations", operation_id = "removeMember",
    params(("orgId" = String, Path, description = "Organization id"), ("userId" = String, Path, description = "User id")),
    responses(
        (status = 204, description = "Member removed"),
        (status = 401, description = "Unauthorized", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 403, description = "Forbidden", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = ProblemDetail, content_type = "application/problem+json"),
    ))]
pub async fn remove_member(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((_org, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let org_id = ctx.org_id()?;
    let mut conn = state.db.conn().await?;
    let member = corral_store::orgs::member(&mut conn, org_id, &user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    let target = Role::parse(&member.role).unwrap_or(Role::Viewer);
    let leaving = ctx.principal.user().is_some_and(|u| u.user_id == user_id);
    if leaving {
        if target == Role::Owner {
            return Err(ApiError::forbidden(
                "the owner cannot leave; delete the organization instead",
            ));
        }
    } else {
        ctx.require(corral_core::Permission::MembersWrite)?;
        may_manage(ctx.role(), target, None)?;
    }
    corral_store::orgs::remove_member(&mut conn, org_id, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the role a pending invitation grants.
#[utoipa::path(put, path = "/api/orgs/{orgId}/invitations/{invitationId}", tag = "Organizations", operation_id = "changeInvitationRole",
    params(("orgId" = String, Path, description = "Organization id"), ("invitationId" = String, Path, description = "Invitation id")),
    request_body = RoleBody,
    responses(
        (status = 200, description = "Updated invitation", body = OrgInvitationInfo),
        (status = 400, description = "Validation error", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 403, description = "Forbidden", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = ProblemDetail, content_type = "application/problem+json"),
    ))]
pub async fn change_invitation_role(
    State(state): State<AppState>,
    ctx: Perm<perms::MembersWrite>,
    Path((_org, invitation_id)): Path<(String, String)>,
    Json(body): Json<RoleBody>,
) -> ApiResult<Json<OrgInvitationInfo>> {
    let org_id = ctx.org_id()?;
    let new = Role::parse(&body.role)
        .ok_or_else(|| ApiError::field("role", "invalid_enum", "unknown role"))?;
    let mut conn = state.db.conn().await?;
    let inv = corral_store::invitations::get(&mut conn, org_id, &invitation_id)
        .await?
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    may_manage(
        ctx.role(),
        Role::parse(&inv.role).unwrap_or(Role::Viewer),
        Some(new),
    )?;
    corral_store::invitations::set_role(&mut conn, org_id, &invitation_id, new.as_str()).await?;
    let inv = corral_store::invitations::get(&mut conn, org_id, &invitation_id)
        .await?
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    Ok(Json(OrgInvitationInfo::from(inv)))
}

/// Cancel a pending invitation.
#[utoipa::path(delete, path = "/api/orgs/{orgId}/invitations/{invitationId}", tag = "Organizations", operation_id = "cancelInvitation",
    params(("orgId" = String, Path, description = "Organization id"), ("invitationId" = String, Path, description = "Invitation id")),
    responses(
        (status = 204, description = "Invitation cancelled"),
        (status = 401, description = "Unauthorized", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 403, description = "Forbidden", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = ProblemDetail, content_type = "application/problem+json"),
    ))]
pub async fn cancel_invitation(
    State(state): State<AppState>,
    ctx: Perm<perms::MembersWrite>,
    Path((_org, invitation_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let org_id = ctx.org_id()?;
    let mut conn = state.db.conn().await?;
    let inv = corral_store::invitations::get(&mut conn, org_id, &invitation_id)
        .await?
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    may_manage(
        ctx.role(),
        Role::parse(&inv.role).unwrap_or(Role::Viewer),
        None,
    )?;
    corral_store::invitations::delete(&mut conn, org_id, &invitation_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgSettings {
    /// Pinned API version (YYYY-MM-DD).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard_sso_enabled: Option<bool>,
}

impl Validate for OrgSettings {}

async fn read_settings(state: &AppState, org_id: &str) -> ApiResult<OrgSettings> {
    let mut conn = state.db.conn().await?;
    let org = corral_store::orgs::by_id(&mut conn, org_id)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    let s = org.settings_json();
    Ok(OrgSettings {
        api_version: Some(org.api_version),
        dashboard_sso_enabled: Some(
            s.get("dashboard_sso_enabled")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
    })
}

/// Organization settings.
#[utoipa::path(get, path = "/api/orgs/{orgId}/settings", tag = "Organizations", operation_id = "getOrgSettings",
    params(("orgId" = String, Path, description = "Organization id")),
    responses(
        (status = 200, description = "Organization settings", body = OrgSettings),
        (status = 401, description = "Unauthorized", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 403, description = "Forbidden", body = ProblemDetail, content_type = "application/problem+json"),
    ))]
pub async fn get_settings(
    State(state): State<AppState>,
    ctx: Perm<perms::OrgsRead>,
) -> ApiResult<Json<OrgSettings>> {
    Ok(Json(read_settings(&state, ctx.org_id()?).await?))
}

/// Update organization settings (merge: only given fields change).
#[utoipa::path(put, path = "/api/orgs/{orgId}/settings", tag = "Organizations", operation_id = "updateOrgSettings",
    params(("orgId" = String, Path, description = "Organization id")),
    request_body = OrgSettings,
    responses(
        (status = 200, description = "Settings updated", body = OrgSettings),
        (status = 400, description = "Validation error", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 403, description = "Forbidden", body = ProblemDetail, content_type = "application/problem+json"),
    ))]
pub async fn update_settings(
    State(state): State<AppState>,
    ctx: Perm<perms::OrgsWrite>,
    Json(body): Json<OrgSettings>,
) -> ApiResult<Json<OrgSettings>> {
    let org_id = ctx.org_id()?;
    let mut tx = state.db.begin().await?;
    let org = corral_store::orgs::by_id(&mut tx, org_id)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    let mut settings = match org.settings_json() {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let api_version = match body.api_version {
        Some(v) if crate::context::is_supported_version(&v) => v,
        Some(v) => {
            let mut e = ApiError::new(
                ErrorCode::UnsupportedApiVersion,
                format!("API version {v:?} is not supported"),
            );
            e.param = Some("api_version".into());
            return Err(e);
        }
        None => org.api_version,
    };
    if let Some(sso) = body.dashboard_sso_enabled {
        settings.insert("dashboard_sso_enabled".into(), Value::Bool(sso));
    }
    corral_store::orgs::set_settings(
        &mut tx,
        org_id,
        &Value::Object(settings),
        &api_version,
        now_ms(),
    )
    .await?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    Ok(Json(read_settings(&state, org_id).await?))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationInfo {
    #[serde(rename = "email")]
    pub email: String,
    #[serde(rename = "org_name")]
    pub org_name: String,
    #[schema(value_type = String)]
    pub role: String,
    #[serde(rename = "inviter_name")]
    pub inviter_name: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[serde(rename = "is_new_user")]
    pub is_new_user: bool,
}

async fn live_invitation(
    state: &AppState,
    token: &str,
) -> ApiResult<corral_store::invitations::Invitation> {
    let mut conn = state.db.conn().await?;
    let inv = corral_store::invitations::by_token(&mut conn, token)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "invitation not found"))?;
    if inv.accepted_at.is_some() {
        return Err(ApiError::new(
            ErrorCode::InvitationAccepted,
            "this invitation was already accepted",
        ));
    }
    if inv.expires_at <= now_ms() {
        return Err(ApiError::new(
            ErrorCode::InvitationExpired,
            "this invitation has expired",
        ));
    }
    Ok(inv)
}

/// What an invitation link is for (no authentication needed).
#[utoipa::path(get, path = "/invite/{token}/info", tag = "Organizations", operation_id = "getInvitationInfo",
    security(()),
    params(("token" = String, Path, description = "Invitation token")),
    responses(
        (status = 200, description = "Invitation details", body = InvitationInfo),
        (status = 404, description = "Not found", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 410, description = "Expired or already accepted", body = ProblemDetail, content_type = "application/problem+json"),
    ))]
pub async fn invitation_info(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<Json<InvitationInfo>> {
    let inv = live_invitation(&state, &token).await?;
    let mut conn = state.db.conn().await?;
    let org = corral_store::orgs::by_id(&mut conn, &inv.org_id)
        .await?
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    let inviter = match &inv.inviter_id {
        Some(id) => corral_store::users::by_id(&mut conn, id).await?,
        None => None,
    };
    let is_new_user = corral_store::users::by_email(&mut conn, &inv.email)
        .await?
        .is_none();
    Ok(Json(InvitationInfo {
        email: inv.email,
        org_name: org.name,
        role: inv.role,
        inviter_name: inviter
            .map(|u| u.display_name.unwrap_or(u.name))
            .unwrap_or_default(),
        expires_at: rfc3339(inv.expires_at),
        is_new_user,
    }))
}

/// Accept an invitation as the signed-in user (whose email must match it).
#[utoipa::path(post, path = "/invite/{token}/accept", tag = "Organizations", operation_id = "acceptInvitation",
    params(("token" = String, Path, description = "Invitation token")),
    responses(
        (status = 200, description = "Joined the organization", body = Organization),
        (status = 401, description = "Unauthorized", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 403, description = "Email mismatch", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = ProblemDetail, content_type = "application/problem+json"),
        (status = 410, description = "Expired or already accepted", body = ProblemDetail, content_type = "application/problem+json"),
    ))]
pub async fn accept_invitation(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(token): Path<String>,
) -> ApiResult<Json<Organization>> {
    let user = ctx.user()?;
    let inv = live_invitation(&state, &token).await?;
    if inv.email != user.email.to_lowercase() {
        return Err(ApiError::forbidden(
            "this invitation was sent to another email address",
        ));
    }
    let mut tx = state.db.begin().await?;
    if corral_store::orgs::member(&mut tx, &inv.org_id, &user.user_id)
        .await?
        .is_none()
        && !corral_store::invitations::accept(&mut tx, &inv, &user.user_id, now_ms()).await?
    {
        return Err(ApiError::new(
            ErrorCode::InvitationAccepted,
            "this invitation was already accepted",
        ));
    }
    let org = corral_store::orgs::for_member(&mut tx, &inv.org_id, &user.user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    Ok(Json(Organization::from(org)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slugify("Acme Corp!"), "acme-corp");
        assert_eq!(slugify("  --  "), "org");
        assert!(valid_slug("a-b1"));
        assert!(!valid_slug("-a"));
        assert!(!valid_slug("A"));
    }

    #[test]
    fn management_rules() {
        assert!(may_manage(Some(Role::Owner), Role::Admin, Some(Role::Member)).is_ok());
        assert!(may_manage(Some(Role::Admin), Role::Member, Some(Role::Viewer)).is_ok());
        assert!(may_manage(Some(Role::Admin), Role::Member, Some(Role::Admin)).is_err());
        assert!(may_manage(Some(Role::Admin), Role::Admin, None).is_err());
        assert!(may_manage(Some(Role::Owner), Role::Owner, None).is_err());
        assert!(may_manage(Some(Role::Member), Role::Viewer, None).is_err());
    }
}
