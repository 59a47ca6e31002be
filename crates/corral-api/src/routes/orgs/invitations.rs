use super::*;

pub(super) async fn live_invitation(
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
        (status = 410, description = "Expired or already accepted", body = ProblemDetail),
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
        (status = 403, description = "Email mismatch", body = ProblemDetail),
        (status = 410, description = "Expired or already accepted", body = ProblemDetail),
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
