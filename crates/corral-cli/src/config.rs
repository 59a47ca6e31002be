//! Profiles: one per Corral instance, in `<config dir>/corral/config.toml` (mode 0600,
//! directory 0700). A profile holds the instance URL, a credential (a session token or
//! an API key — never a password) and, for sessions, the selected org and app.
//!
//! The config directory is `$CORRAL_CONFIG_DIR`, else `$XDG_CONFIG_HOME/corral`, else
//! the platform's config directory (`~/.config/corral` on Linux).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _, Result};
use serde::{Deserialize, Serialize};

/// What authenticates the CLI to a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Credential {
    /// A session from `POST /api/auth/sign-in/email` (sent as the session cookie).
    Session { token: String },
    /// An API key (`ask_…`), sent as `Authorization: Bearer`. It implies its org and app.
    ApiKey { key: String },
}

impl Credential {
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Session { .. } => "session",
            Credential::ApiKey { .. } => "api_key",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub url: String,
    pub credential: Credential,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// The profile used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// `$CORRAL_CONFIG_DIR`, else `$XDG_CONFIG_HOME/corral`, else the platform's.
pub fn config_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("CORRAL_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("corral"));
    }
    dirs::config_dir()
        .map(|d| d.join("corral"))
        .ok_or_else(|| anyhow!("no config directory: set CORRAL_CONFIG_DIR or XDG_CONFIG_HOME"))
}

pub fn config_path() -> Result<PathBuf> {
    Ok(config_dir()?.join("config.toml"))
}

impl ConfigFile {
    /// Reads the file; a missing file is an empty configuration.
    pub fn load() -> Result<ConfigFile> {
        ConfigFile::load_from(&config_path()?)
    }

    pub fn load_from(path: &Path) -> Result<ConfigFile> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(path)
                    .map(|m| m.permissions().mode() & 0o777)
                    .unwrap_or(0o600);
                if mode & 0o077 != 0 {
                    eprintln!(
                        "warning: {} holds credentials but is readable by others (mode {mode:o}): chmod 600 it",
                        path.display()
                    );
                }
                toml::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn save(&self) -> Result<PathBuf> {
        let path = config_path()?;
        self.save_to(&path)?;
        Ok(path)
    }

    /// Writes atomically (a 0600 temp file renamed over the old one) in a 0700 directory.
    pub fn save_to(&self, path: &Path) -> Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
        let dir = path
            .parent()
            .ok_or_else(|| anyhow!("{} has no parent directory", path.display()))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let text = toml::to_string_pretty(self)?;
        let tmp = dir.join(format!(".config.toml.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        // The mode above is filtered by the umask; make it exact.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(b"# Corral CLI profiles (written by `corral login`; holds credentials).\n")?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        Ok(())
    }

    /// The profile whose URL is `url` (compared normalized).
    pub fn find_by_url(&self, url: &str) -> Option<(&String, &Profile)> {
        let want = normalize_url(url).ok()?;
        self.profiles
            .iter()
            .find(|(_, p)| normalize_url(&p.url).ok().as_deref() == Some(want.as_str()))
    }
}

/// `http(s)://host[:port][/path]` without a trailing slash; a bare `host:port` gets
/// `http://` for loopback hosts and `https://` otherwise.
pub fn normalize_url(raw: &str) -> Result<String> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        let host = raw.split(['/', ':']).next().unwrap_or("");
        let local = matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "0.0.0.0");
        format!("{}://{raw}", if local { "http" } else { "https" })
    };
    let u = url::Url::parse(&with_scheme).with_context(|| format!("invalid URL {raw:?}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        anyhow::bail!("invalid URL {raw:?}: expected http(s)://host[:port]");
    }
    Ok(u.as_str().trim_end_matches('/').to_owned())
}

/// The default profile name of an instance: `host[:port]`.
pub fn profile_name_for(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_owned();
            Some(match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            })
        })
        .unwrap_or_else(|| url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalized() {
        assert_eq!(
            normalize_url("localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        assert_eq!(
            normalize_url("corral.example.com/").unwrap(),
            "https://corral.example.com"
        );
        assert_eq!(
            normalize_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(normalize_url("ftp://x").is_err());
        assert_eq!(profile_name_for("http://127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(
            profile_name_for("https://corral.example.com"),
            "corral.example.com"
        );
    }

    #[test]
    fn the_file_round_trips_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.toml");
        let mut cfg = ConfigFile::default();
        cfg.profiles.insert(
            "localhost:3000".into(),
            Profile {
                url: "http://localhost:3000".into(),
                credential: Credential::Session {
                    token: "tok".into(),
                },
                email: Some("a@example.com".into()),
                org_id: Some("org_1".into()),
                app_id: None,
            },
        );
        cfg.current = Some("localhost:3000".into());
        cfg.save_to(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        assert_eq!(ConfigFile::load_from(&path).unwrap(), cfg);
        assert!(cfg.find_by_url("localhost:3000/").is_some());
        assert!(cfg.find_by_url("http://localhost:3001").is_none());
        // Missing file: empty config.
        assert_eq!(
            ConfigFile::load_from(&dir.path().join("none.toml")).unwrap(),
            ConfigFile::default()
        );
    }
}
