//! Integration connections (`/api/integrations…`, SPEC §12): connect with fields
//! (api_key, basic, custom) validated against the auth's `credentials.schema`, or
//! with OAuth2 (authorization code + PKCE S256, RFC 8414 discovery, RFC 8707
//! resource) finished by the public `GET /api/integrations/callback`; the OAuth
//! clients an application registers; connection readiness per agent. Credentials
//! are sealed at rest and never returned.
//!
//! `{packageId}` is `@scope/name`, URL-encoded (`%40scope%2Fname`).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use corral_core::time::now_ms;
use corral_core::ErrorCode;
use corral_store::integrations as store;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Digest as _;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Ctx, Perm};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::json::{Json, Validate};
use crate::routes::{rfc3339, ListOf};
use crate::state::AppState;
use corral_connect::integrations::{self as integ, Actor, AuthSpec};
use corral_connect::oauth;

pub fn app_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_integrations))
        .routes(routes!(get_integration))
        .routes(routes!(import_connection))
        .routes(routes!(initiate_oauth))
        .routes(routes!(list_connections))
        .routes(routes!(update_connection))
        .routes(routes!(create_oauth_client))
        .routes(routes!(rotate_oauth_client, delete_oauth_client))
        .routes(routes!(list_clients))
        .routes(routes!(set_default_client))
        .routes(routes!(connection_readiness))
}

/// The browser lands here from the authorization server: no session is needed
/// (the single-use state identifies the authorization).
pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(oauth_callback))
}

pub fn user_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_my_connections))
        .routes(routes!(delete_my_connection))
}

fn bad(field: &str, code: &str, message: impl Into<String>) -> ApiError {
    ApiError::validation(vec![FieldError::new(field, code, message)])
}

fn check_package_id(id: &str) -> ApiResult<()> {
    let ok = id
        .strip_prefix('@')
        .and_then(|r| r.split_once('/'))
        .is_some_and(|(s, n)| {
            !s.is_empty()
                && !n.is_empty()
                && s.chars()
                    .chain(n.chars())
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        let mut e = ApiError::not_found("integration");
        e.param = Some("packageId".into());
        Err(e)
    }
}

async fn load(state: &AppState, ctx: &Ctx, package_id: &str) -> ApiResult<(Value, Vec<AuthSpec>)> {
    check_package_id(package_id)?;
    let manifest = integ::manifest(&state.connect, ctx.org_id()?, package_id).await?;
    let auths = integ::auths(&manifest);
    Ok((manifest, auths))
}

fn auth_of<'a>(auths: &'a [AuthSpec], key: &str) -> ApiResult<&'a AuthSpec> {
    integ::auth(auths, key).ok_or_else(|| {
        let mut e = ApiError::not_found("auth");
        e.param = Some("authKey".into());
        e
    })
}

/// The caller's own connection `id` to this auth (`connection_id` of a renewal or
/// re-authorization), else 404.
async fn own_connection(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    app: &str,
    package_id: &str,
    auth_key: &str,
    actor: &Actor,
) -> ApiResult<store::Connection> {
    store::connection(conn, id)
        .await?
        .filter(|c| {
            c.application_id == app
                && c.package_id == package_id
                && c.auth_key == auth_key
                && c.owner_type == actor.owner_type
                && c.owner_id == actor.owner_id
        })
        .ok_or_else(|| {
            let mut e = ApiError::not_found("connection");
            e.param = Some("connection_id".into());
            e
        })
}

/// An API key sees its own application's connections only under `/api/me`.
fn key_application(ctx: &Ctx) -> Option<&str> {
    match &ctx.principal {
        crate::auth::Principal::ApiKey(k) => Some(k.application_id.as_str()),
        _ => None,
    }
}

// ---------------------------------------------------------------- views

/// A connection as the API shows it: never its credentials.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    pub id: String,
    #[serde(rename = "packageId")]
    pub package_id: String,
    pub auth_key: String,
    pub account_id: String,
    pub identity_claims: Option<Value>,
    pub scopes_granted: Vec<String>,
    pub needs_reconnection: bool,
    #[serde(rename = "expiresAt")]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// `user` or `end_user`.
    pub owner_type: String,
    pub owner_id: String,
    pub owner_name: Option<String>,
    pub label: Option<String>,
    pub shared_with_org: bool,
    /// The OAuth client that minted the connection (oauth2 only).
    pub client_ref: Option<String>,
    #[serde(rename = "createdAt")]
    #[schema(format = DateTime)]
    pub created_at: String,
    #[serde(rename = "updatedAt")]
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl ConnectionView {
    fn of(c: &store::Connection, actor: &Actor) -> ConnectionView {
        let own = c.owner_type == actor.owner_type && c.owner_id == actor.owner_id;
        ConnectionView {
            id: c.id.clone(),
            package_id: c.package_id.clone(),
            auth_key: c.auth_key.clone(),
            account_id: c.account_id.clone(),
            identity_claims: if own {
                c.identity_claims
                    .as_deref()
                    .and_then(|s| serde_json::from_str(s).ok())
            } else {
                None
            },
            scopes_granted: c.scopes_granted.clone(),
            needs_reconnection: c.needs_reconnection,
            expires_at: c.expires_at.map(rfc3339),
            owner_type: c.owner_type.clone(),
            owner_id: c.owner_id.clone(),
            owner_name: c.owner_name.clone(),
            label: c.label.clone(),
            shared_with_org: c.shared_with_org,
            client_ref: c.client_ref.clone(),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

/// An integration in the list; `?fields=` drops the properties not asked for
/// (`id` always stays).
#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationSummary {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Value>,
    #[serde(rename = "orgId", skip_serializing_if = "Option::is_none")]
    pub org_id: Option<Option<String>>,
    /// `local` (the organization's) or `system`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_user_connections: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthView {
    pub auth_key: String,
    /// `oauth2`, `api_key`, `basic`, `custom` or `mtls`.
    #[serde(rename = "type")]
    pub kind: String,
    pub required: bool,
    pub scopes: Vec<String>,
    /// RFC 8707 resource indicator declared by the manifest.
    pub resource: Option<String>,
    /// The caller's connections plus the org-shared ones.
    pub connections: Vec<ConnectionView>,
    /// A usable connection exists.
    pub ready: bool,
    pub has_oauth_client: bool,
    pub has_system_client: bool,
    pub client_auto_provisioned: bool,
    /// The fields a fields-based connect takes.
    pub credentials_schema: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationDetail {
    pub manifest: Value,
    pub auths: Vec<AuthView>,
    pub tool_catalog: Vec<Value>,
    pub allow_undeclared_tools: bool,
    pub active: bool,
    pub block_user_connections: bool,
    /// Register this redirect URI at the provider (unless a client sets its own).
    pub platform_redirect_uri: String,
}

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
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<ListOf<IntegrationSummary>>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=100).contains(&limit) {
        return Err(bad(
            "limit",
            "out_of_range",
            "limit must be between 1 and 100",
        ));
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(bad("offset", "out_of_range", "offset must be 0 or more"));
    }
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
    .map(|i| i.package_id)
    .collect();
    let total = rows.len() as i64;
    let page: Vec<_> = rows
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .collect();
    let has_more = offset + (page.len() as i64) < total;
    let fields: Option<Vec<String>> = q.fields.as_deref().map(|f| {
        f.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let want = |k: &str| fields.as_ref().is_none_or(|f| f.iter().any(|x| x == k));
    let data = page
        .into_iter()
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
            org_id: want("orgId").then(|| p.org_id.clone()),
            block_user_connections: want("block_user_connections").then_some(false),
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

async fn detail(state: &AppState, ctx: &Ctx, package_id: &str) -> ApiResult<IntegrationDetail> {
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
        .is_some();
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
        block_user_connections: false,
        platform_redirect_uri: oauth::default_redirect_uri(&state.connect),
    })
}

/// An integration with, per auth, the caller's usable connections.
#[utoipa::path(get, path = "/api/integrations/{packageId}", tag = "Integrations", operation_id = "getIntegration",
    params(("packageId" = String, Path, description = "`@scope/name`, URL-encoded")),
    responses((status = 200, description = "Integration detail", body = IntegrationDetail),
              (status = 409, description = "Not an integration package", body = crate::error::ProblemDetail, content_type = "application/problem+json")))]
pub async fn get_integration(
    State(state): State<AppState>,
    ctx: Perm<perms::ConnectionsRead>,
    Path(package_id): Path<String>,
) -> ApiResult<Json<IntegrationDetail>> {
    Ok(Json(detail(&state, &ctx, &package_id).await?))
}

// ---------------------------------------------------------------- fields connect

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// The credential values, validated against the auth's `credentials.schema`.
    pub credentials: Map<String, Value>,
    /// Renew this connection in place instead of creating one.
    pub connection_id: Option<String>,
    pub label: Option<String>,
    /// Let every member of the organization use the connection in runs.
    pub shared_with_org: Option<bool>,
}

/// Store a connection from credential fields (api_key, basic, custom auths).
#[utoipa::path(post, path = "/api/integrations/{packageId}/auths/{authKey}/connect/fields", tag = "Integrations", operation_id = "importIntegrationConnection",
    params(("packageId" = String, Path, description = "`@scope/name`, URL-encoded"), ("authKey" = String, Path, description = "Key of the auth in the manifest")),
    request_body = ImportBody,
    responses((status = 200, description = "Connection stored", body = ConnectionView)))]
pub async fn import_connection(
    State(state): State<AppState>,
    ctx: Perm<perms::ConnectionsWrite>,
    Path((package_id, auth_key)): Path<(String, String)>,
    Json(body): Json<ImportBody>,
) -> ApiResult<Json<ConnectionView>> {
    let (_, auths) = load(&state, &ctx, &package_id).await?;
    let spec = auth_of(&auths, &auth_key)?;
    if spec.kind == "oauth2" {
        return Err(bad(
            "authKey",
            "wrong_auth_type",
            "this auth uses OAuth2: start it with POST …/connect/oauth2",
        ));
    }
    integ::validate_fields(spec, &body.credentials).map_err(ApiError::validation)?;
    let actor = ctx.actor();
    let app = ctx.app_id()?;
    let now = now_ms();
    let account_id = account_hint(&body.credentials);
    let mut conn = state.db.conn().await?;
    let id = match &body.connection_id {
        Some(existing) => {
            let c =
                own_connection(&mut conn, existing, app, &package_id, &auth_key, &actor).await?;
            let sealed = integ::seal(&state.connect, &c.id, &body.credentials);
            store::renew_connection(
                &mut conn,
                app,
                &c.id,
                &store::Renewal {
                    credentials: &sealed,
                    expires_at: None,
                    scopes_granted: &[],
                    account_id: &account_id,
                    client_ref: None,
                    now,
                },
            )
            .await?;
            c.id
        }
        None => {
            let id = uuid::Uuid::now_v7().to_string();
            let sealed = integ::seal(&state.connect, &id, &body.credentials);
            store::insert_connection(
                &mut conn,
                &store::NewConnection {
                    id: &id,
                    org_id: ctx.org_id()?,
                    application_id: app,
                    package_id: &package_id,
                    auth_key: &auth_key,
                    auth_type: &spec.kind,
                    owner_type: actor.owner_type,
                    owner_id: &actor.owner_id,
                    label: body.label.as_deref(),
                    shared_with_org: body.shared_with_org.unwrap_or(false),
                    account_id: &account_id,
                    identity_claims: None,
                    scopes_granted: &[],
                    credentials: &sealed,
                    expires_at: None,
                    client_ref: None,
                    now,
                },
            )
            .await?;
            id
        }
    };
    let c = store::connection(&mut conn, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("connection"))?;
    Ok(Json(ConnectionView::of(&c, &actor)))
}

/// A display hint that identifies the account without revealing the secret: the
/// user name of a basic auth, else the last 4 characters of the first value.
fn account_hint(creds: &Map<String, Value>) -> String {
    if let Some(u) = creds.get("username").and_then(Value::as_str) {
        return u.to_owned();
    }
    let first = creds.values().find_map(Value::as_str).unwrap_or_default();
    let n = first.chars().count();
    if n >= 12 {
        format!("…{}", first.chars().skip(n - 4).collect::<String>())
    } else {
        "credentials".into()
    }
}

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

fn state_hash(state: &str) -> String {
    hex::encode(sha2::Sha256::digest(state.as_bytes()))
}

/// Start an OAuth2 authorization (code + PKCE S256) with the auth's default client.
#[utoipa::path(post, path = "/api/integrations/{packageId}/auths/{authKey}/connect/oauth2", tag = "Integrations", operation_id = "initiateIntegrationOAuth",
    params(("packageId" = String, Path, description = "`@scope/name`, URL-encoded"), ("authKey" = String, Path, description = "Key of the auth in the manifest")),
    request_body(content = OauthStartBody, description = "Optional", content_type = "application/json"),
    responses((status = 200, description = "Authorize URL", body = OauthStart),
              (status = 422, description = "No OAuth client is registered for this auth", body = crate::error::ProblemDetail, content_type = "application/problem+json"),
              (status = 502, description = "The authorization server's metadata could not be read", body = crate::error::ProblemDetail, content_type = "application/problem+json")))]
pub async fn initiate_oauth(
    State(state): State<AppState>,
    ctx: Perm<perms::ConnectionsWrite>,
    Path((package_id, auth_key)): Path<(String, String)>,
    Json(body): Json<OauthStartBody>,
) -> ApiResult<Json<OauthStart>> {
    let (_, auths) = load(&state, &ctx, &package_id).await?;
    let spec = auth_of(&auths, &auth_key)?;
    if spec.kind != "oauth2" {
        return Err(bad(
            "authKey",
            "wrong_auth_type",
            "this auth takes credential fields: use POST …/connect/fields",
        ));
    }
    let actor = ctx.actor();
    let app = ctx.app_id()?;
    let mut conn = state.db.conn().await?;
    if let Some(existing) = &body.connection_id {
        own_connection(&mut conn, existing, app, &package_id, &auth_key, &actor).await?;
    }
    let clients = store::clients(&mut conn, app, &package_id, &auth_key).await?;
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
                org_id: ctx.org_id()?.to_owned(),
                application_id: app.to_owned(),
                package_id: package_id.clone(),
                auth_key: auth_key.clone(),
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
    Ok(Json(OauthStart {
        auth_url: auth.url,
        state: auth.state,
    }))
}

fn oauth_api_error(e: oauth::OauthError) -> ApiError {
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

fn page(ok: bool, code: &str, message: &str, connection_id: Option<&str>) -> Response {
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

async fn finish(
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
        let org_name = match names.get(&c.org_id) {
            Some(n) => n.clone(),
            None => {
                let n = corral_store::orgs::by_id(&mut conn, &c.org_id)
                    .await?
                    .map(|o| o.name)
                    .unwrap_or_default();
                names.insert(c.org_id.clone(), n.clone());
                n
            }
        };
        let app_name = match names.get(&c.application_id) {
            Some(n) => n.clone(),
            None => {
                let n = corral_store::applications::get(&mut conn, &c.org_id, &c.application_id)
                    .await?
                    .map(|a| a.name)
                    .unwrap_or_default();
                names.insert(c.application_id.clone(), n.clone());
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
                id: c.org_id.clone(),
                name: org_name,
            },
            application: IdName {
                id: c.application_id.clone(),
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
            application_id: c.application_id.clone(),
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

fn check_client_body(state: &AppState, body: &OauthClientBody, creating: bool) -> ApiResult<()> {
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

async fn client_list(
    state: &AppState,
    app: &str,
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

// ---------------------------------------------------------------- readiness

#[derive(Debug, Serialize, ToSchema)]
pub struct Candidate {
    pub id: String,
    pub auth_key: String,
    pub account_id: String,
    pub label: Option<String>,
    pub owner_user_id: Option<String>,
    pub owner_end_user_id: Option<String>,
    pub owner_name: Option<String>,
    pub scopes_granted: Vec<String>,
    pub shared_with_org: bool,
    pub needs_reconnection: bool,
    pub missing_scopes: Vec<String>,
    pub is_own: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Resolution {
    /// `auto` (a connection will be used), `none` or `needs_reconnection`.
    pub status: String,
    pub resolved_connection_id: Option<String>,
    pub resolved_missing_scopes: Vec<String>,
    pub resolved_owned_by_actor: bool,
    pub admin_pinned_connection_id: Option<String>,
    pub member_pinned_connection_id: Option<String>,
    pub org_default_connection_id: Option<String>,
    pub org_default_enforced: bool,
    pub can_add_connection: bool,
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationReadiness {
    pub integration_id: String,
    pub run_blocking: bool,
    pub resolution: Resolution,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// True iff running the agent now would be refused with 412.
    pub blocks_run: bool,
    /// The field errors that 412 would carry.
    pub errors: Vec<FieldError>,
    pub integrations: Vec<IntegrationReadiness>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadinessQuery {
    /// `draft`, an exact version, a dist-tag or a range (default: latest published).
    pub version: Option<String>,
}

/// Whether the agent's integrations have usable connections — the same verdict a
/// run trigger reaches.
#[utoipa::path(get, path = "/api/agents/{scope}/{name}/connection-readiness", tag = "Agents", operation_id = "getAgentConnectionReadiness",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name"), ReadinessQuery),
    responses((status = 200, description = "Connection readiness", body = Readiness)))]
pub async fn connection_readiness(
    State(state): State<AppState>,
    ctx: Perm<perms::AgentsRead>,
    Path((scope, name)): Path<(String, String)>,
    Query(q): Query<ReadinessQuery>,
) -> ApiResult<Json<Readiness>> {
    let id = format!("{scope}/{name}");
    let deps = corral_engine::runs::trigger::agent_integrations(
        &state,
        ctx.org_id()?,
        &id,
        q.version.as_deref(),
    )
    .await?;
    let actor = ctx.actor();
    let verdicts = integ::resolve(&state.connect, ctx.app_id()?, &actor, &deps, None).await?;
    let own =
        |c: &store::Connection| c.owner_type == actor.owner_type && c.owner_id == actor.owner_id;
    let mut errors = Vec::new();
    let mut items = Vec::new();
    for v in verdicts {
        let (status, resolved) = match &v.outcome {
            Ok(i) => (
                "auto",
                v.candidates.iter().find(|c| c.id == i.connection_id),
            ),
            Err(e) => (
                match e.code.as_str() {
                    "needs_reconnection" => "needs_reconnection",
                    "connection_missing" => "none",
                    _ => "stale",
                },
                None,
            ),
        };
        items.push(IntegrationReadiness {
            integration_id: v.package_id.clone(),
            run_blocking: v.outcome.is_err(),
            resolution: Resolution {
                status: status.into(),
                resolved_connection_id: resolved.map(|c| c.id.clone()),
                resolved_missing_scopes: Vec::new(),
                resolved_owned_by_actor: resolved.is_some_and(own),
                admin_pinned_connection_id: None,
                member_pinned_connection_id: None,
                org_default_connection_id: None,
                org_default_enforced: false,
                can_add_connection: true,
                candidates: v
                    .candidates
                    .iter()
                    .map(|c| Candidate {
                        id: c.id.clone(),
                        auth_key: c.auth_key.clone(),
                        account_id: c.account_id.clone(),
                        label: c.label.clone(),
                        owner_user_id: (c.owner_type == "user").then(|| c.owner_id.clone()),
                        owner_end_user_id: (c.owner_type == "end_user").then(|| c.owner_id.clone()),
                        owner_name: c.owner_name.clone(),
                        scopes_granted: c.scopes_granted.clone(),
                        shared_with_org: c.shared_with_org,
                        needs_reconnection: c.needs_reconnection,
                        missing_scopes: Vec::new(),
                        is_own: own(c),
                    })
                    .collect(),
            },
        });
        if let Err(e) = v.outcome {
            errors.push(e);
        }
    }
    Ok(Json(Readiness {
        blocks_run: !errors.is_empty(),
        errors,
        integrations: items,
    }))
}

impl Validate for ImportBody {}
impl Validate for OauthStartBody {}
impl Validate for ConnectionMetadataBody {}
impl Validate for OauthClientBody {}
impl Validate for DefaultClientBody {}
