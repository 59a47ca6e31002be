//! Uploads (bytes a client staged for a run's `upload://` input) and documents (the
//! stored files of an application: consumed uploads and agent outputs), with the input
//! documents each run carries. Blobs live in object storage under `storage_key`;
//! these rows only point at them.

use corral_core::{AppId, OrgId};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use crate::{Result, SqlxResultExt};

#[derive(Debug, Clone)]
pub struct Upload {
    pub id: String,
    pub org_id: OrgId,
    pub application_id: AppId,
    pub owner_type: String,
    pub owner_id: String,
    pub name: String,
    pub mime: String,
    pub size: i64,
    pub sha256: Option<String>,
    pub storage_key: String,
    pub written_at: Option<i64>,
    pub document_id: Option<String>,
    pub expires_at: i64,
    pub created_at: i64,
}

impl<'r> FromRow<'r, AnyRow> for Upload {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        Ok(Upload {
            id: row.try_get("id")?,
            org_id: row.try_get("org_id")?,
            application_id: row.try_get("application_id")?,
            owner_type: row.try_get("owner_type")?,
            owner_id: row.try_get("owner_id")?,
            name: row.try_get("name")?,
            mime: row.try_get("mime")?,
            size: row.try_get("size")?,
            sha256: row.try_get("sha256")?,
            storage_key: row.try_get("storage_key")?,
            written_at: row.try_get("written_at")?,
            document_id: row.try_get("document_id")?,
            expires_at: row.try_get("expires_at")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

pub async fn insert_upload(conn: &mut AnyConnection, u: &Upload) -> Result<()> {
    sqlx::query(
        "INSERT INTO uploads (id, org_id, application_id, owner_type, owner_id, name, mime, size, \
           sha256, storage_key, written_at, document_id, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL, $11, $12)",
    )
    .bind(&u.id)
    .bind(&u.org_id)
    .bind(&u.application_id)
    .bind(&u.owner_type)
    .bind(&u.owner_id)
    .bind(&u.name)
    .bind(&u.mime)
    .bind(u.size)
    .bind(&u.sha256)
    .bind(&u.storage_key)
    .bind(u.expires_at)
    .bind(u.created_at)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// An upload by id, whatever its tenant (the content route authenticates by token).
pub async fn upload_by_id(conn: &mut AnyConnection, id: &str) -> Result<Option<Upload>> {
    sqlx::query_as("SELECT * FROM uploads WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
        .db()
}

/// An upload of the application.
pub async fn upload(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    id: &str,
) -> Result<Option<Upload>> {
    sqlx::query_as("SELECT * FROM uploads WHERE org_id = $1 AND application_id = $2 AND id = $3")
        .bind(org_id)
        .bind(app_id)
        .bind(id)
        .fetch_optional(conn)
        .await
        .db()
}

/// Claims the upload's single write; false when its content was already written.
pub async fn claim_write(conn: &mut AnyConnection, id: &str, now: i64) -> Result<bool> {
    let r = sqlx::query("UPDATE uploads SET written_at = $2 WHERE id = $1 AND written_at IS NULL")
        .bind(id)
        .bind(now)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected() > 0)
}

/// Gives a claimed write back (the bytes were refused), so the token can retry.
pub async fn release_write(conn: &mut AnyConnection, id: &str) -> Result<()> {
    sqlx::query("UPDATE uploads SET written_at = NULL WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await
        .db()?;
    Ok(())
}

/// Records the document an upload became; the upload is kept (re-consumable) until
/// `expires_at`.
pub async fn set_upload_document(
    conn: &mut AnyConnection,
    id: &str,
    document_id: &str,
    expires_at: i64,
) -> Result<()> {
    sqlx::query("UPDATE uploads SET document_id = $2, expires_at = $3 WHERE id = $1")
        .bind(id)
        .bind(document_id)
        .bind(expires_at)
        .execute(conn)
        .await
        .db()?;
    Ok(())
}

/// The upload slots of an owner still open (not consumed, not expired) and their
/// declared bytes.
pub async fn active_uploads(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    owner_type: &str,
    owner_id: &str,
    now: i64,
) -> Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM uploads WHERE org_id = $1 AND owner_type = $2 AND owner_id = $3 \
         AND document_id IS NULL AND expires_at > $4",
    )
    .bind(org_id)
    .bind(owner_type)
    .bind(owner_id)
    .bind(now)
    .fetch_one(conn)
    .await
    .db()
}

/// Removes the uploads whose retention ended; returns the storage keys (with their
/// org) of those that never became a document (their bytes are now unreferenced).
pub async fn delete_expired_uploads(
    conn: &mut AnyConnection,
    now: i64,
) -> Result<Vec<(String, String)>> {
    let keys: Vec<(String, String)> = sqlx::query_as(
        "SELECT storage_key, org_id FROM uploads WHERE expires_at <= $1 AND document_id IS NULL",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .db()?;
    sqlx::query("DELETE FROM uploads WHERE expires_at <= $1")
        .bind(now)
        .execute(conn)
        .await
        .db()?;
    Ok(keys)
}

#[derive(Debug, Clone)]
pub struct Document {
    pub id: String,
    pub org_id: OrgId,
    pub application_id: AppId,
    /// `user_upload` | `agent_output`.
    pub purpose: String,
    pub presentation: Option<String>,
    pub run_id: Option<String>,
    pub package_id: Option<String>,
    pub owner_type: Option<String>,
    pub owner_id: Option<String>,
    pub name: String,
    pub mime: String,
    pub size: i64,
    pub sha256: String,
    pub storage_key: String,
    pub expires_at: Option<i64>,
    /// The `webhook-id` of the publishing request (agent outputs): single-use per run.
    pub publish_id: Option<String>,
    pub created_at: i64,
}

impl<'r> FromRow<'r, AnyRow> for Document {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        Ok(Document {
            id: row.try_get("id")?,
            org_id: row.try_get("org_id")?,
            application_id: row.try_get("application_id")?,
            purpose: row.try_get("purpose")?,
            presentation: row.try_get("presentation")?,
            run_id: row.try_get("run_id")?,
            package_id: row.try_get("package_id")?,
            owner_type: row.try_get("owner_type")?,
            owner_id: row.try_get("owner_id")?,
            name: row.try_get("name")?,
            mime: row.try_get("mime")?,
            size: row.try_get("size")?,
            sha256: row.try_get("sha256")?,
            storage_key: row.try_get("storage_key")?,
            expires_at: row.try_get("expires_at")?,
            publish_id: row.try_get("publish_id")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

pub async fn insert_document(conn: &mut AnyConnection, d: &Document) -> Result<()> {
    sqlx::query(
        "INSERT INTO documents (id, org_id, application_id, purpose, presentation, run_id, \
           package_id, owner_type, owner_id, name, mime, size, sha256, storage_key, expires_at, \
           publish_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(&d.id)
    .bind(&d.org_id)
    .bind(&d.application_id)
    .bind(&d.purpose)
    .bind(&d.presentation)
    .bind(&d.run_id)
    .bind(&d.package_id)
    .bind(&d.owner_type)
    .bind(&d.owner_id)
    .bind(&d.name)
    .bind(&d.mime)
    .bind(d.size)
    .bind(&d.sha256)
    .bind(&d.storage_key)
    .bind(d.expires_at)
    .bind(&d.publish_id)
    .bind(d.created_at)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// A document of the application.
pub async fn document(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    id: &str,
) -> Result<Option<Document>> {
    sqlx::query_as("SELECT * FROM documents WHERE org_id = $1 AND application_id = $2 AND id = $3")
        .bind(org_id)
        .bind(app_id)
        .bind(id)
        .fetch_optional(conn)
        .await
        .db()
}

/// What a document list filters on.
#[derive(Debug, Default, Clone)]
pub struct DocumentFilter<'a> {
    pub purpose: Option<&'a str>,
    pub run_id: Option<&'a str>,
    pub package_id: Option<&'a str>,
    /// Only rows this owner created, plus agent outputs (end-users: their own only).
    pub owner: Option<(&'a str, &'a str)>,
    pub own_only: bool,
}

/// A page of the application's documents, newest first, after the `after` document;
/// up to `limit + 1` rows so the caller can tell whether more follow.
pub async fn list_documents(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    f: &DocumentFilter<'_>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Document>> {
    let cursor: Option<(i64, String)> = match after {
        Some(id) => sqlx::query_as(
            "SELECT created_at, id FROM documents WHERE org_id = $1 AND application_id = $2 AND id = $3",
        )
        .bind(org_id)
        .bind(app_id)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .db()?,
        None => None,
    };
    let (c_at, c_id) = cursor.unwrap_or((i64::MAX, String::new()));
    let (owner_type, owner_id) = f.owner.unwrap_or(("", ""));
    sqlx::query_as(
        "SELECT * FROM documents WHERE org_id = $1 AND application_id = $2 \
           AND ($3 IS NULL OR purpose = $3) AND ($4 IS NULL OR run_id = $4) \
           AND ($5 IS NULL OR package_id = $5) \
           AND ($6 = '' OR (owner_type = $6 AND owner_id = $7) OR ($8 = 0 AND purpose = 'agent_output')) \
           AND (created_at < $9 OR (created_at = $9 AND $10 <> '' AND id < $10)) \
         ORDER BY created_at DESC, id DESC LIMIT $11",
    )
    .bind(org_id)
    .bind(app_id)
    .bind(f.purpose)
    .bind(f.run_id)
    .bind(f.package_id)
    .bind(owner_type)
    .bind(owner_id)
    .bind(i64::from(f.own_only))
    .bind(c_at)
    .bind(c_id)
    .bind(limit + 1)
    .fetch_all(conn)
    .await
    .db()
}

/// Sets (or clears, with `None`) a document's retention deadline.
pub async fn set_expiry(conn: &mut AnyConnection, id: &str, expires_at: Option<i64>) -> Result<()> {
    sqlx::query("UPDATE documents SET expires_at = $2 WHERE id = $1")
        .bind(id)
        .bind(expires_at)
        .execute(conn)
        .await
        .db()?;
    Ok(())
}

/// Whether any run carries the document as an input.
pub async fn consumed_by_runs(conn: &mut AnyConnection, id: &str) -> Result<bool> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM run_documents WHERE document_id = $1")
        .bind(id)
        .fetch_one(conn)
        .await
        .db()?;
    Ok(n > 0)
}

pub async fn delete_document(conn: &mut AnyConnection, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM uploads WHERE document_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await
        .db()?;
    sqlx::query("DELETE FROM documents WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await
        .db()?;
    Ok(())
}

/// Documents whose retention ended and that no run carries: returned and deleted.
pub async fn delete_expired_documents(conn: &mut AnyConnection, now: i64) -> Result<Vec<Document>> {
    let docs: Vec<Document> = sqlx::query_as(
        "SELECT * FROM documents d WHERE d.expires_at IS NOT NULL AND d.expires_at <= $1 \
         AND NOT EXISTS (SELECT 1 FROM run_documents r WHERE r.document_id = d.id)",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .db()?;
    for d in &docs {
        delete_document(&mut *conn, &d.id).await?;
    }
    Ok(docs)
}

/// Attaches an input document to a run under a workspace file name.
pub async fn add_run_document(
    conn: &mut AnyConnection,
    run_id: &str,
    workspace_name: &str,
    document_id: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO run_documents (run_id, workspace_name, document_id) VALUES ($1, $2, $3)",
    )
    .bind(run_id)
    .bind(workspace_name)
    .bind(document_id)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// A run's input documents: `(workspace name, document)`, by name.
pub async fn run_documents(
    conn: &mut AnyConnection,
    run_id: &str,
) -> Result<Vec<(String, Document)>> {
    let rows = sqlx::query(
        "SELECT r.workspace_name, d.* FROM run_documents r JOIN documents d ON d.id = r.document_id \
         WHERE r.run_id = $1 ORDER BY r.workspace_name",
    )
    .bind(run_id)
    .fetch_all(conn)
    .await
    .db()?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get::<String, _>("workspace_name").db()?,
                Document::from_row(row).db()?,
            ))
        })
        .collect()
}

/// The run's agent output with this sha256 and name, if published already.
pub async fn output_by_hash(
    conn: &mut AnyConnection,
    run_id: &str,
    sha256: &str,
    name: &str,
) -> Result<Option<Document>> {
    sqlx::query_as(
        "SELECT * FROM documents WHERE run_id = $1 AND purpose = 'agent_output' \
         AND sha256 = $2 AND name = $3",
    )
    .bind(run_id)
    .bind(sha256)
    .bind(name)
    .fetch_optional(conn)
    .await
    .db()
}

/// Makes `id` the run's one `primary` output.
pub async fn make_primary(conn: &mut AnyConnection, run_id: &str, id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE documents SET presentation = CASE WHEN id = $2 THEN 'primary' ELSE NULL END \
         WHERE run_id = $1 AND purpose = 'agent_output' AND (presentation IS NOT NULL OR id = $2)",
    )
    .bind(run_id)
    .bind(id)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}
