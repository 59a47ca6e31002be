//! System packages: the AFPS packages under `system-packages/`, embedded in the binary
//! and loaded at boot (behind the boot gate) as read-only packages every org sees
//! (`org_id` NULL). Loading is idempotent: an unchanged package is left alone, and a
//! package whose files changed becomes a new version (its manifest version when that
//! moves forward, else the next patch version).

use std::collections::BTreeMap;

use corral_afps::Package;
use include_dir::{include_dir, Dir};

use corral_core::ProblemResult;

use crate::Engine;

static SYSTEM_PACKAGES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../system-packages");

/// The scope reserved for system packages; no org may take it as its slug.
pub const SYSTEM_SCOPE: &str = "corral";

/// The embedded packages, each as (directory name, files).
pub fn embedded() -> Vec<(String, BTreeMap<String, Vec<u8>>)> {
    fn collect(dir: &Dir<'static>, root: &Dir<'static>, out: &mut BTreeMap<String, Vec<u8>>) {
        for f in dir.files() {
            if let Ok(rel) = f.path().strip_prefix(root.path()) {
                out.insert(
                    rel.to_string_lossy().replace('\\', "/"),
                    f.contents().to_vec(),
                );
            }
        }
        for d in dir.dirs() {
            collect(d, root, out);
        }
    }
    SYSTEM_PACKAGES
        .dirs()
        .map(|d| {
            let mut files = BTreeMap::new();
            collect(d, d, &mut files);
            (d.path().to_string_lossy().into_owned(), files)
        })
        .collect()
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub created: Vec<String>,
    pub new_versions: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Loads every embedded system package. A package that fails validation stops the
/// boot: shipping a broken system package is a build error, not a runtime surprise.
pub async fn load(state: &Engine) -> anyhow::Result<LoadReport> {
    load_from(state, embedded()).await
}

/// Loads the given packages (directory name, files) as system packages.
pub async fn load_from(
    state: &Engine,
    packages: Vec<(String, BTreeMap<String, Vec<u8>>)>,
) -> anyhow::Result<LoadReport> {
    let mut report = LoadReport::default();
    for (dir, mut files) in packages {
        let manifest_bytes = files
            .remove("manifest.json")
            .ok_or_else(|| anyhow::anyhow!("system package {dir} has no manifest.json"))?;
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes)?;
        let pkg = Package::from_parts(manifest, files)
            .map_err(|e| anyhow::anyhow!("system package {dir} is invalid: {e}"))?;
        anyhow::ensure!(
            pkg.name.scope == SYSTEM_SCOPE,
            "system package {dir} must be in the @{SYSTEM_SCOPE} scope"
        );
        load_one(state, pkg, &mut report)
            .await
            .map_err(|e| anyhow::anyhow!("loading system package {dir}: {}", e.detail))?;
    }
    tracing::info!(
        created = report.created.len(),
        new_versions = report.new_versions.len(),
        unchanged = report.unchanged.len(),
        "system packages loaded"
    );
    Ok(report)
}

async fn load_one(state: &Engine, pkg: Package, report: &mut LoadReport) -> ProblemResult<()> {
    let id = pkg.name.id();
    let mut conn = state.db.conn().await?;
    let existing = corral_store::packages::get_system(&mut conn, &id).await?;
    let versions = corral_store::packages::versions(&mut conn, &id).await?;
    drop(conn);
    // The draft keeps the files exactly as shipped, so comparing with it (not with a
    // version, which may carry a bumped number) tells whether anything changed.
    let shipped = corral_afps::integrity(&pkg.to_archive());
    if existing
        .as_ref()
        .is_some_and(|row| row.draft_integrity == shipped)
    {
        report.unchanged.push(id);
        return Ok(());
    }
    let created = super::upsert_with_draft(state, None, &pkg, None).await?;
    let highest = versions
        .iter()
        .filter_map(|v| semver::Version::parse(&v.version).ok())
        .max();
    let publish = match highest.filter(|h| *h >= pkg.version) {
        // Same declared version, different bytes: publish as the next patch.
        Some(h) => {
            let next = semver::Version::new(h.major, h.minor, h.patch + 1);
            let mut manifest = pkg.manifest.clone();
            manifest["version"] = serde_json::Value::String(next.to_string());
            Package::from_parts(manifest, strip_generated(pkg.files.clone()))?
        }
        None => pkg,
    };
    let archive = publish.to_archive();
    super::publish(state, &id, &publish, archive, None).await?;
    if created {
        report.created.push(id);
    } else {
        report.new_versions.push(id);
    }
    Ok(())
}

fn strip_generated(mut files: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    files.remove("manifest.json");
    files.remove("RECORD");
    files
}
