//! The package service: publishing versions (integrity, RECORD, object storage,
//! dependencies, dist-tags), reading archive bytes back with their integrity checked,
//! and mapping AFPS errors to problems. The API's package handlers and the run trigger call it.

pub mod system;

use std::collections::BTreeMap;

use base64::Engine as _;
use corral_afps::{Package, PackageType};
use corral_core::time::now_ms;
use corral_core::{ErrorCode, OrgId};
use corral_store::packages as store;

use corral_core::{Problem, ProblemResult};

use crate::Engine;

/// Object-storage prefix of version archives.
pub const ARCHIVE_PREFIX: &str = "packages";

/// The text file a package type is edited through (`content` in the API).
pub fn main_file(ptype: PackageType) -> Option<&'static str> {
    match ptype {
        PackageType::Agent => Some("prompt.md"),
        PackageType::Skill => Some("SKILL.md"),
        PackageType::McpServer | PackageType::Integration => None,
    }
}

pub fn encode_files(files: &BTreeMap<String, Vec<u8>>) -> ProblemResult<String> {
    let map: BTreeMap<&str, String> = files
        .iter()
        .filter(|(path, _)| path.as_str() != "manifest.json" && path.as_str() != "RECORD")
        .map(|(path, bytes)| {
            (
                path.as_str(),
                base64::engine::general_purpose::STANDARD.encode(bytes),
            )
        })
        .collect();
    serde_json::to_string(&map).map_err(Problem::internal)
}

pub fn decode_files(text: &str) -> ProblemResult<BTreeMap<String, Vec<u8>>> {
    let map: BTreeMap<String, String> = serde_json::from_str(text).map_err(Problem::internal)?;
    map.into_iter()
        .map(|(k, v)| {
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .map(|b| (k, b))
                .map_err(Problem::internal)
        })
        .collect()
}

/// The draft of a package row, as a validated package.
pub fn draft_package(row: &store::Package) -> ProblemResult<Package> {
    let manifest: serde_json::Value =
        serde_json::from_str(&row.draft_manifest).map_err(Problem::internal)?;
    let files = decode_files(&row.draft_files)?;
    Ok(Package::from_parts(manifest, files)?)
}

/// An org may only write packages in its own scope (`@<org slug>`).
pub async fn check_scope(state: &Engine, org_id: &OrgId, pkg: &Package) -> ProblemResult<()> {
    let mut conn = state.db.conn().await?;
    let org = corral_store::orgs::by_id(&mut conn, org_id)
        .await?
        .ok_or_else(|| Problem::not_found("organization"))?;
    if pkg.name.scope != org.slug {
        let mut e = Problem::forbidden(format!(
            "{} is outside this organization's scope @{}",
            pkg.name, org.slug
        ));
        e.param = Some("name".into());
        return Err(e);
    }
    Ok(())
}

/// Publishes `pkg` as a new immutable version of `package_id`: the version must move
/// forward (409 otherwise); the archive goes to object storage (content addressed), the
/// row, its dependencies and the `latest` tag (stable versions only) in one transaction.
pub async fn publish(
    state: &Engine,
    package_id: &str,
    pkg: &Package,
    archive: Vec<u8>,
    actor: Option<&str>,
) -> ProblemResult<store::Version> {
    let integrity = corral_afps::integrity(&archive);
    let record = corral_afps::record(&pkg.files);
    let size = archive.len() as i64;
    let key = state
        .blobs
        .put_content(ARCHIVE_PREFIX, archive)
        .await
        .map_err(Problem::internal)?;
    let version = pkg.version.to_string();
    let manifest = serde_json::to_string(&pkg.manifest).map_err(Problem::internal)?;
    let now = now_ms();

    let mut tx = state.db.begin().await?;
    let existing: Vec<semver::Version> = store::versions(&mut tx, package_id)
        .await?
        .iter()
        .filter_map(|v| semver::Version::parse(&v.version).ok())
        .collect();
    if existing.contains(&pkg.version) {
        let mut e = Problem::new(
            ErrorCode::VersionExists,
            format!("version {version} already exists"),
        );
        e.param = Some("version".into());
        return Err(e);
    }
    if corral_afps::check_forward(&existing, &pkg.version).is_err() {
        let mut e = Problem::new(
            ErrorCode::VersionExists,
            format!("version {version} does not move forward: a higher version exists"),
        );
        e.param = Some("version".into());
        return Err(e);
    }
    let id = store::insert_version(
        &mut tx,
        &store::NewVersion {
            package_id,
            version: &version,
            manifest: &manifest,
            integrity: &integrity,
            record: &record,
            artifact_size: size,
            storage_key: &key,
            created_by: actor,
            now,
        },
    )
    .await?;
    for (dtype, name, range) in corral_afps::dependencies(&pkg.manifest) {
        store::insert_dependency(
            &mut tx,
            package_id,
            &version,
            dtype.as_str(),
            &name.id(),
            &range,
        )
        .await?;
    }
    if pkg.version.pre.is_empty() {
        store::set_dist_tag(&mut tx, package_id, "latest", &version, now).await?;
    }
    let row = store::version(&mut tx, package_id, &version)
        .await?
        .filter(|v| v.id == id)
        .ok_or_else(|| Problem::internal(anyhow::anyhow!("version vanished after insert")))?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    Ok(row)
}

/// The archive bytes of a version, verified against the recorded integrity: a
/// mismatch is a 500 `bundle_integrity_mismatch` and nothing is served or run.
pub async fn load_verified(state: &Engine, v: &store::Version) -> ProblemResult<Vec<u8>> {
    let bytes = state
        .blobs
        .get(&v.storage_key)
        .await
        .map_err(Problem::internal)?
        .ok_or_else(|| {
            let mut e = Problem::new(
                ErrorCode::BundleIntegrityMismatch,
                "the stored package archive is missing",
            );
            e.source = Some(anyhow::anyhow!("missing object {}", v.storage_key));
            e
        })?;
    corral_afps::verify_integrity(&bytes, &v.integrity)?;
    Ok(bytes)
}

/// Creates the package row for an imported or created package when missing, with the
/// package's files as its draft; otherwise replaces the draft.
pub async fn upsert_with_draft(
    state: &Engine,
    org_id: Option<&OrgId>,
    pkg: &Package,
    actor: Option<&str>,
) -> ProblemResult<bool> {
    let id = pkg.name.id();
    let manifest = serde_json::to_string(&pkg.manifest).map_err(Problem::internal)?;
    let files = encode_files(&pkg.files)?;
    let integrity = corral_afps::integrity(&pkg.to_archive());
    let display_name = pkg.manifest.get("display_name").and_then(|v| v.as_str());
    let description = pkg.manifest.get("description").and_then(|v| v.as_str());
    let now = now_ms();
    let mut conn = state.db.conn().await?;
    let existing = match org_id {
        Some(org) => store::get_visible(&mut conn, org, &id, None).await?,
        None => store::get_system(&mut conn, &id).await?,
    };
    match existing {
        Some(row) => {
            if row.org_id.as_ref() != org_id {
                return Err(Problem::forbidden(format!("{id} belongs to another owner")));
            }
            if row.ptype != pkg.ptype.as_str() {
                let mut e = Problem::new(
                    ErrorCode::Conflict,
                    format!("{id} already exists as a {} package", row.ptype),
                );
                e.param = Some("type".into());
                return Err(e);
            }
            store::update_draft(
                &mut conn,
                org_id,
                &id,
                &store::DraftUpdate {
                    manifest: &manifest,
                    files: &files,
                    integrity: &integrity,
                    display_name,
                    description,
                    now,
                },
                None,
            )
            .await?;
            Ok(false)
        }
        None => {
            store::insert(
                &mut conn,
                &store::NewPackage {
                    id: &id,
                    org_id,
                    ptype: pkg.ptype.as_str(),
                    scope: &pkg.name.scope,
                    name: &pkg.name.name,
                    display_name,
                    description,
                    draft_manifest: &manifest,
                    draft_files: &files,
                    draft_integrity: &integrity,
                    forked_from: None,
                    created_by: actor,
                    now,
                },
            )
            .await?;
            Ok(true)
        }
    }
}

/// Resolves `spec` (exact version, dist-tag or range) against the published versions
/// of a package visible to `org_id`. Yanked versions are never picked by a range.
pub async fn resolve(
    state: &Engine,
    org_id: &OrgId,
    package_id: &str,
    spec: &str,
) -> ProblemResult<store::Version> {
    let mut conn = state.db.conn().await?;
    let row = store::get_visible(&mut conn, org_id, package_id, None)
        .await?
        .ok_or_else(|| Problem::not_found("package"))?;
    let versions = store::versions(&mut conn, &row.id).await?;
    let tags = store::dist_tags(&mut conn, &row.id).await?;
    let candidates: Vec<corral_afps::resolve::Candidate> = versions
        .iter()
        .filter_map(|v| {
            semver::Version::parse(&v.version)
                .ok()
                .map(|version| corral_afps::resolve::Candidate {
                    version,
                    yanked: v.yanked,
                    published: true,
                })
        })
        .collect();
    let tag_map = tags
        .iter()
        .filter_map(|t| {
            semver::Version::parse(&t.version)
                .ok()
                .map(|v| (t.tag.clone(), v))
        })
        .collect();
    let chosen = corral_afps::resolve::resolve(spec, &candidates, &tag_map, false)
        .ok_or_else(|| Problem::not_found(&format!("version of {package_id} matching {spec:?}")))?
        .to_string();
    versions
        .into_iter()
        .find(|v| v.version == chosen)
        .ok_or_else(|| Problem::not_found("version"))
}
