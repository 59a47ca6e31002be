//! Corral's configuration, loaded in layers (defaults → optional `corral.toml` →
//! `CORRAL_*` / well-known environment variables) and validated once at boot. Secrets
//! are wrapped in [`Secret`] so they never reach a log line through `Debug`.

mod cluster;
mod egress;
mod limits;
mod secrets;
mod storage;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub mod crypto;
pub use cluster::Role;
pub use limits::{LimitOverride, RateLimits, RateLimitsSetting};
pub use secrets::{Secret, Secrets};
pub use storage::{S3Target, StorageTarget};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

/// The whole configuration. Field names are the `corral.toml` keys; each also reads
/// from the environment variable named in [`ENV_VARS`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub env: Environment,
    pub listen: SocketAddr,
    pub public_url: String,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    #[serde(skip_serializing)]
    pub redis_url: Option<Secret>,
    /// Prefix of every Redis key, so deployments (or test runs) can share a server.
    pub redis_prefix: String,
    /// Per-route rate-limit overrides, or `off` (see [`limits`]).
    pub rate_limits: Option<RateLimitsSetting>,
    /// Allows `rate_limits = off` in production.
    pub rate_limits_force_off: bool,
    /// `fs` or `s3://bucket[/prefix]`.
    pub storage: String,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_access_key_id: Option<String>,
    #[serde(skip_serializing)]
    pub s3_secret_access_key: Option<Secret>,
    pub s3_allow_http: bool,
    pub trusted_origins: Vec<String>,
    pub trust_proxy: bool,
    pub body_limit_bytes: usize,
    pub shutdown_grace_seconds: u64,
    pub metrics_listen: Option<SocketAddr>,
    pub log_format: Option<String>,
    #[serde(skip_serializing)]
    pub session_secret: Option<Secret>,
    #[serde(skip_serializing)]
    pub run_token_secret: Option<Secret>,
    #[serde(skip_serializing)]
    pub encryption_key: Option<Secret>,
    pub encryption_key_id: Option<String>,
    #[serde(skip_serializing)]
    pub encryption_keys: Option<Secret>,
    /// `docker` | `process`; unset: Docker when the engine answers, else processes.
    pub sandbox: Option<String>,
    /// Ready sandboxes kept per image (`CORRAL_WARM_POOL_SIZE`).
    pub warm_pool_size: usize,
    /// Docker sandboxes kept half-started (sidecar running, agent created), for
    /// warm-pool misses (`CORRAL_PREPARED_POOL_SIZE`; the process backend has none).
    pub prepared_pool_size: usize,
    /// Pool members older than this are recycled.
    pub warm_pool_ttl_seconds: u64,
    pub agent_image: String,
    pub sidecar_image: String,
    /// Base URL sidecars use to reach this server (default: derived by the backend).
    pub internal_url: Option<String>,
    /// Port of the sandbox-facing listener on the engine's host gateway (Docker
    /// backend); 0: the port the first boot picked, remembered under the data dir so
    /// sandboxes that outlive a restart still reach the server.
    pub sandbox_listen_port: u16,
    /// IPv4 range per-run Docker networks take their /29 subnets from.
    pub sandbox_subnets: String,
    /// Runs executing at once on this server.
    pub max_concurrent_runs: usize,
    /// Runs of one organization executing at once on this server.
    pub org_max_concurrent_runs: usize,
    /// Pending + running runs an organization may have before triggers get 429.
    pub org_max_queued_runs: i64,
    /// Ceiling of a run's timeout (manifest timeout, default 300 s, is clamped to it).
    pub run_timeout_ceiling_seconds: u64,
    /// From sandbox start to the first event.
    pub run_boot_deadline_seconds: u64,
    /// No heartbeat for this long: the run fails with `stalled`.
    pub run_stall_seconds: u64,
    /// Extra environment for agent sandboxes (`KEY=VALUE`, comma separated).
    pub agent_env: Vec<String>,
    /// The system default model: `openai` | `anthropic`.
    pub model_api: Option<String>,
    pub model_base_url: Option<String>,
    #[serde(skip_serializing)]
    pub model_api_key: Option<Secret>,
    pub model_id: Option<String>,
    /// Frames queued for one SSE subscriber before it is dropped as too slow.
    pub realtime_queue_size: usize,
    /// A response write (an SSE stream's included) that makes no progress for this
    /// long closes the connection.
    pub write_timeout_seconds: u64,
    /// Realtime events are kept this long for `Last-Event-ID` replay.
    pub realtime_retention_hours: u64,
    /// How often freed heap pages go back to the system (glibc keeps them otherwise);
    /// 0 never.
    pub memory_trim_seconds: u64,
    /// Staged uploads (`POST /api/uploads`) stay writable, and once consumed by a run
    /// re-consumable, this long; then they and their unconsumed bytes are deleted.
    pub upload_retention_hours: u64,
    /// One webhook delivery attempt's timeout.
    pub webhook_timeout_seconds: u64,
    /// Delays before each delivery attempt, in seconds, comma separated (default: SPEC
    /// §11's 0, 30, 300, 1800, 3600, 7200, 10800, 14400). Tests shorten it.
    pub webhook_retry_schedule: Option<String>,
    /// How long the previous secret keeps signing after a rotation.
    pub webhook_secret_overlap_hours: u64,
    /// Deliveries attempted at once by this server.
    pub webhook_concurrency: usize,
    /// Fire due schedules from this server (SPEC §13). Every replica may; each fire
    /// still happens once. Off: this server only serves and runs.
    pub scheduler: bool,
    /// What this instance does in a cluster: `all`, `api` or `worker`.
    pub role: cluster::Role,
    /// Runs this instance executes at once as a worker (default: from CPUs and memory,
    /// at most `max_concurrent_runs`).
    pub worker_capacity: Option<usize>,
    /// The name runs record as their runner (default: the host name).
    pub worker_name: Option<String>,
    /// Emails of the platform's operators: signed in, they see the operators' views
    /// (`/api/admin/…`), whatever their organizations.
    pub platform_admin_emails: Vec<String>,
    /// The built-in outbound proxy (`http://[user:password@]host:port`), listed to
    /// every organization as `system` and used by runs when nothing more specific is
    /// chosen. Unset: no built-in proxy.
    #[serde(skip_serializing)]
    pub proxy_url: Option<Secret>,
    /// What `POST /api/proxies/{id}/test` fetches through the proxy.
    pub proxy_test_url: String,
    /// Hosts (`*` wildcard) a run's agent may reach through the sandbox's forward
    /// proxy; empty: any host that passes the address checks.
    pub egress_allowed_hosts: Vec<String>,
    /// Address ranges (CIDR) exempt from the forward proxy's SSRF checks (loopback,
    /// private and link-local addresses are refused otherwise).
    pub egress_allowed_ranges: Vec<String>,
    /// A one-shot token that claims a fresh instance (`POST /api/auth/bootstrap/redeem`):
    /// usable while no organization exists.
    #[serde(skip_serializing)]
    pub bootstrap_token: Option<Secret>,
    /// Token endpoint of the `claude-code` OAuth model provider (refreshes).
    pub oauth_claude_code_token_url: Option<String>,
    /// API base URL of `claude-code` credentials created from now on.
    pub oauth_claude_code_base_url: Option<String>,
    /// Token endpoint of the `codex` OAuth model provider (refreshes).
    pub oauth_codex_token_url: Option<String>,
    /// API base URL of `codex` credentials created from now on.
    pub oauth_codex_base_url: Option<String>,
    /// How long a pairing token of the connect helper may be redeemed.
    pub model_pairing_ttl_seconds: u64,
    /// Longest lifetime of a remote run's event sink (`sink.ttl_seconds` is clamped
    /// to it).
    pub remote_run_sink_max_ttl_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            env: Environment::Development,
            listen: SocketAddr::from(([0, 0, 0, 0], 3000)),
            public_url: "http://localhost:3000".into(),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_max_connections: 16,
            redis_url: None,
            redis_prefix: "corral:".into(),
            rate_limits: None,
            rate_limits_force_off: false,
            storage: "fs".into(),
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_allow_http: false,
            trusted_origins: Vec::new(),
            trust_proxy: false,
            body_limit_bytes: 10 * 1024 * 1024,
            shutdown_grace_seconds: 30,
            metrics_listen: None,
            log_format: None,
            session_secret: None,
            run_token_secret: None,
            encryption_key: None,
            encryption_key_id: None,
            encryption_keys: None,
            sandbox: None,
            warm_pool_size: 2,
            prepared_pool_size: 2,
            warm_pool_ttl_seconds: 600,
            agent_image: "corral-agent:latest".into(),
            sidecar_image: "corral-sidecar:latest".into(),
            internal_url: None,
            sandbox_listen_port: 0,
            sandbox_subnets: "10.213.0.0/16".into(),
            max_concurrent_runs: 20,
            org_max_concurrent_runs: 5,
            org_max_queued_runs: 100,
            run_timeout_ceiling_seconds: 1800,
            run_boot_deadline_seconds: 120,
            run_stall_seconds: 60,
            agent_env: Vec::new(),
            model_api: None,
            model_base_url: None,
            model_api_key: None,
            model_id: None,
            realtime_queue_size: 2000,
            write_timeout_seconds: 60,
            realtime_retention_hours: 24,
            memory_trim_seconds: 10,
            upload_retention_hours: 24,
            webhook_timeout_seconds: 15,
            webhook_retry_schedule: None,
            webhook_secret_overlap_hours: 168,
            webhook_concurrency: 16,
            scheduler: true,
            role: cluster::Role::All,
            worker_capacity: None,
            worker_name: None,
            platform_admin_emails: Vec::new(),
            proxy_url: None,
            proxy_test_url: "https://example.com/".into(),
            egress_allowed_hosts: Vec::new(),
            egress_allowed_ranges: Vec::new(),
            bootstrap_token: None,
            oauth_claude_code_token_url: None,
            oauth_claude_code_base_url: None,
            oauth_codex_token_url: None,
            oauth_codex_base_url: None,
            model_pairing_ttl_seconds: 300,
            remote_run_sink_max_ttl_seconds: 86_400,
        }
    }
}

impl Config {
    /// The delays before each webhook delivery attempt (SPEC §11 unless configured).
    pub fn webhook_schedule(&self) -> Result<Vec<std::time::Duration>, ConfigError> {
        let Some(raw) = &self.webhook_retry_schedule else {
            return Ok([0u64, 30, 300, 1800, 3600, 7200, 10800, 14400]
                .iter()
                .map(|s| std::time::Duration::from_secs(*s))
                .collect());
        };
        let bad = || ConfigError::Var {
            var: "CORRAL_WEBHOOK_RETRY_SCHEDULE",
            message: format!(
                "must be comma-separated non-negative seconds such as 0,30,300, got {raw:?}"
            ),
        };
        let delays = raw
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 86_400.0)
                    .map(std::time::Duration::from_secs_f64)
                    .ok_or_else(bad)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if delays.is_empty() {
            return Err(bad());
        }
        Ok(delays)
    }
}

/// The model runs use when nothing more specific is chosen (SPEC §12's last fallback).
#[derive(Debug, Clone)]
pub struct SystemModel {
    /// `openai` | `anthropic`.
    pub api: String,
    pub model: String,
    pub base_url: String,
    pub api_key: Option<Secret>,
}

/// Environment variable → config key. Lists are comma separated.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("CORRAL_ENV", "env"),
    ("CORRAL_LISTEN", "listen"),
    ("CORRAL_PUBLIC_URL", "public_url"),
    ("CORRAL_DATA_DIR", "data_dir"),
    ("DATABASE_URL", "database_url"),
    (
        "CORRAL_DATABASE_MAX_CONNECTIONS",
        "database_max_connections",
    ),
    ("REDIS_URL", "redis_url"),
    ("CORRAL_REDIS_PREFIX", "redis_prefix"),
    ("CORRAL_RATE_LIMITS", "rate_limits"),
    ("CORRAL_RATE_LIMITS_FORCE_OFF", "rate_limits_force_off"),
    ("CORRAL_STORAGE", "storage"),
    ("AWS_ENDPOINT_URL", "s3_endpoint"),
    // After AWS_ENDPOINT_URL: the Corral-specific name wins when both are set.
    ("CORRAL_S3_ENDPOINT", "s3_endpoint"),
    ("AWS_REGION", "s3_region"),
    ("AWS_ACCESS_KEY_ID", "s3_access_key_id"),
    ("AWS_SECRET_ACCESS_KEY", "s3_secret_access_key"),
    ("CORRAL_S3_ALLOW_HTTP", "s3_allow_http"),
    ("CORRAL_TRUSTED_ORIGINS", "trusted_origins"),
    ("CORRAL_TRUST_PROXY", "trust_proxy"),
    ("CORRAL_BODY_LIMIT_BYTES", "body_limit_bytes"),
    ("CORRAL_SHUTDOWN_GRACE_SECONDS", "shutdown_grace_seconds"),
    ("CORRAL_METRICS_LISTEN", "metrics_listen"),
    ("CORRAL_LOG_FORMAT", "log_format"),
    ("CORRAL_SESSION_SECRET", "session_secret"),
    ("CORRAL_RUN_TOKEN_SECRET", "run_token_secret"),
    ("CORRAL_ENCRYPTION_KEY", "encryption_key"),
    ("CORRAL_ENCRYPTION_KEY_ID", "encryption_key_id"),
    ("CORRAL_ENCRYPTION_KEYS", "encryption_keys"),
    ("CORRAL_SANDBOX", "sandbox"),
    ("CORRAL_WARM_POOL_SIZE", "warm_pool_size"),
    ("CORRAL_PREPARED_POOL_SIZE", "prepared_pool_size"),
    ("CORRAL_WARM_POOL_TTL_SECONDS", "warm_pool_ttl_seconds"),
    ("CORRAL_AGENT_IMAGE", "agent_image"),
    ("CORRAL_SIDECAR_IMAGE", "sidecar_image"),
    ("CORRAL_INTERNAL_URL", "internal_url"),
    ("CORRAL_SANDBOX_LISTEN_PORT", "sandbox_listen_port"),
    ("CORRAL_SANDBOX_SUBNETS", "sandbox_subnets"),
    ("CORRAL_MAX_CONCURRENT_RUNS", "max_concurrent_runs"),
    ("CORRAL_ORG_MAX_CONCURRENT_RUNS", "org_max_concurrent_runs"),
    ("CORRAL_ORG_MAX_QUEUED_RUNS", "org_max_queued_runs"),
    (
        "CORRAL_RUN_TIMEOUT_CEILING_SECONDS",
        "run_timeout_ceiling_seconds",
    ),
    (
        "CORRAL_RUN_BOOT_DEADLINE_SECONDS",
        "run_boot_deadline_seconds",
    ),
    ("CORRAL_RUN_STALL_SECONDS", "run_stall_seconds"),
    ("CORRAL_AGENT_ENV", "agent_env"),
    ("CORRAL_MODEL_API", "model_api"),
    ("CORRAL_MODEL_BASE_URL", "model_base_url"),
    ("CORRAL_MODEL_API_KEY", "model_api_key"),
    ("CORRAL_MODEL_ID", "model_id"),
    ("CORRAL_REALTIME_QUEUE_SIZE", "realtime_queue_size"),
    ("CORRAL_WRITE_TIMEOUT_SECONDS", "write_timeout_seconds"),
    (
        "CORRAL_REALTIME_RETENTION_HOURS",
        "realtime_retention_hours",
    ),
    ("CORRAL_UPLOAD_RETENTION_HOURS", "upload_retention_hours"),
    ("CORRAL_MEMORY_TRIM_SECONDS", "memory_trim_seconds"),
    ("CORRAL_WEBHOOK_TIMEOUT_SECONDS", "webhook_timeout_seconds"),
    ("CORRAL_WEBHOOK_RETRY_SCHEDULE", "webhook_retry_schedule"),
    (
        "CORRAL_WEBHOOK_SECRET_OVERLAP_HOURS",
        "webhook_secret_overlap_hours",
    ),
    ("CORRAL_WEBHOOK_CONCURRENCY", "webhook_concurrency"),
    ("CORRAL_SCHEDULER", "scheduler"),
    ("CORRAL_ROLE", "role"),
    ("CORRAL_WORKER_CAPACITY", "worker_capacity"),
    ("CORRAL_WORKER_NAME", "worker_name"),
    // Appstrate's name first: the Corral-specific one wins when both are set.
    ("AUTH_PLATFORM_ADMIN_EMAILS", "platform_admin_emails"),
    ("CORRAL_PLATFORM_ADMIN_EMAILS", "platform_admin_emails"),
    ("CORRAL_BOOTSTRAP_TOKEN", "bootstrap_token"),
    ("CORRAL_PROXY_URL", "proxy_url"),
    ("CORRAL_PROXY_TEST_URL", "proxy_test_url"),
    ("CORRAL_EGRESS_ALLOWED_HOSTS", "egress_allowed_hosts"),
    ("CORRAL_EGRESS_ALLOWED_RANGES", "egress_allowed_ranges"),
    (
        "CORRAL_OAUTH_CLAUDE_CODE_TOKEN_URL",
        "oauth_claude_code_token_url",
    ),
    (
        "CORRAL_OAUTH_CLAUDE_CODE_BASE_URL",
        "oauth_claude_code_base_url",
    ),
    ("CORRAL_OAUTH_CODEX_TOKEN_URL", "oauth_codex_token_url"),
    ("CORRAL_OAUTH_CODEX_BASE_URL", "oauth_codex_base_url"),
    (
        "CORRAL_MODEL_PAIRING_TTL_SECONDS",
        "model_pairing_ttl_seconds",
    ),
    // Appstrate's name first: the Corral-specific one wins when both are set.
    (
        "REMOTE_RUN_SINK_MAX_TTL_SECONDS",
        "remote_run_sink_max_ttl_seconds",
    ),
    (
        "CORRAL_REMOTE_RUN_SINK_MAX_TTL_SECONDS",
        "remote_run_sink_max_ttl_seconds",
    ),
];

const LIST_KEYS: &[&str] = &[
    "trusted_origins",
    "agent_env",
    "platform_admin_emails",
    "egress_allowed_hosts",
    "egress_allowed_ranges",
];
/// Keys whose value is a number but whose default is unset.
const OPTIONAL_NUMBER_KEYS: &[&str] = &["worker_capacity"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("{var}: {message}")]
    Var { var: &'static str, message: String },
    #[error("production mode (CORRAL_ENV=production) needs explicit secrets; missing: {0}")]
    MissingSecrets(String),
    #[error("cannot use the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Config {
    /// Loads defaults, then `corral.toml` (path from `CORRAL_CONFIG`, else `./corral.toml`
    /// when present), then the environment.
    pub fn load() -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        let file = std::env::var("CORRAL_CONFIG")
            .ok()
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("corral.toml")).filter(|p| p.exists()));
        Config::load_from(file.as_deref(), &vars)
    }

    /// Loads from an explicit file and variable list (what [`Config::load`] does, minus
    /// reading the process environment), so tests need not touch global state.
    pub fn load_from(
        file: Option<&Path>,
        vars: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Invalid(format!(
                    "CORRAL_CONFIG: {} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file(path));
        }
        for (var, key) in ENV_VARS {
            let Some((_, value)) = vars.iter().find(|(k, _)| k == var) else {
                continue;
            };
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let parsed = parse_env_value(var, key, value)?;
            fig = fig.merge(Serialized::default(key, parsed));
        }
        let config: Config = fig.extract().map_err(|e| {
            // Name the variable when figment points at a key that has one.
            let msg = e.to_string();
            let var = e
                .path
                .first()
                .and_then(|key| ENV_VARS.iter().find(|(_, k)| k == key))
                .map(|(v, k)| format!("{v} ({k})"));
            ConfigError::Invalid(match var {
                Some(v) => format!("{v}: {msg}"),
                None => msg,
            })
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            return Err(ConfigError::Var {
                var: "CORRAL_PUBLIC_URL",
                message: format!(
                    "must start with http:// or https://, got {:?}",
                    self.public_url
                ),
            });
        }
        if let Some(url) = &self.database_url {
            if !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
            {
                return Err(ConfigError::Var {
                    var: "DATABASE_URL",
                    message: "must be a postgres:// or sqlite: URL".into(),
                });
            }
        }
        if self.body_limit_bytes < 1024 {
            return Err(ConfigError::Var {
                var: "CORRAL_BODY_LIMIT_BYTES",
                message: "must be at least 1024".into(),
            });
        }
        if self.database_max_connections == 0 {
            return Err(ConfigError::Var {
                var: "CORRAL_DATABASE_MAX_CONNECTIONS",
                message: "must be at least 1".into(),
            });
        }
        for origin in &self.trusted_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                return Err(ConfigError::Var {
                    var: "CORRAL_TRUSTED_ORIGINS",
                    message: format!("{origin:?} is not an origin like https://app.example.com"),
                });
            }
        }
        if self.realtime_queue_size == 0 {
            return Err(ConfigError::Var {
                var: "CORRAL_REALTIME_QUEUE_SIZE",
                message: "must be at least 1".into(),
            });
        }
        if self.webhook_timeout_seconds == 0 || self.webhook_concurrency == 0 {
            return Err(ConfigError::Var {
                var: "CORRAL_WEBHOOK_TIMEOUT_SECONDS",
                message: "the webhook timeout and concurrency must be at least 1".into(),
            });
        }
        self.webhook_schedule()?;
        if let Some(sandbox) = &self.sandbox {
            if sandbox != "docker" && sandbox != "process" {
                return Err(ConfigError::Var {
                    var: "CORRAL_SANDBOX",
                    message: format!("must be docker or process, got {sandbox:?}"),
                });
            }
        }
        if let Some(api) = &self.model_api {
            if api != "openai" && api != "anthropic" {
                return Err(ConfigError::Var {
                    var: "CORRAL_MODEL_API",
                    message: format!("must be openai or anthropic, got {api:?}"),
                });
            }
        }
        for (var, url) in [
            (
                "CORRAL_OAUTH_CLAUDE_CODE_TOKEN_URL",
                &self.oauth_claude_code_token_url,
            ),
            (
                "CORRAL_OAUTH_CLAUDE_CODE_BASE_URL",
                &self.oauth_claude_code_base_url,
            ),
            ("CORRAL_OAUTH_CODEX_TOKEN_URL", &self.oauth_codex_token_url),
            ("CORRAL_OAUTH_CODEX_BASE_URL", &self.oauth_codex_base_url),
        ] {
            if let Some(url) = url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::Var {
                        var,
                        message: format!("must start with http:// or https://, got {url:?}"),
                    });
                }
            }
        }
        if !(60..=3600).contains(&self.model_pairing_ttl_seconds) {
            return Err(ConfigError::Var {
                var: "CORRAL_MODEL_PAIRING_TTL_SECONDS",
                message: "must be between 60 and 3600".into(),
            });
        }
        if !(60..=604_800).contains(&self.remote_run_sink_max_ttl_seconds) {
            return Err(ConfigError::Var {
                var: "CORRAL_REMOTE_RUN_SINK_MAX_TTL_SECONDS",
                message: "must be between 60 and 604800".into(),
            });
        }
        if let Some(url) = &self.model_base_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Var {
                    var: "CORRAL_MODEL_BASE_URL",
                    message: format!("must start with http:// or https://, got {url:?}"),
                });
            }
        }
        for kv in &self.agent_env {
            if !kv.contains('=') {
                return Err(ConfigError::Var {
                    var: "CORRAL_AGENT_ENV",
                    message: format!("{kv:?} is not KEY=VALUE"),
                });
            }
        }
        match self.sandbox_subnets.parse::<ipnet::Ipv4Net>() {
            Ok(net) if net.prefix_len() <= 28 => {}
            _ => {
                return Err(ConfigError::Var {
                    var: "CORRAL_SANDBOX_SUBNETS",
                    message: format!(
                        "must be an IPv4 CIDR of at least /28, e.g. 10.213.0.0/16, got {:?}",
                        self.sandbox_subnets
                    ),
                })
            }
        }
        egress::validate(self)?;
        if let Some(url) = &self.redis_url {
            let u = url.expose();
            if !(u.starts_with("redis://")
                || u.starts_with("rediss://")
                || u.starts_with("unix://"))
            {
                return Err(ConfigError::Var {
                    var: "REDIS_URL",
                    message: "must be a redis://, rediss:// or unix:// URL".into(),
                });
            }
        }
        let limits = self.rate_limits()?;
        if limits.all_off && self.is_production() && !self.rate_limits_force_off {
            return Err(ConfigError::Var {
                var: "CORRAL_RATE_LIMITS",
                message: "off is refused in production (CORRAL_ENV=production): raise the limits you need instead (e.g. sign-up=1000/60s), or set CORRAL_RATE_LIMITS_FORCE_OFF=1 if something in front of Corral limits requests".into(),
            });
        }
        self.storage_target()?;
        self.validate_cluster()?;
        if self.max_concurrent_runs == 0 || self.org_max_concurrent_runs == 0 {
            return Err(ConfigError::Var {
                var: "CORRAL_MAX_CONCURRENT_RUNS",
                message: "run concurrency limits must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// The system default model from configuration, when `CORRAL_MODEL_API` and
    /// `CORRAL_MODEL_ID` are set. The base URL defaults to the provider's.
    pub fn system_model(&self) -> Option<SystemModel> {
        let api = self.model_api.clone()?;
        let model = self.model_id.clone()?;
        let base_url = self.model_base_url.clone().unwrap_or_else(|| {
            if api == "anthropic" {
                "https://api.anthropic.com".into()
            } else {
                "https://api.openai.com/v1".into()
            }
        });
        Some(SystemModel {
            api,
            model,
            base_url,
            api_key: self.model_api_key.clone(),
        })
    }

    /// The rate-limit overrides in effect (none when unset).
    pub fn rate_limits(&self) -> Result<RateLimits, ConfigError> {
        match &self.rate_limits {
            Some(setting) => setting.parse(),
            None => Ok(RateLimits::default()),
        }
    }

    pub fn is_production(&self) -> bool {
        self.env == Environment::Production
    }

    /// The session cookie gets `Secure` when the public URL is https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// The database URL in effect: `DATABASE_URL`, else a SQLite file in the data dir.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("corral.db").display()
            ),
        }
    }

    /// Resolves the secrets: explicit ones win; in development, missing ones are
    /// generated once and persisted under the data dir (0600); in production a missing
    /// secret is an error naming its variable.
    pub fn resolve_secrets(&self) -> Result<Secrets, ConfigError> {
        secrets::resolve(self)
    }
}

fn parse_env_value(
    var: &'static str,
    key: &str,
    value: &str,
) -> Result<serde_json::Value, ConfigError> {
    use serde_json::Value;
    if LIST_KEYS.contains(&key) {
        return Ok(Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ));
    }
    let defaults =
        serde_json::to_value(Config::default()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    // Optional numbers have no number default to infer the type from.
    let number = Value::Number(0.into());
    let kind = if OPTIONAL_NUMBER_KEYS.contains(&key) {
        Some(&number)
    } else {
        defaults.get(key)
    };
    let parsed = match kind {
        Some(Value::Bool(_)) => match value.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Value::Bool(true),
            "0" | "false" | "no" | "off" => Value::Bool(false),
            _ => {
                return Err(ConfigError::Var {
                    var,
                    message: format!("expected true or false, got {value:?}"),
                })
            }
        },
        Some(Value::Number(_)) => Value::Number(value.parse::<u64>().map(Into::into).map_err(
            |_| ConfigError::Var {
                var,
                message: format!("expected a non-negative integer, got {value:?}"),
            },
        )?),
        _ => Value::String(value.to_owned()),
    };
    Ok(parsed)
}

#[cfg(test)]
mod tests;
