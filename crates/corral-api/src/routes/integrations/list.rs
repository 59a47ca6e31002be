use super::*;

// ---------------------------------------------------------------- integrations

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1–100 (default 100).
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// Comma-separated projection, e.g. `id,source` (drops `manifest`).
    pub fields: Option<String>,
}

/// Every integration visible to the organization (its own and the system's).
#[utoipa::path(get, path = "/api/integrations", tag = "Integrations", operation_id = "listIntegrations",
    params(ListQuery),
    responses((status = 200, description = "Integration list", body = ListOf<IntegrationSummary>)))]
pub async fn list_integrations(
    State(state): State<AppState>,
    ctx: Perm<perms::ConnectionsRead>,
    page: Page<100>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<ListOf<IntegrationSummary>>> {
    let mut conn = state.db.conn().await?;
    let rows =
        corral_store::packages::list_visible(&mut conn, ctx.org_id()?, Some("integration")).await?;
    let installed: std::collections::HashSet<String> = corral_store::app_packages::list(
        &mut conn,
        ctx.org_id()?,
        ctx.app_id()?,
        Some("integration"),
    )
    .await?
    .into_iter()
    .filter(|i| i.enabled)
    .map(|i| i.package_id)
    .collect();
    let blocked: std::collections::HashSet<String> = if want_blocked(q.fields.as_deref()) {
        let mut set = std::collections::HashSet::new();
        for p in &rows {
            if corral_store::integration_governance::block_user_connections(
                &mut conn,
                ctx.app_id()?,
                &p.id,
            )
            .await?
            {
                set.insert(p.id.clone());
            }
        }
        set
    } else {
        Default::default()
    };
    let total = rows.len() as i64;
    let has_more = page.has_more(total);
    let fields: Option<Vec<String>> = q.fields.as_deref().map(|f| {
        f.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let want = |k: &str| fields.as_ref().is_none_or(|f| f.iter().any(|x| x == k));
    let data = page
        .window(rows)
        .map(|p| IntegrationSummary {
            manifest: want("manifest")
                .then(|| serde_json::from_str(&p.draft_manifest).unwrap_or(Value::Null)),
            active: want("active").then(|| installed.contains(&p.id)),
            source: want("source").then(|| {
                if p.org_id.is_some() {
                    "local"
                } else {
                    "system"
                }
                .to_owned()
            }),
            org_id: want("orgId").then(|| p.org_id.clone().map(Into::into)),
            block_user_connections: want("block_user_connections").then(|| blocked.contains(&p.id)),
            id: p.id,
        })
        .collect();
    Ok(Json(ListOf {
        object: "list",
        data,
        total,
        has_more,
    }))
}

pub(super) async fn detail(
    state: &AppState,
    ctx: &Ctx,
    package_id: &str,
) -> ApiResult<IntegrationDetail> {
    let (manifest, auths) = load(state, ctx, package_id).await?;
    let actor = ctx.actor();
    let app = ctx.app_id()?;
    let mut conn = state.db.conn().await?;
    let conns = store::usable(
        &mut conn,
        app,
        Some(package_id),
        actor.owner_type,
        &actor.owner_id,
        actor.include_shared,
    )
    .await?;
    let installed = corral_store::app_packages::get(&mut conn, ctx.org_id()?, app, package_id)
        .await?
        .is_some_and(|i| i.enabled);
    let blocked =
        corral_store::integration_governance::block_user_connections(&mut conn, app, package_id)
            .await?;
    let mut views = Vec::new();
    for a in &auths {
        let clients = store::clients(&mut conn, app, package_id, &a.key).await?;
        let mine: Vec<ConnectionView> = conns
            .iter()
            .filter(|c| c.auth_key == a.key)
            .map(|c| ConnectionView::of(c, &actor))
            .collect();
        views.push(AuthView {
            auth_key: a.key.clone(),
            kind: a.kind.clone(),
            required: auths.len() == 1,
            scopes: a.default_scopes.clone(),
            resource: a.resource.clone(),
            ready: mine.iter().any(|c| !c.needs_reconnection),
            connections: mine,
            has_oauth_client: !clients.is_empty(),
            has_system_client: false,
            client_auto_provisioned: false,
            credentials_schema: a.credentials_schema.clone(),
        });
    }
    Ok(IntegrationDetail {
        tool_catalog: manifest
            .get("tool_catalog")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        allow_undeclared_tools: true,
        manifest,
        auths: views,
        active: installed,
        block_user_connections: blocked,
        platform_redirect_uri: oauth::default_redirect_uri(&state.connect),
    })
}

/// An integration with, per auth, the caller's usable connections.
#[utoipa::path(get, path = "/api/integrations/{packageId}", tag = "Integrations", operation_id = "getIntegration",
    params(("packageId" = String, Path, description = "`@scope/name`, URL-encoded")),
    responses((status = 200, description = "Integration detail", body = IntegrationDetail),
              (status = 409, description = "Not an integration package", body = crate::error::ProblemDetail)))]
pub async fn get_integration(
    State(state): State<AppState>,
    ctx: Perm<perms::ConnectionsRead>,
    Path(package_id): Path<String>,
) -> ApiResult<Json<IntegrationDetail>> {
    Ok(Json(detail(&state, &ctx, &package_id).await?))
}

fn want_blocked(fields: Option<&str>) -> bool {
    fields.is_none_or(|f| f.split(',').any(|x| x.trim() == "block_user_connections"))
}
