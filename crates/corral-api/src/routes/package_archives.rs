//! Package archives over HTTP: import of a `.afps` (multipart `file` or a raw
//! `application/zip` body) and of a `.afps-bundle`, the file listing and content of a
//! version, and the download of a version's exact bytes (integrity verified first).

use crate::query::Query;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use corral_afps::{Bundle, Limits, Package, PackageType};
use corral_core::ErrorCode;
use corral_store::packages as store;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Ctx, Perm};
use crate::error::{ApiError, ApiResult};
use crate::json::Json;
use crate::state::AppState;
use corral_engine::packages as svc;

pub fn app_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(import_package))
        .routes(routes!(import_bundle))
        .routes(routes!(list_files))
        .routes(routes!(file_content))
        .routes(routes!(download))
        .routes(routes!(library))
}

/// The uploaded archive: the `file` part of a multipart form, or the raw body.
async fn upload(req: Request, state: &AppState) -> ApiResult<Vec<u8>> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(req, state)
            .await
            .map_err(|e| ApiError::invalid_param("file", e.body_text()))?;
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| ApiError::invalid_param("file", e.body_text()))?
        {
            if field.name() == Some("file") {
                let bytes = field.bytes().await.map_err(|e| {
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::new(
                            ErrorCode::PayloadTooLarge,
                            "the upload is larger than the limit",
                        )
                    } else {
                        ApiError::invalid_param("file", e.body_text())
                    }
                })?;
                return Ok(bytes.to_vec());
            }
        }
        return Err(ApiError::field(
            "file",
            "required",
            "the form has no `file` part",
        ));
    }
    if ct.starts_with("application/zip")
        || ct.starts_with("application/octet-stream")
        || ct.is_empty()
    {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    "the upload is larger than the limit",
                )
            } else {
                ApiError::invalid_param("file", e.body_text())
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError::field("file", "required", "the body is empty"));
        }
        return Ok(bytes.to_vec());
    }
    Err(ApiError::new(
        ErrorCode::UnsupportedMediaType,
        "send the archive as multipart/form-data (field `file`) or as application/zip",
    ))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportResult {
    pub package_id: String,
    #[serde(rename = "type")]
    pub ptype: String,
    pub version: String,
    pub integrity: String,
    pub warnings: Vec<String>,
}

/// Validates, scopes and publishes one archive; returns the stored version.
async fn import_one(
    state: &AppState,
    ctx: &Ctx,
    pkg: &Package,
    archive: Vec<u8>,
) -> ApiResult<store::Version> {
    let org_id = ctx.org_id()?;
    svc::check_scope(state, org_id, pkg).await?;
    svc::upsert_with_draft(state, Some(org_id), pkg, ctx.principal.actor_user_id()).await?;
    svc::publish(
        state,
        &pkg.name.id(),
        pkg,
        archive,
        ctx.principal.actor_user_id(),
    )
    .await
    .map_err(Into::into)
}

/// Import a `.afps` package archive as a new version (creating the package if needed).
#[utoipa::path(post, path = "/api/packages/import", tag = "Packages", operation_id = "importPackage",
    request_body(content_type = "multipart/form-data", description = "Field `file`: the .afps archive (a raw application/zip body is accepted too)"),
    responses(
        (status = 201, description = "Imported", body = ImportResult),
        (status = 409, description = "The version exists or does not move forward", body = crate::error::ProblemDetail),
        (status = 413, description = "Archive too large", body = crate::error::ProblemDetail),
        (status = 415, description = "Not multipart or zip", body = crate::error::ProblemDetail),
    ))]
pub async fn import_package(
    State(state): State<AppState>,
    ctx: Perm<perms::PackagesWrite>,
    req: Request,
) -> ApiResult<(StatusCode, Json<ImportResult>)> {
    let bytes = upload(req, &state).await?;
    // Keep the uploaded bytes when they are already canonical; otherwise store the
    // canonical archive so identical packages always have identical bytes.
    let pkg = Package::from_archive(&bytes, &Limits::default())?;
    let canonical = pkg.to_archive();
    let archive = if canonical == bytes { bytes } else { canonical };
    let v = import_one(&state, &ctx, &pkg, archive).await?;
    Ok((
        StatusCode::CREATED,
        Json(ImportResult {
            package_id: pkg.name.id(),
            ptype: pkg.ptype.as_str().to_owned(),
            version: v.version,
            integrity: v.integrity,
            warnings: Vec::new(),
        }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportedEntry {
    pub id: String,
    #[serde(rename = "type")]
    pub ptype: String,
    pub version: String,
    /// `imported`, or `existing` when that exact version was already stored.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BundleImportResult {
    pub imported: Vec<ImportedEntry>,
    pub root_installed: bool,
    pub root_package_id: Option<String>,
    pub root_version: Option<String>,
    pub warnings: Vec<String>,
}

/// Import a `.afps-bundle` (several packages plus `bundle.json`). Every archive is
/// validated before anything is stored; versions already present with the same bytes
/// are kept as they are.
#[utoipa::path(post, path = "/api/packages/import-bundle", tag = "Packages", operation_id = "importBundle",
    request_body(content_type = "multipart/form-data", description = "Field `file`: the .afps-bundle (a raw application/zip body is accepted too)"),
    responses(
        (status = 201, description = "Imported", body = BundleImportResult),
        (status = 409, description = "A version conflicts with a stored one", body = crate::error::ProblemDetail),
        (status = 413, description = "Bundle too large", body = crate::error::ProblemDetail),
        (status = 415, description = "Not multipart or zip", body = crate::error::ProblemDetail),
    ))]
pub async fn import_bundle(
    State(state): State<AppState>,
    ctx: Perm<perms::PackagesWrite>,
    req: Request,
) -> ApiResult<(StatusCode, Json<BundleImportResult>)> {
    let bytes = upload(req, &state).await?;
    let bundle = Bundle::from_archive(&bytes, &Limits::default())?;
    let org_id = ctx.org_id()?.to_owned();
    // Refuse the whole bundle before storing anything if one package is out of scope.
    for (pkg, _) in &bundle.packages {
        svc::check_scope(&state, &org_id, pkg).await?;
    }
    let mut imported = Vec::new();
    for (pkg, archive) in bundle.packages {
        let id = pkg.name.id();
        let version = pkg.version.to_string();
        let existing = {
            let mut conn = state.db.conn().await?;
            store::version(&mut conn, &id, &version).await?
        };
        let status = match existing {
            Some(v) if v.integrity == corral_afps::integrity(&archive) => "existing",
            Some(_) => {
                return Err(ApiError::new(
                    ErrorCode::VersionExists,
                    format!("{id}@{version} already exists with different content"),
                ))
            }
            None => {
                import_one(&state, &ctx, &pkg, archive).await?;
                "imported"
            }
        };
        imported.push(ImportedEntry {
            id,
            ptype: pkg.ptype.as_str().to_owned(),
            version,
            status: status.to_owned(),
        });
    }
    let root = imported
        .iter()
        .find(|e| e.ptype == PackageType::Agent.as_str());
    Ok((
        StatusCode::CREATED,
        Json(BundleImportResult {
            root_installed: false,
            root_package_id: root.map(|e| e.id.clone()),
            root_version: root.map(|e| e.version.clone()),
            imported,
            warnings: Vec::new(),
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// Version, dist-tag or range; omitted: the `latest` version.
    pub version: Option<String>,
    /// For `files/content`: the file's path inside the package.
    pub path: Option<String>,
}

/// Resolves a package and a version spec to a stored version.
async fn resolve_version(
    state: &AppState,
    ctx: &Ctx,
    scope: &str,
    name: &str,
    spec: Option<&str>,
) -> ApiResult<store::Version> {
    svc::resolve(
        state,
        ctx.org_id()?,
        &format!("{scope}/{name}"),
        spec.unwrap_or("latest"),
    )
    .await
    .map_err(Into::into)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileEntry {
    pub path: String,
    pub size: i64,
    /// `sha256=<base64url>` as in the version's RECORD.
    pub sha256: String,
    /// `text` | `binary`, by the file's extension (the content is not inlined).
    #[schema(value_type = String, pattern = "^(text|binary)$")]
    pub media_kind: &'static str,
}

/// `text` for the extensions of text files, else `binary`.
fn media_kind(path: &str) -> &'static str {
    const TEXT: &[&str] = &[
        "md", "markdown", "txt", "json", "jsonc", "yaml", "yml", "toml", "js", "mjs", "cjs", "ts",
        "py", "sh", "html", "htm", "css", "csv", "tsv", "xml", "svg", "ini", "cfg", "env", "sql",
        "rs", "go", "rb",
    ];
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.rsplit_once('.') {
        Some((_, ext)) if TEXT.contains(&ext.to_ascii_lowercase().as_str()) => "text",
        None if name == "RECORD" || name == "LICENSE" => "text",
        _ => "binary",
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileList {
    pub package_id: String,
    pub version: String,
    pub entries: Vec<FileEntry>,
}

/// Files of a version, from its RECORD.
#[utoipa::path(get, path = "/api/packages/{scope}/{name}/files", tag = "Packages", operation_id = "listPackageFiles",
    params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name"), FileQuery),
    responses((status = 200, description = "Files", body = FileList)))]
pub async fn list_files(
    State(state): State<AppState>,
    ctx: Perm<perms::PackagesRead>,
    Path((scope, name)): Path<(String, String)>,
    Query(q): Query<FileQuery>,
) -> ApiResult<Json<FileList>> {
    let v = resolve_version(&state, &ctx, &scope, &name, q.version.as_deref()).await?;
    let entries = v
        .record
        .lines()
        .filter_map(|line| {
            let mut it = line.rsplitn(3, ',');
            let size = it.next()?.parse().ok()?;
            let sha = it.next()?.to_owned();
            let path = it.next()?.to_owned();
            Some(FileEntry {
                media_kind: media_kind(&path),
                path,
                size,
                sha256: sha,
            })
        })
        .collect();
    Ok(Json(FileList {
        package_id: v.package_id,
        version: v.version,
        entries,
    }))
}

/// One file of a version (bytes, integrity verified).
#[utoipa::path(get, path = "/api/packages/{scope}/{name}/files/content", tag = "Packages", operation_id = "getPackageFileContent",
    params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name"), FileQuery),
    responses((status = 200, description = "The file's bytes", content_type = "application/octet-stream")))]
pub async fn file_content(
    State(state): State<AppState>,
    ctx: Perm<perms::PackagesRead>,
    Path((scope, name)): Path<(String, String)>,
    Query(q): Query<FileQuery>,
) -> ApiResult<Response> {
    let path = q
        .path
        .as_deref()
        .ok_or_else(|| ApiError::invalid_param("path", "the `path` query parameter is required"))?;
    let v = resolve_version(&state, &ctx, &scope, &name, q.version.as_deref()).await?;
    let bytes = svc::load_verified(&state, &v).await?;
    let pkg = Package::from_archive(&bytes, &Limits::default())?;
    let file = pkg
        .files
        .get(path)
        .ok_or_else(|| ApiError::not_found("file"))?;
    let ct = if path.ends_with(".json") {
        "application/json"
    } else if path.ends_with(".md") || path.ends_with(".txt") {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    };
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(ct))],
        file.clone(),
    )
        .into_response())
}

/// The exact archive bytes of a version, after checking them against the recorded integrity.
#[utoipa::path(get, path = "/api/packages/{scope}/{name}/{version}/download", tag = "Packages", operation_id = "downloadPackageVersion",
    params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name"),
           ("version" = String, Path, description = "Version, dist-tag or range")),
    responses((status = 200, description = "The .afps archive", content_type = "application/zip")))]
pub async fn download(
    State(state): State<AppState>,
    ctx: Perm<perms::PackagesRead>,
    Path((scope, name, version)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let v = resolve_version(&state, &ctx, &scope, &name, Some(&version)).await?;
    let bytes = svc::load_verified(&state, &v).await?;
    let file = format!(
        "{}-{}-{}.afps",
        scope.trim_start_matches('@'),
        name,
        v.version
    );
    let mut resp = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/zip"),
        )],
        bytes,
    )
        .into_response();
    if let Ok(h) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, h);
    }
    if let Ok(h) = HeaderValue::from_str(&v.integrity) {
        resp.headers_mut().insert("x-integrity", h);
    }
    Ok(resp)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LibraryPackage {
    pub id: String,
    #[serde(rename = "type")]
    #[schema(value_type = String, pattern = "^(agent|skill|mcp-server|integration)$")]
    pub ptype: String,
    #[schema(value_type = String, pattern = "^(system|local)$")]
    pub source: &'static str,
    /// The draft manifest's display name, else the package id.
    pub name: String,
    /// The draft manifest's description, else empty.
    pub description: String,
    pub version: Option<String>,
    /// The organization's applications the package is installed in.
    pub installed_in: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LibraryApplication {
    pub id: String,
    pub name: String,
    pub is_default: bool,
}

/// The packages grouped by type; every group is present (possibly empty).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct LibraryPackages {
    pub agent: Vec<LibraryPackage>,
    pub skill: Vec<LibraryPackage>,
    #[serde(rename = "mcp-server")]
    pub mcp_server: Vec<LibraryPackage>,
    pub integration: Vec<LibraryPackage>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Library {
    #[schema(value_type = String, pattern = "^library$")]
    pub object: &'static str,
    /// The organization's applications, the default one first.
    pub applications: Vec<LibraryApplication>,
    pub packages: LibraryPackages,
}

/// Every package the organization can use (its own and the system ones), grouped by
/// type, with the applications each is installed in.
#[utoipa::path(get, path = "/api/library", tag = "Packages", operation_id = "getLibrary",
    responses((status = 200, description = "The library", body = Library)))]
pub async fn library(
    State(state): State<AppState>,
    ctx: Perm<perms::PackagesRead>,
) -> ApiResult<Json<Library>> {
    let org_id = ctx.org_id()?;
    let mut conn = state.db.conn().await?;
    let rows = store::list_visible(&mut conn, org_id, None).await?;
    let mut apps = corral_store::applications::list(&mut conn, org_id).await?;
    apps.sort_by_key(|a| !a.is_default);
    let mut installed: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (pkg, app) in corral_store::app_packages::installations(&mut conn, org_id).await? {
        installed.entry(pkg).or_default().push(app.into());
    }
    let mut packages = LibraryPackages::default();
    for r in rows {
        let group = match r.ptype.as_str() {
            "agent" => &mut packages.agent,
            "skill" => &mut packages.skill,
            "mcp-server" => &mut packages.mcp_server,
            "integration" => &mut packages.integration,
            _ => continue,
        };
        group.push(LibraryPackage {
            source: if r.org_id.is_none() {
                "system"
            } else {
                "local"
            },
            installed_in: installed.remove(&r.id).unwrap_or_default(),
            name: r.display_name.unwrap_or_else(|| r.id.clone()),
            description: r.description.unwrap_or_default(),
            id: r.id,
            ptype: r.ptype,
            version: r.latest_version,
        });
    }
    Ok(Json(Library {
        object: "library",
        applications: apps
            .into_iter()
            .map(|a| LibraryApplication {
                id: a.id.into(),
                name: a.name,
                is_default: a.is_default,
            })
            .collect(),
        packages,
    }))
}
