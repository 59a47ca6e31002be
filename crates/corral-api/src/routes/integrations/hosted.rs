use super::*;
use corral_store::connect_sessions as sessions;

// ---------------------------------------------------------------- hosted connect
//
// The connect portal: an authenticated caller mints a single-use `connect_url`;
// whoever opens it (the end user, in a browser) is sent to the provider's OAuth
// screen (oauth2 auths) or gets a page cookie for the hosted credential form, which
// reads `/connect/context` and posts the secret to `/connect/submit` with the CSRF
// nonce. The secret never transits the caller.

/// How long a connect URL and its form stay usable.
const SESSION_TTL_MS: i64 = 10 * 60 * 1000;
/// The page cookie of the hosted form.
pub const CONNECT_COOKIE: &str = "corral_connect";
/// Where the dashboard serves the hosted credential form.
const FORM_PATH: &str = "/connect";

fn random_token() -> String {
    corral_core::token::random_urlsafe(32)
}

fn hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectSessionBody {
    /// Scopes to ask for (oauth2; default: the manifest's `default_scopes`).
    pub scopes: Option<Vec<String>>,
    pub force_account_select: Option<bool>,
    /// Reconnect this connection (the caller's own) in place.
    pub connection_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectSessionView {
    /// Open this URL (single use).
    pub connect_url: String,
    /// When the session expires (epoch ms).
    pub expires_at: i64,
}

/// Mint a hosted connect session for an auth of the integration, for the caller.
#[utoipa::path(post, path = "/api/integrations/{packageId}/auths/{authKey}/connect/session", tag = "Integrations", operation_id = "initiateIntegrationConnect",
    params(("packageId" = String, Path, description = "`@scope/name` (literal slash or URL-encoded)"), ("authKey" = String, Path, description = "Key of the auth in the manifest")),
    request_body(content = ConnectSessionBody, description = "Optional", content_type = "application/json"),
    responses((status = 200, description = "Connect URL", body = ConnectSessionView)))]
pub async fn initiate_connect_session(
    State(state): State<AppState>,
    ctx: Perm<perms::ConnectionsWrite>,
    Path((package_id, auth_key)): Path<(String, String)>,
    Json(body): Json<ConnectSessionBody>,
) -> ApiResult<Json<ConnectSessionView>> {
    let (_, auths) = load(&state, &ctx, &package_id).await?;
    check_user_connections_allowed(&state, &ctx, &package_id).await?;
    auth_of(&auths, &auth_key)?;
    let actor = ctx.actor();
    let app = ctx.app_id()?;
    let mut conn = state.db.conn().await?;
    if let Some(existing) = &body.connection_id {
        own_connection(&mut conn, existing, app, &package_id, &auth_key, &actor).await?;
    }
    let token = random_token();
    let now = now_ms();
    let expires_at = now + SESSION_TTL_MS;
    sessions::insert(
        &mut conn,
        &hash(&token),
        &sessions::ConnectSession {
            org_id: ctx.org_id()?.clone(),
            application_id: app.clone(),
            package_id: package_id.clone(),
            auth_key,
            owner_type: actor.owner_type.to_owned(),
            owner_id: actor.owner_id.clone(),
            connection_id: body.connection_id,
            scopes: body
                .scopes
                .map(|s| serde_json::to_string(&s))
                .transpose()
                .map_err(ApiError::internal)?,
            force_account_select: body.force_account_select.unwrap_or(false),
            csrf: None,
            expires_at,
        },
        now,
    )
    .await?;
    sessions::prune(&mut conn, now).await?;
    Ok(Json(ConnectSessionView {
        connect_url: format!(
            "{}/api/integrations/connect/start?token={token}",
            state.config.public_url.trim_end_matches('/')
        ),
        expires_at,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// The single-use token of the connect URL.
    pub token: Option<String>,
}

fn error_page(status: StatusCode, code: &str, message: &str) -> Response {
    let mut r = page(false, code, message, None);
    *r.status_mut() = status;
    r
}

fn actor_of(s: &sessions::ConnectSession) -> Actor {
    Actor {
        owner_type: if s.owner_type == "end_user" {
            "end_user"
        } else {
            "user"
        },
        owner_id: s.owner_id.clone(),
        include_shared: false,
    }
}

/// The connect URL: consumes the token, then redirects to the provider (oauth2) or
/// to the hosted form with a page cookie. Errors are HTML pages.
#[utoipa::path(get, path = "/api/integrations/connect/start", tag = "Integrations", operation_id = "startIntegrationConnect",
    params(StartQuery),
    security(()),
    responses((status = 302, description = "To the provider's OAuth screen or the hosted form"),
              (status = 400, description = "Missing token (HTML page); a malformed query (problem+json)",
               content((crate::error::ProblemDetail = "application/problem+json"), (String = "text/html"))),
              (status = 410, description = "Invalid, expired or used token (HTML page)", content_type = "text/html", body = String),
              (status = 500, description = "The integration cannot be connected (HTML page)", content_type = "text/html", body = String),
              (status = 502, description = "The provider failed to start the connection (HTML page)", content_type = "text/html", body = String)))]
pub async fn start_connect(State(state): State<AppState>, Query(q): Query<StartQuery>) -> Response {
    let Some(token) = q.token.filter(|t| !t.is_empty()) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "missing_token",
            "The connect link has no token.",
        );
    };
    let page_token = random_token();
    let csrf = random_token();
    let session = match state.db.conn().await {
        Ok(mut conn) => {
            sessions::start(
                &mut conn,
                &hash(&token),
                &hash(&page_token),
                &csrf,
                now_ms(),
            )
            .await
        }
        Err(e) => Err(e),
    };
    let session = match session {
        Ok(Some(s)) => s,
        Ok(None) => {
            return error_page(
                StatusCode::GONE,
                "invalid_token",
                "This connect link is invalid, expired or already used. Ask for a new one.",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "connect start failed");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Something went wrong.",
            );
        }
    };
    match dispatch(&state, &session, &page_token).await {
        Ok(r) => r,
        Err(e) => {
            let status = if e.status() == StatusCode::BAD_GATEWAY {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            error_page(status, e.code.code(), &e.detail)
        }
    }
}

async fn dispatch(
    state: &AppState,
    s: &sessions::ConnectSession,
    page_token: &str,
) -> ApiResult<Response> {
    let manifest = integ::manifest(&state.connect, &s.org_id, &s.package_id).await?;
    let auths = integ::auths(&manifest);
    let spec = auth_of(&auths, &s.auth_key)?;
    let location = if spec.kind == "oauth2" {
        let start = begin_oauth(
            state,
            &OauthTarget {
                org: &s.org_id,
                app: &s.application_id,
                actor: &actor_of(s),
                package_id: &s.package_id,
                auth_key: &s.auth_key,
            },
            spec,
            &OauthStartBody {
                scopes: s
                    .scopes
                    .as_deref()
                    .and_then(|j| serde_json::from_str(j).ok()),
                force_account_select: Some(s.force_account_select),
                connection_id: s.connection_id.clone(),
                shared_with_org: None,
            },
        )
        .await?;
        return Ok((
            StatusCode::FOUND,
            [
                (header::LOCATION, start.auth_url),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
        )
            .into_response());
    } else {
        format!(
            "{}{FORM_PATH}",
            state.config.public_url.trim_end_matches('/')
        )
    };
    let secure = if state.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{CONNECT_COOKIE}={page_token}; Path=/api/integrations/connect; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        SESSION_TTL_MS / 1000
    );
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response())
}

/// The page cookie's session, else 404.
async fn page_session(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> ApiResult<(String, sessions::ConnectSession)> {
    let token = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == CONNECT_COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty());
    let not_found = || ApiError::not_found("connect session");
    let token = token.ok_or_else(not_found)?;
    let page_hash = hash(&token);
    let mut conn = state.db.conn().await?;
    let s = sessions::by_page(&mut conn, &page_hash, now_ms())
        .await?
        .ok_or_else(not_found)?;
    Ok((page_hash, s))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectContext {
    pub package_id: String,
    pub auth_key: String,
    pub display_name: String,
    pub icon: Option<String>,
    /// The auth's manifest entry (no secret).
    #[schema(value_type = Object)]
    pub auth: Value,
    pub connection_id: Option<String>,
    /// Echo it in `x-connect-csrf` when submitting.
    pub csrf: Option<String>,
}

/// What the hosted form renders: the auth's manifest entry and display metadata.
#[utoipa::path(get, path = "/api/integrations/connect/context", tag = "Integrations", operation_id = "getIntegrationConnectContext",
    security(()),
    responses((status = 200, description = "Hosted connect context", body = ConnectContext),
              (status = 404, description = "No connect session for this page cookie", body = crate::error::ProblemDetail)))]
pub async fn connect_context(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Json<ConnectContext>> {
    let (_, s) = page_session(&state, &headers).await?;
    let manifest = integ::manifest(&state.connect, &s.org_id, &s.package_id).await?;
    let auth = manifest["auths"][&s.auth_key].clone();
    Ok(Json(ConnectContext {
        display_name: manifest["display_name"]
            .as_str()
            .unwrap_or(&s.package_id)
            .to_owned(),
        icon: manifest["icon"].as_str().map(str::to_owned),
        auth,
        package_id: s.package_id,
        auth_key: s.auth_key,
        connection_id: s.connection_id,
        csrf: s.csrf,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectSubmitBody {
    /// The credential values, validated against the auth's `credentials.schema`.
    pub credentials: Map<String, Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectSubmitted {
    pub ok: bool,
    pub connection: ConnectionView,
}

/// Stores the credentials entered on the hosted form (page cookie + `x-connect-csrf`);
/// the session ends with it.
#[utoipa::path(post, path = "/api/integrations/connect/submit", tag = "Integrations", operation_id = "submitIntegrationConnect",
    params(("x-connect-csrf" = String, Header, description = "The `csrf` of the context")),
    security(()),
    request_body = ConnectSubmitBody,
    responses((status = 200, description = "Connection stored", body = ConnectSubmitted),
              (status = 403, description = "The x-connect-csrf header does not match the session", body = crate::error::ProblemDetail),
              (status = 404, description = "No connect session for this page cookie", body = crate::error::ProblemDetail)))]
pub async fn connect_submit(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Json(body): Json<ConnectSubmitBody>,
) -> ApiResult<Json<ConnectSubmitted>> {
    let (page_hash, s) = page_session(&state, &headers).await?;
    let sent = headers
        .get("x-connect-csrf")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let expected = s.csrf.as_deref().unwrap_or("");
    let same: bool = {
        use subtle::ConstantTimeEq as _;
        !expected.is_empty() && sent.as_bytes().ct_eq(expected.as_bytes()).into()
    };
    if !same {
        return Err(ApiError::forbidden(
            "the x-connect-csrf header does not match this session",
        ));
    }
    let manifest = integ::manifest(&state.connect, &s.org_id, &s.package_id).await?;
    let auths = integ::auths(&manifest);
    let spec = auth_of(&auths, &s.auth_key)?;
    if spec.kind == "oauth2" {
        return Err(bad(
            "credentials",
            "wrong_auth_type",
            "this auth uses OAuth2",
        ));
    }
    integ::validate_fields(spec, &body.credentials).map_err(ApiError::validation)?;
    let actor = actor_of(&s);
    let c = store_fields(
        &state,
        &FieldsTarget {
            org: &s.org_id,
            app: &s.application_id,
            actor: &actor,
            package_id: &s.package_id,
            auth_key: &s.auth_key,
            auth_type: &spec.kind,
        },
        &body.credentials,
        s.connection_id.as_deref(),
        None,
        false,
    )
    .await?;
    let mut conn = state.db.conn().await?;
    sessions::finish(&mut conn, &page_hash).await?;
    Ok(Json(ConnectSubmitted {
        ok: true,
        connection: ConnectionView::of(&c, &actor),
    }))
}

impl Validate for ConnectSessionBody {}
impl Validate for ConnectSubmitBody {}
