//! Organizations (`/api/orgs…`): create/list for the signed-in user; detail, update,
//! delete, members, invitations and settings under `{orgId}`; and the invitation
//! links (`/invite/{token}/…`). Who may manage whom: owners manage any non-owner,
//! admins manage members and viewers; nobody changes or removes the owner here.

mod invitations;
mod members;
mod settings;

pub use invitations::*;
pub use members::*;
pub use settings::*;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use corral_core::time::{now_ms, DAY_MS};
use corral_core::{AppId, ErrorCode, OrgId, Role};
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
            id: o.id.into(),
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
        (status = 403, description = "Not a user session", body = ProblemDetail),
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

pub(crate) fn slugify(name: &str) -> String {
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
    ))]
pub async fn create_org(
    State(state): State<AppState>,
    ctx: Ctx,
    Json(body): Json<CreateOrgBody>,
) -> ApiResult<(StatusCode, Json<Organization>)> {
    let user = ctx.user()?;
    let name = body.name.trim();
    let id = OrgId::generate();
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
                default_app_id: &AppId::generate(),
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
                        id: id.into(),
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
    org_id: &OrgId,
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
        id: org.id.into(),
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
    ))]
pub async fn delete_org(
    State(state): State<AppState>,
    ctx: Perm<perms::OrgsDelete>,
) -> ApiResult<StatusCode> {
    let org_id = ctx.org_id()?;
    let mut tx = state.db.begin().await?;
    // The organization's documents and uploads go with it; their blobs go through
    // the storage-deletion outbox, queued in the same transaction.
    let keys = corral_store::storage_deletions::keys_of_org(&mut tx, org_id.as_str()).await?;
    if !corral_store::orgs::delete(&mut tx, org_id).await? {
        return Err(ApiError::not_found("organization"));
    }
    corral_store::storage_deletions::enqueue_all(
        &mut tx,
        &keys,
        corral_store::storage_deletions::reasons::ORG_DELETED,
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
        .revoke(corral_realtime::Revocation::Org {
            org: org_id.clone(),
        })
        .await;
    tracing::info!(org_id = %org_id, "organization deleted");
    Ok(StatusCode::NO_CONTENT)
}
