//! A validated package in memory: built from an untrusted `.afps` archive or from
//! JSON parts, and written back as a deterministic archive with a `RECORD`.

use crate::archive::{check_path, read_zip, write_zip};
use crate::integrity::check_record;
use crate::{record, validate, AfpsError, Limits, PackageName, PackageType};
use std::collections::BTreeMap;
use zip::CompressionMethod;

pub(crate) const MANIFEST: &str = "manifest.json";
/// Derived from the other files: written by `to_archive`, checked and dropped on read.
pub(crate) const RECORD: &str = "RECORD";

/// A validated package: its manifest and every file (path → bytes), `manifest.json`
/// included and the derived `RECORD` excluded.
#[derive(Debug, Clone, PartialEq)]
pub struct Package {
    pub ptype: PackageType,
    pub name: PackageName,
    pub version: semver::Version,
    pub manifest: serde_json::Value,
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Package {
    /// Reads and validates a `.afps` ZIP: safety limits first (streaming, never
    /// trusting declared sizes), then manifest.json at the root, then schema and type
    /// rules. A `RECORD`, if present, must match the files.
    pub fn from_archive(bytes: &[u8], limits: &Limits) -> Result<Package, AfpsError> {
        let mut budget = limits.max_total_bytes;
        Self::from_archive_with_budget(bytes, limits, &mut budget)
    }

    pub(crate) fn from_archive_with_budget(
        bytes: &[u8],
        limits: &Limits,
        budget: &mut u64,
    ) -> Result<Package, AfpsError> {
        let mut files = read_zip(bytes, limits, budget)?;
        let manifest_bytes = files.get(MANIFEST).ok_or(AfpsError::ManifestMissing)?;
        if manifest_bytes.len() as u64 > limits.max_manifest_bytes {
            return Err(AfpsError::TooLarge {
                what: MANIFEST.into(),
                limit: limits.max_manifest_bytes,
            });
        }
        let manifest: serde_json::Value = serde_json::from_slice(manifest_bytes)
            .map_err(|e| AfpsError::ManifestNotJson(e.to_string()))?;
        if let Some(path) = corral_core::text::nul_path(&manifest) {
            return Err(AfpsError::Invalid(vec![crate::FieldError::new(
                format!("manifest.{path}"),
                "invalid_characters",
                "must not contain the NUL character (U+0000)",
            )]));
        }
        if let Some(text) = files.remove(RECORD) {
            let text = String::from_utf8(text).map_err(|_| {
                AfpsError::Invalid(vec![crate::FieldError::new(
                    "files.RECORD",
                    "not_utf8",
                    "RECORD must be UTF-8 text",
                )])
            })?;
            check_record(&text, &files)?;
        }
        let (ptype, name, version) = validate(&manifest, &files).map_err(AfpsError::Invalid)?;
        Ok(Package {
            ptype,
            name,
            version,
            manifest,
            files,
        })
    }

    /// Builds and validates from JSON (a manifest plus files such as "prompt.md").
    /// `manifest.json` is (re)written from `manifest`; a supplied `RECORD` is dropped
    /// since it is regenerated.
    pub fn from_parts(
        manifest: serde_json::Value,
        mut files: BTreeMap<String, Vec<u8>>,
    ) -> Result<Package, AfpsError> {
        for path in files.keys() {
            check_path(path)?;
        }
        files.remove(RECORD);
        let (ptype, name, version) = validate(&manifest, &files).map_err(AfpsError::Invalid)?;
        let mut text = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| AfpsError::ManifestNotJson(e.to_string()))?;
        text.push(b'\n');
        files.insert(MANIFEST.to_string(), text);
        Ok(Package {
            ptype,
            name,
            version,
            manifest,
            files,
        })
    }

    /// Deterministic ZIP: sorted entries, fixed timestamps (1980-01-01), fixed
    /// permissions, deflate; the same files give the same bytes. Adds `RECORD`.
    pub fn to_archive(&self) -> Vec<u8> {
        let mut files = self.files.clone();
        files.remove(RECORD);
        let record = record(&files);
        files.insert(RECORD.to_string(), record.into_bytes());
        write_zip(&files, CompressionMethod::Deflated)
    }

    /// The agent's prompt.md, when it is UTF-8.
    pub fn prompt(&self) -> Option<&str> {
        std::str::from_utf8(self.files.get("prompt.md")?).ok()
    }
}
