use super::*;
use corral_store::integration_governance as gov;

// ---------------------------------------------------------------- governance
//
// Activation, the `block_user_connections` setting, the application's default
// connection of an integration, pins (admin and member) and the agents that consume
// an integration. The run trigger reads defaults and pins through
// `corral_connect::integrations::resolve` (admin pin > enforced default > override >
// member pin > default > newest usable connection).

/// Activate an integration in the current application (installs it when missing).
#[utoipa::path(post, path = "/api/integrations/{packageId}/activate", tag = "Integrations", operation_id = "activateIntegration",
    params(("packageId" = String, Path, description = "`@scope/name` (literal slash or URL-encoded)")),
    responses((status = 201, description = "Activated — the integration detail", body = IntegrationDetail),
              (status = 409, description = "Not an integration package", body = crate::error::ProblemDetail)))]
pub async fn activate_integration(
    State(state): State<AppState>,
    ctx: Perm<perms::ApplicationsWrite>,
    Path(package_id): Path<String>,
) -> ApiResult<(StatusCode, Json<IntegrationDetail>)> {
    load(&state, &ctx, &package_id).await?;
    let (org, app) = (ctx.org_id()?, ctx.app_id()?);
    let mut conn = state.db.conn().await?;
    if !gov::set_enabled(&mut conn, app, &package_id, true, now_ms()).await? {
        corral_store::app_packages::install(&mut conn, org, app, &package_id, now_ms()).await?;
    }
    drop(conn);
    Ok((
        StatusCode::CREATED,
        Json(detail(&state, &ctx, &package_id).await?),
    ))
}

/// Deactivate an integration in the current application; its settings, default,
/// pins and connections stay (activate turns it back on).
#[utoipa::path(delete, path = "/api/integrations/{packageId}/deactivate", tag = "Integrations", operation_id = "deactivateIntegration",
    params(("packageId" = String, Path, description = "`@scope/name` (literal slash or URL-encoded)")),
    responses((status = 204, description = "Deactivated"),
              (status = 409, description = "Not an integration package", body = crate::error::ProblemDetail)))]
pub async fn deactivate_integration(
    State(state): State<AppState>,
    ctx: Perm<perms::ApplicationsWrite>,
    Path(package_id): Path<String>,
) -> ApiResult<StatusCode> {
    load(&state, &ctx, &package_id).await?;
    let mut conn = state.db.conn().await?;
    gov::set_enabled(&mut conn, ctx.app_id()?, &package_id, false, now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationSettingsBody {
    /// Members (other than admins) may not create their own connections to this
    /// integration in this application: they use the ones admins share.
    pub block_user_connections: bool,
}

/// Toggle the per-(application, integration) `block_user_connections` gate.
#[utoipa::path(patch, path = "/api/integrations/{packageId}/settings", tag = "Integrations", operation_id = "updateIntegrationSettings",
    params(("packageId" = String, Path, description = "`@scope/name` (literal slash or URL-encoded)")),
    request_body = IntegrationSettingsBody,
    responses((status = 200, description = "Updated — the integration detail", body = IntegrationDetail)))]
pub async fn update_integration_settings(
    State(state): State<AppState>,
    ctx: Perm<perms::ApplicationsWrite>,
    Path(package_id): Path<String>,
    Json(body): Json<IntegrationSettingsBody>,
) -> ApiResult<Json<IntegrationDetail>> {
    load(&state, &ctx, &package_id).await?;
    let mut conn = state.db.conn().await?;
    gov::set_block_user_connections(
        &mut conn,
        ctx.app_id()?,
        &package_id,
        body.block_user_connections,
        now_ms(),
    )
    .await?;
    drop(conn);
    Ok(Json(detail(&state, &ctx, &package_id).await?))
}

/// Refuses a member's own new connection when the application blocks them for this
/// integration (admins and end users are not concerned).
pub(super) async fn check_user_connections_allowed(
    state: &AppState,
    ctx: &Ctx,
    package_id: &str,
) -> ApiResult<()> {
    if ctx.end_user_id.is_some()
        || ctx
            .permissions
            .contains(corral_core::Permission::ApplicationsWrite)
    {
        return Ok(());
    }
    let mut conn = state.db.conn().await?;
    if gov::block_user_connections(&mut conn, ctx.app_id()?, package_id).await? {
        return Err(ApiError::forbidden(format!(
            "members' own connections to {package_id} are blocked in this application; use a connection an admin shares"
        )));
    }
    Ok(())
}

// ---- org default --------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationOrgDefault {
    pub integration_package_id: String,
    pub connection_id: String,
    /// The auth of the chosen connection.
    pub auth_key: String,
    pub enforce: bool,
    #[serde(rename = "createdAt")]
    #[schema(format = DateTime)]
    pub created_at: String,
    #[serde(rename = "updatedAt")]
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<gov::OrgDefault> for IntegrationOrgDefault {
    fn from(d: gov::OrgDefault) -> Self {
        IntegrationOrgDefault {
            integration_package_id: d.package_id,
            connection_id: d.connection_id,
            auth_key: d.auth_key,
            enforce: d.enforce,
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
        }
    }
}

/// The application's default connection for this integration; 204 when unset.
#[utoipa::path(get, path = "/api/integrations/{packageId}/default", tag = "Integrations", operation_id = "getIntegrationOrgDefault",
    params(("packageId" = String, Path, description = "`@scope/name` (literal slash or URL-encoded)")),
    responses((status = 200, description = "The default", body = IntegrationOrgDefault),
              (status = 204, description = "No default is set")))]
pub async fn get_integration_default(
    State(state): State<AppState>,
    ctx: Perm<perms::ConnectionsRead>,
    Path(package_id): Path<String>,
) -> ApiResult<Response> {
    load(&state, &ctx, &package_id).await?;
    let mut conn = state.db.conn().await?;
    Ok(
        match gov::org_default(&mut conn, ctx.app_id()?, &package_id).await? {
            Some(d) => Json(IntegrationOrgDefault::from(d)).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        },
    )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgDefaultBody {
    /// A connection of this application to this integration, shared with the org.
    pub connection_id: String,
    /// Lock every member to it (over run overrides and member pins).
    pub enforce: bool,
}

/// A connection an admin may pin or make the default: this application's, for this
/// integration, shared with the organization. Else 400 naming `connection_id`.
async fn shared_connection(
    conn: &mut sqlx::AnyConnection,
    app: &AppId,
    package_id: &str,
    id: &str,
) -> ApiResult<store::Connection> {
    let c = store::connection(conn, id)
        .await?
        .filter(|c| c.application_id == *app && c.package_id == package_id)
        .ok_or_else(|| {
            bad(
                "connection_id",
                "not_found",
                format!("no connection {id} to {package_id} in this application"),
            )
        })?;
    if !c.shared_with_org {
        return Err(bad(
            "connection_id",
            "not_shared",
            "only a connection shared with the organization can be pinned or made the default",
        ));
    }
    Ok(c)
}

/// Set the application's default connection for this integration (one per
/// integration, whatever its auth: a new one replaces the old).
#[utoipa::path(put, path = "/api/integrations/{packageId}/default", tag = "Integrations", operation_id = "upsertIntegrationOrgDefault",
    params(("packageId" = String, Path, description = "`@scope/name` (literal slash or URL-encoded)")),
    request_body = OrgDefaultBody,
    responses((status = 200, description = "Default set", body = IntegrationOrgDefault)))]
pub async fn put_integration_default(
    State(state): State<AppState>,
    ctx: Perm<perms::ApplicationsWrite>,
    Path(package_id): Path<String>,
    Json(body): Json<OrgDefaultBody>,
) -> ApiResult<Json<IntegrationOrgDefault>> {
    load(&state, &ctx, &package_id).await?;
    let app = ctx.app_id()?;
    let mut conn = state.db.conn().await?;
    let c = shared_connection(&mut conn, app, &package_id, &body.connection_id).await?;
    gov::set_org_default(&mut conn, app, &package_id, &c.id, body.enforce, now_ms()).await?;
    let d = gov::org_default(&mut conn, app, &package_id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("default vanished after write")))?;
    Ok(Json(d.into()))
}

/// Remove the application's default connection (idempotent).
#[utoipa::path(delete, path = "/api/integrations/{packageId}/default", tag = "Integrations", operation_id = "deleteIntegrationOrgDefault",
    params(("packageId" = String, Path, description = "`@scope/name` (literal slash or URL-encoded)")),
    responses((status = 204, description = "Default removed")))]
pub async fn delete_integration_default(
    State(state): State<AppState>,
    ctx: Perm<perms::ApplicationsWrite>,
    Path(package_id): Path<String>,
) -> ApiResult<StatusCode> {
    load(&state, &ctx, &package_id).await?;
    let mut conn = state.db.conn().await?;
    gov::delete_org_default(&mut conn, ctx.app_id()?, &package_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- pins ---------------------------------------------------------------------------

/// A connection pinned to (agent, integration).
#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationPin {
    /// The agent package.
    #[serde(rename = "packageId")]
    pub package_id: String,
    pub integration_package_id: String,
    pub auth_key: String,
    pub connection_id: String,
    #[serde(rename = "createdAt")]
    #[schema(format = DateTime)]
    pub created_at: String,
    #[serde(rename = "updatedAt")]
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<gov::Pin> for IntegrationPin {
    fn from(p: gov::Pin) -> Self {
        IntegrationPin {
            package_id: p.agent_id,
            integration_package_id: p.package_id,
            auth_key: p.auth_key,
            connection_id: p.connection_id,
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
        }
    }
}

/// `{object: "list", data, hasMore}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PinList {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<IntegrationPin>,
    pub has_more: bool,
}

/// The agent package a pin names: visible to the org and an agent, else 404.
pub(super) async fn agent_of(state: &AppState, ctx: &Ctx, agent_id: &str) -> ApiResult<String> {
    let mut conn = state.db.conn().await?;
    corral_store::packages::get_visible(&mut conn, ctx.org_id()?, agent_id, Some("agent"))
        .await?
        .map(|p| p.id)
        .ok_or_else(|| {
            let mut e = ApiError::not_found("agent");
            e.param = Some("agentPackageId".into());
            e
        })
}

/// The admin pins of this integration in this application.
#[utoipa::path(get, path = "/api/integrations/{packageId}/pins", tag = "Integrations", operation_id = "listIntegrationPins",
    params(("packageId" = String, Path, description = "`@scope/name` (literal slash or URL-encoded)")),
    responses((status = 200, description = "Pin list", body = PinList)))]
pub async fn list_integration_pins(
    State(state): State<AppState>,
    ctx: Perm<perms::ConnectionsRead>,
    Path(package_id): Path<String>,
) -> ApiResult<Json<PinList>> {
    load(&state, &ctx, &package_id).await?;
    let mut conn = state.db.conn().await?;
    let pins = gov::pins(
        &mut conn,
        ctx.app_id()?,
        Some(&package_id),
        None,
        Some((gov::ADMIN, "")),
    )
    .await?;
    Ok(Json(PinList {
        object: "list",
        data: pins.into_iter().map(Into::into).collect(),
        has_more: false,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinBody {
    /// A connection of this application to this integration, shared with the org.
    pub connection_id: String,
}

/// Pin a shared connection to an agent for every member (admin). It wins over run
/// overrides, member pins and the default.
#[utoipa::path(put, path = "/api/integrations/{packageId}/pins/{agentPackageId}", tag = "Integrations", operation_id = "upsertIntegrationPin",
    params(("packageId" = String, Path, description = "Integration `@scope/name`"), ("agentPackageId" = String, Path, description = "Agent `@scope/name`")),
    request_body = PinBody,
    responses((status = 200, description = "Pinned", body = IntegrationPin)))]
pub async fn put_integration_pin(
    State(state): State<AppState>,
    ctx: Perm<perms::ApplicationsWrite>,
    Path((package_id, agent_package_id)): Path<(String, String)>,
    Json(body): Json<PinBody>,
) -> ApiResult<Json<IntegrationPin>> {
    load(&state, &ctx, &package_id).await?;
    let agent = agent_of(&state, &ctx, &agent_package_id).await?;
    let app = ctx.app_id()?;
    let mut conn = state.db.conn().await?;
    let c = shared_connection(&mut conn, app, &package_id, &body.connection_id).await?;
    let key = gov::PinKey {
        app,
        agent_id: &agent,
        package_id: &package_id,
        owner_type: gov::ADMIN,
        owner_id: "",
    };
    gov::set_pin(&mut conn, &key, &c.id, now_ms()).await?;
    let pin = gov::pin(&mut conn, &key)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("pin vanished after write")))?;
    Ok(Json(pin.into()))
}

/// Remove an admin pin (idempotent).
#[utoipa::path(delete, path = "/api/integrations/{packageId}/pins/{agentPackageId}", tag = "Integrations", operation_id = "deleteIntegrationPin",
    params(("packageId" = String, Path, description = "Integration `@scope/name`"), ("agentPackageId" = String, Path, description = "Agent `@scope/name`")),
    responses((status = 204, description = "Pin removed")))]
pub async fn delete_integration_pin(
    State(state): State<AppState>,
    ctx: Perm<perms::ApplicationsWrite>,
    Path((package_id, agent_package_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    check_package_id(&package_id)?;
    let mut conn = state.db.conn().await?;
    gov::delete_pin(
        &mut conn,
        &gov::PinKey {
            app: ctx.app_id()?,
            agent_id: &agent_package_id,
            package_id: &package_id,
            owner_type: gov::ADMIN,
            owner_id: "",
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- consuming agents ---------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsumingAgent {
    #[serde(rename = "packageId")]
    pub package_id: String,
    pub display_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumingAgentList {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<ConsumingAgent>,
    pub has_more: bool,
}

/// The agents visible to the organization whose dependencies declare this
/// integration.
#[utoipa::path(get, path = "/api/integrations/{packageId}/consuming-agents", tag = "Integrations", operation_id = "listAgentsConsumingIntegration",
    params(("packageId" = String, Path, description = "`@scope/name` (literal slash or URL-encoded)")),
    responses((status = 200, description = "Consuming agents", body = ConsumingAgentList)))]
pub async fn consuming_agents(
    State(state): State<AppState>,
    ctx: Perm<perms::ConnectionsRead>,
    Path(package_id): Path<String>,
) -> ApiResult<Json<ConsumingAgentList>> {
    load(&state, &ctx, &package_id).await?;
    let mut conn = state.db.conn().await?;
    let agents =
        corral_store::packages::list_visible(&mut conn, ctx.org_id()?, Some("agent")).await?;
    let data = agents
        .into_iter()
        .filter(|a| {
            serde_json::from_str::<Value>(&a.draft_manifest).is_ok_and(|m| {
                corral_afps::dependencies(&m)
                    .iter()
                    .any(|(_, n, _)| n.id() == package_id)
            })
        })
        .map(|a| ConsumingAgent {
            display_name: a.display_name.clone().unwrap_or_else(|| a.name.clone()),
            package_id: a.id,
        })
        .collect();
    Ok(Json(ConsumingAgentList {
        object: "list",
        data,
        has_more: false,
    }))
}
