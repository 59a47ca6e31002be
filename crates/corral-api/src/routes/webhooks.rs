//! Webhook endpoints (`/api/webhooks…`, SPEC §11): at the org level (every
//! application) or the application level, at most 20 per level. The `whsec_` secret
//! is shown at creation and at rotation only; after a rotation the previous secret
//! signs too until the overlap ends.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use corral_core::time::now_ms;
use corral_core::AppId;
use corral_protocol::SigningSecret;
use corral_store::webhooks as store;
use corral_webhooks::envelope::{PayloadMode, EVENT_TYPES};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Ctx, Perm};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::json::{Json, Validate};
use crate::routes::{rfc3339, ListOf};
use crate::state::AppState;
use corral_engine::webhooks as delivery;

/// Endpoints per level (the org, or one application).
pub const MAX_PER_SCOPE: i64 = 20;

pub fn app_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(
            get_webhook,
            update_webhook,
            put_webhook,
            delete_webhook
        ))
        .routes(routes!(test_webhook))
        .routes(routes!(rotate_webhook_secret))
        .routes(routes!(list_webhook_deliveries))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub id: String,
    /// Always `webhook`.
    #[schema(value_type = String, pattern = "^webhook$")]
    pub object: &'static str,
    /// `org` (every application of the organization) or `application`.
    #[schema(value_type = String, pattern = "^(org|application)$")]
    pub level: &'static str,
    pub application_id: Option<String>,
    pub url: String,
    pub description: Option<String>,
    pub events: Vec<String>,
    #[schema(value_type = String, pattern = "^(full|summary)$")]
    pub payload_mode: String,
    pub enabled: bool,
    /// Why delivery stopped (e.g. the receiver answered 410 Gone).
    pub disabled_reason: Option<String>,
    /// Until then the previous secret signs too (after a rotation).
    #[schema(format = DateTime)]
    pub previous_secret_expires_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&store::Webhook> for WebhookView {
    fn from(w: &store::Webhook) -> WebhookView {
        let now = now_ms();
        WebhookView {
            id: w.id.clone(),
            object: "webhook",
            level: if w.application_id.is_some() {
                "application"
            } else {
                "org"
            },
            application_id: w.application_id.clone(),
            url: w.url.clone(),
            description: w.description.clone(),
            events: w.events.clone(),
            payload_mode: w.payload_mode.clone(),
            enabled: w.enabled,
            disabled_reason: w.disabled_reason.clone(),
            previous_secret_expires_at: w
                .previous_secret_expires_at
                .filter(|t| *t > now)
                .map(rfc3339),
            created_at: rfc3339(w.created_at),
            updated_at: rfc3339(w.updated_at),
        }
    }
}

/// A webhook with its signing secret: the create and rotate answers only.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// `whsec_…`: shown once. Verify deliveries with it (Standard Webhooks).
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateWebhookBody {
    /// HTTPS URL of the receiver (http only to localhost in development mode).
    pub url: String,
    /// Subset of `run.started`, `run.success`, `run.failed`, `run.timeout`,
    /// `run.cancelled`, `run.connection_missing`.
    pub events: Vec<String>,
    /// `application` (default: the caller's application) or `org`.
    pub level: Option<String>,
    /// `full` (default) or `summary` (no input or result).
    pub payload_mode: Option<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    /// Sent by Appstrate clients: the application of the request (`X-App-Id`, or the
    /// API key's); another application's id is refused.
    pub application_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateWebhookBody {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub payload_mode: Option<String>,
    pub description: Option<String>,
    /// `true` re-enables an endpoint disabled after a 410.
    pub enabled: Option<bool>,
}

fn check_events(e: &mut Vec<FieldError>, events: &[String]) {
    if events.is_empty() {
        e.push(FieldError::new(
            "events",
            "too_short",
            "subscribe to at least one event",
        ));
    }
    for (i, ev) in events.iter().enumerate() {
        if !EVENT_TYPES.contains(&ev.as_str()) {
            e.push(FieldError::new(
                format!("events[{i}]"),
                "unknown_event",
                format!("unknown event {ev:?}; one of {}", EVENT_TYPES.join(", ")),
            ));
        }
    }
}

fn check_mode(e: &mut Vec<FieldError>, mode: Option<&str>) {
    if let Some(m) = mode {
        if PayloadMode::parse(m).is_none() {
            e.push(FieldError::new(
                "payloadMode",
                "invalid_enum",
                "payloadMode must be full or summary",
            ));
        }
    }
}

fn check_description(e: &mut Vec<FieldError>, d: Option<&str>) {
    if d.is_some_and(|d| d.chars().count() > 500) {
        e.push(FieldError::new(
            "description",
            "too_long",
            "at most 500 characters",
        ));
    }
}

impl Validate for CreateWebhookBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check_events(&mut e, &self.events);
        check_mode(&mut e, self.payload_mode.as_deref());
        check_description(&mut e, self.description.as_deref());
        if let Some(l) = &self.level {
            if l != "org" && l != "application" {
                e.push(FieldError::new(
                    "level",
                    "invalid_enum",
                    "level must be org or application",
                ));
            }
        }
        e
    }
}

impl Validate for UpdateWebhookBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if let Some(ev) = &self.events {
            check_events(&mut e, ev);
        }
        check_mode(&mut e, self.payload_mode.as_deref());
        check_description(&mut e, self.description.as_deref());
        e
    }
}

/// The URL check of SPEC §11 at write time (delivery checks the resolved addresses
/// again).
fn check_url(state: &AppState, url: &str) -> ApiResult<String> {
    corral_webhooks::ssrf::check_url(url, state.connect.policy())
        .map(|u| u.to_string())
        .map_err(|e| {
            ApiError::validation(vec![FieldError::new("url", "invalid_url", e.to_string())])
        })
}

fn dedup(events: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in events {
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    out
}

/// An endpoint the caller may see: the org's, or their application's.
async fn load(state: &AppState, ctx: &Ctx, id: &str) -> ApiResult<store::Webhook> {
    let mut conn = state.db.conn().await?;
    let app = ctx.app_id()?;
    store::get(&mut conn, ctx.org_id()?, id)
        .await?
        .filter(|w| w.application_id.as_deref().is_none_or(|a| a == app))
        .ok_or_else(|| ApiError::not_found("webhook"))
}

/// The org-level endpoints and the application's, newest first.
#[utoipa::path(get, path = "/api/webhooks", tag = "Webhooks", operation_id = "listWebhooks",
    responses((status = 200, description = "Webhooks", body = ListOf<WebhookView>)))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    ctx: Perm<perms::WebhooksRead>,
) -> ApiResult<Json<ListOf<WebhookView>>> {
    let mut conn = state.db.conn().await?;
    let hooks = store::list(&mut conn, ctx.org_id()?, ctx.app_id()?).await?;
    Ok(Json(ListOf::all(
        hooks.iter().map(WebhookView::from).collect(),
    )))
}

/// Create an endpoint. The answer carries its secret, shown this once.
#[utoipa::path(post, path = "/api/webhooks", tag = "Webhooks", operation_id = "createWebhook",
    request_body = CreateWebhookBody,
    responses((status = 201, description = "Created", body = WebhookWithSecret),
              (status = 409, description = "20 endpoints already exist at this level", body = crate::error::ProblemDetail)))]
pub async fn create_webhook(
    State(state): State<AppState>,
    ctx: Perm<perms::WebhooksWrite>,
    Json(body): Json<CreateWebhookBody>,
) -> ApiResult<(StatusCode, Json<WebhookWithSecret>)> {
    let url = check_url(&state, &body.url)?;
    let org = ctx.org_id()?;
    if let Some(requested) = body.application_id.as_deref() {
        if *ctx.app_id()? != *requested {
            return Err(ApiError::invalid_param(
                "applicationId",
                "applicationId must be the application of the request (X-App-Id or the API key's)",
            ));
        }
    }
    let app = match body.level.as_deref() {
        Some("org") => None,
        _ => Some(ctx.app_id()?),
    };
    let events = dedup(&body.events);
    let mode = body.payload_mode.as_deref().unwrap_or("full");
    let secret = SigningSecret::generate().to_whsec();
    let id = corral_core::ids::prefixed(corral_core::ids::WEBHOOK);
    let sealed = state
        .keyring
        .seal(secret.as_bytes(), &delivery::secret_aad(&id));
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    // Creations in one org are serialized (a row lock on PostgreSQL; SQLite has one
    // writer), so two concurrent requests cannot both pass the limit.
    store::lock_org(
        &mut tx,
        state.db.backend() == corral_store::Backend::Postgres,
        org,
    )
    .await?;
    if store::count_in_scope(&mut tx, org, app).await? >= MAX_PER_SCOPE {
        return Err(limit_error(app));
    }
    store::insert(
        &mut tx,
        &store::NewWebhook {
            id: &id,
            org_id: org,
            application_id: app,
            url: &url,
            description: body.description.as_deref(),
            events: &events,
            payload_mode: mode,
            enabled: body.enabled.unwrap_or(true),
            secret: &sealed,
            created_by: ctx.principal.user().map(|u| u.user_id.as_str()),
            now,
        },
    )
    .await?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    let mut conn = state.db.conn().await?;
    let w = store::get(&mut conn, org, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookWithSecret {
            webhook: WebhookView::from(&w),
            secret,
        }),
    ))
}

fn limit_error(app: Option<&AppId>) -> ApiError {
    ApiError::new(
        corral_core::ErrorCode::WebhookLimitReached,
        format!(
            "at most {MAX_PER_SCOPE} webhooks per {}",
            if app.is_some() {
                "application"
            } else {
                "organization"
            }
        ),
    )
}

#[utoipa::path(get, path = "/api/webhooks/{id}", tag = "Webhooks", operation_id = "getWebhook",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, description = "The webhook", body = WebhookView)))]
pub async fn get_webhook(
    State(state): State<AppState>,
    ctx: Perm<perms::WebhooksRead>,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookView>> {
    Ok(Json(WebhookView::from(&load(&state, &ctx, &id).await?)))
}

/// Change an endpoint. `enabled: true` re-enables one that a 410 disabled.
#[utoipa::path(patch, path = "/api/webhooks/{id}", tag = "Webhooks", operation_id = "updateWebhook",
    params(("id" = String, Path, description = "Webhook id")),
    request_body = UpdateWebhookBody,
    responses((status = 200, description = "Updated", body = WebhookView)))]
pub async fn update_webhook(
    State(state): State<AppState>,
    ctx: Perm<perms::WebhooksWrite>,
    Path(id): Path<String>,
    Json(body): Json<UpdateWebhookBody>,
) -> ApiResult<Json<WebhookView>> {
    let w = load(&state, &ctx, &id).await?;
    let url = match &body.url {
        Some(u) => check_url(&state, u)?,
        None => w.url.clone(),
    };
    let events = body
        .events
        .as_deref()
        .map(dedup)
        .unwrap_or(w.events.clone());
    let enabled = body.enabled.unwrap_or(w.enabled);
    let mut conn = state.db.conn().await?;
    store::update(
        &mut conn,
        ctx.org_id()?,
        &id,
        &store::Patch {
            url: &url,
            description: body.description.as_deref().or(w.description.as_deref()),
            events: &events,
            payload_mode: body.payload_mode.as_deref().unwrap_or(&w.payload_mode),
            enabled,
            disabled_reason: if enabled {
                None
            } else {
                w.disabled_reason.as_deref()
            },
            now: now_ms(),
        },
    )
    .await?;
    Ok(Json(WebhookView::from(&load(&state, &ctx, &id).await?)))
}

/// `PUT` as Appstrate clients send it: the same partial update as `PATCH`.
#[utoipa::path(put, path = "/api/webhooks/{id}", tag = "Webhooks", operation_id = "replaceWebhook",
    params(("id" = String, Path, description = "Webhook id")),
    request_body = UpdateWebhookBody,
    responses((status = 200, description = "Updated", body = WebhookView)))]
pub async fn put_webhook(
    state: State<AppState>,
    ctx: Perm<perms::WebhooksWrite>,
    id: Path<String>,
    body: Json<UpdateWebhookBody>,
) -> ApiResult<Json<WebhookView>> {
    update_webhook(state, ctx, id, body).await
}

#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "Webhooks", operation_id = "deleteWebhook",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    ctx: Perm<perms::WebhooksWrite>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    load(&state, &ctx, &id).await?;
    let mut conn = state.db.conn().await?;
    store::delete(&mut conn, ctx.org_id()?, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    pub delivery_id: String,
    /// True when the receiver answered 2xx.
    pub success: bool,
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// Send a signed `webhook.test` event now (one attempt, recorded, never retried).
#[utoipa::path(post, path = "/api/webhooks/{id}/test", tag = "Webhooks", operation_id = "testWebhook",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, description = "The attempt's outcome", body = TestResult)))]
pub async fn test_webhook(
    State(state): State<AppState>,
    ctx: Perm<perms::WebhooksWrite>,
    Path(id): Path<String>,
) -> ApiResult<Json<TestResult>> {
    let w = load(&state, &ctx, &id).await?;
    let r = delivery::send_test(&state, &w).await?;
    Ok(Json(TestResult {
        delivery_id: r.delivery_id,
        success: r.success,
        status_code: r.status_code,
        latency_ms: r.latency_ms,
        error: r.error,
    }))
}

/// Issue a new secret; the previous one keeps signing during the overlap (7 days by
/// default), so receivers can switch without losing a delivery.
#[utoipa::path(post, path = "/api/webhooks/{id}/rotate", tag = "Webhooks", operation_id = "rotateWebhookSecret",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, description = "The webhook and its new secret (shown once)", body = WebhookWithSecret)))]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    ctx: Perm<perms::WebhooksWrite>,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookWithSecret>> {
    let w = load(&state, &ctx, &id).await?;
    let secret = SigningSecret::generate().to_whsec();
    let aad = delivery::secret_aad(&id);
    let sealed = state.keyring.seal(secret.as_bytes(), &aad);
    let now = now_ms();
    let overlap = (state.config.webhook_secret_overlap_hours as i64) * 3_600_000;
    let mut conn = state.db.conn().await?;
    store::rotate(
        &mut conn,
        ctx.org_id()?,
        &id,
        &sealed,
        &w.secret,
        now + overlap,
        now,
    )
    .await?;
    let w = load(&state, &ctx, &id).await?;
    Ok(Json(WebhookWithSecret {
        webhook: WebhookView::from(&w),
        secret,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub attempt: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// The first KiB of the receiver's answer.
    pub response: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    /// `whd_<n>`; pass the number as `before` to page.
    pub id: String,
    /// The event id (`webhook-id` header), stable across retries.
    pub event_id: String,
    pub event_type: String,
    pub run_id: Option<String>,
    #[schema(value_type = String, pattern = "^(pending|success|failed)$")]
    pub status: String,
    pub attempts: i64,
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub attempt_log: Vec<AttemptView>,
}

/// The endpoint's deliveries, newest first, each with every attempt.
#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "Webhooks", operation_id = "listWebhookDeliveries",
    params(("id" = String, Path, description = "Webhook id"),
           ("limit" = Option<i64>, Query, description = "1–100, default 20"),
           ("before" = Option<String>, Query, description = "A delivery id: older ones only")),
    responses((status = 200, description = "Deliveries", body = ListOf<DeliveryView>)))]
pub async fn list_webhook_deliveries(
    State(state): State<AppState>,
    ctx: Perm<perms::WebhooksRead>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<ListOf<DeliveryView>>> {
    let mut limit = 20i64;
    let mut before = None;
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=100).contains(l))
                    .ok_or_else(|| {
                        ApiError::invalid_param("limit", "limit must be between 1 and 100")
                    })?
            }
            "before" => {
                before = Some(
                    v.trim_start_matches("whd_")
                        .parse::<i64>()
                        .map_err(|_| ApiError::invalid_param("before", "not a delivery id"))?,
                )
            }
            _ => {}
        }
    }
    load(&state, &ctx, &id).await?;
    let mut conn = state.db.conn().await?;
    let mut rows = store::deliveries(&mut conn, &id, before, limit + 1).await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let ids: Vec<i64> = rows.iter().map(|d| d.id).collect();
    let attempts = store::attempts(&mut conn, &ids).await?;
    let data = rows
        .into_iter()
        .map(|d| DeliveryView {
            id: format!("whd_{}", d.id),
            attempt_log: attempts
                .iter()
                .filter(|a| a.delivery_id == d.id)
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    status_code: a.status_code,
                    latency_ms: a.latency_ms,
                    error: a.error.clone(),
                    response: a.response.clone(),
                    created_at: rfc3339(a.created_at),
                })
                .collect(),
            event_id: d.event_id,
            event_type: d.event_type,
            run_id: d.run_id.map(Into::into),
            next_attempt_at: (d.status == "pending").then(|| rfc3339(d.next_attempt_at)),
            status: d.status,
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            created_at: rfc3339(d.created_at),
        })
        .collect::<Vec<_>>();
    let total = data.len() as i64;
    Ok(Json(ListOf {
        object: "list",
        data,
        total,
        has_more,
    }))
}
