//! Documents (`/api/documents…`): the stored files of an application — uploads a run
//! consumed (`user_upload`) and files agents published (`agent_output`). A caller
//! sees its own documents and (members, not end-users) every agent output; the
//! creator, or an admin, may keep (pin) or delete one. Bytes come from object storage.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use corral_core::Role;
use corral_engine::documents::readable_by;
use corral_store::documents::{self as store, Document, DocumentFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Ctx, Perm};
use crate::error::{ApiError, ApiResult};
use crate::json::Json;
use crate::query::Query;
use crate::routes::rfc3339;
use crate::state::AppState;

pub fn app_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_documents))
        .routes(routes!(get_document, delete_document))
        .routes(routes!(get_document_content))
        .routes(routes!(keep_document))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Capabilities {
    pub visible: bool,
    pub metadata: bool,
    pub download: bool,
    pub preview: bool,
    pub keep: bool,
    pub delete: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentView {
    #[schema(value_type = String, pattern = "^document$")]
    pub object: &'static str,
    /// `doc_…`.
    pub id: String,
    /// `document://doc_…`: usable as a run's file input.
    pub uri: String,
    #[schema(value_type = String, pattern = "^(user_upload|agent_output)$")]
    pub purpose: String,
    /// `primary` for the run's featured output.
    pub presentation: Option<String>,
    #[serde(rename = "applicationId")]
    pub application_id: String,
    pub run_id: Option<String>,
    /// Always null: Corral has no chat sessions.
    pub chat_session_id: Option<String>,
    #[serde(rename = "packageId")]
    pub package_id: Option<String>,
    pub name: String,
    pub mime: String,
    pub size: i64,
    pub sha256: String,
    pub downloadable: bool,
    pub capabilities: Capabilities,
    pub previewable: bool,
    /// `html` | `image` | `pdf` | `text`, or null.
    pub preview_kind: Option<&'static str>,
    #[serde(rename = "expiresAt")]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[serde(rename = "createdAt")]
    #[schema(format = DateTime)]
    pub created_at: String,
}

fn preview_kind(mime: &str) -> Option<&'static str> {
    let m = mime.split(';').next().unwrap_or("").trim();
    match m {
        "text/html" => Some("html"),
        "application/pdf" => Some("pdf"),
        "application/json" => Some("text"),
        _ if m.starts_with("image/") => Some("image"),
        _ if m.starts_with("text/") => Some("text"),
        _ => None,
    }
}

fn is_admin(ctx: &Ctx) -> bool {
    ctx.end_user_id.is_none() && matches!(ctx.role(), Some(Role::Owner | Role::Admin))
}

fn is_creator(ctx: &Ctx, d: &Document) -> bool {
    let a = ctx.actor();
    d.owner_type.as_deref() == Some(a.owner_type) && d.owner_id.as_deref() == Some(&a.owner_id)
}

fn view(ctx: &Ctx, d: Document) -> DocumentView {
    let manage = is_creator(ctx, &d) || is_admin(ctx);
    let kind = preview_kind(&d.mime);
    DocumentView {
        object: "document",
        uri: format!("document://{}", d.id),
        capabilities: Capabilities {
            visible: true,
            metadata: true,
            download: true,
            preview: kind.is_some(),
            keep: manage,
            delete: manage,
        },
        downloadable: true,
        previewable: kind.is_some(),
        preview_kind: kind,
        id: d.id,
        purpose: d.purpose,
        presentation: d.presentation,
        application_id: d.application_id.into(),
        run_id: d.run_id,
        chat_session_id: None,
        package_id: d.package_id,
        name: d.name,
        mime: d.mime,
        size: d.size,
        sha256: d.sha256,
        expires_at: d.expires_at.map(rfc3339),
        created_at: rfc3339(d.created_at),
    }
}

/// The document if the caller can read it, else 404.
async fn load(state: &AppState, ctx: &Ctx, id: &str) -> ApiResult<Document> {
    let mut conn = state.db.conn().await?;
    let a = ctx.actor();
    store::document(&mut conn, ctx.org_id()?, ctx.app_id()?, id)
        .await?
        .filter(|d| readable_by(d, a.owner_type, &a.owner_id, ctx.end_user_id.is_some()))
        .ok_or_else(|| ApiError::not_found("document"))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocumentList {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<DocumentView>,
    pub has_more: bool,
    pub limit: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `user_upload` | `agent_output`.
    pub purpose: Option<String>,
    /// Documents of this run.
    pub run_id: Option<String>,
    /// Documents produced by this agent.
    #[serde(rename = "packageId")]
    pub package_id: Option<String>,
    /// Accepted for compatibility; Corral has no chat sessions (no document matches).
    pub chat_session_id: Option<String>,
    /// Accepted for compatibility; Corral has no chat sessions (no document matches).
    pub context_chat_session_id: Option<String>,
    /// The id of the last document of the previous page.
    #[serde(rename = "startingAfter")]
    pub starting_after: Option<String>,
    /// 1–100 (default 20).
    pub limit: Option<i64>,
}

/// The documents the caller can see in the application, newest first.
#[utoipa::path(get, path = "/api/documents", tag = "Documents", operation_id = "listDocuments",
    params(ListQuery),
    responses((status = 200, description = "A page of documents.", body = DocumentList)))]
pub async fn list_documents(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsRead>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<DocumentList>> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_param(
            "limit",
            "limit must be an integer between 1 and 100",
        ));
    }
    if let Some(p) = &q.purpose {
        if p != "user_upload" && p != "agent_output" {
            return Err(ApiError::invalid_param(
                "purpose",
                "purpose must be user_upload or agent_output",
            ));
        }
    }
    let empty = || DocumentList {
        object: "list",
        data: Vec::new(),
        has_more: false,
        limit,
    };
    if q.chat_session_id.is_some() || q.context_chat_session_id.is_some() {
        return Ok(Json(empty()));
    }
    let a = ctx.actor();
    let filter = DocumentFilter {
        purpose: q.purpose.as_deref(),
        run_id: q.run_id.as_deref(),
        package_id: q.package_id.as_deref(),
        owner: Some((a.owner_type, &a.owner_id)),
        own_only: ctx.end_user_id.is_some(),
    };
    let mut conn = state.db.conn().await?;
    let mut rows = store::list_documents(
        &mut conn,
        ctx.org_id()?,
        ctx.app_id()?,
        &filter,
        q.starting_after.as_deref(),
        limit,
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok(Json(DocumentList {
        data: rows.into_iter().map(|d| view(&ctx, d)).collect(),
        has_more,
        ..empty()
    }))
}

/// A document's metadata and the caller's capabilities on it.
#[utoipa::path(get, path = "/api/documents/{id}", tag = "Documents", operation_id = "getDocument",
    params(("id" = String, Path, description = "Document id")),
    responses((status = 200, description = "The document.", body = DocumentView)))]
pub async fn get_document(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsRead>,
    Path(id): Path<String>,
) -> ApiResult<Json<DocumentView>> {
    let d = load(&state, &ctx, &id).await?;
    Ok(Json(view(&ctx, d)))
}

/// The document's bytes, as an attachment of its own MIME type.
#[utoipa::path(get, path = "/api/documents/{id}/content", tag = "Documents", operation_id = "getDocumentContent",
    params(("id" = String, Path, description = "Document id")),
    responses((status = 200, description = "The document bytes", content_type = "*/*", body = Vec<u8>)))]
pub async fn get_document_content(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsRead>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let d = load(&state, &ctx, &id).await?;
    let bytes = state
        .blobs
        .get(&d.storage_key)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("document content"))?;
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&d.mime)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let ascii: String = d
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{ascii}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

fn require_manage(ctx: &Ctx, d: &Document) -> ApiResult<()> {
    if is_creator(ctx, d) || is_admin(ctx) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only the document's creator or an admin may change it",
        ))
    }
}

/// Pin a document: it is never deleted by retention (`expiresAt` becomes null).
#[utoipa::path(post, path = "/api/documents/{id}/keep", tag = "Documents", operation_id = "keepDocument",
    params(("id" = String, Path, description = "Document id")),
    responses((status = 200, description = "The kept document.", body = DocumentView)))]
pub async fn keep_document(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsRead>,
    Path(id): Path<String>,
) -> ApiResult<Json<DocumentView>> {
    let mut d = load(&state, &ctx, &id).await?;
    require_manage(&ctx, &d)?;
    let mut conn = state.db.conn().await?;
    store::set_expiry(&mut conn, &d.id, None).await?;
    d.expires_at = None;
    Ok(Json(view(&ctx, d)))
}

/// Delete a document (row and bytes: the bytes through the storage-deletion outbox).
/// Refused while a run carries it as an input.
#[utoipa::path(delete, path = "/api/documents/{id}", tag = "Documents", operation_id = "deleteDocument",
    params(("id" = String, Path, description = "Document id")),
    responses((status = 204, description = "Deleted"),
              (status = 409, description = "Document is still referenced by one or more consumer runs.", body = crate::error::ProblemDetail)))]
pub async fn delete_document(
    State(state): State<AppState>,
    ctx: Perm<perms::RunsRead>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let d = load(&state, &ctx, &id).await?;
    require_manage(&ctx, &d)?;
    corral_engine::documents::delete_document(&state, &d).await?;
    Ok(StatusCode::NO_CONTENT)
}
