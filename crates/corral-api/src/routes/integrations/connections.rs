use super::*;

// ---------------------------------------------------------------- connections

/// The caller's connections to this integration plus the org-shared ones.
#[utoipa::path(get, path = "/api/integrations/{packageId}/connections", tag = "Integrations", operation_id = "listIntegrationConnections",
    params(("packageId" = String, Path, description = "`@scope/name`, URL-encoded")),
    responses((status = 200, description = "Connection list", body = ListOf<ConnectionView>)))]
pub async fn list_connections(
    State(state): State<AppState>,
    ctx: Perm<perms::ConnectionsRead>,
    Path(package_id): Path<String>,
) -> ApiResult<Json<ListOf<ConnectionView>>> {
    load(&state, &ctx, &package_id).await?;
    let actor = ctx.actor();
    let mut conn = state.db.conn().await?;
    let rows = store::usable(
        &mut conn,
        ctx.app_id()?,
        Some(&package_id),
        actor.owner_type,
        &actor.owner_id,
        actor.include_shared,
    )
    .await?;
    Ok(Json(ListOf::all(
        rows.iter().map(|c| ConnectionView::of(c, &actor)).collect(),
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionMetadataBody {
    /// A label (`null` clears it).
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub label: Option<Option<String>>,
    pub shared_with_org: Option<bool>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Ok(Some(Option::deserialize(d)?))
    }
}

/// Label a connection or share it with the organization (owner only).
#[utoipa::path(patch, path = "/api/integrations/{packageId}/connections/{connectionId}", tag = "Integrations", operation_id = "updateIntegrationConnectionMetadata",
    params(("packageId" = String, Path, description = "`@scope/name`, URL-encoded"), ("connectionId" = String, Path, description = "Connection id")),
    request_body = ConnectionMetadataBody,
    responses((status = 200, description = "Updated", body = ConnectionView)))]
pub async fn update_connection(
    State(state): State<AppState>,
    ctx: Perm<perms::ConnectionsWrite>,
    Path((package_id, connection_id)): Path<(String, String)>,
    Json(body): Json<ConnectionMetadataBody>,
) -> ApiResult<Json<ConnectionView>> {
    check_package_id(&package_id)?;
    if let Some(Some(l)) = &body.label {
        if l.chars().count() > 200 {
            return Err(bad("label", "too_long", "at most 200 characters"));
        }
    }
    let actor = ctx.actor();
    let mut conn = state.db.conn().await?;
    let updated = store::update_metadata(
        &mut conn,
        ctx.app_id()?,
        &package_id,
        &connection_id,
        (actor.owner_type, &actor.owner_id),
        &store::MetadataUpdate {
            label: body.label.as_ref().map(|l| l.as_deref()),
            shared_with_org: body.shared_with_org,
            now: now_ms(),
        },
    )
    .await?;
    if !updated {
        return Err(ApiError::not_found("connection"));
    }
    let c = store::connection(&mut conn, &connection_id)
        .await?
        .ok_or_else(|| ApiError::not_found("connection"))?;
    Ok(Json(ConnectionView::of(&c, &actor)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MyConnection {
    pub connection_id: String,
    /// Always `integration`.
    pub kind: String,
    pub label: Option<String>,
    pub scopes_granted: Vec<String>,
    #[schema(format = DateTime)]
    pub connected_at: String,
    pub needs_reconnection: bool,
    #[serde(rename = "expiresAt")]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    pub identity: String,
    pub reused_by_agents: i64,
    pub auth_key: String,
    pub shared_with_org: bool,
    pub org: IdName,
    pub application: IdName,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdName {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MyConnectionGroup {
    /// Always `integration`.
    pub kind: String,
    pub source_id: String,
    pub display_name: String,
    pub logo: String,
    pub total_connections: i64,
    pub connections: Vec<MyConnection>,
}

/// The caller's own connections, grouped by integration (an API key sees its
/// application's only).
#[utoipa::path(get, path = "/api/me/connections", tag = "Profile", operation_id = "listMyConnections",
    responses((status = 200, description = "Connection groups", body = ListOf<MyConnectionGroup>)))]
pub async fn list_my_connections(
    State(state): State<AppState>,
    ctx: Ctx,
) -> ApiResult<Json<ListOf<MyConnectionGroup>>> {
    let actor = ctx.actor();
    let app_filter = key_application(&ctx);
    let mut conn = state.db.conn().await?;
    let rows = store::owned(&mut conn, actor.owner_type, &actor.owner_id, app_filter).await?;
    let mut groups: BTreeMap<String, MyConnectionGroup> = BTreeMap::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for c in rows {
        let org_name = match names.get(c.org_id.as_str()) {
            Some(n) => n.clone(),
            None => {
                let n = corral_store::orgs::by_id(&mut conn, &c.org_id)
                    .await?
                    .map(|o| o.name)
                    .unwrap_or_default();
                names.insert(c.org_id.to_string(), n.clone());
                n
            }
        };
        let app_name = match names.get(c.application_id.as_str()) {
            Some(n) => n.clone(),
            None => {
                let n = corral_store::applications::get(&mut conn, &c.org_id, &c.application_id)
                    .await?
                    .map(|a| a.name)
                    .unwrap_or_default();
                names.insert(c.application_id.to_string(), n.clone());
                n
            }
        };
        let g = groups
            .entry(c.package_id.clone())
            .or_insert_with(|| MyConnectionGroup {
                kind: "integration".into(),
                source_id: c.package_id.clone(),
                display_name: c.package_id.clone(),
                logo: String::new(),
                total_connections: 0,
                connections: Vec::new(),
            });
        g.total_connections += 1;
        g.connections.push(MyConnection {
            connection_id: c.id.clone(),
            kind: "integration".into(),
            label: c.label.clone(),
            scopes_granted: c.scopes_granted.clone(),
            connected_at: rfc3339(c.created_at),
            needs_reconnection: c.needs_reconnection,
            expires_at: c.expires_at.map(rfc3339),
            identity: c.account_id.clone(),
            reused_by_agents: 0,
            auth_key: c.auth_key.clone(),
            shared_with_org: c.shared_with_org,
            org: IdName {
                id: c.org_id.clone().into(),
                name: org_name,
            },
            application: IdName {
                id: c.application_id.clone().into(),
                name: app_name,
            },
        });
    }
    Ok(Json(ListOf::all(groups.into_values().collect())))
}

/// Delete one of the caller's connections everywhere (204 whether or not it existed).
#[utoipa::path(delete, path = "/api/me/connections/{connectionId}", tag = "Profile", operation_id = "deleteMyConnection",
    params(("connectionId" = String, Path, description = "Connection id")),
    responses((status = 204, description = "Connection deleted (or never existed)")))]
pub async fn delete_my_connection(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(connection_id): Path<String>,
) -> ApiResult<StatusCode> {
    let actor = ctx.actor();
    let app_filter = key_application(&ctx);
    let mut conn = state.db.conn().await?;
    store::delete_owned(
        &mut conn,
        &connection_id,
        (actor.owner_type, &actor.owner_id),
        app_filter,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
