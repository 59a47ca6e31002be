//! Packages (`/api/packages…`): the typed CRUD of the four AFPS package types (one
//! generic implementation, instantiated per type by `typed_routes!` so each gets the
//! reference's paths and operationIds), versions (publish, list, detail, restore,
//! yank), import of `.afps` archives and `.afps-bundle` bundles, file listing and
//! content, and download with integrity verification.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use corral_afps::{Package, PackageName, PackageType};
use corral_core::time::now_ms;
use corral_core::ErrorCode;
use corral_store::packages as store;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Ctx, Perm};
use crate::error::{ApiError, ApiResult, FieldError, ProblemDetail};
use crate::json::{Json, Validate};
use crate::routes::rfc3339;
use crate::state::AppState;
use corral_engine::packages::{self as svc, main_file};

// ---------------------------------------------------------------------------------
// Response shapes

/// A package as listed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgPackageItem {
    /// `@scope/name`
    pub id: String,
    pub org_id: Option<String>,
    pub name: String,
    #[serde(rename = "type")]
    pub ptype: String,
    pub description: Option<String>,
    /// `system` (shipped with Corral, read-only) or `local` (the org's own).
    #[schema(value_type = String, pattern = "^(system|local)$")]
    pub source: &'static str,
    #[serde(rename = "created_by")]
    pub created_by: Option<String>,
    #[serde(rename = "created_by_name", skip_serializing_if = "Option::is_none")]
    pub created_by_name: Option<String>,
    #[serde(rename = "used_by_agents")]
    pub used_by_agents: i64,
    /// The `latest` published version, if any.
    pub version: Option<String>,
    #[serde(rename = "auto_installed")]
    pub auto_installed: bool,
    #[serde(rename = "forked_from")]
    pub forked_from: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageList {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<OrgPackageItem>,
    pub total: i64,
    pub has_more: bool,
}

/// A skill, MCP server or integration package (its draft, plus its latest version).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageDetail {
    pub id: String,
    pub org_id: Option<String>,
    #[serde(rename = "type")]
    pub ptype: String,
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    /// The main text file (`SKILL.md` for skills), when the type has one.
    pub content: Option<String>,
    #[schema(value_type = String, pattern = "^(system|local)$")]
    pub source: &'static str,
    #[serde(rename = "created_by")]
    pub created_by: Option<String>,
    #[serde(rename = "auto_installed")]
    pub auto_installed: bool,
    #[serde(rename = "lock_version")]
    pub lock_version: i64,
    pub version: Option<String>,
    #[schema(value_type = Object)]
    pub manifest: Value,
    #[serde(rename = "version_count")]
    pub version_count: i64,
    #[serde(rename = "has_unarchived_changes")]
    pub has_unarchived_changes: bool,
    #[serde(rename = "forked_from")]
    pub forked_from: Option<String>,
    /// Agents of the org that depend on this package.
    pub agents: Vec<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentInput {
    #[schema(value_type = Object)]
    pub schema: Value,
    #[schema(value_type = Object)]
    pub values: Value,
    pub locked_fields: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub file_constraints: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub ui_hints: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub property_order: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DependencyRef {
    pub id: String,
    pub version: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Dependencies {
    pub skills: Vec<DependencyRef>,
    pub mcp_servers: Vec<DependencyRef>,
    pub integrations: Vec<DependencyRef>,
}

/// An agent package: its draft (manifest, prompt), input/output, dependencies.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentDetail {
    pub id: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = String, pattern = "^(system|local)$")]
    pub source: &'static str,
    pub scope: Option<String>,
    pub version: Option<String>,
    #[schema(value_type = Object)]
    pub manifest: Value,
    pub prompt: Option<String>,
    #[serde(rename = "updatedAt")]
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub lock_version: i64,
    pub input: AgentInput,
    #[schema(value_type = Object)]
    pub output: Value,
    pub dependencies: Dependencies,
    #[schema(value_type = Option<Object>)]
    pub last_run: Option<Value>,
    pub running_runs: i64,
    pub version_count: i64,
    pub forked_from: Option<String>,
    pub has_unarchived_changes: bool,
    pub effective_timeout_seconds: i64,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Detail {
    Agent(Box<AgentDetail>),
    Other(Box<PackageDetail>),
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub id: i64,
    pub package_id: String,
    pub version: String,
    pub integrity: String,
    #[serde(rename = "artifact_size")]
    pub artifact_size: i64,
    pub yanked: bool,
    #[serde(rename = "created_by")]
    pub created_by: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionList {
    pub versions: Vec<VersionInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PackageVersionDetail {
    pub id: i64,
    pub version: String,
    #[schema(value_type = Object)]
    pub manifest: Value,
    pub content: Option<String>,
    pub yanked: bool,
    pub yanked_reason: Option<String>,
    pub integrity: String,
    pub artifact_size: i64,
    #[serde(rename = "createdAt")]
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    pub dist_tags: Vec<String>,
}

// ---------------------------------------------------------------------------------
// Request shapes

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePackageBody {
    /// The AFPS manifest.
    #[schema(value_type = Object)]
    pub manifest: Value,
    /// The main text file: the agent's prompt (`prompt.md`) or the skill's `SKILL.md`.
    pub content: Option<String>,
    /// Other files of the package, path → UTF-8 text.
    pub files: Option<BTreeMap<String, String>>,
}

impl Validate for CreatePackageBody {}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePackageBody {
    #[schema(value_type = Object)]
    pub manifest: Value,
    pub content: Option<String>,
    pub files: Option<BTreeMap<String, String>>,
    /// The `lock_version` read; a concurrent edit makes the update a 409.
    pub lock_version: Option<i64>,
}

impl Validate for UpdatePackageBody {}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateVersionBody {
    /// Version to publish the draft as; defaults to the draft manifest's version.
    pub version: Option<String>,
    /// A custom dist-tag (e.g. `beta`, `stable`) to point at the new version, besides
    /// `latest`, which moves to every new stable version by itself.
    pub tag: Option<String>,
}

/// A dist-tag name: lowercase, starts with a letter, and is not a version or range.
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && semver::VersionReq::parse(t).is_err()
}

impl Validate for CreateVersionBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if let Some(v) = &self.version {
            if semver::Version::parse(v).is_err() {
                e.push(FieldError::new(
                    "version",
                    "invalid_format",
                    "must be a semantic version such as 1.2.0",
                ));
            }
        }
        if let Some(t) = &self.tag {
            if !valid_tag(t) {
                e.push(FieldError::new(
                    "tag",
                    "invalid_format",
                    "lowercase letters, digits and hyphens, starting with a letter",
                ));
            }
        }
        e
    }
}

// ---------------------------------------------------------------------------------
// Helpers

fn source(row: &store::Package) -> &'static str {
    if row.org_id.is_none() {
        "system"
    } else {
        "local"
    }
}

fn package_id(scope: &str, name: &str) -> ApiResult<String> {
    let id = format!("{scope}/{name}");
    PackageName::parse(&id).map(|n| n.id()).ok_or_else(|| {
        ApiError::invalid_param("scope", format!("{id} is not a package name (@scope/name)"))
    })
}

async fn load_row(
    state: &AppState,
    ctx: &Ctx,
    id: &str,
    ptype: Option<PackageType>,
) -> ApiResult<store::Package> {
    let mut conn = state.db.conn().await?;
    store::get_visible(&mut conn, ctx.org_id()?, id, ptype.map(PackageType::as_str))
        .await?
        .ok_or_else(|| ApiError::not_found("package"))
}

/// The org's own package, or 403 for a system package (visible, not writable).
async fn load_own(
    state: &AppState,
    ctx: &Ctx,
    id: &str,
    ptype: PackageType,
) -> ApiResult<store::Package> {
    let row = load_row(state, ctx, id, Some(ptype)).await?;
    if row.org_id.is_none() {
        return Err(ApiError::forbidden("system packages are read-only"));
    }
    Ok(row)
}

fn text_of(files: &BTreeMap<String, Vec<u8>>, path: &str) -> Option<String> {
    files
        .get(path)
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

const DEFAULT_TIMEOUT_S: i64 = 300;
const TIMEOUT_CEILING_S: i64 = 1800;

pub(crate) async fn detail(
    state: &AppState,
    ctx: &Ctx,
    row: &store::Package,
    ptype: PackageType,
) -> ApiResult<Detail> {
    let manifest: Value = serde_json::from_str(&row.draft_manifest).map_err(ApiError::internal)?;
    let files = svc::decode_files(&row.draft_files)?;
    let content = main_file(ptype).and_then(|f| text_of(&files, f));
    let has_changes = match &row.latest_version {
        None => true,
        Some(v) => {
            let mut conn = state.db.conn().await?;
            store::version(&mut conn, &row.id, v)
                .await?
                .is_none_or(|ver| ver.integrity != row.draft_integrity)
        }
    };
    if ptype == PackageType::Agent {
        let input = manifest.get("input").cloned().unwrap_or(Value::Null);
        let settings: crate::routes::agents::AgentInputSettings = match ctx.app_id.as_deref() {
            Some(app_id) => {
                let mut conn = state.db.conn().await?;
                corral_store::app_packages::get(&mut conn, ctx.org_id()?, app_id, &row.id)
                    .await?
                    .and_then(|i| serde_json::from_str(&i.input_settings).ok())
                    .unwrap_or_default()
            }
            None => Default::default(),
        };
        let timeout = manifest
            .get("timeout")
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_TIMEOUT_S);
        return Ok(Detail::Agent(Box::new(AgentDetail {
            id: row.id.clone(),
            display_name: row.display_name.clone(),
            description: row.description.clone(),
            source: source(row),
            scope: Some(format!("@{}", row.scope)),
            version: row.latest_version.clone(),
            prompt: content,
            updated_at: rfc3339(row.updated_at),
            lock_version: row.lock_version,
            input: AgentInput {
                schema: input
                    .get("schema")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                values: Value::Object(settings.values),
                locked_fields: settings.locked_fields,
                file_constraints: input.get("file_constraints").cloned(),
                ui_hints: input.get("ui_hints").cloned(),
                property_order: input
                    .get("property_order")
                    .and_then(|v| serde_json::from_value(v.clone()).ok()),
            },
            output: manifest.get("output").cloned().unwrap_or_else(|| json!({})),
            dependencies: crate::routes::agents::dependencies_of(&manifest),
            last_run: None,
            running_runs: 0,
            version_count: row.version_count,
            forked_from: row.forked_from.clone(),
            has_unarchived_changes: has_changes,
            effective_timeout_seconds: timeout.clamp(1, TIMEOUT_CEILING_S),
            manifest,
        })));
    }
    let mut conn = state.db.conn().await?;
    let agents = dependents(&mut conn, ctx.org_id()?, &row.id).await?;
    Ok(Detail::Other(Box::new(PackageDetail {
        id: row.id.clone(),
        org_id: row.org_id.clone(),
        ptype: row.ptype.clone(),
        name: row.name.clone(),
        display_name: row.display_name.clone(),
        description: row.description.clone(),
        content,
        source: source(row),
        created_by: row.created_by.clone(),
        auto_installed: false,
        lock_version: row.lock_version,
        version: row.latest_version.clone(),
        manifest,
        version_count: row.version_count,
        has_unarchived_changes: has_changes,
        forked_from: row.forked_from.clone(),
        agents,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    })))
}

async fn dependents(
    conn: &mut corral_store::Conn,
    org_id: &str,
    id: &str,
) -> ApiResult<Vec<String>> {
    let agents = store::list_visible(conn, org_id, Some("agent")).await?;
    Ok(agents
        .into_iter()
        .filter(|a| {
            serde_json::from_str::<Value>(&a.draft_manifest)
                .map(|m| {
                    corral_afps::dependencies(&m)
                        .iter()
                        .any(|(_, n, _)| n.id() == id)
                })
                .unwrap_or(false)
        })
        .map(|a| a.id)
        .collect())
}

fn item(row: store::Package, used_by_agents: i64) -> OrgPackageItem {
    OrgPackageItem {
        source: source(&row),
        id: row.id,
        org_id: row.org_id,
        name: row.display_name.unwrap_or(row.name),
        ptype: row.ptype,
        description: row.description,
        created_by: row.created_by,
        created_by_name: row.created_by_name,
        used_by_agents,
        version: row.latest_version,
        auto_installed: false,
        forked_from: row.forked_from,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    }
}

fn files_from_body(
    ptype: PackageType,
    content: Option<String>,
    files: Option<BTreeMap<String, String>>,
) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = files
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    if let (Some(f), Some(c)) = (main_file(ptype), content) {
        out.insert(f.to_owned(), c.into_bytes());
    }
    out
}

fn check_type(pkg: &Package, ptype: PackageType) -> ApiResult<()> {
    if pkg.ptype != ptype {
        return Err(ApiError::field(
            "manifest.type",
            "type_mismatch",
            format!(
                "this route takes {} packages, the manifest says {}",
                ptype.as_str(),
                pkg.ptype.as_str()
            ),
        ));
    }
    Ok(())
}

fn version_info(v: store::Version) -> VersionInfo {
    VersionInfo {
        id: v.id,
        package_id: v.package_id,
        version: v.version,
        integrity: v.integrity,
        artifact_size: v.artifact_size,
        yanked: v.yanked,
        created_by: v.created_by,
        created_at: Some(rfc3339(v.created_at)),
    }
}

async fn version_detail(
    state: &AppState,
    v: store::Version,
    ptype: PackageType,
) -> ApiResult<PackageVersionDetail> {
    let mut conn = state.db.conn().await?;
    let tags = store::dist_tags(&mut conn, &v.package_id).await?;
    drop(conn);
    let content = match main_file(ptype) {
        Some(f) => {
            let bytes = svc::load_verified(state, &v).await?;
            let pkg = Package::from_archive(&bytes, &corral_afps::Limits::default())?;
            text_of(&pkg.files, f)
        }
        None => None,
    };
    Ok(PackageVersionDetail {
        id: v.id,
        manifest: serde_json::from_str(&v.manifest).map_err(ApiError::internal)?,
        content,
        yanked: v.yanked,
        yanked_reason: v.yanked_reason.clone(),
        integrity: v.integrity.clone(),
        artifact_size: v.artifact_size,
        created_at: Some(rfc3339(v.created_at)),
        dist_tags: tags
            .into_iter()
            .filter(|t| t.version == v.version)
            .map(|t| t.tag)
            .collect(),
        version: v.version,
    })
}

// ---------------------------------------------------------------------------------
// Generic handlers, one per operation; `typed_routes!` instantiates them per type.

async fn list_impl(state: &AppState, ctx: &Ctx, ptype: PackageType) -> ApiResult<PackageList> {
    let org_id = ctx.org_id()?;
    let mut conn = state.db.conn().await?;
    let rows = store::list_visible(&mut conn, org_id, Some(ptype.as_str())).await?;
    let mut data = Vec::with_capacity(rows.len());
    for row in rows {
        let used = if ptype == PackageType::Agent {
            0
        } else {
            store::count_dependents(&mut conn, org_id, &row.id).await?
        };
        data.push(item(row, used));
    }
    Ok(PackageList {
        object: "list",
        total: data.len() as i64,
        data,
        has_more: false,
    })
}

async fn create_impl(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
    body: CreatePackageBody,
) -> ApiResult<Detail> {
    let org_id = ctx.org_id()?;
    let files = files_from_body(ptype, body.content, body.files);
    let pkg = Package::from_parts(body.manifest, files)?;
    check_type(&pkg, ptype)?;
    svc::check_scope(state, org_id, &pkg).await?;
    let id = pkg.name.id();
    {
        let mut conn = state.db.conn().await?;
        if store::get_visible(&mut conn, org_id, &id, None)
            .await?
            .is_some()
        {
            let mut e = ApiError::new(ErrorCode::Conflict, format!("{id} already exists"));
            e.param = Some("manifest.name".into());
            return Err(e);
        }
    }
    match svc::upsert_with_draft(state, Some(org_id), &pkg, ctx.principal.actor_user_id()).await {
        Err(e) if e.code == ErrorCode::Conflict => return Err(e.into()),
        other => other?,
    };
    let row = load_row(state, ctx, &id, Some(ptype)).await?;
    detail(state, ctx, &row, ptype).await
}

async fn get_impl(state: &AppState, ctx: &Ctx, ptype: PackageType, id: &str) -> ApiResult<Detail> {
    let row = load_row(state, ctx, id, Some(ptype)).await?;
    detail(state, ctx, &row, ptype).await
}

async fn update_impl(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
    id: &str,
    body: UpdatePackageBody,
) -> ApiResult<Detail> {
    let row = load_own(state, ctx, id, ptype).await?;
    let mut files = svc::decode_files(&row.draft_files)?;
    if let Some(more) = body.files {
        files.extend(more.into_iter().map(|(k, v)| (k, v.into_bytes())));
    }
    if let (Some(f), Some(c)) = (main_file(ptype), body.content) {
        files.insert(f.to_owned(), c.into_bytes());
    }
    let pkg = Package::from_parts(body.manifest, files)?;
    check_type(&pkg, ptype)?;
    if pkg.name.id() != row.id {
        return Err(ApiError::field(
            "manifest.name",
            "immutable",
            "a package cannot be renamed",
        ));
    }
    let manifest = serde_json::to_string(&pkg.manifest).map_err(ApiError::internal)?;
    let encoded = svc::encode_files(&pkg.files)?;
    let integrity = corral_afps::integrity(&pkg.to_archive());
    let mut conn = state.db.conn().await?;
    let updated = store::update_draft(
        &mut conn,
        row.org_id.as_deref(),
        &row.id,
        &store::DraftUpdate {
            manifest: &manifest,
            files: &encoded,
            integrity: &integrity,
            display_name: pkg.manifest.get("display_name").and_then(Value::as_str),
            description: pkg.manifest.get("description").and_then(Value::as_str),
            now: now_ms(),
        },
        body.lock_version,
    )
    .await?;
    if !updated {
        let mut e = ApiError::new(
            ErrorCode::LockConflict,
            "the package was changed by someone else; reload and retry",
        );
        e.param = Some("lock_version".into());
        return Err(e);
    }
    drop(conn);
    get_impl(state, ctx, ptype, id).await
}

async fn delete_impl(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
    id: &str,
) -> ApiResult<StatusCode> {
    let row = load_own(state, ctx, id, ptype).await?;
    let mut conn = state.db.conn().await?;
    let users = dependents(&mut conn, ctx.org_id()?, &row.id).await?;
    if !users.is_empty() {
        return Err(ApiError::new(
            ErrorCode::PackageInUse,
            format!("{} is used by {}", row.id, users.join(", ")),
        ));
    }
    store::delete(&mut conn, ctx.org_id()?, &row.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn versions_impl(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
    id: &str,
) -> ApiResult<VersionList> {
    let row = load_row(state, ctx, id, Some(ptype)).await?;
    let mut conn = state.db.conn().await?;
    let versions = store::versions(&mut conn, &row.id).await?;
    Ok(VersionList {
        versions: versions.into_iter().map(version_info).collect(),
    })
}

async fn publish_impl(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
    id: &str,
    body: CreateVersionBody,
) -> ApiResult<PackageVersionDetail> {
    let row = load_own(state, ctx, id, ptype).await?;
    let mut pkg = svc::draft_package(&row)?;
    let body_tag = body.tag;
    if let Some(v) = body.version {
        let mut manifest = pkg.manifest.clone();
        manifest["version"] = Value::String(v);
        let mut files = pkg.files.clone();
        files.remove("manifest.json");
        pkg = Package::from_parts(manifest, files)?;
    }
    let archive = pkg.to_archive();
    let v = svc::publish(state, &row.id, &pkg, archive, ctx.principal.actor_user_id()).await?;
    if let Some(tag) = &body_tag {
        let mut conn = state.db.conn().await?;
        store::set_dist_tag(&mut conn, &row.id, tag, &v.version, now_ms()).await?;
    }
    version_detail(state, v, ptype).await
}

async fn load_version(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
    id: &str,
    version: &str,
) -> ApiResult<store::Version> {
    let row = load_row(state, ctx, id, Some(ptype)).await?;
    let mut conn = state.db.conn().await?;
    store::version(&mut conn, &row.id, version)
        .await?
        .ok_or_else(|| ApiError::not_found("version"))
}

async fn restore_impl(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
    id: &str,
    version: &str,
) -> ApiResult<Detail> {
    let row = load_own(state, ctx, id, ptype).await?;
    let v = load_version(state, ctx, ptype, id, version).await?;
    let bytes = svc::load_verified(state, &v).await?;
    let pkg = Package::from_archive(&bytes, &corral_afps::Limits::default())?;
    svc::upsert_with_draft(
        state,
        row.org_id.as_deref(),
        &pkg,
        ctx.principal.actor_user_id(),
    )
    .await?;
    get_impl(state, ctx, ptype, id).await
}

async fn yank_impl(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
    id: &str,
    version: &str,
) -> ApiResult<StatusCode> {
    load_own(state, ctx, id, ptype).await?;
    let v = load_version(state, ctx, ptype, id, version).await?;
    let mut tx = state.db.begin().await?;
    store::set_yanked(
        &mut tx,
        &v.package_id,
        &v.version,
        true,
        Some("deleted through the API"),
    )
    .await?;
    // `latest` never points at a yanked version: move it to the highest remaining one.
    let tags = store::dist_tags(&mut tx, &v.package_id).await?;
    if tags
        .iter()
        .any(|t| t.tag == "latest" && t.version == v.version)
    {
        let best = store::versions(&mut tx, &v.package_id)
            .await?
            .into_iter()
            .filter(|x| !x.yanked && x.version != v.version)
            .filter_map(|x| semver::Version::parse(&x.version).ok())
            .filter(|x| x.pre.is_empty())
            .max();
        match best {
            Some(b) => {
                store::set_dist_tag(&mut tx, &v.package_id, "latest", &b.to_string(), now_ms())
                    .await?
            }
            None => {
                store::delete_dist_tag(&mut tx, &v.package_id, "latest").await?;
            }
        }
    }
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

macro_rules! typed_routes {
    ($module:ident, $ptype:expr, $plural:literal, $tag:literal, $detail:ty,
     [$list:literal, $create:literal, $get:literal, $update:literal, $delete:literal,
      $versions:literal, $publish:literal, $version:literal, $restore:literal, $yank:literal]) => {
        pub mod $module {
            use super::*;

            pub fn router() -> OpenApiRouter<AppState> {
                OpenApiRouter::new()
                    .routes(routes!(list, create))
                    .routes(routes!(get, update, delete))
                    .routes(routes!(versions, publish))
                    .routes(routes!(version, yank))
                    .routes(routes!(restore))
            }

            #[utoipa::path(get, path = concat!("/api/packages/", $plural), tag = $tag, operation_id = $list,
                responses((status = 200, description = "Packages visible to the organization, system ones included", body = PackageList)))]
            pub async fn list(State(state): State<AppState>, ctx: Perm<perms::PackagesRead>) -> ApiResult<Json<PackageList>> {
                Ok(Json(list_impl(&state, &ctx, $ptype).await?))
            }

            #[utoipa::path(post, path = concat!("/api/packages/", $plural), tag = $tag, operation_id = $create,
                request_body = CreatePackageBody,
                responses((status = 201, description = "Package created (as a draft)", body = $detail),
                          (status = 409, description = "Already exists", body = ProblemDetail, content_type = "application/problem+json")))]
            pub async fn create(
                State(state): State<AppState>,
                ctx: Perm<perms::PackagesWrite>,
                Json(body): Json<CreatePackageBody>,
            ) -> ApiResult<(StatusCode, Json<Detail>)> {
                Ok((StatusCode::CREATED, Json(create_impl(&state, &ctx, $ptype, body).await?)))
            }

            #[utoipa::path(get, path = concat!("/api/packages/", $plural, "/{scope}/{name}"), tag = $tag, operation_id = $get,
                params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name")),
                responses((status = 200, description = "The package", body = $detail)))]
            pub async fn get(
                State(state): State<AppState>,
                ctx: Perm<perms::PackagesRead>,
                Path((scope, name)): Path<(String, String)>,
            ) -> ApiResult<Json<Detail>> {
                Ok(Json(get_impl(&state, &ctx, $ptype, &package_id(&scope, &name)?).await?))
            }

            #[utoipa::path(put, path = concat!("/api/packages/", $plural, "/{scope}/{name}"), tag = $tag, operation_id = $update,
                params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name")),
                request_body = UpdatePackageBody,
                responses((status = 200, description = "Draft updated", body = $detail),
                          (status = 409, description = "Edited concurrently", body = ProblemDetail, content_type = "application/problem+json")))]
            pub async fn update(
                State(state): State<AppState>,
                ctx: Perm<perms::PackagesWrite>,
                Path((scope, name)): Path<(String, String)>,
                Json(body): Json<UpdatePackageBody>,
            ) -> ApiResult<Json<Detail>> {
                Ok(Json(update_impl(&state, &ctx, $ptype, &package_id(&scope, &name)?, body).await?))
            }

            #[utoipa::path(delete, path = concat!("/api/packages/", $plural, "/{scope}/{name}"), tag = $tag, operation_id = $delete,
                params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name")),
                responses((status = 204, description = "Deleted"),
                          (status = 409, description = "Used by an agent", body = ProblemDetail, content_type = "application/problem+json")))]
            pub async fn delete(
                State(state): State<AppState>,
                ctx: Perm<perms::PackagesWrite>,
                Path((scope, name)): Path<(String, String)>,
            ) -> ApiResult<StatusCode> {
                delete_impl(&state, &ctx, $ptype, &package_id(&scope, &name)?).await
            }

            #[utoipa::path(get, path = concat!("/api/packages/", $plural, "/{scope}/{name}/versions"), tag = $tag, operation_id = $versions,
                params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name")),
                responses((status = 200, description = "Versions, newest first", body = VersionList)))]
            pub async fn versions(
                State(state): State<AppState>,
                ctx: Perm<perms::PackagesRead>,
                Path((scope, name)): Path<(String, String)>,
            ) -> ApiResult<Json<VersionList>> {
                Ok(Json(versions_impl(&state, &ctx, $ptype, &package_id(&scope, &name)?).await?))
            }

            #[utoipa::path(post, path = concat!("/api/packages/", $plural, "/{scope}/{name}/versions"), tag = $tag, operation_id = $publish,
                params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name")),
                request_body = CreateVersionBody,
                responses((status = 201, description = "The draft, published as an immutable version", body = PackageVersionDetail),
                          (status = 409, description = "The version exists or does not move forward", body = ProblemDetail, content_type = "application/problem+json")))]
            pub async fn publish(
                State(state): State<AppState>,
                ctx: Perm<perms::PackagesWrite>,
                Path((scope, name)): Path<(String, String)>,
                Json(body): Json<CreateVersionBody>,
            ) -> ApiResult<(StatusCode, Json<PackageVersionDetail>)> {
                let v = publish_impl(&state, &ctx, $ptype, &package_id(&scope, &name)?, body).await?;
                Ok((StatusCode::CREATED, Json(v)))
            }

            #[utoipa::path(get, path = concat!("/api/packages/", $plural, "/{scope}/{name}/versions/{version}"), tag = $tag, operation_id = $version,
                params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name"),
                       ("version" = String, Path, description = "Version")),
                responses((status = 200, description = "The version", body = PackageVersionDetail)))]
            pub async fn version(
                State(state): State<AppState>,
                ctx: Perm<perms::PackagesRead>,
                Path((scope, name, version)): Path<(String, String, String)>,
            ) -> ApiResult<Json<PackageVersionDetail>> {
                let v = load_version(&state, &ctx, $ptype, &package_id(&scope, &name)?, &version).await?;
                Ok(Json(version_detail(&state, v, $ptype).await?))
            }

            #[utoipa::path(post, path = concat!("/api/packages/", $plural, "/{scope}/{name}/versions/{version}/restore"), tag = $tag, operation_id = $restore,
                params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name"),
                       ("version" = String, Path, description = "Version")),
                responses((status = 200, description = "The draft, now a copy of that version", body = $detail)))]
            pub async fn restore(
                State(state): State<AppState>,
                ctx: Perm<perms::PackagesWrite>,
                Path((scope, name, version)): Path<(String, String, String)>,
            ) -> ApiResult<Json<Detail>> {
                Ok(Json(restore_impl(&state, &ctx, $ptype, &package_id(&scope, &name)?, &version).await?))
            }

            #[utoipa::path(delete, path = concat!("/api/packages/", $plural, "/{scope}/{name}/versions/{version}"), tag = $tag, operation_id = $yank,
                params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name"),
                       ("version" = String, Path, description = "Version")),
                responses((status = 204, description = "Yanked: kept for exact references, never picked by a range")))]
            pub async fn yank(
                State(state): State<AppState>,
                ctx: Perm<perms::PackagesWrite>,
                Path((scope, name, version)): Path<(String, String, String)>,
            ) -> ApiResult<StatusCode> {
                yank_impl(&state, &ctx, $ptype, &package_id(&scope, &name)?, &version).await
            }
        }
    };
}

typed_routes!(
    agents,
    PackageType::Agent,
    "agents",
    "Agents",
    AgentDetail,
    [
        "listAgentPackages",
        "createAgent",
        "getAgentPackage",
        "updateAgent",
        "deleteAgent",
        "listAgentVersions",
        "createAgentVersion",
        "getAgentVersionDetail",
        "restoreAgentVersion",
        "deleteAgentVersion"
    ]
);
typed_routes!(
    skills,
    PackageType::Skill,
    "skills",
    "Skills",
    PackageDetail,
    [
        "listSkills",
        "createSkill",
        "getSkill",
        "updateSkill",
        "deleteSkill",
        "listSkillVersions",
        "createSkillVersion",
        "getSkillVersionDetail",
        "restoreSkillVersion",
        "deleteSkillVersion"
    ]
);
typed_routes!(
    integrations,
    PackageType::Integration,
    "integrations",
    "Integration Packages",
    PackageDetail,
    [
        "listIntegrationPackages",
        "createIntegrationPackage",
        "getIntegrationPackage",
        "updateIntegrationPackage",
        "deleteIntegrationPackage",
        "listIntegrationPackageVersions",
        "createIntegrationPackageVersion",
        "getIntegrationPackageVersionDetail",
        "restoreIntegrationPackageVersion",
        "deleteIntegrationPackageVersion"
    ]
);
typed_routes!(
    mcp_servers,
    PackageType::McpServer,
    "mcp-servers",
    "MCP Servers",
    PackageDetail,
    [
        "listMcpServerPackages",
        "createMcpServerPackage",
        "getMcpServerPackage",
        "updateMcpServerPackage",
        "deleteMcpServerPackage",
        "listMcpServerPackageVersions",
        "createMcpServerPackageVersion",
        "getMcpServerPackageVersionDetail",
        "restoreMcpServerPackageVersion",
        "deleteMcpServerPackageVersion"
    ]
);
