//! Scale-out settings: what a server instance does in a cluster (its role), how many
//! runs it executes at once as a worker, and the name it shows.

use serde::{Deserialize, Serialize};

use crate::{Config, ConfigError};

/// What a `corral serve` instance does (`CORRAL_ROLE`, `corral serve --role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves the API and executes runs (the single-server default).
    #[default]
    All,
    /// Serves the API and queues runs; executes none.
    Api,
    /// Executes queued runs; serves only health, metrics and the sandbox-facing routes.
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }

    /// Whether this instance executes runs.
    pub fn executes(self) -> bool {
        self != Role::Api
    }

    /// Whether this instance serves the user-facing API.
    pub fn serves_api(self) -> bool {
        self != Role::Worker
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "all" => Ok(Role::All),
            "api" => Ok(Role::Api),
            "worker" => Ok(Role::Worker),
            other => Err(format!("unknown role {other:?}: api, worker or all")),
        }
    }
}

/// Runs one sandbox host carries at once when nothing is configured: agents spend
/// most of their time waiting on the model, so 8 per CPU, and a sandbox pair
/// (agent + sidecar) is given 512 MiB, whichever allows fewer; at least 1.
pub fn default_capacity(cpus: usize, memory_bytes: Option<u64>) -> usize {
    let by_cpu = cpus.max(1) * 8;
    let by_memory = memory_bytes
        .map(|b| (b / (512 * 1024 * 1024)) as usize)
        .unwrap_or(usize::MAX);
    by_cpu.min(by_memory).max(1)
}

/// Total memory of this machine (Linux `/proc/meminfo`), if known.
pub fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl Config {
    /// Runs this instance executes at once: `CORRAL_WORKER_CAPACITY`, else the
    /// smaller of `CORRAL_MAX_CONCURRENT_RUNS` and what the CPUs and memory allow.
    pub fn worker_capacity(&self) -> usize {
        if let Some(c) = self.worker_capacity {
            return c;
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.max_concurrent_runs
            .min(default_capacity(cpus, total_memory()))
    }

    /// The name runs record as their runner (`CORRAL_WORKER_NAME`, else the host name).
    pub fn worker_name(&self) -> String {
        self.worker_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "corral".into())
    }

    /// This configuration with another role (`corral serve --role`), checked again.
    pub fn with_role(mut self, role: Role) -> Result<Config, ConfigError> {
        self.role = role;
        self.validate_cluster()?;
        Ok(self)
    }

    pub(crate) fn validate_cluster(&self) -> Result<(), ConfigError> {
        if self.worker_capacity == Some(0) {
            return Err(ConfigError::Var {
                var: "CORRAL_WORKER_CAPACITY",
                message: "must be at least 1 (a worker that may run nothing is an api replica: CORRAL_ROLE=api)".into(),
            });
        }
        let postgres = self
            .database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
        if self.role != Role::All && !postgres {
            return Err(ConfigError::Var {
                var: "CORRAL_ROLE",
                message: format!(
                    "the {} role needs PostgreSQL (DATABASE_URL): replicas share the run queue through it; \
                     with the embedded SQLite database one server does everything (role all)",
                    self.role.as_str()
                ),
            });
        }
        if let Some(n) = &self.worker_name {
            if n.len() > 100 || n.chars().any(char::is_control) {
                return Err(ConfigError::Var {
                    var: "CORRAL_WORKER_NAME",
                    message: "at most 100 printable characters".into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_follows_cpus_and_memory() {
        let gib = 1024 * 1024 * 1024;
        assert_eq!(default_capacity(2, Some(24 * gib)), 16);
        assert_eq!(default_capacity(16, Some(4 * gib)), 8);
        assert_eq!(default_capacity(0, None), 8);
        assert_eq!(default_capacity(4, Some(100 * 1024 * 1024)), 1);
    }

    #[test]
    fn roles_parse() {
        assert_eq!("worker".parse::<Role>(), Ok(Role::Worker));
        assert!("master".parse::<Role>().is_err());
        assert!(Role::All.executes() && Role::All.serves_api());
        assert!(!Role::Api.executes() && !Role::Worker.serves_api());
    }
}
