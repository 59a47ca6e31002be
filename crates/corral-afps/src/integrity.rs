//! Integrity strings (`sha256-<base64>`, over a whole archive) and the wheel-style
//! `RECORD` file (one hash per file inside an archive).

use crate::{AfpsError, FieldError};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// `sha256-<base64 std>` of bytes.
pub fn integrity(bytes: &[u8]) -> String {
    format!("sha256-{}", STANDARD.encode(Sha256::digest(bytes)))
}

/// Verifies bytes against an integrity string. Only `sha256-` is produced or accepted.
pub fn verify_integrity(bytes: &[u8], expected: &str) -> Result<(), AfpsError> {
    let actual = integrity(bytes);
    if actual == expected.trim() {
        Ok(())
    } else {
        Err(AfpsError::Integrity {
            expected: expected.to_string(),
            actual,
        })
    }
}

/// One `RECORD` line: `<path>,sha256=<base64url-nopad>,<size>`.
fn record_line(path: &str, bytes: &[u8]) -> String {
    format!(
        "{path},sha256={},{}",
        URL_SAFE_NO_PAD.encode(Sha256::digest(bytes)),
        bytes.len()
    )
}

/// The RECORD file: one line per file, sorted by path, each ending in `\n`.
pub fn record(files: &BTreeMap<String, Vec<u8>>) -> String {
    files
        .iter()
        .map(|(path, bytes)| record_line(path, bytes) + "\n")
        .collect()
}

/// Checks a RECORD read from an archive against the files actually there; the first
/// differing line is reported so the mismatch can be located. A mismatch is bad input
/// (an `Invalid` field error on `files.RECORD`), not a stored-integrity fault.
pub(crate) fn check_record(text: &str, files: &BTreeMap<String, Vec<u8>>) -> Result<(), AfpsError> {
    let mut claimed: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    claimed.sort_unstable();
    let computed: Vec<String> = files.iter().map(|(p, b)| record_line(p, b)).collect();
    let n = claimed.len().max(computed.len());
    for i in 0..n {
        let c = claimed.get(i).copied().unwrap_or("<no line>");
        let a = computed.get(i).map(String::as_str).unwrap_or("<no line>");
        if c != a {
            return Err(AfpsError::Invalid(vec![FieldError::new(
                "files.RECORD",
                "record_mismatch",
                format!("RECORD says {c:?} but the archive has {a:?}"),
            )]));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrity_of_known_bytes() {
        // sha256("") = e3b0c442...; its standard base64 is well known.
        assert_eq!(
            integrity(b""),
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert!(
            verify_integrity(b"", "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=").is_ok()
        );
        let err = verify_integrity(b"x", "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
            .expect_err("mismatch");
        assert_eq!(err.code(), "bundle_integrity_mismatch");
        assert!(verify_integrity(b"x", "md5-abc").is_err());
    }

    #[test]
    fn record_is_sorted_wheel_style() {
        let mut files = BTreeMap::new();
        files.insert("b.txt".to_string(), b"b".to_vec());
        files.insert("a.txt".to_string(), Vec::new());
        let r = record(&files);
        assert_eq!(
            r,
            "a.txt,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\nb.txt,sha256=PiPoFgA5WUoziU9lZOGxNIu9egCI1CxKy3PurtWcAJ0,1\n"
        );
        assert!(check_record(&r, &files).is_ok());
        files.insert("b.txt".to_string(), b"c".to_vec());
        let err = check_record(&r, &files).expect_err("mismatch");
        assert_eq!(err.field_errors()[0].field, "files.RECORD");
        assert_eq!(err.field_errors()[0].code, "record_mismatch");
    }
}
