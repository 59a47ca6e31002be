//! The errors of this crate: archive safety refusals, manifest problems (as field
//! errors, all of them at once) and integrity mismatches, each with a stable problem code.

/// One problem with a field of a manifest or archive; `field` is a dotted path
/// ("input.schema.properties.x", "files.prompt.md").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AfpsError {
    #[error("not a ZIP archive: {0}")]
    NotZip(String),
    #[error("unsafe path in archive: {0:?}")]
    UnsafePath(String),
    #[error("symlink entries are not allowed: {0:?}")]
    Symlink(String),
    #[error("duplicate entry in archive: {0:?}")]
    DuplicateEntry(String),
    #[error("archive has more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("entry {entry:?} expands more than {limit} times its compressed size")]
    CompressionRatio { entry: String, limit: u64 },
    #[error("manifest.json is missing from the archive root")]
    ManifestMissing,
    #[error("manifest is not valid JSON: {0}")]
    ManifestNotJson(String),
    #[error("invalid package: {}", summarize(.0))]
    Invalid(Vec<FieldError>),
    #[error("integrity mismatch: expected {expected}, got {actual}")]
    Integrity { expected: String, actual: String },
}

fn summarize(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl AfpsError {
    /// The snake_case problem code the API reports for this error.
    pub fn code(&self) -> &'static str {
        match self {
            AfpsError::NotZip(_) => "archive_invalid",
            AfpsError::UnsafePath(_) | AfpsError::Symlink(_) => "unsafe_path",
            AfpsError::DuplicateEntry(_) => "duplicate_entry",
            AfpsError::TooManyEntries { .. } | AfpsError::TooLarge { .. } => "archive_too_large",
            AfpsError::CompressionRatio { .. } => "decompression_bomb",
            AfpsError::ManifestMissing => "manifest_missing",
            AfpsError::ManifestNotJson(_) => "manifest_invalid",
            // A version that does not move forward is a conflict (409), not a bad manifest.
            AfpsError::Invalid(errors)
                if !errors.is_empty() && errors.iter().all(|e| e.code == "version_not_forward") =>
            {
                "version_not_forward"
            }
            AfpsError::Invalid(_) => "manifest_invalid",
            AfpsError::Integrity { .. } => "bundle_integrity_mismatch",
        }
    }

    /// The field errors of an [`AfpsError::Invalid`], empty for the others.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            AfpsError::Invalid(errors) => errors,
            _ => &[],
        }
    }
}

/// How a package error reaches a client: field errors, 413, 500 for a stored archive
/// that fails its integrity, else 400 `archive_invalid`.
impl From<AfpsError> for corral_core::Problem {
    fn from(e: AfpsError) -> corral_core::Problem {
        use corral_core::{ErrorCode, FieldError, Problem};
        match e {
            AfpsError::Invalid(errors) => Problem::validation(
                errors
                    .into_iter()
                    .map(|f| FieldError::new(f.field, &f.code, f.message))
                    .collect(),
            ),
            AfpsError::TooLarge { .. } => Problem::new(ErrorCode::PayloadTooLarge, e.to_string()),
            AfpsError::Integrity { .. } => {
                let mut err = Problem::new(
                    ErrorCode::BundleIntegrityMismatch,
                    "the stored package archive does not match its recorded integrity",
                );
                err.source = Some(anyhow::Error::new(e));
                err
            }
            other => {
                let code = other.code();
                let mut err = Problem::new(ErrorCode::ArchiveInvalid, other.to_string());
                err.errors = vec![FieldError::new("file", code, other.to_string())];
                err
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(AfpsError::NotZip("x".into()).code(), "archive_invalid");
        assert_eq!(AfpsError::Symlink("x".into()).code(), "unsafe_path");
        assert_eq!(
            AfpsError::CompressionRatio {
                entry: "a".into(),
                limit: 100
            }
            .code(),
            "decompression_bomb"
        );
        let fwd = AfpsError::Invalid(vec![FieldError::new("version", "version_not_forward", "m")]);
        assert_eq!(fwd.code(), "version_not_forward");
        let bad = AfpsError::Invalid(vec![FieldError::new("name", "pattern", "m")]);
        assert_eq!(bad.code(), "manifest_invalid");
        assert!(bad.to_string().contains("name: m"));
        assert_eq!(bad.field_errors().len(), 1);
    }
}
