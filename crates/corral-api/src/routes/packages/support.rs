use super::*;
use corral_core::OrgId;

// ---------------------------------------------------------------------------------
// Helpers

pub(super) fn source(row: &store::Package) -> &'static str {
    if row.org_id.is_none() {
        "system"
    } else {
        "local"
    }
}

pub(super) fn package_id(scope: &str, name: &str) -> ApiResult<String> {
    let id = format!("{scope}/{name}");
    PackageName::parse(&id).map(|n| n.id()).ok_or_else(|| {
        ApiError::invalid_param("scope", format!("{id} is not a package name (@scope/name)"))
    })
}

pub(super) async fn load_row(
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
pub(super) async fn load_own(
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

pub(super) fn text_of(files: &BTreeMap<String, Vec<u8>>, path: &str) -> Option<String> {
    files
        .get(path)
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

pub(super) const DEFAULT_TIMEOUT_S: i64 = 300;
pub(super) const TIMEOUT_CEILING_S: i64 = 1800;

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
        let settings: crate::routes::agents::AgentInputSettings = match ctx.app_id.as_ref() {
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
        org_id: row.org_id.clone().map(Into::into),
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

pub(super) async fn dependents(
    conn: &mut corral_store::Conn,
    org_id: &OrgId,
    id: &str,
) -> ApiResult<Vec<super::DependentAgent>> {
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
        .map(|a| super::DependentAgent {
            display_name: a.display_name.unwrap_or_else(|| a.id.clone()),
            id: a.id,
        })
        .collect())
}

pub(super) fn item(row: store::Package, used_by_agents: i64) -> OrgPackageItem {
    OrgPackageItem {
        source: source(&row),
        id: row.id,
        org_id: row.org_id.map(Into::into),
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

pub(super) fn files_from_body(
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

pub(super) fn check_type(pkg: &Package, ptype: PackageType) -> ApiResult<()> {
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

pub(super) fn version_info(v: store::Version) -> VersionInfo {
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

pub(super) async fn version_detail(
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
