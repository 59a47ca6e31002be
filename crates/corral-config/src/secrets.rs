//! Secret values and their resolution. In development a missing secret is generated
//! once and persisted in `<data_dir>/secrets.json` (mode 0600) so restarts keep
//! sessions valid; in production every secret must be given explicitly.

use std::fmt;
use std::path::Path;

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::{Config, ConfigError};

/// A string that never shows itself through `Debug` or `Display`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The resolved secrets the server runs with.
#[derive(Clone)]
pub struct Secrets {
    pub session: Secret,
    pub run_token: Secret,
    /// 32-byte AES-256-GCM key (decoded) and its id.
    pub encryption_key: [u8; 32],
    pub encryption_key_id: String,
    /// Retired keys, readable during rotation: (id, key).
    pub retired_keys: Vec<(String, [u8; 32])>,
    /// Which secrets were generated for this data dir (dev mode), for the boot log.
    pub generated: Vec<&'static str>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("encryption_key_id", &self.encryption_key_id)
            .field(
                "retired_key_ids",
                &self.retired_keys.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Persisted {
    session_secret: Option<String>,
    run_token_secret: Option<String>,
    encryption_key: Option<String>,
    encryption_key_id: Option<String>,
}

fn random_b64(len: usize) -> String {
    let mut buf = vec![0u8; len];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::STANDARD.encode(buf)
}

fn decode_key(var: &'static str, b64: &str) -> Result<[u8; 32], ConfigError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| ConfigError::Var {
            var,
            message: "must be base64".into(),
        })?;
    bytes.try_into().map_err(|_| ConfigError::Var {
        var,
        message: "must decode to exactly 32 bytes".into(),
    })
}

fn check_len(var: &'static str, s: &Secret) -> Result<(), ConfigError> {
    if s.expose().len() < 32 {
        return Err(ConfigError::Var {
            var,
            message: "must be at least 32 characters".into(),
        });
    }
    Ok(())
}

pub(crate) fn resolve(config: &Config) -> Result<Secrets, ConfigError> {
    if config.is_production() {
        let missing: Vec<&str> = [
            ("CORRAL_SESSION_SECRET", config.session_secret.is_none()),
            ("CORRAL_RUN_TOKEN_SECRET", config.run_token_secret.is_none()),
            ("CORRAL_ENCRYPTION_KEY", config.encryption_key.is_none()),
        ]
        .into_iter()
        .filter_map(|(v, m)| m.then_some(v))
        .collect();
        if !missing.is_empty() {
            return Err(ConfigError::MissingSecrets(missing.join(", ")));
        }
    }

    let needs_file = config.session_secret.is_none()
        || config.run_token_secret.is_none()
        || config.encryption_key.is_none();
    let path = config.data_dir.join("secrets.json");
    let mut persisted = if needs_file {
        read_persisted(&path)?
    } else {
        Persisted::default()
    };
    let mut generated = Vec::new();
    let mut dirty = false;
    let mut pick =
        |explicit: &Option<Secret>, slot: &mut Option<String>, name: &'static str, len: usize| {
            if let Some(s) = explicit {
                return s.clone();
            }
            if slot.is_none() {
                *slot = Some(random_b64(len));
                generated.push(name);
                dirty = true;
            }
            Secret::new(slot.clone().unwrap_or_default())
        };
    let session = pick(
        &config.session_secret,
        &mut persisted.session_secret,
        "session_secret",
        48,
    );
    let run_token = pick(
        &config.run_token_secret,
        &mut persisted.run_token_secret,
        "run_token_secret",
        48,
    );
    let enc = pick(
        &config.encryption_key,
        &mut persisted.encryption_key,
        "encryption_key",
        32,
    );
    check_len("CORRAL_SESSION_SECRET", &session)?;
    check_len("CORRAL_RUN_TOKEN_SECRET", &run_token)?;
    let encryption_key = decode_key("CORRAL_ENCRYPTION_KEY", enc.expose())?;
    let encryption_key_id = config
        .encryption_key_id
        .clone()
        .or_else(|| persisted.encryption_key_id.clone())
        .unwrap_or_else(|| "k1".to_owned());
    if persisted.encryption_key_id.is_none() && config.encryption_key.is_none() {
        persisted.encryption_key_id = Some(encryption_key_id.clone());
        dirty = true;
    }
    if dirty {
        write_persisted(&config.data_dir, &path, &persisted)?;
    }

    let mut retired_keys = Vec::new();
    if let Some(list) = &config.encryption_keys {
        for entry in list
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (kid, key) = entry.split_once(':').ok_or(ConfigError::Var {
                var: "CORRAL_ENCRYPTION_KEYS",
                message: "expected a comma-separated list of <kid>:<base64 key>".into(),
            })?;
            retired_keys.push((kid.to_owned(), decode_key("CORRAL_ENCRYPTION_KEYS", key)?));
        }
    }

    Ok(Secrets {
        session,
        run_token,
        encryption_key,
        encryption_key_id,
        retired_keys,
        generated,
    })
}

fn read_persisted(path: &Path) -> Result<Persisted, ConfigError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| ConfigError::Invalid(format!("{} is not valid: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Persisted::default()),
        Err(source) => Err(ConfigError::DataDir {
            path: path.to_owned(),
            source,
        }),
    }
}

fn write_persisted(dir: &Path, path: &Path, p: &Persisted) -> Result<(), ConfigError> {
    let io = |source| ConfigError::DataDir {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let json = serde_json::to_vec_pretty(p).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io)?;
        f.write_all(&json).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    tracing::info!(path = %path.display(), "generated development secrets");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_in(dir: &Path, vars: &[(&str, &str)]) -> Config {
        let mut v: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        v.push(("CORRAL_DATA_DIR".into(), dir.display().to_string()));
        Config::load_from(None, &v).unwrap()
    }

    #[test]
    fn dev_secrets_are_generated_once_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let c = config_in(dir.path(), &[]);
        let a = c.resolve_secrets().unwrap();
        assert_eq!(a.generated.len(), 3);
        let b = c.resolve_secrets().unwrap();
        assert!(b.generated.is_empty());
        assert_eq!(a.session.expose(), b.session.expose());
        assert_eq!(a.encryption_key, b.encryption_key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secrets.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn production_refuses_missing_secrets_and_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let c = config_in(
            dir.path(),
            &[
                ("CORRAL_ENV", "production"),
                ("CORRAL_SESSION_SECRET", &"s".repeat(40)),
            ],
        );
        let e = c.resolve_secrets().unwrap_err().to_string();
        assert!(
            e.contains("CORRAL_RUN_TOKEN_SECRET") && e.contains("CORRAL_ENCRYPTION_KEY"),
            "{e}"
        );
        assert!(!e.contains("CORRAL_SESSION_SECRET"), "{e}");
        assert!(!dir.path().join("secrets.json").exists());
    }

    #[test]
    fn bad_encryption_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let c = config_in(dir.path(), &[("CORRAL_ENCRYPTION_KEY", "c2hvcnQ=")]);
        let e = c.resolve_secrets().unwrap_err().to_string();
        assert!(
            e.contains("CORRAL_ENCRYPTION_KEY") && e.contains("32 bytes"),
            "{e}"
        );
    }
}
