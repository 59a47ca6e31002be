//! Uploads and documents: the signed token of an upload's content URL, the check of a
//! run's file inputs (`upload://upl_…` and `document://doc_…` references, content type
//! sniffed from the bytes against the input schema's `contentMediaType`), their
//! attachment to the run as input documents, and the retention sweep. Blobs go
//! through the engine's object storage (files, or S3 at tier 3).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use corral_core::time::now_ms;
use corral_core::{ErrorCode, FieldError, Problem, ProblemResult};
use corral_store::documents::{self as store, Document, Upload};
use serde_json::Value;
use sha2::Digest as _;

use crate::runs::trigger::Caller;
use crate::Engine;

/// The largest upload (bytes), as the reference's.
pub const UPLOAD_MAX_BYTES: i64 = 100 * 1024 * 1024;
/// Open upload slots one owner may hold at once.
pub const UPLOAD_MAX_ACTIVE: i64 = 50;

fn token_mac(engine: &Engine, payload: &str) -> hmac::Hmac<sha2::Sha256> {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(engine.secrets.run_token.expose().as_bytes())
            .expect("HMAC accepts any key length");
    mac.update(b"corral.upload.v1:");
    mac.update(payload.as_bytes());
    mac
}

/// The token of an upload's content URL: `base64url(id:expiry).base64url(hmac)`.
pub fn upload_token(engine: &Engine, upload_id: &str, expires_at: i64) -> String {
    let payload = format!("{upload_id}:{expires_at}");
    format!(
        "{}.{}",
        B64.encode(payload.as_bytes()),
        B64.encode(hmac::Mac::finalize(token_mac(engine, &payload)).into_bytes())
    )
}

/// The upload id a token grants, if its signature holds and it has not expired.
pub fn verify_upload_token(engine: &Engine, token: &str, now: i64) -> ProblemResult<String> {
    let bad = || Problem::unauthorized("the upload token is invalid or expired", true);
    let (p, sig) = token.split_once('.').ok_or_else(bad)?;
    let payload = String::from_utf8(B64.decode(p).map_err(|_| bad())?).map_err(|_| bad())?;
    let sig = B64.decode(sig).map_err(|_| bad())?;
    hmac::Mac::verify_slice(token_mac(engine, &payload), &sig).map_err(|_| bad())?;
    let (id, exp) = payload.rsplit_once(':').ok_or_else(bad)?;
    let exp: i64 = exp.parse().map_err(|_| bad())?;
    if exp <= now {
        return Err(bad());
    }
    Ok(id.to_owned())
}

/// Whether `mime` matches `pattern` (`image/png`, `image/*`, `*/*`), parameters ignored.
pub fn mime_matches(pattern: &str, mime: &str) -> bool {
    let norm = |s: &str| {
        s.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    let (p, m) = (norm(pattern), norm(mime));
    if p == "*/*" || p == m {
        return true;
    }
    match p.strip_suffix("/*") {
        Some(major) => m.split('/').next() == Some(major),
        None => false,
    }
}

/// Checks bytes against the declared MIME and the schema's `contentMediaType`: the
/// declared type must fit the schema's; a binary type the sniffer knows must be what
/// the magic bytes say; a text type must be UTF-8. `Err` carries the reason.
pub fn check_content(expected: Option<&str>, declared: &str, bytes: &[u8]) -> Result<(), String> {
    if let Some(e) = expected {
        if !mime_matches(e, declared) {
            return Err(format!("the file is {declared}, the input takes {e}"));
        }
    }
    let declared_base = declared.split(';').next().unwrap_or("").trim();
    match infer::get(bytes) {
        // Container formats (zip-based office files, …) sniff as their container.
        Some(t)
            if !(mime_matches(declared_base, t.mime_type())
                || (t.mime_type() == "application/zip"
                    && declared_base.contains("openxmlformats"))) =>
        {
            return Err(format!(
                "the content is {}, not the declared {declared_base}",
                t.mime_type()
            ));
        }
        Some(_) => {}
        None if infer::is_mime_supported(declared_base) => {
            return Err(format!(
                "the content does not look like the declared {declared_base}"
            ));
        }
        None => {}
    }
    let texty = declared_base.starts_with("text/")
        || declared_base == "application/json"
        || declared_base.ends_with("+json");
    if texty && std::str::from_utf8(bytes).is_err() {
        return Err(format!("the content is not UTF-8 text ({declared_base})"));
    }
    Ok(())
}

/// One file input of a run, checked.
pub struct FileInput {
    pub field: String,
    pub source: FileSource,
}

pub enum FileSource {
    /// A staged upload; becomes a `user_upload` document of the run (once: a
    /// re-consumed upload reuses its document).
    Upload(Upload),
    Document(Document),
}

fn input_error(field: &str, code: &str, message: impl Into<String>) -> Problem {
    Problem::validation(vec![FieldError::new(
        format!("input.{field}"),
        code,
        message,
    )])
}

/// Finds and checks every `upload://` and `document://` reference among the input's
/// top-level string values: it must exist in the caller's application, be the
/// caller's, be written (uploads) and unexpired, and its bytes must match the field's
/// `contentMediaType`. Nothing is written.
pub async fn check_file_inputs(
    engine: &Engine,
    caller: &Caller,
    manifest: &Value,
    input: &Value,
) -> ProblemResult<Vec<FileInput>> {
    let mut out = Vec::new();
    let Some(obj) = input.as_object() else {
        return Ok(out);
    };
    let props = manifest.pointer("/input/schema/properties");
    let now = now_ms();
    for (field, value) in obj {
        let Some(s) = value.as_str() else { continue };
        let expected = props
            .and_then(|p| p.get(field))
            .and_then(|p| p.get("contentMediaType"))
            .and_then(Value::as_str);
        let mut conn = engine.db.conn().await?;
        if let Some(id) = s.strip_prefix("upload://") {
            let u = store::upload(&mut conn, &caller.org_id, &caller.app_id, id)
                .await?
                .filter(|u| {
                    u.owner_type == caller.actor.owner_type && u.owner_id == caller.actor.owner_id
                })
                .ok_or_else(|| input_error(field, "upload_not_found", format!("no upload {id}")))?;
            if u.expires_at <= now {
                return Err(input_error(
                    field,
                    "upload_expired",
                    format!("upload {id} has expired"),
                ));
            }
            if u.written_at.is_none() {
                return Err(input_error(
                    field,
                    "upload_not_written",
                    format!("upload {id} has no content yet: PUT the bytes to its url first"),
                ));
            }
            drop(conn);
            let bytes = engine
                .blobs
                .get(&u.storage_key)
                .await
                .map_err(Problem::internal)?
                .ok_or_else(|| {
                    input_error(
                        field,
                        "upload_not_found",
                        format!("upload {id} has no stored bytes"),
                    )
                })?;
            if bytes.len() as i64 != u.size {
                return Err(input_error(
                    field,
                    "size_mismatch",
                    format!(
                        "upload {id} holds {} bytes, {} were declared",
                        bytes.len(),
                        u.size
                    ),
                ));
            }
            if let Some(want) = &u.sha256 {
                if hex::encode(sha2::Sha256::digest(&bytes)) != want.to_ascii_lowercase() {
                    return Err(input_error(
                        field,
                        "checksum_mismatch",
                        format!("upload {id} does not match its sha256"),
                    ));
                }
            }
            check_content(expected, &u.mime, &bytes)
                .map_err(|m| input_error(field, "content_type_mismatch", m))?;
            out.push(FileInput {
                field: field.clone(),
                source: FileSource::Upload(u),
            });
        } else if let Some(id) = s.strip_prefix("document://") {
            let d = store::document(&mut conn, &caller.org_id, &caller.app_id, id)
                .await?
                .filter(|d| {
                    readable_by(
                        d,
                        caller.actor.owner_type,
                        &caller.actor.owner_id,
                        caller.end_user_id.is_some(),
                    )
                })
                .ok_or_else(|| {
                    input_error(field, "document_not_found", format!("no document {id}"))
                })?;
            if let Some(e) = expected {
                if !mime_matches(e, &d.mime) {
                    return Err(input_error(
                        field,
                        "content_type_mismatch",
                        format!("document {id} is {}, the input takes {e}", d.mime),
                    ));
                }
            }
            out.push(FileInput {
                field: field.clone(),
                source: FileSource::Document(d),
            });
        }
    }
    Ok(out)
}

/// Whether an owner can see a document: their own, and (members, not end-users) the
/// agents' outputs.
pub fn readable_by(d: &Document, owner_type: &str, owner_id: &str, end_user: bool) -> bool {
    let own =
        d.owner_type.as_deref() == Some(owner_type) && d.owner_id.as_deref() == Some(owner_id);
    own || (!end_user && d.purpose == "agent_output")
}

/// A file name safe as one workspace path segment: the last path segment, without
/// control characters or leading dots, at most 255 characters.
pub fn sanitize_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let cleaned: String = cleaned
        .trim()
        .trim_start_matches('.')
        .chars()
        .take(255)
        .collect();
    if cleaned.is_empty() {
        "document".into()
    } else {
        cleaned
    }
}

/// The input documents of a run about to be inserted.
pub struct Attachments {
    /// Documents to create (first consumption of an upload): (document, upload id).
    new: Vec<(Document, String)>,
    /// (workspace name, document id).
    links: Vec<(String, String)>,
}

/// Plans the checked file inputs' attachment to the run: an upload becomes a
/// `user_upload` document of the run the first time it is consumed (a re-consumed
/// upload reuses its document); each input gets a unique workspace name, and its
/// input value is rewritten to the durable `document://` reference. Nothing is
/// written until [`write_attachments`], after the run's insert.
pub async fn plan_attachments(
    engine: &Engine,
    run_id: &str,
    files: Vec<FileInput>,
    input: &mut Value,
) -> ProblemResult<Attachments> {
    let now = now_ms();
    let retention = engine.config.upload_retention_hours as i64 * 3_600_000;
    let mut taken = std::collections::BTreeSet::new();
    let mut out = Attachments {
        new: Vec::new(),
        links: Vec::new(),
    };
    for f in files {
        let (doc_id, name) = match f.source {
            FileSource::Document(d) => (d.id, d.name),
            FileSource::Upload(u) => match u.document_id {
                Some(id) => (id, u.name),
                None => {
                    let sha256 = match &u.sha256 {
                        Some(h) => h.to_ascii_lowercase(),
                        None => {
                            let bytes = engine
                                .blobs
                                .get(&u.storage_key)
                                .await
                                .map_err(Problem::internal)?
                                .unwrap_or_default();
                            hex::encode(sha2::Sha256::digest(&bytes))
                        }
                    };
                    let d = Document {
                        id: corral_core::ids::prefixed("doc"),
                        org_id: u.org_id.clone(),
                        application_id: u.application_id.clone(),
                        purpose: "user_upload".into(),
                        presentation: None,
                        run_id: Some(run_id.to_owned()),
                        package_id: None,
                        owner_type: Some(u.owner_type.clone()),
                        owner_id: Some(u.owner_id.clone()),
                        name: u.name.clone(),
                        mime: u.mime.clone(),
                        size: u.size,
                        sha256,
                        storage_key: u.storage_key.clone(),
                        expires_at: Some(now + retention),
                        publish_id: None,
                        created_at: now,
                    };
                    let id = d.id.clone();
                    out.new.push((d, u.id));
                    (id, u.name)
                }
            },
        };
        let base = sanitize_name(&name);
        let mut ws = base.clone();
        let mut n = 2;
        while !taken.insert(ws.clone()) {
            ws = match base.rsplit_once('.') {
                Some((stem, ext)) if !stem.is_empty() => format!("{stem}-{n}.{ext}"),
                _ => format!("{base}-{n}"),
            };
            n += 1;
        }
        input[&f.field] = Value::String(format!("document://{doc_id}"));
        out.links.push((ws, doc_id));
    }
    Ok(out)
}

/// Writes planned attachments, on the connection (transaction) of the run's insert.
pub async fn write_attachments(
    engine: &Engine,
    conn: &mut corral_store::Conn,
    run_id: &str,
    a: Attachments,
) -> ProblemResult<()> {
    let retention = engine.config.upload_retention_hours as i64 * 3_600_000;
    for (d, upload_id) in &a.new {
        store::insert_document(conn, d).await?;
        store::set_upload_document(conn, upload_id, &d.id, d.created_at + retention).await?;
    }
    for (name, doc_id) in &a.links {
        store::add_run_document(conn, run_id, name, doc_id).await?;
    }
    Ok(())
}

/// Deletes uploads whose retention ended and documents past their deadline that no
/// run carries; the blobs no row references any more are queued for deletion in the
/// same transaction (`storage_deletion_jobs`) and deleted by the worker.
pub async fn sweep(engine: &Engine, now: i64) -> anyhow::Result<(usize, usize)> {
    use corral_store::storage_deletions::{self as outbox, reasons};
    let mut tx = engine.db.begin().await?;
    let uploads = store::delete_expired_uploads(&mut tx, now).await?;
    let docs = store::delete_expired_documents(&mut tx, now).await?;
    // Due now, whatever cut-off `now` the sweep was given.
    let due = now_ms();
    outbox::enqueue_all(&mut tx, &uploads, reasons::UPLOAD_EXPIRED, due).await?;
    let doc_keys: Vec<(String, String)> = docs
        .iter()
        .map(|d| (d.storage_key.clone(), d.org_id.to_string()))
        .collect();
    outbox::enqueue_all(&mut tx, &doc_keys, reasons::DOCUMENT_EXPIRED, due).await?;
    tx.commit().await?;
    if !uploads.is_empty() || !docs.is_empty() {
        engine.storage_deletions.wake();
    }
    Ok((uploads.len(), docs.len()))
}

/// Deletes a document no run carries as an input (409 otherwise): its row, the
/// upload it came from, and (through the outbox, in the same transaction) its blob.
pub async fn delete_document(engine: &Engine, d: &Document) -> ProblemResult<()> {
    use corral_store::storage_deletions::{self as outbox, reasons};
    let mut tx = engine.db.begin().await?;
    if store::consumed_by_runs(&mut tx, &d.id).await? {
        return Err(Problem::new(
            ErrorCode::Conflict,
            "a run carries this document as an input; delete the run first",
        ));
    }
    store::delete_document(&mut tx, &d.id).await?;
    outbox::enqueue(
        &mut tx,
        &d.storage_key,
        reasons::DOCUMENT_DELETED,
        Some(d.org_id.as_str()),
        now_ms(),
    )
    .await?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    engine.storage_deletions.wake();
    Ok(())
}

/// A new upload's problem when the owner already holds too many open slots.
pub async fn check_staging_limit(engine: &Engine, caller: &Caller) -> ProblemResult<()> {
    let mut conn = engine.db.conn().await?;
    let n = store::active_uploads(
        &mut conn,
        &caller.org_id,
        caller.actor.owner_type,
        &caller.actor.owner_id,
        now_ms(),
    )
    .await?;
    if n >= UPLOAD_MAX_ACTIVE {
        return Err(Problem::new(
            ErrorCode::RateLimited,
            format!("{n} uploads are already staged and unconsumed; consume or let them expire"),
        ));
    }
    Ok(())
}
