//! `/api/auth/*`: sign-up, sign-in, sign-out, get-session. These run before the
//! authentication step of the pipeline; sign-in and sign-up are limited per client IP.

use axum::extract::{Request, State};
use axum::http::{header, request::Parts, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use corral_core::time::now_ms;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{password, session};
use crate::error::{ApiError, ApiResult, FieldError, ProblemDetail};
use crate::json::{check, Json, Validate};
use crate::pipeline::client_ip::ClientIp;
use crate::routes::rfc3339;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_up))
        .routes(routes!(sign_in))
        .routes(routes!(sign_out))
        .routes(routes!(get_session))
}

/// Per-IP limits on the credential-guessing routes.
pub async fn ip_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // As Appstrate's auth layer does, the per-IP sign-in and sign-up limits apply in
    // production only: in development (the tier-0 default) a client's test suite may
    // sign up a user per test.
    if !state.config.is_production() {
        return next.run(req).await;
    }
    let Some(rule) = state.limits.for_route(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let ip = req
        .extensions()
        .get::<ClientIp>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let d = state.rate_limiter.hit(rule, &format!("ip:{ip}")).await;
    let mut resp = if d.allowed {
        next.run(req).await
    } else {
        let mut e = ApiError::new(
            corral_core::ErrorCode::RateLimited,
            "Too many attempts. Please try again shortly.",
        );
        e.retry_after = Some(d.reset);
        e.into_response()
    };
    d.apply_headers(resp.headers_mut());
    resp
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&corral_store::users::User> for User {
    fn from(u: &corral_store::users::User) -> User {
        User {
            id: u.id.clone(),
            name: u.name.clone(),
            email: u.email.clone(),
            created_at: rfc3339(u.created_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignUpBody {
    #[schema(format = Email)]
    pub email: String,
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    pub name: String,
    /// Accepted for compatibility; ignored.
    #[serde(default)]
    pub callback_url: Option<String>,
}

impl Validate for SignUpBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check::email(&mut e, "email", self.email.trim());
        check::len(&mut e, "password", &self.password, 8, 128);
        check::len(&mut e, "name", self.name.trim(), 1, 100);
        e
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthResponse {
    pub user: User,
    /// The session token (also set as the `corral_session` cookie).
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<bool>,
}

pub(crate) async fn start_session(
    state: &AppState,
    user_id: &str,
    parts_headers: &HeaderMap,
    ip: Option<String>,
) -> ApiResult<(String, axum::http::HeaderValue)> {
    let token = session::new_token();
    let now = now_ms();
    let ua = parts_headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect::<String>());
    let mut conn = state.db.conn().await?;
    corral_store::sessions::insert(
        &mut conn,
        &corral_store::sessions::NewSession {
            id: &corral_core::ids::uuid(),
            token_hash: &session::token_hash(state, &token),
            user_id,
            expires_at: now + session::TTL_MS,
            ip: ip.as_deref(),
            user_agent: ua.as_deref(),
            now,
        },
    )
    .await?;
    let cookie = session::cookie_value(state, &token, session::TTL_MS);
    Ok((token, cookie))
}

pub(crate) fn normalize_email(e: &str) -> String {
    e.trim().to_lowercase()
}

/// Create an account with email, password and name; sets the session cookie.
#[utoipa::path(post, path = "/api/auth/sign-up/email", tag = "Auth", operation_id = "signUpEmail",
    security(()),
    request_body = SignUpBody,
    responses(
        (status = 200, description = "Account created, session cookie set", body = AuthResponse),
        (status = 403, description = "Sign-up is closed", body = ProblemDetail),
        (status = 429, description = "Too many requests", body = ProblemDetail),
    ))]
async fn sign_up(
    State(state): State<AppState>,
    parts: Parts,
    Json(body): Json<SignUpBody>,
) -> ApiResult<Response> {
    let email = normalize_email(&body.email);
    let hash = password::hash(body.password).await?;
    let now = now_ms();
    let id = corral_core::ids::uuid();
    let mut conn = state.db.conn().await?;
    let inserted = corral_store::users::insert(
        &mut conn,
        &corral_store::users::NewUser {
            id: &id,
            email: &email,
            name: body.name.trim(),
            password_hash: &hash,
            now,
        },
    )
    .await;
    match inserted {
        Err(e) if e.is_conflict_on("email") => {
            return Err(ApiError::field(
                "email",
                "taken",
                "an account with this email already exists",
            ))
        }
        other => other?,
    }
    let user = corral_store::users::by_id(&mut conn, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    drop(conn);
    let ip = parts.extensions.get::<ClientIp>().map(|c| c.0.to_string());
    let (token, cookie) = start_session(&state, &user.id, &parts.headers, ip).await?;
    tracing::info!(user_id = %user.id, "user signed up");
    let body = AuthResponse {
        user: User::from(&user),
        token: Some(token),
        redirect: None,
    };
    Ok(([(header::SET_COOKIE, cookie)], axum::Json(body)).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignInBody {
    #[schema(format = Email)]
    pub email: String,
    pub password: String,
    /// Accepted for compatibility; sessions always last 7 days, sliding.
    #[serde(default)]
    pub remember_me: Option<bool>,
    #[serde(default)]
    pub callback_url: Option<String>,
}

impl Validate for SignInBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check::len(&mut e, "email", self.email.trim(), 1, 254);
        check::len(&mut e, "password", &self.password, 1, 1024);
        e
    }
}

/// Log in with email and password; sets the session cookie.
#[utoipa::path(post, path = "/api/auth/sign-in/email", tag = "Auth", operation_id = "signInEmail",
    security(()),
    request_body = SignInBody,
    responses(
        (status = 200, description = "Logged in, session cookie set", body = AuthResponse),
        (status = 401, description = "Invalid credentials", body = ProblemDetail),
        (status = 429, description = "Too many attempts", body = ProblemDetail),
    ))]
async fn sign_in(
    State(state): State<AppState>,
    parts: Parts,
    Json(body): Json<SignInBody>,
) -> ApiResult<Response> {
    let email = normalize_email(&body.email);
    let mut conn = state.db.conn().await?;
    let user = corral_store::users::by_email(&mut conn, &email).await?;
    drop(conn);
    let stored = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .filter(|h| !h.is_empty());
    let ok = password::verify(body.password, stored).await?;
    let Some(user) = user.filter(|_| ok) else {
        return Err(ApiError::new(
            corral_core::ErrorCode::InvalidCredentials,
            "invalid email or password",
        ));
    };
    let ip = parts.extensions.get::<ClientIp>().map(|c| c.0.to_string());
    let (token, cookie) = start_session(&state, &user.id, &parts.headers, ip).await?;
    let body = AuthResponse {
        user: User::from(&user),
        token: Some(token),
        redirect: Some(false),
    };
    Ok(([(header::SET_COOKIE, cookie)], axum::Json(body)).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignOutResponse {
    pub success: bool,
}

/// Log out: ends the session and clears the cookie.
#[utoipa::path(post, path = "/api/auth/sign-out", tag = "Auth", operation_id = "signOut",
    security(("cookieAuth" = [])),
    responses(
        (status = 200, description = "Logged out", body = SignOutResponse),
        (status = 401, description = "No active session", body = ProblemDetail),
    ))]
async fn sign_out(State(state): State<AppState>, parts: Parts) -> ApiResult<Response> {
    let Some(token) = session::token_from(&parts) else {
        return Err(ApiError::unauthorized("no active session", false));
    };
    let mut conn = state.db.conn().await?;
    let ended =
        corral_store::sessions::delete_by_hash(&mut conn, &session::token_hash(&state, token))
            .await?;
    let Some(id) = ended else {
        return Err(ApiError::unauthorized(
            "the session has expired or was signed out",
            true,
        ));
    };
    state
        .runs
        .bus
        .revoke(corral_realtime::Revocation::Session { id })
        .await;
    Ok((
        StatusCode::OK,
        [(header::SET_COOKIE, session::clear_cookie(&state))],
        axum::Json(SignOutResponse { success: true }),
    )
        .into_response())
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub id: String,
    pub user_id: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionResponse {
    pub user: Option<User>,
    pub session: Option<SessionInfo>,
}

/// The current session and user, or `null` when there is none.
#[utoipa::path(get, path = "/api/auth/get-session", tag = "Auth", operation_id = "getSession",
    security(("cookieAuth" = [])),
    responses((status = 200, description = "Session info, or null when there is no active session", body = Option<SessionResponse>)))]
async fn get_session(State(state): State<AppState>, parts: Parts) -> ApiResult<Response> {
    // A stale cookie is "no session" here, not an error.
    let Ok(Some(u)) = session::resolve(&state, &parts).await else {
        return Ok(axum::Json(serde_json::Value::Null).into_response());
    };
    let mut conn = state.db.conn().await?;
    let Some(user) = corral_store::users::by_id(&mut conn, &u.user_id).await? else {
        return Ok(axum::Json(serde_json::Value::Null).into_response());
    };
    let body = SessionResponse {
        user: Some(User::from(&user)),
        session: Some(SessionInfo {
            id: u.session_id.clone(),
            user_id: u.user_id.clone(),
            expires_at: rfc3339(u.session_expires_at),
            created_at: rfc3339(u.session_created_at),
        }),
    };
    let mut resp = axum::Json(body).into_response();
    if let Some(token) = &u.refreshed_cookie {
        resp.headers_mut().append(
            header::SET_COOKIE,
            session::cookie_value(&state, token, session::TTL_MS),
        );
    }
    Ok(resp)
}
