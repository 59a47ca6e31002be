use super::*;
use corral_store::integration_governance as gov;

// ---------------------------------------------------------------- member pins
//
// `/api/me/integration-pins`: the caller's own choice of connection for an
// (agent, integration). It beats the application's (non-enforced) default and the
// newest-connection fallback, and loses to admin pins, an enforced default and a
// run's `connection_overrides`.

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MyPinsQuery {
    /// The agent package (`@scope/name`).
    pub agent_package_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MyPinItem {
    pub integration_package_id: String,
    pub connection_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MyPinList {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<MyPinItem>,
    pub has_more: bool,
}

/// A member's pins (end users have none).
fn member_owner(ctx: &Ctx) -> Option<Actor> {
    let actor = ctx.actor();
    (actor.owner_type == "user").then_some(actor)
}

/// The caller's pins for an agent.
#[utoipa::path(get, path = "/api/me/integration-pins", tag = "Integrations", operation_id = "listMyIntegrationPins",
    params(MyPinsQuery),
    responses((status = 200, description = "Member pins for the agent", body = MyPinList)))]
pub async fn list_my_pins(
    State(state): State<AppState>,
    ctx: Perm<perms::ConnectionsRead>,
    Query(q): Query<MyPinsQuery>,
) -> ApiResult<Json<MyPinList>> {
    let agent = governance::agent_of(&state, &ctx, &q.agent_package_id).await?;
    let data = match member_owner(&ctx) {
        None => Vec::new(),
        Some(actor) => {
            let mut conn = state.db.conn().await?;
            gov::pins(
                &mut conn,
                ctx.app_id()?,
                None,
                Some(&agent),
                Some((actor.owner_type, &actor.owner_id)),
            )
            .await?
            .into_iter()
            .map(|p| MyPinItem {
                integration_package_id: p.package_id,
                connection_id: p.connection_id,
            })
            .collect()
        }
    };
    Ok(Json(MyPinList {
        object: "list",
        data,
        has_more: false,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MyPinBody {
    pub agent_package_id: String,
    pub integration_package_id: String,
    /// One of the caller's usable connections (own or org-shared) to the integration.
    pub connection_id: String,
}

/// Pin a connection for the caller's runs of an agent (replaces their previous pin).
#[utoipa::path(put, path = "/api/me/integration-pins", tag = "Integrations", operation_id = "upsertMyIntegrationPin",
    request_body = MyPinBody,
    responses((status = 200, description = "Member pin set", body = IntegrationPin),
              (status = 400, description = "The connection is not one the caller may use for this integration", body = crate::error::ProblemDetail)))]
pub async fn put_my_pin(
    State(state): State<AppState>,
    ctx: Perm<perms::ConnectionsWrite>,
    Json(body): Json<MyPinBody>,
) -> ApiResult<Json<IntegrationPin>> {
    let Some(actor) = member_owner(&ctx) else {
        return Err(ApiError::forbidden("end users cannot pin connections"));
    };
    load(&state, &ctx, &body.integration_package_id).await?;
    let agent = governance::agent_of(&state, &ctx, &body.agent_package_id).await?;
    let app = ctx.app_id()?;
    let mut conn = state.db.conn().await?;
    let usable = store::usable(
        &mut conn,
        app,
        Some(&body.integration_package_id),
        actor.owner_type,
        &actor.owner_id,
        actor.include_shared,
    )
    .await?;
    if !usable.iter().any(|c| c.id == body.connection_id) {
        return Err(bad(
            "connection_id",
            "not_accessible",
            format!(
                "connection {} is not one of your usable connections to {}",
                body.connection_id, body.integration_package_id
            ),
        ));
    }
    let key = gov::PinKey {
        app,
        agent_id: &agent,
        package_id: &body.integration_package_id,
        owner_type: actor.owner_type,
        owner_id: &actor.owner_id,
    };
    gov::set_pin(&mut conn, &key, &body.connection_id, now_ms()).await?;
    let pin = gov::pin(&mut conn, &key)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("pin vanished after write")))?;
    Ok(Json(pin.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteMyPinQuery {
    pub agent_package_id: String,
    pub integration_package_id: String,
}

/// Clear the caller's pin on an (agent, integration) (idempotent).
#[utoipa::path(delete, path = "/api/me/integration-pins", tag = "Integrations", operation_id = "deleteMyIntegrationPin",
    params(DeleteMyPinQuery),
    responses((status = 204, description = "Pin cleared (or never existed)")))]
pub async fn delete_my_pin(
    State(state): State<AppState>,
    ctx: Perm<perms::ConnectionsWrite>,
    Query(q): Query<DeleteMyPinQuery>,
) -> ApiResult<StatusCode> {
    if let Some(actor) = member_owner(&ctx) {
        let mut conn = state.db.conn().await?;
        gov::delete_pin(
            &mut conn,
            &gov::PinKey {
                app: ctx.app_id()?,
                agent_id: &q.agent_package_id,
                package_id: &q.integration_package_id,
                owner_type: actor.owner_type,
                owner_id: &actor.owner_id,
            },
        )
        .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
