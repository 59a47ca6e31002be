use super::*;
use corral_core::OrgId;

pub(super) async fn read_settings(state: &AppState, org_id: &OrgId) -> ApiResult<OrgSettings> {
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
