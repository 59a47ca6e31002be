//! The idempotency guard (SPEC §3). Only the operations that declare
//! `Idempotency-Key` honour it; on any other unsafe request the header is a 400. A
//! claimed key stores the first response (unless it was a 5xx) for 24 hours, keyed by
//! org + application + key with a SHA-256 over method, route and body.

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use corral_core::time::{now_ms, DAY_MS, MINUTE_MS};
use corral_core::{AppId, ErrorCode, OrgId};
use corral_store::idempotency::{self as store, Begin};
use sha2::{Digest, Sha256};

use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub const HEADER: &str = "idempotency-key";
const TTL_MS: i64 = DAY_MS;
/// An in-flight claim older than this belonged to a request that died.
const STALE_IN_FLIGHT_MS: i64 = 5 * MINUTE_MS;
const MAX_STORED_BODY: usize = 16 * 1024 * 1024;
const REPLAYED_HEADERS: &[&str] = &["content-type", "location"];

/// Operations that declare `Idempotency-Key` in the contract.
pub fn declared(method: &Method, route: &str) -> bool {
    *method == Method::POST
        && matches!(
            route,
            "/api/end-users"
                | "/api/agents/{scope}/{name}/run"
                | "/api/runs/remote"
                | "/api/webhooks"
        )
}

pub enum Outcome {
    /// The guard answered (replay, conflict, in progress).
    Answered(Response),
    /// Go on to the handler; with a claim when a key is in use.
    Proceed(Request, Option<Box<Claim>>),
}

pub async fn guard(
    state: &AppState,
    ctx: &Ctx,
    method: &Method,
    route: &str,
    req: Request,
) -> ApiResult<Outcome> {
    let Some(raw) = req.headers().get(HEADER) else {
        return Ok(Outcome::Proceed(req, None));
    };
    if method.is_safe() {
        return Ok(Outcome::Proceed(req, None));
    }
    if !declared(method, route) {
        let mut e = ApiError::new(
            ErrorCode::IdempotencyNotSupported,
            "this operation does not support the Idempotency-Key header",
        );
        e.param = Some("Idempotency-Key".into());
        return Err(e);
    }
    let key = raw
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| (0x21..0x7f).contains(&b)))
        .ok_or_else(|| {
            ApiError::invalid_param(
                "Idempotency-Key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        })?
        .to_owned();

    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, state.config.body_limit_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                "the request body is larger than the limit",
            )
        })?;
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update([0]);
    h.update(route.as_bytes());
    h.update([0]);
    h.update(&bytes);
    let request_hash = hex::encode(h.finalize());

    let org_id = ctx.org_id()?.to_owned();
    let app_id = ctx.app_id.clone().unwrap_or_default();
    let k = store::Key {
        org_id: &org_id,
        application_id: &app_id,
        key: &key,
    };
    // Tier 2: claims live in Redis, shared by the replicas; when it does not answer,
    // in the database (the same semantics, not shared with Redis's keys).
    let mut redis_token = None;
    let mut begun = None;
    if let Some(redis) = &state.redis {
        let token = uuid::Uuid::new_v4().simple().to_string();
        begun =
            crate::tier2::idempotency::begin(redis, &k, &request_hash, &token, STALE_IN_FLIGHT_MS)
                .await;
        if begun.is_some() {
            redis_token = Some(token);
        }
    }
    let begun = match begun {
        Some(b) => b,
        None => {
            let mut conn = state.db.conn().await?;
            store::begin(
                &mut conn,
                &k,
                &request_hash,
                now_ms(),
                TTL_MS,
                STALE_IN_FLIGHT_MS,
            )
            .await?
        }
    };
    match begun {
        Begin::Started => {
            let claim = Claim {
                state: state.clone(),
                org_id,
                app_id,
                key,
                redis_token,
                armed: true,
            };
            Ok(Outcome::Proceed(Request::from_parts(parts, Body::from(bytes)), Some(Box::new(claim))))
        }
        Begin::InFlight => Err(ApiError::new(
            ErrorCode::IdempotencyInProgress,
            "A request with the same Idempotency-Key is already being processed. Please wait and retry.",
        )),
        Begin::Mismatch => Err(ApiError::new(
            ErrorCode::IdempotencyConflict,
            "This Idempotency-Key was already used with a different request body. Use a new key for different requests.",
        )),
        Begin::Replay { status, headers, body } => {
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let stored: Vec<(String, String)> = serde_json::from_str(&headers).unwrap_or_default();
            for (name, value) in stored {
                if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
                    resp.headers_mut().insert(n, v);
                }
            }
            resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(Outcome::Answered(resp))
        }
    }
}

/// A claimed key. `finish` stores the response; dropping an unfinished claim (the
/// client went away mid-request) releases the key in the background.
pub struct Claim {
    state: AppState,
    org_id: OrgId,
    app_id: AppId,
    key: String,
    /// Claimed in Redis (tier 2) with this token, else in the database.
    redis_token: Option<String>,
    armed: bool,
}

impl Claim {
    fn key(&self) -> store::Key<'_> {
        store::Key {
            org_id: &self.org_id,
            application_id: &self.app_id,
            key: &self.key,
        }
    }

    pub async fn abandon(mut self) {
        self.armed = false;
        if let (Some(redis), Some(token)) = (&self.state.redis, &self.redis_token) {
            crate::tier2::idempotency::abandon(redis, &self.key(), token).await;
            return;
        }
        if let Ok(mut conn) = self.state.db.conn().await {
            if let Err(e) = store::abandon(&mut conn, &self.key()).await {
                tracing::warn!(error = %e, "could not release idempotency key");
            }
        }
    }

    pub async fn finish(mut self, resp: Response) -> Response {
        let status = resp.status();
        if status.is_server_error() {
            self.abandon().await;
            return resp;
        }
        let (parts, body) = resp.into_parts();
        let bytes = match to_bytes(body, MAX_STORED_BODY).await {
            Ok(b) => b,
            Err(e) => {
                self.abandon().await;
                return ApiError::internal(anyhow::anyhow!("buffering response: {e}"))
                    .into_response();
            }
        };
        let headers: Vec<(String, String)> = REPLAYED_HEADERS
            .iter()
            .filter_map(|n| {
                parts
                    .headers
                    .get(*n)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| ((*n).to_owned(), v.to_owned()))
            })
            .collect();
        let headers = serde_json::to_string(&headers).unwrap_or_else(|_| "[]".into());
        let stored = match (&self.state.redis, &self.redis_token) {
            (Some(redis), Some(token)) => {
                let k = self.key();
                let ok = crate::tier2::idempotency::complete(
                    redis,
                    &k,
                    token,
                    status.as_u16(),
                    &headers,
                    &bytes,
                    TTL_MS,
                )
                .await;
                if ok {
                    Ok(())
                } else {
                    Err("Redis did not answer".to_owned())
                }
            }
            _ => match self.state.db.conn().await {
                Ok(mut conn) => {
                    store::complete(&mut conn, &self.key(), status.as_u16(), &headers, &bytes)
                        .await
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            },
        };
        match stored {
            Ok(()) => self.armed = false,
            Err(e) => tracing::warn!(error = %e, "could not store idempotent response"),
        }
        Response::from_parts(parts, Body::from(bytes))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let state = self.state.clone();
        let (org_id, app_id, key) = (self.org_id.clone(), self.app_id.clone(), self.key.clone());
        let token = self.redis_token.take();
        tokio::spawn(async move {
            let k = store::Key {
                org_id: &org_id,
                application_id: &app_id,
                key: &key,
            };
            if let (Some(redis), Some(token)) = (&state.redis, &token) {
                crate::tier2::idempotency::abandon(redis, &k, token).await;
            } else if let Ok(mut conn) = state.db.conn().await {
                let _ = store::abandon(&mut conn, &k).await;
            }
        });
    }
}
