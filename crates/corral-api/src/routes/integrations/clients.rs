use super::*;

// ---------------------------------------------------------------- OAuth clients

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OauthClientBody {
    pub client_id: String,
    /// Required unless `token_endpoint_auth_method` is `none`. On rotation:
    /// omitted keeps the stored secret, `""` clears it (with `none` only).
    pub client_secret: Option<String>,
    /// `client_secret_post`, `client_secret_basic` or `none` (a public client).
    pub token_endpoint_auth_method: Option<String>,
    /// Where the provider redirects after consent (default: the platform's
    /// `/api/integrations/callback`).
    pub redirect_uri: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OauthClientView {
    pub id: String,
    #[serde(rename = "applicationId")]
    pub application_id: String,
    pub integration_package_id: String,
    pub auth_key: String,
    pub client_id: String,
    pub has_client_secret: bool,
    pub token_endpoint_auth_method: Option<String>,
    pub redirect_uri: Option<String>,
    #[serde(rename = "createdAt")]
    #[schema(format = DateTime)]
    pub created_at: String,
    #[serde(rename = "updatedAt")]
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&store::OauthClient> for OauthClientView {
    fn from(c: &store::OauthClient) -> Self {
        OauthClientView {
            id: c.id.clone(),
            application_id: c.application_id.clone().into(),
            integration_package_id: c.package_id.clone(),
            auth_key: c.auth_key.clone(),
            client_id: c.client_id.clone(),
            has_client_secret: c.client_secret.is_some(),
            token_endpoint_auth_method: c.token_endpoint_auth_method.clone(),
            redirect_uri: c.redirect_uri.clone(),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientListItem {
    pub client_ref: String,
    /// `custom` (registered by the application) or `built-in`.
    pub source: String,
    pub client_id: String,
    pub is_default: bool,
    pub auto_provisioned: bool,
    pub has_client_secret: bool,
    pub token_endpoint_auth_method: Option<String>,
    pub redirect_uri: Option<String>,
}

pub(super) fn check_client_body(
    state: &AppState,
    body: &OauthClientBody,
    creating: bool,
) -> ApiResult<()> {
    let mut errors = Vec::new();
    if body.client_id.trim().is_empty() || body.client_id.len() > 500 {
        errors.push(FieldError::new("client_id", "invalid", "1–500 characters"));
    }
    let method = body.token_endpoint_auth_method.as_deref();
    if let Some(m) = method {
        if !["client_secret_post", "client_secret_basic", "none"].contains(&m) {
            errors.push(FieldError::new(
                "token_endpoint_auth_method",
                "invalid_enum",
                "one of client_secret_post, client_secret_basic, none",
            ));
        }
    }
    match (method, body.client_secret.as_deref()) {
        (Some("none"), Some(s)) if !s.is_empty() => errors.push(FieldError::new(
            "client_secret",
            "not_allowed",
            "a public client (token_endpoint_auth_method none) has no secret",
        )),
        (m, Some("")) if m != Some("none") => errors.push(FieldError::new(
            "client_secret",
            "required",
            "an empty secret is only accepted with token_endpoint_auth_method none",
        )),
        (m, None) if creating && m != Some("none") => errors.push(FieldError::new(
            "client_secret",
            "required",
            "client_secret is required unless token_endpoint_auth_method is none",
        )),
        _ => {}
    }
    if let Some(uri) = &body.redirect_uri {
        match url::Url::parse(uri) {
            Ok(u)
                if u.scheme() == "https"
                    || (u.scheme() == "http"
                        && state.connect.policy() != corral_webhooks::ssrf::Policy::Strict) => {}
            _ => errors.push(FieldError::new(
                "redirect_uri",
                "invalid_url",
                "an absolute https URL",
            )),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

/// Register an OAuth client (the application's own app at the provider). The
/// first one of an auth becomes its default. Admin only.
#[utoipa::path(post, path = "/api/integrations/{packageId}/auths/{authKey}/oauth-clients", tag = "Integrations", operation_id = "createIntegrationOAuthClient",
    params(("packageId" = String, Path, description = "`@scope/name`, URL-encoded"), ("authKey" = String, Path, description = "Key of the auth in the manifest")),
    request_body = OauthClientBody,
    responses((status = 201, description = "Created", body = OauthClientView)))]
pub async fn create_oauth_client(
    State(state): State<AppState>,
    ctx: Perm<perms::ApplicationsWrite>,
    Path((package_id, auth_key)): Path<(String, String)>,
    Json(body): Json<OauthClientBody>,
) -> ApiResult<(StatusCode, Json<OauthClientView>)> {
    let (_, auths) = load(&state, &ctx, &package_id).await?;
    let spec = auth_of(&auths, &auth_key)?;
    if spec.kind != "oauth2" {
        return Err(bad(
            "authKey",
            "wrong_auth_type",
            "OAuth clients are for oauth2 auths",
        ));
    }
    check_client_body(&state, &body, true)?;
    let id = uuid::Uuid::now_v7().to_string();
    let sealed = body
        .client_secret
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            state
                .keyring
                .seal(s.as_bytes(), &integ::client_secret_aad(&id))
        });
    let app = ctx.app_id()?;
    let mut conn = state.db.conn().await?;
    store::insert_client(
        &mut conn,
        &store::NewOauthClient {
            id: &id,
            org_id: ctx.org_id()?,
            application_id: app,
            package_id: &package_id,
            auth_key: &auth_key,
            client_id: body.client_id.trim(),
            client_secret: sealed.as_deref(),
            token_endpoint_auth_method: body.token_endpoint_auth_method.as_deref(),
            redirect_uri: body.redirect_uri.as_deref(),
            created_by: ctx.principal.user().map(|u| u.user_id.as_str()),
            now: now_ms(),
        },
    )
    .await?;
    let c = store::client(&mut conn, app, &package_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("oauth client"))?;
    Ok((StatusCode::CREATED, Json(OauthClientView::from(&c))))
}

/// Replace a client's id, secret (omit to keep), method or redirect URI.
#[utoipa::path(put, path = "/api/integrations/{packageId}/oauth-clients/{clientId}", tag = "Integrations", operation_id = "rotateIntegrationOAuthClient",
    params(("packageId" = String, Path, description = "`@scope/name`, URL-encoded"), ("clientId" = String, Path, description = "The client's `client_ref`")),
    request_body = OauthClientBody,
    responses((status = 200, description = "Rotated", body = OauthClientView)))]
pub async fn rotate_oauth_client(
    State(state): State<AppState>,
    ctx: Perm<perms::ApplicationsWrite>,
    Path((package_id, client_ref)): Path<(String, String)>,
    Json(body): Json<OauthClientBody>,
) -> ApiResult<Json<OauthClientView>> {
    check_package_id(&package_id)?;
    check_client_body(&state, &body, false)?;
    let app = ctx.app_id()?;
    let mut conn = state.db.conn().await?;
    store::client(&mut conn, app, &package_id, &client_ref)
        .await?
        .ok_or_else(|| ApiError::not_found("oauth client"))?;
    let sealed = body
        .client_secret
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            state
                .keyring
                .seal(s.as_bytes(), &integ::client_secret_aad(&client_ref))
        });
    let secret = match body.client_secret.as_deref() {
        None => None,
        Some("") => Some(None),
        Some(_) => Some(sealed.as_deref()),
    };
    store::update_client(
        &mut conn,
        app,
        &client_ref,
        &store::ClientUpdate {
            client_id: body.client_id.trim(),
            client_secret: secret,
            token_endpoint_auth_method: body.token_endpoint_auth_method.as_deref(),
            redirect_uri: body.redirect_uri.as_deref(),
            now: now_ms(),
        },
    )
    .await?;
    let c = store::client(&mut conn, app, &package_id, &client_ref)
        .await?
        .ok_or_else(|| ApiError::not_found("oauth client"))?;
    Ok(Json(OauthClientView::from(&c)))
}

/// Delete a client. Connections it minted can no longer refresh.
#[utoipa::path(delete, path = "/api/integrations/{packageId}/oauth-clients/{clientId}", tag = "Integrations", operation_id = "deleteIntegrationOAuthClient",
    params(("packageId" = String, Path, description = "`@scope/name`, URL-encoded"), ("clientId" = String, Path, description = "The client's `client_ref`")),
    responses((status = 204, description = "OAuth client deleted")))]
pub async fn delete_oauth_client(
    State(state): State<AppState>,
    ctx: Perm<perms::ApplicationsWrite>,
    Path((package_id, client_ref)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    check_package_id(&package_id)?;
    let app = ctx.app_id()?;
    let mut conn = state.db.conn().await?;
    store::client(&mut conn, app, &package_id, &client_ref)
        .await?
        .ok_or_else(|| ApiError::not_found("oauth client"))?;
    store::delete_client(&mut conn, app, &client_ref).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn client_list(
    state: &AppState,
    app: &AppId,
    package_id: &str,
    auth_key: &str,
) -> ApiResult<ListOf<ClientListItem>> {
    let mut conn = state.db.conn().await?;
    let rows = store::clients(&mut conn, app, package_id, auth_key).await?;
    Ok(ListOf::all(
        rows.iter()
            .map(|c| ClientListItem {
                client_ref: c.id.clone(),
                source: "custom".into(),
                client_id: c.client_id.clone(),
                is_default: c.is_default,
                auto_provisioned: false,
                has_client_secret: c.client_secret.is_some(),
                token_endpoint_auth_method: c.token_endpoint_auth_method.clone(),
                redirect_uri: c.redirect_uri.clone(),
            })
            .collect(),
    ))
}

/// The auth's registered clients (secrets never shown) and which is the default.
#[utoipa::path(get, path = "/api/integrations/{packageId}/auths/{authKey}/clients", tag = "Integrations", operation_id = "listIntegrationClients",
    params(("packageId" = String, Path, description = "`@scope/name`, URL-encoded"), ("authKey" = String, Path, description = "Key of the auth in the manifest")),
    responses((status = 200, description = "Available OAuth clients", body = ListOf<ClientListItem>)))]
pub async fn list_clients(
    State(state): State<AppState>,
    ctx: Perm<perms::ConnectionsRead>,
    Path((package_id, auth_key)): Path<(String, String)>,
) -> ApiResult<Json<ListOf<ClientListItem>>> {
    let (_, auths) = load(&state, &ctx, &package_id).await?;
    auth_of(&auths, &auth_key)?;
    Ok(Json(
        client_list(&state, ctx.app_id()?, &package_id, &auth_key).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultClientBody {
    pub client_ref: String,
}

/// Choose which client mints new connections.
#[utoipa::path(put, path = "/api/integrations/{packageId}/auths/{authKey}/default-client", tag = "Integrations", operation_id = "setDefaultIntegrationClient",
    params(("packageId" = String, Path, description = "`@scope/name`, URL-encoded"), ("authKey" = String, Path, description = "Key of the auth in the manifest")),
    request_body = DefaultClientBody,
    responses((status = 200, description = "Default set; the clients", body = ListOf<ClientListItem>)))]
pub async fn set_default_client(
    State(state): State<AppState>,
    ctx: Perm<perms::ApplicationsWrite>,
    Path((package_id, auth_key)): Path<(String, String)>,
    Json(body): Json<DefaultClientBody>,
) -> ApiResult<Json<ListOf<ClientListItem>>> {
    let (_, auths) = load(&state, &ctx, &package_id).await?;
    auth_of(&auths, &auth_key)?;
    let app = ctx.app_id()?;
    let mut conn = state.db.conn().await?;
    let c = store::client(&mut conn, app, &package_id, &body.client_ref)
        .await?
        .filter(|c| c.auth_key == auth_key)
        .ok_or_else(|| {
            let mut e = ApiError::not_found("oauth client");
            e.param = Some("client_ref".into());
            e
        })?;
    store::set_default_client(&mut conn, app, &package_id, &auth_key, Some(&c.id)).await?;
    Ok(Json(
        client_list(&state, app, &package_id, &auth_key).await?,
    ))
}
