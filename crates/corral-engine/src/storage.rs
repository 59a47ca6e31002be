//! Object storage from configuration (`CORRAL_STORAGE`), and the move of the local
//! blobs of tiers 0–2 into the S3 bucket of tier 3 (`corral storage migrate`).

use std::path::Path;

use anyhow::Context as _;
use corral_config::Config;
pub use corral_storage::migrate::Report;

/// The object storage of `CORRAL_STORAGE`: files under the data dir, or S3.
pub fn open_blobs(config: &Config) -> anyhow::Result<corral_storage::Blobs> {
    match config.storage_target()? {
        corral_config::StorageTarget::Fs => {
            corral_storage::Blobs::local(&config.data_dir.join("objects"))
                .context("opening object storage under the data dir")
        }
        corral_config::StorageTarget::S3(t) => {
            corral_storage::Blobs::s3(&corral_storage::S3Options {
                bucket: t.bucket,
                prefix: t.prefix,
                region: t.region,
                endpoint: t.endpoint,
                access_key_id: t.access_key_id,
                secret_access_key: t.secret_access_key.map(|s| s.expose().to_owned()),
                allow_http: t.allow_http,
            })
            .context("configuring S3 object storage (CORRAL_STORAGE)")
        }
    }
}

/// Copies every blob under `from` (default: `<data dir>/objects`, where tiers 0–2
/// keep them) into the configured storage, which must not be that same directory.
pub async fn migrate_to_configured(config: &Config, from: Option<&Path>) -> anyhow::Result<Report> {
    let dir = from
        .map(Path::to_path_buf)
        .unwrap_or_else(|| config.data_dir.join("objects"));
    if matches!(config.storage_target()?, corral_config::StorageTarget::Fs) {
        anyhow::bail!(
            "CORRAL_STORAGE is fs: set it to s3://bucket (and the S3 variables) to migrate the blobs under {} there",
            dir.display()
        );
    }
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory of blobs", dir.display());
    }
    let source = corral_storage::Blobs::local(&dir)?;
    let dest = open_blobs(config)?;
    corral_storage::migrate::copy_all(&source, &dest)
        .await
        .with_context(|| format!("copying {} to {}", source.describe(), dest.describe()))
}
