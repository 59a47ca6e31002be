//! `POST /api/auth/bootstrap/redeem`: claims a fresh instance with the one-shot
//! `CORRAL_BOOTSTRAP_TOKEN`. Usable while no organization exists: creates the owner,
//! the organization and its default application in one transaction, and signs the
//! owner in.

use axum::extract::State;
use axum::http::{header, request::Parts};
use axum::response::{IntoResponse, Response};
use corral_core::time::now_ms;
use corral_core::{AppId, ErrorCode, OrgId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::password;
use crate::context::CURRENT_API_VERSION;
use crate::error::{ApiError, ApiResult, FieldError, ProblemDetail};
use crate::json::{check, Json, Validate};
use crate::pipeline::client_ip::ClientIp;
use crate::routes::auth::{normalize_email, start_session, User};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(redeem_bootstrap))
}

/// One redemption at a time in this process (PostgreSQL adds a cluster-wide lock).
static REDEEMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BootstrapBody {
    #[schema(min_length = 1, max_length = 128)]
    pub token: String,
    #[schema(format = Email)]
    pub email: String,
    #[schema(min_length = 8)]
    pub password: String,
    #[schema(min_length = 1, max_length = 120)]
    pub name: String,
}

impl Validate for BootstrapBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check::len(&mut e, "token", &self.token, 1, 128);
        check::email(&mut e, "email", self.email.trim());
        check::len(&mut e, "password", &self.password, 8, 128);
        check::len(&mut e, "name", self.name.trim(), 1, 120);
        e
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapInfo {
    pub org_id: String,
    pub org_slug: String,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BootstrapResponse {
    pub user: User,
    /// The session token (also set as the session cookie).
    pub token: Option<String>,
    pub bootstrap: BootstrapInfo,
}

fn gone() -> ApiError {
    ApiError::new(
        ErrorCode::BootstrapUnavailable,
        "no bootstrap token is redeemable: none is configured (CORRAL_BOOTSTRAP_TOKEN) or the instance already has an organization",
    )
}

/// Claim ownership of a fresh instance with the bootstrap token.
#[utoipa::path(post, path = "/api/auth/bootstrap/redeem", tag = "Auth", operation_id = "redeemBootstrapToken",
    security(()),
    request_body = BootstrapBody,
    responses((status = 200, description = "Ownership claimed, session cookie set", body = BootstrapResponse),
              (status = 401, description = "Invalid bootstrap token", body = ProblemDetail),
              (status = 409, description = "The email is taken, or another redemption is in progress", body = ProblemDetail),
              (status = 410, description = "No bootstrap token is redeemable", body = ProblemDetail)))]
pub async fn redeem_bootstrap(
    State(state): State<AppState>,
    parts: Parts,
    Json(body): Json<BootstrapBody>,
) -> ApiResult<Response> {
    let Some(expected) = state.config.bootstrap_token.clone() else {
        return Err(gone());
    };
    {
        let mut conn = state.db.conn().await?;
        let orgs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM organizations")
            .fetch_one(&mut *conn)
            .await
            .map_err(corral_store::StoreError::from)?;
        if orgs > 0 {
            return Err(gone());
        }
    }
    let same: bool = {
        use subtle::ConstantTimeEq as _;
        body.token
            .as_bytes()
            .ct_eq(expected.expose().as_bytes())
            .into()
    };
    if !same {
        return Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "the bootstrap token is not valid",
        ));
    }
    let Ok(_guard) = REDEEMING.try_lock() else {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "another bootstrap redemption is in progress",
        ));
    };
    let email = normalize_email(&body.email);
    let hash = password::hash(body.password).await?;
    let now = now_ms();
    let user_id = corral_core::ids::uuid();
    let org_id = OrgId::generate();
    let name = body.name.trim().to_owned();
    let slug = {
        let s = crate::routes::orgs::slugify(&name);
        if s.is_empty() {
            "default".to_owned()
        } else {
            s
        }
    };
    let mut tx = state.db.begin().await?;
    if state.db.backend() == corral_store::Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(7317001)")
            .execute(&mut *tx)
            .await
            .map_err(corral_store::StoreError::from)?;
    }
    let orgs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM organizations")
        .fetch_one(&mut *tx)
        .await
        .map_err(corral_store::StoreError::from)?;
    if orgs > 0 {
        return Err(gone());
    }
    match corral_store::users::insert(
        &mut tx,
        &corral_store::users::NewUser {
            id: &user_id,
            email: &email,
            name: &name,
            password_hash: &hash,
            now,
        },
    )
    .await
    {
        Err(e) if e.is_conflict_on("email") => {
            let mut e = ApiError::new(
                ErrorCode::EmailTaken,
                "an account with this email already exists",
            );
            e.param = Some("email".into());
            return Err(e);
        }
        other => other?,
    }
    corral_store::orgs::insert_with_owner(
        &mut tx,
        &corral_store::orgs::NewOrg {
            id: &org_id,
            name: &format!("{name}'s organization"),
            slug: &slug,
            api_version: CURRENT_API_VERSION,
            owner_id: &user_id,
            default_app_id: &AppId::generate(),
            now,
        },
    )
    .await?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    let mut conn = state.db.conn().await?;
    let user = corral_store::users::by_id(&mut conn, &user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    drop(conn);
    let ip = parts.extensions.get::<ClientIp>().map(|c| c.0.to_string());
    let (token, cookie) = start_session(&state, &user.id, &parts.headers, ip).await?;
    tracing::info!(user_id = %user.id, org_id = %org_id, "instance bootstrapped");
    let body = BootstrapResponse {
        user: User::from(&user),
        token: Some(token),
        bootstrap: BootstrapInfo {
            org_id: org_id.to_string(),
            org_slug: slug,
            warnings: Vec::new(),
        },
    };
    Ok(([(header::SET_COOKIE, cookie)], axum::Json(body)).into_response())
}
