//! The credential proxy (`/api/credential-proxy/proxy`): an external runner calls an
//! integration's API with the stored credential injected server-side, so it never
//! holds the secret. `X-Integration-Id` names the integration, `X-Target` the URL;
//! the connection is chosen by the same cascade as a run's (`X-Connection-Id`
//! overrides like a run's `connection_overrides`), the target must match the auth's
//! `authorized_uris`, and `{{field}}` placeholders in the target, the headers (and
//! the body with `X-Substitute-Body: true`) are filled from the credential. After an
//! upstream 401 an OAuth token is refreshed once and the request sent again.
//!
//! Bearer API keys only, with the `credential-proxy:call` scope (a key gets it only
//! when asked for by name). `Appstrate-User` scopes the call to an end user's
//! connections.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode};
use axum::response::Response;
use corral_connect::integrations as integ;
use corral_core::{ErrorCode, Permission};
use corral_protocol::{Delivery, Integration, Secret};
use corral_webhooks::ssrf::{GuardedResolver, Policy};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Principal;
use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn app_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(
        proxy_get,
        proxy_post,
        proxy_put,
        proxy_patch,
        proxy_delete
    ))
}

/// Request headers that steer the proxy or authenticate to Corral: never forwarded.
const CONTROL: &[&str] = &[
    "x-integration-id",
    "x-target",
    "x-session-id",
    "x-substitute-body",
    "x-stream-request",
    "x-stream-response",
    "x-max-response-size",
    "x-run-id",
    "x-connection-id",
    "x-org-id",
    "x-app-id",
    "x-application-id",
    "appstrate-user",
    "appstrate-version",
    "idempotency-key",
    "authorization",
    "cookie",
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
    "te",
    "proxy-authorization",
];

/// Response headers not passed back.
const HOP: &[&str] = &[
    "connection",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
    "content-length",
    "set-cookie",
];

fn client(policy: Policy) -> &'static reqwest::Client {
    static STRICT: OnceLock<reqwest::Client> = OnceLock::new();
    static LOOPBACK: OnceLock<reqwest::Client> = OnceLock::new();
    let cell = if policy == Policy::Strict {
        &STRICT
    } else {
        &LOOPBACK
    };
    cell.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver::new(policy)))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap_or_default()
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn missing(name: &str) -> ApiError {
    ApiError::field(name, "required", format!("the {name} header is required"))
}

fn render(integration: &Integration, field: &str, text: &str) -> ApiResult<String> {
    integration
        .render(text)
        .map_err(|e| ApiError::field(field, "invalid_placeholder", e.to_string()))
}

async fn proxy(
    state: &AppState,
    ctx: &Ctx,
    method: Method,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    if !matches!(ctx.principal, Principal::ApiKey(_)) {
        return Err(ApiError::forbidden(
            "the credential proxy takes a bearer API key only (not a browser session)",
        ));
    }
    ctx.require(Permission::CredentialProxyCall)?;
    let package_id = header(headers, "x-integration-id")
        .ok_or_else(|| missing("X-Integration-Id"))?
        .to_owned();
    let target = header(headers, "x-target")
        .ok_or_else(|| missing("X-Target"))?
        .to_owned();
    let substitute_body = header(headers, "x-substitute-body") == Some("true");
    let manifest = integ::manifest(&state.connect, ctx.org_id()?, &package_id).await?;
    let dep = integ::Dependency {
        package_id: package_id.clone(),
        manifest,
        auth_key: None,
    };
    let overrides: Option<BTreeMap<String, String>> = header(headers, "x-connection-id")
        .map(|c| BTreeMap::from([(package_id.clone(), c.to_owned())]));
    let actor = ctx.actor();
    let verdict = integ::resolve(
        &state.connect,
        ctx.app_id()?,
        &actor,
        None,
        std::slice::from_ref(&dep),
        overrides.as_ref(),
    )
    .await?
    .into_iter()
    .next()
    .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no verdict")))?;
    let chosen = verdict.outcome.map_err(|e| {
        let mut err = ApiError::new(
            ErrorCode::NotFound,
            format!("no usable connection for {package_id}: {}", e.message),
        );
        err.param = Some("X-Integration-Id".into());
        err
    })?;

    let mut refreshed = false;
    loop {
        let fresh = integ::fresh_credentials(&state.connect, &chosen.connection_id, refreshed)
            .await
            .map_err(|e| match e {
                integ::CredentialError::NeedsReconnection => ApiError::new(
                    ErrorCode::NeedsReconnection,
                    format!("the connection to {package_id} must be re-authorized"),
                ),
                integ::CredentialError::Gone(_) => ApiError::not_found("connection"),
                other => ApiError::new(ErrorCode::UpstreamError, other.to_string()),
            })?;
        let integration = Integration {
            namespace: chosen.namespace.clone(),
            delivery: chosen.delivery.clone(),
            authorized_uris: chosen.authorized_uris.clone(),
            credentials: fresh
                .values
                .iter()
                .map(|(k, v)| (k.clone(), Secret::new(v.clone())))
                .collect(),
            expires_at_ms: fresh.expires_at,
            credentials_url: None,
        };
        let rendered_target = render(&integration, "X-Target", &target)?;
        let mut url = url::Url::parse(&rendered_target)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                ApiError::field(
                    "X-Target",
                    "invalid_format",
                    "X-Target must be an absolute http(s) URL",
                )
            })?;
        if !integration.authorizes(url.as_str()) && !integration.authorizes(&rendered_target) {
            return Err(ApiError::forbidden(format!(
                "{target} is not among the authorized URIs of {package_id}"
            )));
        }
        let mut basic = None;
        let mut injected: Option<(String, String)> = None;
        match &integration.delivery {
            Delivery::Header { name, template } => {
                injected = Some((name.clone(), render(&integration, "delivery", template)?))
            }
            Delivery::Query { name, template } => {
                let v = render(&integration, "delivery", template)?;
                url.query_pairs_mut().append_pair(name, &v);
            }
            Delivery::Basic { username, password } => {
                basic = Some((
                    render(&integration, "delivery", username)?,
                    render(&integration, "delivery", password)?,
                ))
            }
        }
        let reqwest_method =
            reqwest::Method::from_bytes(method.as_str().as_bytes()).map_err(ApiError::internal)?;
        let mut req = client(state.connect.policy()).request(reqwest_method, url);
        for (name, value) in headers {
            if CONTROL.contains(&name.as_str()) {
                continue;
            }
            let Ok(text) = value.to_str() else { continue };
            req = req.header(name.as_str(), render(&integration, name.as_str(), text)?);
        }
        if let Some((name, value)) = &injected {
            req = req.header(name.as_str(), value.as_str());
        }
        if let Some((u, p)) = &basic {
            req = req.basic_auth(u, Some(p));
        }
        if !body.is_empty() {
            req = if substitute_body {
                let text = String::from_utf8(body.to_vec()).map_err(|_| {
                    ApiError::field(
                        "body",
                        "invalid_encoding",
                        "X-Substitute-Body needs a UTF-8 body",
                    )
                })?;
                req.body(render(&integration, "body", &text)?)
            } else {
                req.body(body.clone())
            };
        }
        let upstream = req.send().await.map_err(|e| {
            let e = e.without_url();
            let mut err = ApiError::new(
                ErrorCode::UpstreamError,
                format!("the upstream could not be reached: {e}"),
            );
            err.source = Some(e.into());
            err
        })?;
        if upstream.status() == reqwest::StatusCode::UNAUTHORIZED
            && fresh.auth_type == "oauth2"
            && !refreshed
        {
            refreshed = true;
            continue;
        }
        let status =
            StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut resp_headers = HeaderMap::new();
        for (name, value) in upstream.headers() {
            if HOP.contains(&name.as_str()) {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_str().as_bytes()),
                axum::http::HeaderValue::from_bytes(value.as_bytes()),
            ) {
                resp_headers.append(n, v);
            }
        }
        let mut resp = Response::new(Body::from_stream(upstream.bytes_stream()));
        *resp.status_mut() = status;
        *resp.headers_mut() = resp_headers;
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
        return Ok(resp);
    }
}

macro_rules! proxy_route {
    ($fn_name:ident, $method:ident, $m:expr, $op:literal) => {
        /// Forward a request to the integration's API with the stored credential
        /// injected (see the module documentation for the headers).
        #[utoipa::path($method, path = "/api/credential-proxy/proxy", tag = "Integrations", operation_id = $op,
            params(("X-Integration-Id" = String, Header, description = "Integration package id"),
                   ("X-Target" = String, Header, description = "Upstream URL (must match the auth's authorized_uris)"),
                   ("X-Connection-Id" = Option<String>, Header, description = "Use this connection"),
                   ("X-Substitute-Body" = Option<String>, Header, description = "`true`: fill `{{field}}` placeholders in the body")),
            request_body(content = String, description = "Forwarded as is (optional)", content_type = "*/*"),
            responses((status = 200, description = "The upstream's response, forwarded (status, headers, body)")))]
        pub async fn $fn_name(
            State(state): State<AppState>,
            ctx: Ctx,
            headers: HeaderMap,
            body: Bytes,
        ) -> ApiResult<Response> {
            proxy(&state, &ctx, $m, &headers, body).await
        }
    };
}

proxy_route!(proxy_get, get, Method::GET, "credentialProxyGet");
proxy_route!(proxy_post, post, Method::POST, "credentialProxyPost");
proxy_route!(proxy_put, put, Method::PUT, "credentialProxyPut");
proxy_route!(proxy_patch, patch, Method::PATCH, "credentialProxyPatch");
proxy_route!(
    proxy_delete,
    delete,
    Method::DELETE,
    "credentialProxyDelete"
);
