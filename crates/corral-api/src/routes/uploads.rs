//! Uploads: `POST /api/uploads` reserves a slot and returns a signed URL, the client
//! PUTs the raw bytes to it (`PUT /api/uploads/_content?token=…`, exactly the
//! declared size, once), then passes the returned `upload://upl_…` as a run's
//! file-typed input. The bytes go to object storage (files, or S3 at tier 3); the run
//! trigger checks them (size, sha256, magic bytes against the field's
//! `contentMediaType`) and turns the upload into a document of the run
//! ([`corral_engine::documents`]). Unconsumed uploads are deleted after
//! `CORRAL_UPLOAD_RETENTION_HOURS`.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use corral_core::time::now_ms;
use corral_core::ErrorCode;
use corral_engine::documents::{self as svc, UPLOAD_MAX_BYTES};
use corral_store::documents as store;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Perm};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::json::{Json, Validate};
use crate::query::Query;
use crate::routes::rfc3339;
use crate::state::AppState;

pub fn app_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_upload))
}

pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(write_upload_content))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUploadBody {
    /// The file name (path separators are stripped).
    pub name: String,
    /// The exact size in bytes (at most 100 MB).
    pub size: i64,
    /// The declared MIME type, checked against the bytes when a run consumes them.
    pub mime: String,
    /// Optional lowercase-hex SHA-256 of the bytes, enforced on write and consume.
    pub sha256: Option<String>,
}

impl Validate for CreateUploadBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if self.name.trim().is_empty() || self.name.chars().count() > 255 {
            e.push(FieldError::new(
                "name",
                "invalid_length",
                "name must be 1 to 255 characters",
            ));
        }
        if !(1..=UPLOAD_MAX_BYTES).contains(&self.size) {
            e.push(FieldError::new(
                "size",
                "out_of_range",
                format!("size must be between 1 and {UPLOAD_MAX_BYTES} bytes"),
            ));
        }
        let mime_ok = self.mime.len() <= 255
            && self
                .mime
                .split(';')
                .next()
                .and_then(|m| m.trim().split_once('/'))
                .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty());
        if !mime_ok {
            e.push(FieldError::new(
                "mime",
                "invalid_format",
                "mime must be a MIME type such as application/pdf",
            ));
        }
        if let Some(h) = &self.sha256 {
            if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                e.push(FieldError::new(
                    "sha256",
                    "invalid_format",
                    "sha256 must be 64 hexadecimal characters",
                ));
            }
        }
        e
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadDescriptor {
    #[schema(value_type = String, pattern = "^upload$")]
    pub object: &'static str,
    pub id: String,
    /// `upload://upl_…`: the value of the run's file input.
    pub uri: String,
    /// Where to PUT the bytes.
    #[schema(format = "uri")]
    pub url: String,
    #[schema(value_type = String, pattern = "^PUT$")]
    pub method: &'static str,
    /// Headers to send with the PUT, verbatim.
    pub headers: BTreeMap<String, String>,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// Reserve an upload slot and get the signed URL to PUT the bytes to.
#[utoipa::path(post, path = "/api/uploads", tag = "Uploads", operation_id = "createUpload",
    request_body = CreateUploadBody,
    responses((status = 201, description = "Upload descriptor created.", body = UploadDescriptor),
              (status = 429, description = "Too many staged uploads", body = crate::error::ProblemDetail)))]
pub async fn create_upload(
    State(state): State<AppState>,
    ctx: Perm<perms::AgentsRun>,
    Json(body): Json<CreateUploadBody>,
) -> ApiResult<(StatusCode, Json<UploadDescriptor>)> {
    let caller = ctx.caller()?;
    svc::check_staging_limit(&state, &caller).await?;
    let now = now_ms();
    let expires_at = now + state.config.upload_retention_hours as i64 * 3_600_000;
    let id = corral_core::ids::prefixed("upl");
    let mime = body.mime.trim().to_owned();
    let upload = store::Upload {
        storage_key: format!("uploads/{}/{id}", caller.org_id),
        id: id.clone(),
        org_id: caller.org_id.clone(),
        application_id: caller.app_id.clone(),
        owner_type: caller.actor.owner_type.to_owned(),
        owner_id: caller.actor.owner_id.clone(),
        name: svc::sanitize_name(&body.name),
        mime: mime.clone(),
        size: body.size,
        sha256: body.sha256.map(|h| h.to_ascii_lowercase()),
        written_at: None,
        document_id: None,
        expires_at,
        created_at: now,
    };
    let mut conn = state.db.conn().await?;
    store::insert_upload(&mut conn, &upload).await?;
    let token = svc::upload_token(&state, &id, expires_at);
    let url = format!(
        "{}/api/uploads/_content?token={token}",
        state.config.public_url.trim_end_matches('/')
    );
    let headers = BTreeMap::from([("Content-Type".to_owned(), mime)]);
    Ok((
        StatusCode::CREATED,
        Json(UploadDescriptor {
            object: "upload",
            uri: format!("upload://{id}"),
            id,
            url,
            method: "PUT",
            headers,
            expires_at: rfc3339(expires_at),
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// The signed token of the upload descriptor's URL.
    pub token: String,
}

/// Receive an upload's bytes: exactly the declared size, once per upload. A refused
/// body leaves the upload writable for a retry.
#[utoipa::path(put, path = "/api/uploads/_content", tag = "Uploads", operation_id = "writeUploadContent",
    params(TokenQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's raw bytes"),
    responses((status = 204, description = "Bytes accepted."),
              (status = 401, description = "Invalid or expired token", body = crate::error::ProblemDetail),
              (status = 409, description = "Upload content already written for this token.", body = crate::error::ProblemDetail)),
    security(()))]
pub async fn write_upload_content(
    State(state): State<AppState>,
    Query(q): Query<TokenQuery>,
    body: Body,
) -> ApiResult<StatusCode> {
    let now = now_ms();
    let id = svc::verify_upload_token(&state, &q.token, now)?;
    let mut conn = state.db.conn().await?;
    let upload = store::upload_by_id(&mut conn, &id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "the upload no longer exists"))?;
    if !store::claim_write(&mut conn, &id, now).await? {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "the content of this upload was already written",
        ));
    }
    drop(conn);
    let outcome = receive(&state, &upload, body).await;
    if outcome.is_err() {
        let mut conn = state.db.conn().await?;
        store::release_write(&mut conn, &id).await?;
    }
    outcome.map(|()| StatusCode::NO_CONTENT)
}

async fn receive(state: &AppState, upload: &store::Upload, body: Body) -> ApiResult<()> {
    let size = upload.size as usize;
    let bytes = axum::body::to_bytes(body, size).await.map_err(|_| {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than the declared {size} bytes"),
        )
    })?;
    if bytes.len() != size {
        return Err(ApiError::invalid_param(
            "body",
            format!(
                "the body is {} bytes; the upload declared {size}",
                bytes.len()
            ),
        ));
    }
    if let Some(want) = &upload.sha256 {
        use sha2::Digest as _;
        if hex::encode(sha2::Sha256::digest(&bytes)) != *want {
            return Err(ApiError::new(
                ErrorCode::ChecksumMismatch,
                "the body does not match the declared sha256",
            ));
        }
    }
    state
        .blobs
        .put_raw(&upload.storage_key, bytes.to_vec())
        .await
        .map_err(ApiError::internal)?;
    Ok(())
}
