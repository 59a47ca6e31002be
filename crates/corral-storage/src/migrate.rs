//! `corral storage migrate`: copies every object from one store to another (the
//! local files of tiers 0–2 to the S3 bucket of tier 3). Idempotent and resumable:
//! keys already at the destination are skipped (keys are content addressed, so a key
//! present is the same bytes), and a source object whose bytes do not match its
//! content key is reported, never copied.

use sha2::{Digest, Sha256};

use crate::{Blobs, StorageError};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub copied: usize,
    pub skipped: usize,
    /// Keys whose bytes do not hash to the key (left where they are).
    pub corrupt: Vec<String>,
}

/// Whether `key` ends in the SHA-256 of `bytes` (`<prefix>/<hex>` keys); other keys
/// are not content addressed and pass.
fn matches_content(key: &str, bytes: &[u8]) -> bool {
    match key.rsplit('/').next() {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            hex::encode(Sha256::digest(bytes)) == h.to_ascii_lowercase()
        }
        _ => true,
    }
}

pub async fn copy_all(from: &Blobs, to: &Blobs) -> Result<Report, StorageError> {
    let mut report = Report::default();
    let mut keys = from.list("").await?;
    keys.sort();
    for key in keys {
        if to.exists(&key).await? {
            report.skipped += 1;
            continue;
        }
        let Some(bytes) = from.get(&key).await? else {
            continue; // deleted meanwhile
        };
        if !matches_content(&key, &bytes) {
            report.corrupt.push(key);
            continue;
        }
        to.put_raw(&key, bytes).await?;
        report.copied += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_once_and_refuses_corrupt_objects() {
        let dir = tempfile::tempdir().unwrap();
        let from = Blobs::local(dir.path()).unwrap();
        let to = Blobs::memory();
        let a = from.put_content("packages", b"a".to_vec()).await.unwrap();
        let b = from.put_content("packages", b"b".to_vec()).await.unwrap();
        let bad = Blobs::key_for("packages", b"c");
        from.put_raw(&bad, b"not c".to_vec()).await.unwrap();

        let first = copy_all(&from, &to).await.unwrap();
        assert_eq!(first.copied, 2);
        assert_eq!(first.corrupt, vec![bad.clone()]);
        assert_eq!(to.get(&a).await.unwrap().as_deref(), Some(&b"a"[..]));
        assert_eq!(to.get(&b).await.unwrap().as_deref(), Some(&b"b"[..]));
        assert_eq!(to.get(&bad).await.unwrap(), None);

        let again = copy_all(&from, &to).await.unwrap();
        assert_eq!((again.copied, again.skipped), (0, 2));
    }
}
