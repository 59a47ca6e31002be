//! Integration connections (`/api/integrations…`, SPEC §12): connect with fields
//! (api_key, basic, custom) validated against the auth's `credentials.schema`, or
//! with OAuth2 (authorization code + PKCE S256, RFC 8414 discovery, RFC 8707
//! resource) finished by the public `GET /api/integrations/callback`; the OAuth
//! clients an application registers; connection readiness per agent. Credentials
//! are sealed at rest and never returned.
//!
//! `{packageId}` is `@scope/name`, URL-encoded (`%40scope%2Fname`) or with a literal
//! slash (folded before routing by `pipeline::package_paths`).

mod clients;
mod connections;
mod fields;
mod governance;
mod hosted;
mod list;
mod my_pins;
mod oauth_flow;
mod readiness;

pub use clients::*;
pub use connections::*;
pub use fields::*;
pub use governance::*;
pub use hosted::*;
pub use list::*;
pub use my_pins::*;
pub use oauth_flow::*;
pub use readiness::*;

use std::collections::BTreeMap;

use crate::query::Query;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use corral_core::time::now_ms;
use corral_core::{AppId, ErrorCode};
use corral_store::integrations as store;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Digest as _;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Ctx, Perm};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::json::{Json, Validate};
use crate::pagination::Page;
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
        .routes(routes!(activate_integration))
        .routes(routes!(deactivate_integration))
        .routes(routes!(update_integration_settings))
        .routes(routes!(
            get_integration_default,
            put_integration_default,
            delete_integration_default
        ))
        .routes(routes!(list_integration_pins))
        .routes(routes!(put_integration_pin, delete_integration_pin))
        .routes(routes!(consuming_agents))
        .routes(routes!(list_my_pins, put_my_pin, delete_my_pin))
        .routes(routes!(initiate_connect_session))
}

/// The browser lands here from the authorization server: no session is needed
/// (the single-use state identifies the authorization).
pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(oauth_callback))
        .routes(routes!(start_connect))
        .routes(routes!(connect_context))
        .routes(routes!(connect_submit))
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
    app: &AppId,
    package_id: &str,
    auth_key: &str,
    actor: &Actor,
) -> ApiResult<store::Connection> {
    store::connection(conn, id)
        .await?
        .filter(|c| {
            c.application_id == *app
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
fn key_application(ctx: &Ctx) -> Option<&AppId> {
    match &ctx.principal {
        crate::auth::Principal::ApiKey(k) => Some(&k.application_id),
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
