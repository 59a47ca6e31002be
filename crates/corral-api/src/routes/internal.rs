//! The platform's internal API for sandboxes (container → host), authenticated by
//! the run token (`Authorization: Bearer rt_…`, valid while its run is active):
//! an integration's current credentials, and the access token of the run's OAuth
//! model credential, so a sidecar whose OAuth token expires mid-run, or is refused
//! upstream, gets a fresh one.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use corral_core::problem::ErrorCode;
use corral_protocol::platform_api::{
    DeliveryPlan, IntegrationAuth, IntegrationCredentials, OAuthTokenResponse,
};
use corral_protocol::{Delivery, Secret};
use corral_store::runs as store;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use corral_connect::integrations::{fresh_credentials, CredentialError};
use corral_engine::runs::Definition;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_integration_credentials))
        .routes(routes!(refresh_integration_credentials))
        .routes(routes!(get_oauth_model_token))
        .routes(routes!(refresh_oauth_model_token))
        .routes(routes!(super::internal_bundle::get_mcp_server_bundle))
        .merge(super::run_memory::router())
}

/// The active run presenting this run token.
pub(crate) async fn run_of(state: &AppState, headers: &HeaderMap) -> ApiResult<store::Run> {
    let unauthorized = |detail: &str| ApiError::new(ErrorCode::Unauthorized, detail);
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| t.starts_with("rt_"))
        .ok_or_else(|| unauthorized("a run token is required: Authorization: Bearer rt_…"))?;
    let hash = corral_engine::runs::executor::run_token_hash(token);
    let mut conn = state.db.conn().await?;
    let run = store::by_token_hash(&mut conn, &hash)
        .await?
        .ok_or_else(|| unauthorized("invalid run token"))?;
    if run.status.is_terminal() {
        return Err(unauthorized("the run token's run is finished"));
    }
    Ok(run)
}

async fn credentials(
    state: &AppState,
    headers: &HeaderMap,
    package_id: &str,
    force: bool,
) -> ApiResult<Json<IntegrationCredentials>> {
    let run = run_of(state, headers).await?;
    let def: Definition = serde_json::from_str(&run.definition).map_err(ApiError::internal)?;
    let Some(ri) = def.integrations.iter().find(|i| i.package_id == package_id) else {
        let mut e = ApiError::not_found("integration");
        e.detail = format!("{package_id} is not an integration of this run");
        return Err(e);
    };
    let fresh = fresh_credentials(&state.connect, &ri.connection_id, force)
        .await
        .map_err(|e| match e {
            CredentialError::Gone(_) => {
                let mut e = ApiError::not_found("connection");
                e.detail = format!("the connection this run uses for {package_id} was deleted");
                e
            }
            CredentialError::NeedsReconnection => ApiError::new(
                ErrorCode::CredentialRevoked,
                format!("the connection to {package_id} must be re-authorized: the provider refused its refresh token"),
            ),
            CredentialError::RefreshFailed(detail) => ApiError::new(
                ErrorCode::UpstreamError,
                format!("the access token of {package_id} could not be refreshed: {detail}"),
            ),
            CredentialError::Other(e) => ApiError::internal(e),
        })?;
    tracing::info!(run_id = %run.id, package = package_id, forced = force, "integration credentials served to the sandbox");
    let mut delivery_plans = BTreeMap::new();
    if let Delivery::Header { name, template } = &ri.delivery {
        let secrets: BTreeMap<String, Secret> = fresh
            .values
            .iter()
            .map(|(k, v)| (k.clone(), Secret::new(v.clone())))
            .collect();
        let value = corral_protocol::config::render_template(template, &secrets)
            .map_err(|e| ApiError::internal(anyhow::anyhow!("{package_id}: {e}")))?;
        delivery_plans.insert(
            fresh.auth_key.clone(),
            DeliveryPlan {
                header_name: name.clone(),
                header_prefix: String::new(),
                value,
                allow_server_override: false,
            },
        );
    }
    let expires_at = fresh.expires_at.map(corral_core::time::to_rfc3339);
    Ok(Json(IntegrationCredentials {
        expires_at_epoch_ms: BTreeMap::from([(fresh.auth_key.clone(), fresh.expires_at)]),
        auths: vec![IntegrationAuth {
            auth_key: fresh.auth_key,
            auth_type: fresh.auth_type,
            fields: fresh.values,
            authorized_uris: ri.authorized_uris.clone(),
            expires_at,
            scopes_granted: fresh.scopes_granted,
        }],
        delivery_plans,
    }))
}

/// The current credentials of one integration the run declared, an OAuth token
/// refreshed first when it expires within 5 minutes. Sidecar only.
#[utoipa::path(get, path = "/internal/integration-credentials/{scope}/{name}", tag = "Internal",
    operation_id = "getIntegrationCredentials",
    params(("scope" = String, Path, description = "Package scope (e.g. @myorg)"), ("name" = String, Path, description = "Package name")),
    responses((status = 200, description = "Live credentials, delivery plans and expiries", body = IntegrationCredentials),
              (status = 410, description = "The connection needs re-authorization", body = crate::error::ProblemDetail),
              (status = 502, description = "The authorization server failed", body = crate::error::ProblemDetail)),
    security(("bearerExecToken" = [])))]
pub async fn get_integration_credentials(
    State(state): State<AppState>,
    Path((scope, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<IntegrationCredentials>> {
    credentials(&state, &headers, &format!("{scope}/{name}"), false).await
}

/// Forces an OAuth refresh of one integration the run declared (after an upstream
/// 401), unless its token was written in the last 30 s; same answer as the `GET`.
#[utoipa::path(post, path = "/internal/integration-credentials/{scope}/{name}/refresh", tag = "Internal",
    operation_id = "refreshIntegrationCredentials",
    params(("scope" = String, Path, description = "Package scope (e.g. @myorg)"), ("name" = String, Path, description = "Package name")),
    responses((status = 200, description = "Refreshed credentials, delivery plans and expiries", body = IntegrationCredentials),
              (status = 410, description = "The connection needs re-authorization", body = crate::error::ProblemDetail),
              (status = 502, description = "The authorization server failed", body = crate::error::ProblemDetail)),
    security(("bearerExecToken" = [])))]
pub async fn refresh_integration_credentials(
    State(state): State<AppState>,
    Path((scope, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<IntegrationCredentials>> {
    credentials(&state, &headers, &format!("{scope}/{name}"), true).await
}

/// The access token of the run's OAuth model credential (`credential_id` must be
/// the credential of the run's model).
async fn oauth_model_token(
    state: &AppState,
    headers: &HeaderMap,
    credential_id: &str,
    force: bool,
) -> ApiResult<Json<OAuthTokenResponse>> {
    use corral_connect::model_oauth::{fresh_token, TokenError};
    let run = run_of(state, headers).await?;
    let def: Definition = serde_json::from_str(&run.definition).map_err(ApiError::internal)?;
    if def.model.credential_id.as_deref() != Some(credential_id) {
        return Err(ApiError::forbidden(
            "this credential is not the one of the run's model",
        ));
    }
    let fresh = fresh_token(&state.connect, &run.org_id, credential_id, force)
        .await
        .map_err(|e| match e {
            TokenError::Gone => {
                let mut e = ApiError::not_found("OAuth model provider credential");
                e.detail = format!("no OAuth credential {credential_id} (deleted, or an API key)");
                e
            }
            TokenError::NeedsReconnection => ApiError::new(
                ErrorCode::OauthNeedsReconnection,
                format!("the OAuth credential {credential_id} needs reconnection: pair the account again"),
            ),
            TokenError::Revoked(detail) => ApiError::new(
                ErrorCode::OauthRefreshRevoked,
                format!("the provider refused the refresh token of {credential_id}; the credential needs reconnection ({detail})"),
            ),
            TokenError::Failed(detail) => ApiError::new(
                ErrorCode::UpstreamError,
                format!("the access token of {credential_id} could not be refreshed: {detail}"),
            ),
            TokenError::Other(e) => ApiError::internal(e),
        })?;
    tracing::info!(run_id = %run.id, credential_id, forced = force, "model access token served to the sandbox");
    let api_shape =
        corral_connect::models::provider(&fresh.provider_id).map(|p| p.api_shape.to_owned());
    Ok(Json(OAuthTokenResponse {
        access_token: fresh.access_token,
        expires_at: fresh.expires_at,
        account_id: fresh.account_id,
        api_shape,
        provider_id: Some(fresh.provider_id),
        base_url: Some(fresh.base_url),
    }))
}

/// A fresh access token of the run's OAuth model credential, refreshed first when
/// it expires within 5 minutes, with its runtime config (provider, API shape, base
/// URL, account). Sidecar only.
#[utoipa::path(get, path = "/internal/oauth-token/{credentialId}", tag = "Internal",
    operation_id = "getOAuthModelProviderToken",
    params(("credentialId" = String, Path, description = "The OAuth model provider credential of the run's model")),
    responses((status = 200, description = "Resolved token", body = OAuthTokenResponse),
              (status = 403, description = "Not the credential of this run's model", body = crate::error::ProblemDetail),
              (status = 404, description = "No such OAuth credential", body = crate::error::ProblemDetail),
              (status = 410, description = "The credential needs reconnection", body = crate::error::ProblemDetail),
              (status = 502, description = "The token endpoint failed", body = crate::error::ProblemDetail)),
    security(("bearerExecToken" = [])))]
pub async fn get_oauth_model_token(
    State(state): State<AppState>,
    Path(credential_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<OAuthTokenResponse>> {
    oauth_model_token(&state, &headers, &credential_id, false).await
}

/// Forces a refresh of the run's OAuth model credential (after the provider refused
/// the token); a refresh token the provider refuses flags the credential
/// `needs_reconnection` and answers 410. Concurrent calls refresh once.
#[utoipa::path(post, path = "/internal/oauth-token/{credentialId}/refresh", tag = "Internal",
    operation_id = "refreshOAuthModelProviderToken",
    params(("credentialId" = String, Path, description = "The OAuth model provider credential of the run's model")),
    responses((status = 200, description = "Refreshed token", body = OAuthTokenResponse),
              (status = 403, description = "Not the credential of this run's model", body = crate::error::ProblemDetail),
              (status = 404, description = "No such OAuth credential", body = crate::error::ProblemDetail),
              (status = 410, description = "Refresh token revoked: the credential needs reconnection", body = crate::error::ProblemDetail),
              (status = 502, description = "The token endpoint failed", body = crate::error::ProblemDetail)),
    security(("bearerExecToken" = [])))]
pub async fn refresh_oauth_model_token(
    State(state): State<AppState>,
    Path(credential_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<OAuthTokenResponse>> {
    oauth_model_token(&state, &headers, &credential_id, true).await
}
