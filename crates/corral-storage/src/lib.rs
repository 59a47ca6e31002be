//! Object storage for archive bytes. Keys are content addressed
//! (`<prefix>/<sha256 hex>`), so writing the same archive twice stores it once and a
//! retried write can never leave two different objects under one key. Backed by the
//! `object_store` crate: the local filesystem at tiers 0–2, S3 at tier 3. Reads are not
//! trusted: callers verify the bytes against the integrity recorded in the database.

pub mod migrate;

use std::path::Path;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
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
    /// Where, for the boot log (`fs:/data/objects`, `s3://bucket/prefix`).
    location: String,
}

/// An S3 bucket (or an S3-compatible server).
#[derive(Debug, Clone)]
pub struct S3Options {
    pub bucket: String,
    /// Key prefix inside the bucket, possibly empty.
    pub prefix: String,
    pub region: String,
    /// An S3-compatible server; requests then use path-style URLs.
    pub endpoint: Option<String>,
    /// Static credentials; without them the usual AWS sources (`AWS_*` variables,
    /// web identity, instance metadata) are used.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub allow_http: bool,
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
            location: format!("fs:{}", dir.display()),
        })
    }

    /// An S3 bucket. Nothing is contacted here: a wrong bucket or credentials show on
    /// the first read or write (and in `corral storage check`).
    pub fn s3(o: &S3Options) -> Result<Blobs, StorageError> {
        // object_store's client is reqwest with rustls and no built-in provider: use
        // ring, as the rest of the workspace does (a no-op when already installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&o.bucket)
            .with_region(&o.region)
            .with_allow_http(o.allow_http);
        if let Some(endpoint) = &o.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let (Some(id), Some(secret)) = (&o.access_key_id, &o.secret_access_key) {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        let s3: Arc<dyn ObjectStore> = Arc::new(b.build()?);
        let store: Arc<dyn ObjectStore> = if o.prefix.is_empty() {
            s3
        } else {
            Arc::new(PrefixStore::new(s3, o.prefix.as_str()))
        };
        let location = match o.prefix.as_str() {
            "" => format!("s3://{}", o.bucket),
            p => format!("s3://{}/{p}", o.bucket),
        };
        Ok(Blobs {
            store,
            kind: "s3",
            location,
        })
    }

    pub fn describe(&self) -> &str {
        &self.location
    }

    /// Every key under `prefix` (a migration walks them).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        use futures::TryStreamExt;
        let p = ObjectPath::from(prefix);
        let metas: Vec<_> = self.store.list(Some(&p)).try_collect().await?;
        Ok(metas.into_iter().map(|m| m.location.to_string()).collect())
    }

    /// Whether `key` exists (a HEAD, no body).
    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match self.store.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// In memory (tests of code that needs storage but not its persistence).
    pub fn memory() -> Blobs {
        Blobs {
            store: Arc::new(InMemory::new()),
            kind: "memory",
            location: "memory".into(),
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
