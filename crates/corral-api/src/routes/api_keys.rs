//! API keys (`/api/api-keys…`). A key is shown once, at creation. Its scopes must be
//! within what its creator's role allows and what keys may hold at all; at use, the
//! creator's *current* role caps them again (see `auth::api_key`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use corral_core::perm::{grantable_to_api_key, PermSet};
use corral_core::time::{now_ms, parse_rfc3339};
use corral_core::Permission;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::api_key;
use crate::context::{perms, Ctx, Perm};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::json::{check, Json, Validate};
use crate::routes::{rfc3339, ListOf};
use crate::state::AppState;

pub fn app_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(available_scopes))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

/// What the caller may put on a key: their permissions that keys may hold.
fn grantable(ctx: &Ctx) -> PermSet {
    ctx.permissions.retain(grantable_to_api_key)
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeList {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<String>,
    pub has_more: bool,
}

/// Scopes the caller can grant to a new key.
#[utoipa::path(get, path = "/api/api-keys/available-scopes", tag = "API Keys", operation_id = "listAvailableScopes",
    params(
        ("X-Org-Id" = Option<String>, Header, description = "Organization id (session auth)"),
        ("X-Application-Id" = Option<String>, Header, description = "Application id (session auth; also X-App-Id)"),
    ),
    responses(
        (status = 200, description = "Scopes", body = ScopeList),
    ))]
pub async fn available_scopes(ctx: Perm<perms::ApiKeysRead>) -> ApiResult<Json<ScopeList>> {
    Ok(Json(ScopeList {
        object: "list",
        data: grantable(&ctx).to_strings(),
        has_more: false,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: String,
    pub key_prefix: String,
    pub scopes: Vec<String>,
    #[serde(rename = "created_by")]
    pub created_by: Option<String>,
    #[serde(rename = "created_by_name", skip_serializing_if = "Option::is_none")]
    pub created_by_name: Option<String>,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<corral_store::api_keys::ApiKey> for ApiKeyInfo {
    fn from(k: corral_store::api_keys::ApiKey) -> ApiKeyInfo {
        ApiKeyInfo {
            id: k.id,
            name: k.name,
            key_prefix: k.key_prefix,
            scopes: serde_json::from_str(&k.scopes).unwrap_or_default(),
            created_by: k.created_by,
            created_by_name: k.created_by_name,
            expires_at: k.expires_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
            created_at: rfc3339(k.created_at),
        }
    }
}

/// Keys of the application (never the secret itself).
#[utoipa::path(get, path = "/api/api-keys", tag = "API Keys", operation_id = "listApiKeys",
    params(
        ("X-Org-Id" = Option<String>, Header, description = "Organization id (session auth)"),
        ("X-Application-Id" = Option<String>, Header, description = "Application id (session auth; also X-App-Id)"),
    ),
    responses(
        (status = 200, description = "Key list", body = ListOf<ApiKeyInfo>),
    ))]
pub async fn list_keys(
    State(state): State<AppState>,
    ctx: Perm<perms::ApiKeysRead>,
) -> ApiResult<Json<ListOf<ApiKeyInfo>>> {
    let mut conn = state.db.conn().await?;
    let keys = corral_store::api_keys::list(&mut conn, ctx.org_id()?, ctx.app_id()?).await?;
    Ok(Json(ListOf::all(
        keys.into_iter().map(ApiKeyInfo::from).collect(),
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateKeyBody {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Defaults to every scope the caller can grant.
    pub scopes: Option<Vec<String>>,
}

impl Validate for CreateKeyBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check::len(&mut e, "name", self.name.trim(), 1, 100);
        if let Some(t) = &self.expires_at {
            match parse_rfc3339(t) {
                None => e.push(FieldError::new(
                    "expiresAt",
                    "invalid_format",
                    "must be an RFC 3339 date-time",
                )),
                Some(ms) if ms <= now_ms() => e.push(FieldError::new(
                    "expiresAt",
                    "in_past",
                    "must be in the future",
                )),
                Some(_) => {}
            }
        }
        if let Some(scopes) = &self.scopes {
            for (i, s) in scopes.iter().enumerate() {
                if Permission::parse(s).is_none() {
                    e.push(FieldError::new(
                        format!("scopes[{i}]"),
                        "unknown_scope",
                        format!("unknown scope {s:?}"),
                    ));
                }
            }
        }
        e
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    pub id: String,
    /// The key itself; shown only in this response.
    pub key: String,
    pub key_prefix: String,
    pub name: String,
    pub scopes: Vec<String>,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// Create a key for the application. The secret is in this response only.
#[utoipa::path(post, path = "/api/api-keys", tag = "API Keys", operation_id = "createApiKey",
    params(
        ("X-Org-Id" = Option<String>, Header, description = "Organization id (session auth)"),
        ("X-Application-Id" = Option<String>, Header, description = "Application id (session auth; also X-App-Id)"),
    ),
    request_body = CreateKeyBody,
    responses(
        (status = 201, description = "Key created", body = CreatedKey),
    ))]
pub async fn create_key(
    State(state): State<AppState>,
    ctx: Perm<perms::ApiKeysWrite>,
    Json(body): Json<CreateKeyBody>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let user = ctx.user()?;
    let allowed = grantable(&ctx);
    let scopes: PermSet = match &body.scopes {
        None => allowed.retain(|p| !corral_core::perm::opt_in_scope(p)),
        Some(list) => {
            let errors: Vec<FieldError> = list
                .iter()
                .enumerate()
                .filter(|(_, s)| Permission::parse(s).is_none_or(|p| !allowed.contains(p)))
                .map(|(i, s)| {
                    FieldError::new(
                        format!("scopes[{i}]"),
                        "not_grantable",
                        format!("you cannot grant {s:?}"),
                    )
                })
                .collect();
            if !errors.is_empty() {
                return Err(ApiError::validation(errors));
            }
            PermSet::from_scopes(list.iter().map(String::as_str))
        }
    };
    let key = api_key::generate();
    let id = corral_core::ids::uuid();
    let now = now_ms();
    let expires_at = body.expires_at.as_deref().and_then(parse_rfc3339);
    let scope_strings = scopes.to_strings();
    let prefix = &key[..api_key::LOOKUP_PREFIX_LEN];
    let mut conn = state.db.conn().await?;
    corral_store::api_keys::insert(
        &mut conn,
        &corral_store::api_keys::NewApiKey {
            id: &id,
            org_id: ctx.org_id()?,
            application_id: ctx.app_id()?,
            name: body.name.trim(),
            key_prefix: prefix,
            key_hash: &api_key::hash(&key),
            scopes: &serde_json::to_string(&scope_strings).map_err(ApiError::internal)?,
            created_by: &user.user_id,
            expires_at,
            now,
        },
    )
    .await?;
    tracing::info!(key_id = %id, org_id = %ctx.org_id()?, "API key created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            id,
            key_prefix: prefix.to_owned(),
            key,
            name: body.name.trim().to_owned(),
            scopes: scope_strings,
            expires_at: expires_at.map(rfc3339),
            created_at: rfc3339(now),
        }),
    ))
}

/// Revoke a key; it stops working at once.
#[utoipa::path(delete, path = "/api/api-keys/{id}", tag = "API Keys", operation_id = "revokeApiKey",
    params(("id" = String, Path, description = "Key id"),
        ("X-Org-Id" = Option<String>, Header, description = "Organization id (session auth)"),
        ("X-Application-Id" = Option<String>, Header, description = "Application id (session auth; also X-App-Id)"),
    ),
    responses(
        (status = 204, description = "Key revoked"),
    ))]
pub async fn revoke_key(
    State(state): State<AppState>,
    ctx: Perm<perms::ApiKeysWrite>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let mut conn = state.db.conn().await?;
    if !corral_store::api_keys::revoke(&mut conn, ctx.org_id()?, ctx.app_id()?, &id, now_ms())
        .await?
    {
        return Err(ApiError::not_found("API key"));
    }
    state
        .runs
        .bus
        .revoke(corral_realtime::Revocation::ApiKey { id })
        .await;
    Ok(StatusCode::NO_CONTENT)
}
