use super::*;

// ---------------------------------------------------------------- OAuth2 connect

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OauthStartBody {
    /// Scopes to ask for (default: the manifest's `default_scopes`).
    pub scopes: Option<Vec<String>>,
    pub force_account_select: Option<bool>,
    /// Re-authorize this connection in place.
    pub connection_id: Option<String>,
    pub shared_with_org: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OauthStart {
    /// Send the user here.
    pub auth_url: String,
    /// Echoed back to the callback; single-use, valid 10 minutes.
    pub state: String,
}

pub(super) fn state_hash(state: &str) -> String {
    hex::encode(sha2::Sha256::digest(state.as_bytes()))
}

/// Start an OAuth2 authorization (code + PKCE S256) with the auth's default client.
#[utoipa::path(post, path = "/api/integrations/{packageId}/auths/{authKey}/connect/oauth2", tag = "Integrations", operation_id = "initiateIntegrationOAuth",
    params(("packageId" = String, Path, description = "`@scope/name`, URL-encoded"), ("authKey" = String, Path, description = "Key of the auth in the manifest")),
    request_body(content = OauthStartBody, description = "Optional", content_type = "application/json"),
    responses((status = 200, description = "Authorize URL", body = OauthStart),
              (status = 422, description = "No OAuth client is registered for this auth", body = crate::error::ProblemDetail),
              (status = 502, description = "The authorization server's metadata could not be read", body = crate::error::ProblemDetail)))]
pub async fn initiate_oauth(
    State(state): State<AppState>,
    ctx: Perm<perms::ConnectionsWrite>,
    Path((package_id, auth_key)): Path<(String, String)>,
    Json(body): Json<OauthStartBody>,
) -> ApiResult<Json<OauthStart>> {
    let (_, auths) = load(&state, &ctx, &package_id).await?;
    check_user_connections_allowed(&state, &ctx, &package_id).await?;
    let spec = auth_of(&auths, &auth_key)?;
    if spec.kind != "oauth2" {
        return Err(bad(
            "authKey",
            "wrong_auth_type",
            "this auth takes credential fields: use POST …/connect/fields",
        ));
    }
    let actor = ctx.actor();
    let start = begin_oauth(
        &state,
        &OauthTarget {
            org: ctx.org_id()?,
            app: ctx.app_id()?,
            actor: &actor,
            package_id: &package_id,
            auth_key: &auth_key,
        },
        spec,
        &body,
    )
    .await?;
    Ok(Json(start))
}

/// Whose OAuth authorization this is.
pub(super) struct OauthTarget<'a> {
    pub org: &'a corral_core::OrgId,
    pub app: &'a AppId,
    pub actor: &'a Actor,
    pub package_id: &'a str,
    pub auth_key: &'a str,
}

/// Builds the authorize URL (the auth's default client, PKCE S256) and stores the
/// single-use state the callback finishes.
pub(super) async fn begin_oauth(
    state: &AppState,
    t: &OauthTarget<'_>,
    spec: &AuthSpec,
    body: &OauthStartBody,
) -> ApiResult<OauthStart> {
    let (package_id, auth_key, actor, app) = (t.package_id, t.auth_key, t.actor, t.app);
    let mut conn = state.db.conn().await?;
    if let Some(existing) = &body.connection_id {
        own_connection(&mut conn, existing, app, package_id, auth_key, actor).await?;
    }
    let clients = store::clients(&mut conn, app, package_id, auth_key).await?;
    let row = clients
        .iter()
        .find(|c| c.is_default)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::OauthClientMissing,
                format!(
                    "no OAuth client is registered for {package_id} ({auth_key}): an admin registers one with POST /api/integrations/{{packageId}}/auths/{auth_key}/oauth-clients"
                ),
            )
        })?;
    let reg = oauth::RegisteredClient::open(&state.connect, row).map_err(ApiError::internal)?;
    let endpoints = oauth::endpoints(&state.connect, spec)
        .await
        .map_err(oauth_api_error)?;
    let redirect_uri = reg
        .redirect_uri
        .clone()
        .unwrap_or_else(|| oauth::default_redirect_uri(&state.connect));
    let scopes = body
        .scopes
        .clone()
        .unwrap_or_else(|| spec.default_scopes.clone());
    let mut spec = spec.clone();
    if body.force_account_select == Some(true) {
        spec.authorization_params
            .insert("prompt".into(), Value::from("select_account"));
    }
    let auth = oauth::authorize(
        &spec,
        &reg,
        &endpoints,
        &redirect_uri,
        &scopes,
        state.connect.policy(),
    )
    .map_err(oauth_api_error)?;
    let hash = state_hash(&auth.state);
    let now = now_ms();
    store::insert_state(
        &mut conn,
        &store::NewOauthState {
            state_hash: &hash,
            state: &store::OauthState {
                org_id: t.org.to_owned(),
                application_id: app.to_owned(),
                package_id: package_id.to_owned(),
                auth_key: auth_key.to_owned(),
                owner_type: actor.owner_type.to_owned(),
                owner_id: actor.owner_id.clone(),
                shared_with_org: body.shared_with_org.unwrap_or(false),
                client_ref: reg.id.clone(),
                redirect_uri,
                scopes,
                code_verifier: state
                    .keyring
                    .seal(auth.verifier.as_bytes(), &integ::verifier_aad(&hash)),
                connection_id: body.connection_id.clone(),
                expires_at: now + integ::STATE_TTL_MS,
            },
            now,
        },
    )
    .await?;
    Ok(OauthStart {
        auth_url: auth.url,
        state: auth.state,
    })
}

pub(super) fn oauth_api_error(e: oauth::OauthError) -> ApiError {
    match e {
        oauth::OauthError::Config(m) => ApiError::new(ErrorCode::OauthClientMissing, m),
        other => ApiError::new(ErrorCode::UpstreamError, other.to_string()),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

pub(super) fn page(ok: bool, code: &str, message: &str, connection_id: Option<&str>) -> Response {
    fn esc(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }
    let title = if ok { "Connected" } else { "Connection failed" };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body data-status=\"{status}\" data-code=\"{code}\" data-connection-id=\"{cid}\">\
         <h1>{title}</h1><p>{msg}</p><p>You can close this window.</p></body></html>",
        status = if ok { "success" } else { "error" },
        code = esc(code),
        cid = esc(connection_id.unwrap_or("")),
        msg = esc(message),
    );
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Html(body),
    )
        .into_response()
}

/// The authorization server's redirect: exchanges the code (with the PKCE
/// verifier) for tokens and stores the connection. Answers an HTML page, success
/// or error. A state works once and for 10 minutes.
#[utoipa::path(get, path = "/api/integrations/callback", tag = "Integrations", operation_id = "integrationsOAuthCallback",
    params(CallbackQuery),
    security(()),
    responses((status = 200, description = "HTML page: `data-status` is `success` or `error`", content_type = "text/html", body = String)))]
pub async fn oauth_callback(
    State(state): State<AppState>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(raw_state) = q.state.as_deref().filter(|s| !s.is_empty()) else {
        return page(
            false,
            "oauth_state_invalid",
            "The authorization response has no state.",
            None,
        );
    };
    let hash = state_hash(raw_state);
    let now = now_ms();
    let taken = match state.db.conn().await {
        Ok(mut conn) => store::take_state(&mut conn, &hash, now).await,
        Err(e) => {
            tracing::error!(error = %e, "oauth callback: database unavailable");
            return page(
                false,
                "internal_error",
                "The server could not complete the connection.",
                None,
            );
        }
    };
    let st = match taken {
        Ok(Some(st)) => st,
        Ok(None) => return page(
            false,
            "oauth_state_invalid",
            "This authorization is unknown, already used or expired. Start the connection again.",
            None,
        ),
        Err(e) => {
            tracing::error!(error = %e, "oauth callback: cannot read the state");
            return page(
                false,
                "internal_error",
                "The server could not complete the connection.",
                None,
            );
        }
    };
    if let Some(err) = &q.error {
        let detail = q.error_description.clone().unwrap_or_default();
        return page(
            false,
            "oauth_denied",
            &format!("The provider answered {err}. {detail}"),
            None,
        );
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty()) else {
        return page(
            false,
            "oauth_state_invalid",
            "The authorization response has no code.",
            None,
        );
    };
    match finish(&state, &st, &hash, code).await {
        Ok(id) => page(
            true,
            "connected",
            "The integration is connected.",
            Some(&id),
        ),
        Err(e) => {
            tracing::warn!(package = %st.package_id, error = %e, "oauth callback failed");
            page(false, "oauth_exchange_failed", &e.to_string(), None)
        }
    }
}

pub(super) async fn finish(
    state: &AppState,
    st: &store::OauthState,
    hash: &str,
    code: &str,
) -> anyhow::Result<String> {
    let verifier = state
        .keyring
        .open_str(&st.code_verifier, &integ::verifier_aad(hash))
        .map_err(|e| anyhow::anyhow!("cannot open the PKCE verifier: {e}"))?;
    let manifest = integ::manifest(&state.connect, &st.org_id, &st.package_id)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
    let auths = integ::auths(&manifest);
    let spec = integ::auth(&auths, &st.auth_key).ok_or_else(|| {
        anyhow::anyhow!("the integration no longer declares auth {}", st.auth_key)
    })?;
    let row = {
        let mut conn = state.db.conn().await?;
        store::client_by_id(&mut conn, &st.client_ref)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the OAuth client was deleted meanwhile"))?
    };
    let reg = oauth::RegisteredClient::open(&state.connect, &row)?;
    let tokens = oauth::exchange(
        &state.connect,
        spec,
        &reg,
        &st.redirect_uri,
        code,
        &verifier,
    )
    .await?;
    let now = now_ms();
    let mut creds = Map::new();
    creds.insert("access_token".into(), Value::from(tokens.access_token));
    if let Some(rt) = tokens.refresh_token {
        creds.insert("refresh_token".into(), Value::from(rt));
    }
    if let Some(tt) = tokens.token_type {
        creds.insert("token_type".into(), Value::from(tt));
    }
    let scopes = tokens.scopes.unwrap_or_else(|| st.scopes.clone());
    let expires_at = tokens.expires_in_ms.map(|ms| now + ms);
    let account_id = format!("{}:{}", st.owner_type, st.owner_id);
    let mut conn = state.db.conn().await?;
    if let Some(existing) = &st.connection_id {
        let sealed = integ::seal(&state.connect, existing, &creds);
        let updated = store::renew_connection(
            &mut conn,
            &st.application_id,
            existing,
            &store::Renewal {
                credentials: &sealed,
                expires_at,
                scopes_granted: &scopes,
                account_id: &account_id,
                client_ref: Some(&st.client_ref),
                now,
            },
        )
        .await?;
        if updated {
            return Ok(existing.clone());
        }
    }
    let id = uuid::Uuid::now_v7().to_string();
    let sealed = integ::seal(&state.connect, &id, &creds);
    store::insert_connection(
        &mut conn,
        &store::NewConnection {
            id: &id,
            org_id: &st.org_id,
            application_id: &st.application_id,
            package_id: &st.package_id,
            auth_key: &st.auth_key,
            auth_type: "oauth2",
            owner_type: &st.owner_type,
            owner_id: &st.owner_id,
            label: None,
            shared_with_org: st.shared_with_org,
            account_id: &account_id,
            identity_claims: None,
            scopes_granted: &scopes,
            credentials: &sealed,
            expires_at,
            client_ref: Some(&st.client_ref),
            now,
        },
    )
    .await?;
    Ok(id)
}
