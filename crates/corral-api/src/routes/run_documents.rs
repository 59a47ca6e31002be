//! The file routes a run's runtime calls, authenticated like the event routes (the
//! run's sink secret, Standard Webhooks signature over the empty body) and served on
//! the sandbox-facing listener too: the agent's package (`/workspace`), the run's
//! input documents (`/documents`, `/documents/{name}`), and publishing a file the agent
//! produced as an `agent_output` document (`POST /documents`).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use corral_core::time::now_ms;
use corral_core::{ErrorCode, RunId};
use corral_engine::documents::{sanitize_name, UPLOAD_MAX_BYTES};
use corral_engine::runs::ingest;
use corral_store::documents::{self as store, Document};
use serde::Serialize;
use sha2::Digest as _;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult};
use crate::json::Json;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(fetch_run_workspace))
        .routes(routes!(fetch_run_documents_manifest, publish_run_document))
        .routes(routes!(fetch_run_document))
}

fn header<'h>(headers: &'h HeaderMap) -> impl FnMut(&str) -> Option<&'h str> + 'h {
    |name| headers.get(name).and_then(|v| v.to_str().ok())
}

/// The run, if the request is signed with its sink secret and the sink has not expired.
async fn authenticate(
    state: &AppState,
    run_id: &RunId,
    headers: &HeaderMap,
) -> ApiResult<corral_store::runs::Run> {
    let run = ingest::authenticate(state, run_id, header(headers), b"").await?;
    if now_ms() > run.sink_expires_at {
        return Err(ApiError::new(
            ErrorCode::RunSinkExpired,
            "the run's sink has expired",
        ));
    }
    Ok(run)
}

/// The agent's package archive (AFPS ZIP) the run was started from.
#[utoipa::path(get, path = "/api/runs/{runId}/workspace", tag = "Runs", operation_id = "fetchRunWorkspace",
    params(("runId" = String, Path, description = "Run id")),
    responses((status = 200, description = "Bundle archive (ZIP)", content_type = "application/zip", body = Vec<u8>),
              (status = 404, description = "No workspace provisioned (an inline run)", body = crate::error::ProblemDetail)),
    security(()))]
pub async fn fetch_run_workspace(
    State(state): State<AppState>,
    Path(run_id): Path<RunId>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let run = authenticate(&state, &run_id, &headers).await?;
    let no_workspace = || ApiError::not_found("workspace");
    let package_id = run.package_id.clone().ok_or_else(no_workspace)?;
    let mut conn = state.db.conn().await?;
    let bytes = if run.version_ref == "draft" {
        let row =
            corral_store::packages::get_visible(&mut conn, &run.org_id, &package_id, Some("agent"))
                .await?
                .ok_or_else(no_workspace)?;
        corral_engine::packages::draft_package(&row)?.to_archive()
    } else {
        let v = corral_store::packages::version(&mut conn, &package_id, &run.version_ref)
            .await?
            .ok_or_else(no_workspace)?;
        drop(conn);
        corral_engine::packages::load_verified(&state, &v).await?
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/zip"),
        )],
        bytes,
    )
        .into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunDocumentEntry {
    /// The document's display name.
    pub name: String,
    /// The unique file name under `workspace/documents/`.
    pub workspace_name: String,
    pub size: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunDocumentsManifest {
    pub documents: Vec<RunDocumentEntry>,
}

/// The input documents the run carries (404 when none).
#[utoipa::path(get, path = "/api/runs/{runId}/documents", tag = "Runs", operation_id = "fetchRunDocumentsManifest",
    params(("runId" = String, Path, description = "Run id")),
    responses((status = 200, description = "Documents manifest", body = RunDocumentsManifest),
              (status = 404, description = "No such run, or no input documents", body = crate::error::ProblemDetail)),
    security(()))]
pub async fn fetch_run_documents_manifest(
    State(state): State<AppState>,
    Path(run_id): Path<RunId>,
    headers: HeaderMap,
) -> ApiResult<Json<RunDocumentsManifest>> {
    let run = authenticate(&state, &run_id, &headers).await?;
    let mut conn = state.db.conn().await?;
    let docs = store::run_documents(&mut conn, run.id.as_str()).await?;
    if docs.is_empty() {
        return Err(ApiError::not_found("input documents"));
    }
    Ok(Json(RunDocumentsManifest {
        documents: docs
            .into_iter()
            .map(|(workspace_name, d)| RunDocumentEntry {
                name: d.name,
                workspace_name,
                size: d.size,
            })
            .collect(),
    }))
}

/// One input document's bytes, by its workspace name.
#[utoipa::path(get, path = "/api/runs/{runId}/documents/{name}", tag = "Runs", operation_id = "fetchRunDocument",
    params(("runId" = String, Path, description = "Run id"), ("name" = String, Path, description = "Workspace name")),
    responses((status = 200, description = "Document bytes", content_type = "application/octet-stream", body = Vec<u8>)),
    security(()))]
pub async fn fetch_run_document(
    State(state): State<AppState>,
    Path((run_id, name)): Path<(RunId, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let run = authenticate(&state, &run_id, &headers).await?;
    let mut conn = state.db.conn().await?;
    let doc = store::run_documents(&mut conn, run.id.as_str())
        .await?
        .into_iter()
        .find(|(ws, _)| *ws == name)
        .map(|(_, d)| d)
        .ok_or_else(|| ApiError::not_found("document"))?;
    drop(conn);
    let bytes = state
        .blobs
        .get(&doc.storage_key)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("document content"))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        bytes,
    )
        .into_response())
}

/// Strict `decodeURIComponent`: `%XX` escapes, UTF-8; `None` when malformed.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublishedDocument {
    pub id: String,
    /// `document://doc_…`.
    pub uri: String,
    pub name: String,
    pub mime: String,
    pub size: i64,
    pub sha256: String,
    pub presentation: Option<String>,
}

fn published(d: Document) -> PublishedDocument {
    PublishedDocument {
        uri: format!("document://{}", d.id),
        id: d.id,
        name: d.name,
        mime: d.mime,
        size: d.size,
        sha256: d.sha256,
        presentation: d.presentation,
    }
}

/// Store a file the running agent produced as an `agent_output` document of the run.
/// An identical (sha256, name) publication returns the existing document (200).
#[utoipa::path(post, path = "/api/runs/{runId}/documents", tag = "Runs", operation_id = "publishRunDocument",
    params(("runId" = String, Path, description = "Run id"),
           ("X-Document-Name" = String, Header, description = "Percent-encoded display name"),
           ("X-Document-Presentation" = Option<String>, Header, description = "`primary` to feature the document")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses((status = 200, description = "Idempotent replay: the existing document", body = PublishedDocument),
              (status = 201, description = "Document stored", body = PublishedDocument),
              (status = 409, description = "The run is not running", body = crate::error::ProblemDetail)),
    security(()))]
pub async fn publish_run_document(
    State(state): State<AppState>,
    Path(run_id): Path<RunId>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<PublishedDocument>)> {
    let run = authenticate(&state, &run_id, &headers).await?;
    if run.status != corral_store::runs::RunStatus::Running {
        return Err(ApiError::new(
            ErrorCode::RunNotRunning,
            format!("the run is {}, not running", run.status),
        ));
    }
    let raw_name = headers
        .get("x-document-name")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::invalid_param("X-Document-Name", "X-Document-Name is required"))?;
    let name = percent_decode(raw_name).ok_or_else(|| {
        ApiError::invalid_param(
            "X-Document-Name",
            "X-Document-Name is not valid percent-encoded UTF-8",
        )
    })?;
    let name = sanitize_name(&name);
    let primary = match headers.get("x-document-presentation").map(|v| v.to_str()) {
        None => false,
        Some(Ok("primary")) => true,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "X-Document-Presentation",
                "X-Document-Presentation must be primary",
            ))
        }
    };
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let bytes = axum::body::to_bytes(body, UPLOAD_MAX_BYTES as usize)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the document is larger than {UPLOAD_MAX_BYTES} bytes"),
            )
        })?;
    let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    let mut conn = state.db.conn().await?;
    if let Some(existing) =
        store::output_by_hash(&mut conn, run.id.as_str(), &sha256, &name).await?
    {
        if primary {
            store::make_primary(&mut conn, run.id.as_str(), &existing.id).await?;
        }
        let d = store::document(&mut conn, &run.org_id, &run.application_id, &existing.id)
            .await?
            .unwrap_or(existing);
        return Ok((StatusCode::OK, Json(published(d))));
    }
    drop(conn);
    let id = corral_core::ids::prefixed("doc");
    let storage_key = format!("documents/{}/{id}", run.org_id);
    state
        .blobs
        .put_raw(&storage_key, bytes.to_vec())
        .await
        .map_err(ApiError::internal)?;
    let (owner_type, owner_id) = match (&run.end_user_id, &run.user_id) {
        (Some(e), _) => (Some("end_user".to_owned()), Some(e.clone())),
        (None, Some(u)) => (Some("user".to_owned()), Some(u.clone())),
        _ => (None, None),
    };
    let d = Document {
        id,
        org_id: run.org_id.clone(),
        application_id: run.application_id.clone(),
        purpose: "agent_output".into(),
        presentation: None,
        run_id: Some(run.id.as_str().to_owned()),
        package_id: run.package_id.clone(),
        owner_type,
        owner_id,
        name,
        mime,
        size: bytes.len() as i64,
        sha256,
        storage_key,
        expires_at: None,
        publish_id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        created_at: now_ms(),
    };
    let mut conn = state.db.conn().await?;
    match store::insert_document(&mut conn, &d).await {
        Ok(()) => {}
        Err(corral_store::StoreError::Conflict { .. }) => {
            // The bytes written for it are nobody's: the outbox deletes them.
            corral_store::storage_deletions::enqueue(
                &mut conn,
                &d.storage_key,
                corral_store::storage_deletions::reasons::MATERIALIZATION_FAILED,
                Some(run.org_id.as_str()),
                now_ms(),
            )
            .await?;
            drop(conn);
            state.storage_deletions.wake();
            return Err(ApiError::new(
                ErrorCode::MessageReplayed,
                "this webhook-id was already used to publish a document of this run",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    let mut d = d;
    if primary {
        store::make_primary(&mut conn, run.id.as_str(), &d.id).await?;
        d.presentation = Some("primary".into());
    }
    Ok((StatusCode::CREATED, Json(published(d))))
}
