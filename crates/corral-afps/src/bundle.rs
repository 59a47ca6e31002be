//! `.afps-bundle`: a ZIP of several package archives plus a `bundle.json` index
//! carrying each archive's integrity, checked on read.

use crate::archive::{read_zip, write_zip};
use crate::{integrity, verify_integrity, AfpsError, FieldError, Limits, Package, PackageName};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use zip::CompressionMethod;

const INDEX: &str = "bundle.json";
const BUNDLE_VERSION: &str = "1";

/// The packages of a bundle, each with its archive bytes as stored in the bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub packages: Vec<(Package, Vec<u8>)>,
}

fn invalid(field: String, code: &str, message: String) -> AfpsError {
    AfpsError::Invalid(vec![FieldError::new(field, code, message)])
}

impl Bundle {
    /// Reads a bundle: the outer ZIP and every inner archive under `limits`, one
    /// uncompressed-bytes budget shared by all of them (a bundle of bombs is still
    /// one bomb); each inner archive must match its integrity in `bundle.json` and
    /// contain the package it is listed as.
    pub fn from_archive(bytes: &[u8], limits: &Limits) -> Result<Bundle, AfpsError> {
        let mut budget = limits.max_total_bytes;
        let mut files = read_zip(bytes, limits, &mut budget)?;
        let index_bytes = files.remove(INDEX).ok_or(AfpsError::ManifestMissing)?;
        if index_bytes.len() as u64 > limits.max_manifest_bytes {
            return Err(AfpsError::TooLarge {
                what: INDEX.into(),
                limit: limits.max_manifest_bytes,
            });
        }
        let index: Value = serde_json::from_slice(&index_bytes)
            .map_err(|e| AfpsError::ManifestNotJson(e.to_string()))?;
        if index.get("bundle_version").and_then(Value::as_str) != Some(BUNDLE_VERSION) {
            return Err(invalid(
                "bundle_version".into(),
                "unsupported",
                format!("bundle_version must be {BUNDLE_VERSION:?}"),
            ));
        }
        let entries = index
            .get("packages")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                invalid(
                    "packages".into(),
                    "required",
                    "packages must be an array".into(),
                )
            })?;
        let mut packages = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let field = |key: &str| -> Result<&str, AfpsError> {
                entry.get(key).and_then(Value::as_str).ok_or_else(|| {
                    invalid(
                        format!("packages.{i}.{key}"),
                        "required",
                        format!("{key} must be a string"),
                    )
                })
            };
            let (name, version, expected, path) = (
                field("name")?,
                field("version")?,
                field("integrity")?,
                field("path")?,
            );
            let archive = files.remove(path).ok_or_else(|| {
                invalid(
                    format!("packages.{i}.path"),
                    "missing_file",
                    format!("{path:?} is not in the bundle"),
                )
            })?;
            verify_integrity(&archive, expected)?;
            let package = Package::from_archive_with_budget(&archive, limits, &mut budget)?;
            if package.name.id() != name || package.version.to_string() != version {
                return Err(invalid(
                    format!("packages.{i}"),
                    "mismatch",
                    format!(
                        "{path:?} holds {}@{}, not {name}@{version}",
                        package.name, package.version
                    ),
                ));
            }
            packages.push((package, archive));
        }
        Ok(Bundle { packages })
    }

    /// Writes a deterministic bundle. Entries are sorted by name then version; inner
    /// archives are stored uncompressed (they are compressed already).
    pub fn write(packages: &[(PackageName, semver::Version, Vec<u8>)]) -> Vec<u8> {
        let mut sorted: Vec<&(PackageName, semver::Version, Vec<u8>)> = packages.iter().collect();
        sorted.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let mut files = BTreeMap::new();
        let mut listed = Vec::with_capacity(sorted.len());
        for (name, version, archive) in sorted {
            let path = format!("packages/{}/{}/{}.afps", name.scope, name.name, version);
            listed.push(json!({
                "name": name.id(),
                "version": version.to_string(),
                "integrity": integrity(archive),
                "path": path,
            }));
            files.insert(path, archive.clone());
        }
        let index = json!({ "bundle_version": BUNDLE_VERSION, "packages": listed });
        let mut text = serde_json::to_vec_pretty(&index).unwrap_or_default();
        text.push(b'\n');
        files.insert(INDEX.to_string(), text);
        write_zip(&files, CompressionMethod::Stored)
    }
}
