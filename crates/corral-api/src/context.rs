//! SPEC §4 steps 4–8, in order, for every authenticated route: authentication →
//! `Appstrate-User` rules → org context → app context → API version → idempotency
//! guard → per-route rate limit → handler. Routes are grouped by the context they
//! need ([`Scope`]); each group gets this middleware as a route layer, so the matched
//! route template is known for rate limits and idempotency.

use std::marker::PhantomData;

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::RequestPartsExt;
use corral_core::perm::PermSet;
use corral_core::{AppId, ErrorCode, OrgId, Permission, Role};

use corral_connect::Actor;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::idempotency;
use crate::state::AppState;

pub use corral_core::{CURRENT_API_VERSION, SUPPORTED_API_VERSIONS};

pub fn is_supported_version(v: &str) -> bool {
    SUPPORTED_API_VERSIONS.contains(&v)
}

/// Which context a group of routes needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A signed-in user; no organization (e.g. `/api/orgs`, `/api/profile`).
    User,
    /// An organization named by the `{orgId}` path parameter.
    OrgPath,
    /// An organization from `X-Org-Id` (session) or the API key.
    Org,
    /// An organization and an application (`X-App-Id` / `X-Application-Id`, or the key).
    App,
}

#[derive(Clone, Debug)]
pub struct OrgCtx {
    pub id: OrgId,
    /// The member's role (session), or the key creator's role (API key).
    pub role: Option<Role>,
}

/// Everything the pipeline learned about the caller, for handlers.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub principal: Principal,
    pub org: Option<OrgCtx>,
    pub app_id: Option<AppId>,
    pub end_user_id: Option<String>,
    pub permissions: PermSet,
    pub api_version: String,
}

impl Ctx {
    /// Who owns the connections this caller creates and may use.
    pub fn actor(&self) -> Actor {
        if let Some(eu) = &self.end_user_id {
            return Actor {
                owner_type: "end_user",
                owner_id: eu.clone(),
                include_shared: false,
            };
        }
        match &self.principal {
            Principal::User(u) => Actor {
                owner_type: "user",
                owner_id: u.user_id.clone(),
                include_shared: true,
            },
            Principal::ApiKey(k) => Actor {
                owner_type: "user",
                owner_id: k
                    .created_by
                    .clone()
                    .unwrap_or_else(|| format!("api_key:{}", k.key_id)),
                include_shared: true,
            },
        }
    }

    /// The caller as the run trigger sees it (app-scoped routes only).
    pub fn caller(&self) -> ApiResult<corral_engine::runs::trigger::Caller> {
        self.caller_in(self.app_id()?.clone())
    }

    /// The caller in `app_id`, an application the route checked the caller may use
    /// (a route that names it in its body).
    pub fn caller_in(&self, app_id: AppId) -> ApiResult<corral_engine::runs::trigger::Caller> {
        let (user_id, api_key_id) = match &self.principal {
            Principal::User(u) => (Some(u.user_id.clone()), None),
            Principal::ApiKey(k) => (None, Some(k.key_id.clone())),
        };
        Ok(corral_engine::runs::trigger::Caller {
            org_id: self.org_id()?.clone(),
            app_id,
            user_id,
            api_key_id,
            end_user_id: self.end_user_id.clone(),
            actor: self.actor(),
        })
    }

    /// The org id; only call from routes whose scope sets one.
    pub fn org_id(&self) -> ApiResult<&OrgId> {
        self.org
            .as_ref()
            .map(|o| &o.id)
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("route needs an org context")))
    }

    pub fn app_id(&self) -> ApiResult<&AppId> {
        self.app_id
            .as_ref()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("route needs an app context")))
    }

    pub fn role(&self) -> Option<Role> {
        self.org.as_ref().and_then(|o| o.role)
    }

    pub fn require(&self, p: Permission) -> ApiResult<()> {
        if self.permissions.contains(p) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this action needs the {} permission",
                p.as_str()
            )))
        }
    }

    /// The signed-in user, or 403 for an API key on a user-only route.
    pub fn user(&self) -> ApiResult<&crate::auth::UserPrincipal> {
        self.principal
            .user()
            .ok_or_else(|| ApiError::forbidden("this route needs a signed-in user, not an API key"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Ctx>().cloned().ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("route is missing the context layer"))
        })
    }
}

/// A permission a handler needs, as a type: `Perm<perms::RunsWrite>`.
pub trait PermMarker {
    const PERM: Permission;
}

pub struct Perm<P> {
    pub ctx: Ctx,
    _p: PhantomData<P>,
}

impl<P> std::ops::Deref for Perm<P> {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl<S: Send + Sync, P: PermMarker> FromRequestParts<S> for Perm<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let ctx = Ctx::from_request_parts(parts, state).await?;
        ctx.require(P::PERM)?;
        Ok(Perm {
            ctx,
            _p: PhantomData,
        })
    }
}

pub mod perms {
    //! Permission marker types for [`super::Perm`].
    use super::PermMarker;
    use corral_core::Permission;

    macro_rules! markers {
        ($($name:ident),+ $(,)?) => {
            $(
                pub struct $name;
                impl PermMarker for $name {
                    const PERM: Permission = Permission::$name;
                }
            )+
        };
    }

    markers!(
        OrgsRead,
        OrgsWrite,
        OrgsDelete,
        MembersRead,
        MembersWrite,
        ApplicationsRead,
        ApplicationsWrite,
        EndUsersRead,
        EndUsersWrite,
        ApiKeysRead,
        ApiKeysWrite,
        PackagesRead,
        PackagesWrite,
        AgentsRead,
        AgentsWrite,
        AgentsRun,
        SchedulesRead,
        SchedulesWrite,
        RunsRead,
        RunsWrite,
        RunsCancel,
        WebhooksRead,
        WebhooksWrite,
        ConnectionsRead,
        ConnectionsWrite,
        ModelsRead,
        ModelsWrite,
        ProxiesRead,
        ProxiesWrite,
        LlmProxyCall,
        CredentialProxyCall,
    );
}

/// The realtime routes take the org and application from the query as well
/// (`?orgId=…&applicationId=…`): browsers' EventSource cannot send headers.
fn realtime_query(parts: &Parts, name: &str) -> Option<String> {
    if !parts.uri.path().starts_with("/api/realtime/") {
        return None;
    }
    url::form_urlencoded::parse(parts.uri.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn header_str<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The context middleware. `scope` says which context this route group needs.
pub async fn layer(
    State((state, scope)): State<(AppState, Scope)>,
    req: Request,
    next: Next,
) -> Response {
    match run(state, scope, req, next).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn run(state: AppState, scope: Scope, req: Request, next: Next) -> ApiResult<Response> {
    let (mut parts, body) = req.into_parts();

    // 4. Authentication.
    let principal = state.auth.authenticate(&parts, &state).await?;

    // 5. `Appstrate-User` only with an API key, and only for an end-user of its app.
    let end_user_id = match header_str(&parts, "appstrate-user") {
        None => None,
        Some(eu) => match &principal {
            Principal::User(_) => {
                let mut e = ApiError::new(
                    ErrorCode::HeaderNotAllowed,
                    "Appstrate-User is only allowed with API key authentication",
                );
                e.param = Some("Appstrate-User".into());
                return Err(e);
            }
            Principal::ApiKey(k) => {
                let mut conn = state.db.conn().await?;
                if !corral_core::ids::has_prefix(eu, corral_core::ids::END_USER)
                    || !corral_store::end_users::exists_in_app(&mut conn, &k.application_id, eu)
                        .await?
                {
                    return Err(ApiError::forbidden(
                        "the end-user does not belong to this API key's application",
                    ));
                }
                Some(eu.to_owned())
            }
        },
    };

    // 6. Organization context and permissions.
    let (org, permissions, org_version) =
        resolve_org(&state, scope, &mut parts, &principal).await?;

    // 7. Application context.
    let app_id = if scope == Scope::App {
        Some(resolve_app(&state, &parts, &principal, org.as_ref()).await?)
    } else {
        None
    };

    // 8a. API version: header, else the org's pin, else current.
    let api_version = match header_str(&parts, "appstrate-version") {
        Some(v) if is_supported_version(v) => v.to_owned(),
        Some(v) => {
            let mut e = ApiError::new(
                ErrorCode::UnsupportedApiVersion,
                format!(
                    "API version {v:?} is not supported; supported: {}",
                    SUPPORTED_API_VERSIONS.join(", ")
                ),
            );
            e.param = Some("Appstrate-Version".into());
            return Err(e);
        }
        None => org_version
            .filter(|v| is_supported_version(v))
            .unwrap_or_else(|| CURRENT_API_VERSION.to_owned()),
    };

    let refreshed_cookie = principal.user().and_then(|u| u.refreshed_cookie.clone());
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let method = parts.method.clone();
    let limit_key = principal.limit_key();
    let ctx = Ctx {
        principal,
        org,
        app_id,
        end_user_id,
        permissions,
        api_version: api_version.clone(),
    };
    parts.extensions.insert(ctx.clone());
    let req = Request::from_parts(parts, body);

    // 8b. Idempotency guard (validates and claims the key, may answer by itself).
    let idem = idempotency::guard(&state, &ctx, &method, &route, req).await?;

    // 8c. Per-route rate limit, per principal (a replay above costs no budget).
    let (mut resp, decision) = match idem {
        idempotency::Outcome::Answered(resp) => (resp, None),
        idempotency::Outcome::Proceed(req, claim) => {
            let decision = match state.limits.for_route(&method, &route) {
                Some(rule) => Some(state.rate_limiter.hit(rule, &limit_key).await),
                None => None,
            };
            if let Some(d) = decision.filter(|d| !d.allowed) {
                if let Some(claim) = claim {
                    (*claim).abandon().await;
                }
                let mut e = ApiError::new(
                    ErrorCode::RateLimited,
                    "Too many requests. Please try again shortly.",
                );
                e.retry_after = Some(d.reset);
                (e.into_response(), decision)
            } else {
                let resp = next.run(req).await;
                let resp = match claim {
                    Some(claim) => (*claim).finish(resp).await,
                    None => resp,
                };
                (resp, decision)
            }
        }
    };

    let h = resp.headers_mut();
    if let Some(d) = decision {
        d.apply_headers(h);
    }
    if let Ok(v) = HeaderValue::from_str(&api_version) {
        h.insert("appstrate-version", v);
    }
    if let Some(token) = refreshed_cookie {
        h.append(
            header::SET_COOKIE,
            crate::auth::session::cookie_value(&state, &token, crate::auth::session::TTL_MS),
        );
    }
    Ok(resp)
}

async fn resolve_org(
    state: &AppState,
    scope: Scope,
    parts: &mut Parts,
    principal: &Principal,
) -> ApiResult<(Option<OrgCtx>, PermSet, Option<String>)> {
    let requested: Option<OrgId> = match scope {
        Scope::User => None,
        Scope::OrgPath => {
            let params = parts
                .extract::<RawPathParams>()
                .await
                .map_err(|_| ApiError::internal(anyhow::anyhow!("no path params")))?;
            let id = params
                .iter()
                .find(|(k, _)| *k == "orgId")
                .map(|(_, v)| OrgId::from(v));
            Some(id.ok_or_else(|| ApiError::internal(anyhow::anyhow!("route has no {{orgId}}")))?)
        }
        Scope::Org | Scope::App => header_str(parts, "x-org-id")
            .map(OrgId::from)
            .or_else(|| realtime_query(parts, "orgId").map(OrgId::from)),
    };
    match principal {
        Principal::ApiKey(k) => {
            if scope == Scope::User {
                return Err(ApiError::forbidden(
                    "this route needs a signed-in user, not an API key",
                ));
            }
            if let Some(req) = &requested {
                if *req != k.org_id {
                    return Err(if scope == Scope::OrgPath {
                        ApiError::not_found("organization")
                    } else {
                        ApiError::forbidden("this API key belongs to another organization")
                    });
                }
            }
            let org = OrgCtx {
                id: k.org_id.clone(),
                role: None,
            };
            Ok((Some(org), k.permissions, Some(k.org_api_version.clone())))
        }
        Principal::User(u) => {
            let Some(org_id) = requested else {
                if scope == Scope::User {
                    return Ok((None, PermSet::EMPTY, None));
                }
                return Err(ApiError::invalid_param(
                    "X-Org-Id",
                    "the X-Org-Id header is required",
                ));
            };
            let mut conn = state.db.conn().await?;
            let found = corral_store::orgs::for_member(&mut conn, &org_id, &u.user_id).await?;
            let Some(found) = found else {
                return Err(if scope == Scope::OrgPath {
                    ApiError::not_found("organization")
                } else {
                    ApiError::forbidden("you are not a member of this organization")
                });
            };
            let role = Role::parse(&found.role).ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("stored role {:?}", found.role))
            })?;
            let org = OrgCtx {
                id: found.id,
                role: Some(role),
            };
            Ok((Some(org), role.permissions(), Some(found.api_version)))
        }
    }
}

async fn resolve_app(
    state: &AppState,
    parts: &Parts,
    principal: &Principal,
    org: Option<&OrgCtx>,
) -> ApiResult<AppId> {
    let from_query = realtime_query(parts, "applicationId");
    let requested = header_str(parts, "x-app-id")
        .or_else(|| header_str(parts, "x-application-id"))
        .or(from_query.as_deref());
    match principal {
        Principal::ApiKey(k) => {
            if requested.is_some_and(|r| k.application_id != r) {
                return Err(ApiError::forbidden(
                    "this API key belongs to another application",
                ));
            }
            Ok(k.application_id.clone())
        }
        Principal::User(_) => {
            let org =
                org.ok_or_else(|| ApiError::internal(anyhow::anyhow!("app scope without org")))?;
            let Some(app_id) = requested else {
                return Err(ApiError::invalid_param(
                    "X-App-Id",
                    "the X-App-Id header is required",
                ));
            };
            let mut conn = state.db.conn().await?;
            match corral_store::applications::get(&mut conn, &org.id, &AppId::from(app_id)).await? {
                Some(app) => Ok(app.id),
                None => {
                    let mut e = ApiError::not_found("application");
                    e.param = Some("X-App-Id".into());
                    Err(e)
                }
            }
        }
    }
}
