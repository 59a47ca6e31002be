//! Where package archives live (`CORRAL_STORAGE`): `fs` (under the data dir, tiers
//! 0–2) or `s3://bucket[/prefix]` (tier 3) with the usual S3 variables.

use crate::{Config, ConfigError, Secret};

/// The storage backend in effect, validated.
#[derive(Debug, Clone)]
pub enum StorageTarget {
    /// Files under `<data dir>/objects`.
    Fs,
    S3(S3Target),
}

#[derive(Debug, Clone)]
pub struct S3Target {
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`), possibly empty.
    pub prefix: String,
    /// `AWS_REGION` (default `us-east-1`).
    pub region: String,
    /// `CORRAL_S3_ENDPOINT` / `AWS_ENDPOINT_URL`: an S3-compatible server (MinIO,
    /// Garage, Ceph…); requests then use path-style URLs.
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// Plain http to the endpoint: always for loopback, else only with
    /// `CORRAL_S3_ALLOW_HTTP=true` (a private network such as a compose stack).
    pub allow_http: bool,
}

fn bad(var: &'static str, message: String) -> ConfigError {
    ConfigError::Var { var, message }
}

fn is_loopback_url(url: &str) -> bool {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host().map(|h| match h {
                url::Host::Domain(d) => d == "localhost",
                url::Host::Ipv4(ip) => ip.is_loopback(),
                url::Host::Ipv6(ip) => ip.is_loopback(),
            })
        })
        .unwrap_or(false)
}

impl Config {
    /// The storage backend from `CORRAL_STORAGE` and the S3 variables.
    pub fn storage_target(&self) -> Result<StorageTarget, ConfigError> {
        let raw = self.storage.trim();
        if raw.is_empty() || raw == "fs" {
            return Ok(StorageTarget::Fs);
        }
        let Some(rest) = raw.strip_prefix("s3://") else {
            return Err(bad(
                "CORRAL_STORAGE",
                format!("must be fs or s3://bucket[/prefix], got {raw:?}"),
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(bad(
                "CORRAL_STORAGE",
                format!("{bucket:?} is not an S3 bucket name (3–63 of a-z, 0-9, '-', '.')"),
            ));
        }
        let endpoint = self.s3_endpoint.clone().filter(|e| !e.is_empty());
        let mut allow_http = false;
        if let Some(e) = &endpoint {
            if url::Url::parse(e).is_err()
                || !(e.starts_with("http://") || e.starts_with("https://"))
            {
                return Err(bad(
                    "CORRAL_S3_ENDPOINT",
                    format!("must be an http(s) URL such as http://127.0.0.1:9000, got {e:?}"),
                ));
            }
            if e.starts_with("http://") {
                if !(is_loopback_url(e) || self.s3_allow_http) {
                    return Err(bad(
                        "CORRAL_S3_ENDPOINT",
                        format!(
                            "{e} is plain http to a non-loopback host; use https, or set CORRAL_S3_ALLOW_HTTP=true on a private network"
                        ),
                    ));
                }
                allow_http = true;
            }
        }
        if self.s3_access_key_id.is_some() != self.s3_secret_access_key.is_some() {
            return Err(bad(
                "AWS_ACCESS_KEY_ID",
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together".into(),
            ));
        }
        Ok(StorageTarget::S3(S3Target {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            region: self
                .s3_region
                .clone()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "us-east-1".into()),
            endpoint,
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: self.s3_secret_access_key.clone(),
            allow_http,
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn load(list: &[(&str, &str)]) -> Result<Config, crate::ConfigError> {
        let vars: Vec<(String, String)> = list
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_from(None, &vars)
    }

    #[test]
    fn s3_storage_from_the_usual_variables() {
        let c = load(&[
            ("CORRAL_STORAGE", "s3://corral-blobs/prod/"),
            ("AWS_REGION", "eu-west-3"),
            ("AWS_ENDPOINT_URL", "https://s3.example.com"),
            ("CORRAL_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "shhh"),
        ])
        .unwrap();
        let super::StorageTarget::S3(s3) = c.storage_target().unwrap() else {
            panic!("not s3")
        };
        assert_eq!(s3.bucket, "corral-blobs");
        assert_eq!(s3.prefix, "prod");
        assert_eq!(s3.region, "eu-west-3");
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s3.allow_http, "loopback http is allowed");
        assert!(!format!("{c:?}").contains("shhh"));
    }

    #[test]
    fn bad_storage_settings_stop_the_boot() {
        for (vars, var) in [
            (vec![("CORRAL_STORAGE", "gcs://x")], "CORRAL_STORAGE"),
            (vec![("CORRAL_STORAGE", "s3://A_B")], "CORRAL_STORAGE"),
            (
                vec![
                    ("CORRAL_STORAGE", "s3://bucket"),
                    ("CORRAL_S3_ENDPOINT", "http://minio:9000"),
                ],
                "CORRAL_S3_ENDPOINT",
            ),
            (
                vec![
                    ("CORRAL_STORAGE", "s3://bucket"),
                    ("AWS_ACCESS_KEY_ID", "only-the-id"),
                ],
                "AWS_ACCESS_KEY_ID",
            ),
        ] {
            let e = load(&vars).unwrap_err().to_string();
            assert!(e.contains(var), "{vars:?}: {e}");
        }
        let ok = load(&[
            ("CORRAL_STORAGE", "s3://bucket"),
            ("CORRAL_S3_ENDPOINT", "http://minio:9000"),
            ("CORRAL_S3_ALLOW_HTTP", "true"),
        ]);
        assert!(ok.is_ok());
    }
}
