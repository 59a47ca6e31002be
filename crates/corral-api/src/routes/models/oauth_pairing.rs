use super::*;

use axum::extract::{FromRequest, Request};
use corral_connect::model_oauth::{self as oauth, RedeemInput};
use corral_store::model_oauth as pairings;

// ---- OAuth model providers: the connect helper's pairing ---------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreatePairingBody {
    /// An OAuth provider of the registry (`authMode: oauth2`): `claude-code` or `codex`.
    #[schema(pattern = "^[a-z0-9-]+$")]
    pub provider_id: String,
    /// An OAuth credential of the organization for the same provider, to reconnect in
    /// place; omit to connect a new account.
    #[schema(format = Uuid)]
    pub credential_id: Option<String>,
}

impl Validate for CreatePairingBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check::len(&mut e, "providerId", &self.provider_id, 1, 100);
        if !self
            .provider_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            e.push(FieldError::new(
                "providerId",
                "invalid_format",
                "providerId is lowercase letters, digits and dashes",
            ));
        }
        if let Some(c) = &self.credential_id {
            check::len(&mut e, "credentialId", c, 1, 100);
        }
        e
    }
}

/// The answer of a mint: the plaintext token, shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PairingCreated {
    /// Opaque pairing id (`GET`/`DELETE /api/model-providers-oauth/pairing/{id}`).
    #[schema(pattern = "^pair_[A-Za-z0-9_-]+$")]
    pub id: String,
    /// `appp_<header>.<secret>`: the bearer of `POST /api/model-providers-oauth/pair/redeem`.
    /// Only its SHA-256 is stored.
    pub token: String,
    /// The command to paste in a terminal.
    pub command: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PairingStatus {
    #[schema(pattern = "^pair_[A-Za-z0-9_-]+$")]
    pub id: String,
    /// `pending`, `consumed` or `expired`.
    #[schema(value_type = String, pattern = "^(pending|consumed|expired)$")]
    pub status: &'static str,
    #[schema(format = DateTime)]
    pub consumed_at: Option<String>,
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// The credential the redeem created or reconnected.
    #[schema(format = Uuid)]
    pub credential_id: Option<String>,
}

fn check_pairing_id(id: &str) -> ApiResult<()> {
    let ok = id
        .strip_prefix(oauth::PAIRING_ID_PREFIX)
        .is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_param(
            "id",
            "a pairing id looks like pair_<base64url>",
        ))
    }
}

/// Mint a single-use pairing token for the connect helper (`npx
/// @appstrate/connect-helper <token>`), which runs the provider's OAuth flow on the
/// user's machine and posts the tokens back to `…/pair/redeem`. With `credentialId`
/// the redeem reconnects that credential in place.
#[utoipa::path(post, path = "/api/model-providers-oauth/pairing", tag = "Model Provider Credentials",
    operation_id = "createOAuthModelProviderPairing",
    request_body = CreatePairingBody,
    responses((status = 200, description = "Pairing token created. The plaintext is included exactly once.", body = PairingCreated)))]
pub async fn create_pairing(
    State(state): State<AppState>,
    ctx: Perm<perms::ModelsWrite>,
    Json(body): Json<CreatePairingBody>,
) -> ApiResult<Json<PairingCreated>> {
    let org = ctx.org_id()?;
    let provider = svc::provider(&body.provider_id)
        .filter(|p| p.oauth.is_some())
        .ok_or_else(|| {
            ApiError::field(
                "providerId",
                "unknown_provider",
                format!(
                    "{:?} is not an OAuth model provider; one of {}",
                    body.provider_id,
                    svc::PROVIDERS
                        .iter()
                        .filter(|p| p.oauth.is_some())
                        .map(|p| p.id)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
    let mut conn = state.db.conn().await?;
    if let Some(cid) = &body.credential_id {
        let target = store::get_credential(&mut conn, org, cid).await?;
        match target {
            Some(c) if c.is_oauth() && c.provider_id == provider.id => {}
            Some(_) => {
                return Err(ApiError::field(
                    "credentialId",
                    "provider_mismatch",
                    format!(
                        "the credential is not an OAuth credential of {}",
                        provider.id
                    ),
                ))
            }
            None => {
                return Err(ApiError::field(
                    "credentialId",
                    "not_found",
                    "no such credential in this organization",
                ))
            }
        }
    }
    let (id, token, hash) = oauth::mint_pairing(&state.config.public_url, provider.id);
    let now = now_ms();
    let expires_at = now + state.config.model_pairing_ttl_seconds as i64 * 1000;
    let owner = match &ctx.principal {
        crate::auth::Principal::User(u) => Some(u.user_id.clone()),
        crate::auth::Principal::ApiKey(k) => k.created_by.clone(),
    };
    pairings::insert_pairing(
        &mut conn,
        &pairings::NewPairing {
            id: &id,
            org_id: org,
            user_id: owner.as_deref(),
            provider_id: provider.id,
            reconnect_credential_id: body.credential_id.as_deref(),
            token_hash: &hash,
            expires_at,
            now,
        },
    )
    .await?;
    tracing::info!(pairing = %id, provider = provider.id, reconnect = body.credential_id.is_some(), "pairing token minted");
    Ok(Json(PairingCreated {
        command: format!("npx @appstrate/connect-helper@latest {token}"),
        id,
        token,
        expires_at: rfc3339(expires_at),
    }))
}

/// A pairing's status, for polling while the user runs the helper; never the token.
#[utoipa::path(get, path = "/api/model-providers-oauth/pairing/{id}", tag = "Model Provider Credentials",
    operation_id = "getOAuthModelProviderPairing",
    params(("id" = String, Path, description = "Pairing id (pair_…)")),
    responses((status = 200, description = "Pairing status", body = PairingStatus)))]
pub async fn get_pairing(
    State(state): State<AppState>,
    ctx: Perm<perms::ModelsRead>,
    Path(id): Path<String>,
) -> ApiResult<Json<PairingStatus>> {
    check_pairing_id(&id)?;
    let mut conn = state.db.conn().await?;
    let p = pairings::get_pairing(&mut conn, ctx.org_id()?, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("pairing"))?;
    let status = match p.consumed_at {
        Some(_) => "consumed",
        None if p.expires_at <= now_ms() => "expired",
        None => "pending",
    };
    Ok(Json(PairingStatus {
        id: p.id,
        status,
        consumed_at: p.consumed_at.map(rfc3339),
        expires_at: rfc3339(p.expires_at),
        credential_id: p.credential_id,
    }))
}

/// Cancel a pairing. Idempotent: 204 also when it is already gone or another
/// organization's.
#[utoipa::path(delete, path = "/api/model-providers-oauth/pairing/{id}", tag = "Model Provider Credentials",
    operation_id = "cancelOAuthModelProviderPairing",
    params(("id" = String, Path, description = "Pairing id (pair_…)")),
    responses((status = 204, description = "Pairing cancelled (or no-op if absent).")))]
pub async fn cancel_pairing(
    State(state): State<AppState>,
    ctx: Perm<perms::ModelsWrite>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    check_pairing_id(&id)?;
    let mut conn = state.db.conn().await?;
    pairings::delete_pairing(&mut conn, ctx.org_id()?, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RedeemBody {
    /// Must be the pairing's provider.
    #[schema(pattern = "^[a-z0-9-]+$")]
    pub provider_id: String,
    /// Display name; the provider's name (made unique) when omitted.
    pub label: Option<String>,
    /// Write-only: stored encrypted, never returned.
    pub access_token: String,
    /// Write-only: stored encrypted, never returned.
    pub refresh_token: String,
    /// When the access token expires (Unix ms).
    pub expires_at: Option<i64>,
    #[schema(format = Email)]
    pub email: Option<String>,
    pub account_id: Option<String>,
    /// Sent by older helpers; ignored.
    #[serde(rename = "subscriptionType")]
    #[schema(ignore)]
    _subscription_type: Option<String>,
}

impl Validate for RedeemBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check::len(&mut e, "providerId", &self.provider_id, 1, 100);
        if let Some(l) = &self.label {
            check::len(&mut e, "label", l.trim(), 1, 120);
        }
        check::len(&mut e, "accessToken", &self.access_token, 1, KEY_MAX);
        check::len(&mut e, "refreshToken", &self.refresh_token, 1, KEY_MAX);
        if let Some(m) = &self.email {
            check::len(&mut e, "email", m, 1, 320);
            check::email(&mut e, "email", m);
        }
        if let Some(a) = &self.account_id {
            check::len(&mut e, "accountId", a, 1, 120);
        }
        if self.expires_at.is_some_and(|x| x <= 0) {
            e.push(FieldError::new(
                "expiresAt",
                "out_of_range",
                "expiresAt is Unix milliseconds",
            ));
        }
        e
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Redeemed {
    #[schema(format = Uuid)]
    pub credential_id: String,
    pub provider_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Email)]
    pub email: Option<String>,
    /// The models the credential serves (as `available_model_ids` lists them).
    pub available_model_ids: Vec<String>,
}

/// The connect helper posts the OAuth tokens it obtained, with the pairing token as
/// its bearer (`Authorization: Bearer appp_…`; a session or API key is refused with
/// 401). The org, user, provider and credential to reconnect come from the
/// pairing. The token works once: 410 afterwards or once expired.
#[utoipa::path(post, path = "/api/model-providers-oauth/pair/redeem", tag = "Model Provider Credentials",
    operation_id = "redeemOAuthModelProviderPairing",
    request_body = RedeemBody,
    responses((status = 200, description = "Credential created or reconnected", body = Redeemed),
              (status = 400, description = "Invalid body, or providerId is not the pairing's", body = crate::error::ProblemDetail),
              (status = 401, description = "No pairing token, or an unknown one", body = crate::error::ProblemDetail),
              (status = 404, description = "The provider or the credential to reconnect is gone", body = crate::error::ProblemDetail),
              (status = 410, description = "The pairing token expired or was already used", body = crate::error::ProblemDetail)),
    security(()))]
pub async fn redeem_pairing(
    State(state): State<AppState>,
    req: Request,
) -> ApiResult<Json<Redeemed>> {
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| t.starts_with(oauth::PAIRING_TOKEN_PREFIX))
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "this route takes the pairing token as its bearer (Authorization: Bearer appp_…), not a session or an API key",
                req.headers().contains_key(axum::http::header::AUTHORIZATION),
            )
        })?;
    let Json(body) = Json::<RedeemBody>::from_request(req, &state).await?;
    let done = oauth::redeem(
        &state.connect,
        &token,
        RedeemInput {
            provider_id: body.provider_id,
            label: body.label.map(|l| l.trim().to_owned()),
            access_token: body.access_token,
            refresh_token: body.refresh_token,
            expires_at: body.expires_at,
            email: body.email,
            account_id: body.account_id,
        },
    )
    .await?;
    Ok(Json(Redeemed {
        credential_id: done.credential_id,
        provider_id: done.provider_id,
        email: done.email,
        available_model_ids: done.available_model_ids,
    }))
}
