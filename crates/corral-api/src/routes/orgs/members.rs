use super::*;

/// May `actor` change someone whose role is `target`, to `new` (if given)?
pub(super) fn may_manage(actor: Option<Role>, target: Role, new: Option<Role>) -> ApiResult<()> {
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

pub(super) fn default_member() -> String {
    "member".into()
}

pub(super) const INVITABLE: &[&str] = &["admin", "member", "viewer"];

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

impl RoleBody {
    /// The new role, once the caller may move a holder of `current` to it.
    fn allowed_for(&self, ctx: &Ctx, current: &str) -> ApiResult<Role> {
        let new = Role::parse(&self.role)
            .ok_or_else(|| ApiError::field("role", "invalid_enum", "unknown role"))?;
        may_manage(
            ctx.role(),
            Role::parse(current).unwrap_or(Role::Viewer),
            Some(new),
        )?;
        Ok(new)
    }
}

/// Change a member's role.
#[utoipa::path(put, path = "/api/orgs/{orgId}/members/{userId}", tag = "Organizations", operation_id = "changeMemberRole",
    params(("orgId" = String, Path, description = "Organization id"), ("userId" = String, Path, description = "User id")),
    request_body = RoleBody,
    responses(
        (status = 200, description = "Updated member", body = OrgMember),
    ))]
pub async fn change_member_role(
    State(state): State<AppState>,
    ctx: Perm<perms::MembersWrite>,
    Path((_org, user_id)): Path<(String, String)>,
    Json(body): Json<RoleBody>,
) -> ApiResult<Json<OrgMember>> {
    let org_id = ctx.org_id()?;
    let mut tx = state.db.begin().await?;
    let member = corral_store::orgs::member(&mut tx, org_id, &user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    let new = body.allowed_for(&ctx, &member.role)?;
    corral_store::orgs::set_member_role(&mut tx, org_id, &user_id, new.as_str()).await?;
    let member = corral_store::orgs::member(&mut tx, org_id, &user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    state
        .runs
        .bus
        .revoke(corral_realtime::Revocation::Member {
            org: org_id.clone(),
            user: user_id,
        })
        .await;
    Ok(Json(OrgMember::from(member)))
}

/// Remove a member (anyone but the owner may also remove themself: leaving).
#[utoipa::path(delete, path = "/api/orgs/{orgId}/members/{userId}", tag = "Organizations", operation_id = "removeMember",
    params(("orgId" = String, Path, description = "Organization id"), ("userId" = String, Path, description = "User id")),
    responses(
        (status = 204, description = "Member removed"),
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
    let org = org_id.clone();
    state
        .runs
        .bus
        .revoke(corral_realtime::Revocation::Member { org, user: user_id })
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the role a pending invitation grants.
#[utoipa::path(put, path = "/api/orgs/{orgId}/invitations/{invitationId}", tag = "Organizations", operation_id = "changeInvitationRole",
    params(("orgId" = String, Path, description = "Organization id"), ("invitationId" = String, Path, description = "Invitation id")),
    request_body = RoleBody,
    responses(
        (status = 200, description = "Updated invitation", body = OrgInvitationInfo),
    ))]
pub async fn change_invitation_role(
    State(state): State<AppState>,
    ctx: Perm<perms::MembersWrite>,
    Path((_org, invitation_id)): Path<(String, String)>,
    Json(body): Json<RoleBody>,
) -> ApiResult<Json<OrgInvitationInfo>> {
    let org_id = ctx.org_id()?;
    let mut conn = state.db.conn().await?;
    let inv = corral_store::invitations::get(&mut conn, org_id, &invitation_id)
        .await?
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    let new = body.allowed_for(&ctx, &inv.role)?;
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
