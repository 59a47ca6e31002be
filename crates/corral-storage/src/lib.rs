//! Object storage for archive bytes. Keys are content addressed
//! (`<prefix>/<sha256 hex>`), so writing the same archive twice stores it once and a
//! retried write can never leave two different objects under one key. Backed by the
//! `object_store` crate: the local filesystem at tiers 0–2, S3 at tier 3.

use std::path::Path;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object storage: {0}")]
    Store(#[from] object_store::Error),
    #[error("object storage path: {0}")]
    Path(String),
}

#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    kind: &'static str,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs").field("kind", &self.kind).finish()
    }
}

impl Blobs {
    /// Files under `dir` (created when missing).
    pub fn local(dir: &Path) -> Result<Blobs, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::Path(format!("{}: {e}", dir.display())))?;
        Ok(Blobs {
            store: Arc::new(LocalFileSystem::new_with_prefix(dir)?),
            kind: "fs",
        })
    }

    /// In memory (tests of code that needs storage but not its persistence).
    pub fn memory() -> Blobs {
        Blobs {
            store: Arc::new(InMemory::new()),
            kind: "memory",
        }
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The content-addressed key for `bytes` under `prefix`.
    pub fn key_for(prefix: &str, bytes: &[u8]) -> String {
        format!("{prefix}/{}", hex::encode(Sha256::digest(bytes)))
    }

    /// Stores `bytes` under their content key and returns it.
    pub async fn put_content(&self, prefix: &str, bytes: Vec<u8>) -> Result<String, StorageError> {
        let key = Blobs::key_for(prefix, &bytes);
        self.store
            .put(&ObjectPath::from(key.as_str()), PutPayload::from(bytes))
            .await?;
        Ok(key)
    }

    /// The object under `key`, or `None`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match self.store.get(&ObjectPath::from(key)).await {
            Ok(r) => Ok(Some(r.bytes().await?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Overwrites an object (tests corrupt stored bytes with it).
    pub async fn put_raw(&self, key: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.store
            .put(&ObjectPath::from(key), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn content_addressed_round_trip_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path()).unwrap();
        let key = blobs
            .put_content("packages", b"hello".to_vec())
            .await
            .unwrap();
        assert_eq!(key, Blobs::key_for("packages", b"hello"));
        assert_eq!(
            blobs
                .put_content("packages", b"hello".to_vec())
                .await
                .unwrap(),
            key
        );
        assert_eq!(
            blobs.get(&key).await.unwrap().as_deref(),
            Some(&b"hello"[..])
        );
        assert!(
            dir.path().join(&key).exists(),
            "stored as a file under the data dir"
        );
        assert_eq!(blobs.get("packages/missing").await.unwrap(), None);
        blobs.delete(&key).await.unwrap();
        blobs.delete(&key).await.unwrap();
        assert_eq!(blobs.get(&key).await.unwrap(), None);
    }
}
