//! The local Docker engine (bollard) and `/proc`: counting and measuring the
//! sandboxes, the bare `docker run` floor, and cleaning up whatever is left.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{
    ListContainersOptions, ListNetworksOptions, RemoveContainerOptions, StatsOptions,
};
use bollard::Docker;
use futures::StreamExt as _;

pub const MANAGED: &str = "corral.managed=true";

#[derive(Clone)]
pub struct Engine {
    docker: Docker,
}

fn managed_filter(extra: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let mut f = HashMap::from([("label".to_owned(), vec![MANAGED.to_owned()])]);
    for (k, v) in extra {
        f.insert((*k).to_owned(), vec![(*v).to_owned()]);
    }
    f
}

impl Engine {
    pub async fn connect() -> Result<Engine> {
        let docker = Docker::connect_with_local_defaults()?.with_timeout(Duration::from_secs(30));
        let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
            .await
            .context("the Docker engine does not answer")??;
        Ok(Engine { docker })
    }

    /// Managed containers: `(running, all)`.
    pub async fn count_managed(&self) -> Result<(usize, usize)> {
        let all = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(managed_filter(&[])),
                ..Default::default()
            }))
            .await?;
        let running = all
            .iter()
            .filter(|c| c.state == Some(ContainerSummaryStateEnum::RUNNING))
            .count();
        Ok((running, all.len()))
    }

    /// Sum of `memory_stats.usage` over the running managed containers, and their
    /// number. The figure is read where the engine reads it on cgroup v1
    /// (`memory.usage_in_bytes` of the container's cgroup): a `stats` call per
    /// container queues behind container creation in the daemon and makes a
    /// 100 ms sample take seconds under load. Falls back to a one-shot `stats`.
    pub async fn managed_memory(&self) -> Result<(u64, usize)> {
        let running = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: false,
                filters: Some(managed_filter(&[("status", "running")])),
                ..Default::default()
            }))
            .await?;
        let ids: Vec<String> = running.into_iter().filter_map(|c| c.id).collect();
        let usages = futures::future::join_all(ids.iter().map(|id| async move {
            if let Some(u) = cgroup_v1_usage(id) {
                return u;
            }
            let mut s = self.docker.stats(
                id,
                Some(StatsOptions {
                    stream: false,
                    one_shot: true,
                }),
            );
            match s.next().await {
                Some(Ok(st)) => st.memory_stats.and_then(|m| m.usage).unwrap_or(0),
                // Gone between the listing and the stats call.
                _ => 0,
            }
        }))
        .await;
        Ok((usages.iter().sum(), ids.len()))
    }

    /// The host's address on the default bridge (= `host.docker.internal` in
    /// containers), derived as the server derives it.
    pub async fn bridge_gateway(&self) -> Result<String> {
        let (ip, _) = corral_sandbox::bridge::default_bridge_address(&self.docker).await?;
        Ok(ip.to_string())
    }

    /// Force-removes every managed container, then every managed network.
    /// Returns how many of each there were.
    pub async fn remove_leftovers(&self) -> Result<(usize, usize)> {
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(managed_filter(&[])),
                ..Default::default()
            }))
            .await?;
        let n_containers = containers.len();
        for c in containers {
            if let Some(id) = c.id {
                let _ = self
                    .docker
                    .remove_container(
                        &id,
                        Some(RemoveContainerOptions {
                            force: true,
                            v: true,
                            ..Default::default()
                        }),
                    )
                    .await;
            }
        }
        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(managed_filter(&[])),
            }))
            .await?;
        let n_networks = networks.len();
        for n in networks {
            if let Some(id) = n.id {
                let _ = self.docker.remove_network(&id).await;
            }
        }
        Ok((n_containers, n_networks))
    }
}

/// `memory.usage_in_bytes` of a container under the cgroupfs driver (cgroup v1).
fn cgroup_v1_usage(id: &str) -> Option<u64> {
    std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/docker/{id}/memory.usage_in_bytes"
    ))
    .ok()?
    .trim()
    .parse()
    .ok()
}

/// Times `docker run --rm <image> --version` `n` times (ms each), after one
/// unmeasured run.
pub async fn bare_docker_runs(image: &str, n: usize) -> Result<Vec<f64>> {
    let once = || async {
        let t = Instant::now();
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new("docker")
                .args(["run", "--rm", image, "--version"])
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .context("docker run took over 60 s")??;
        if !out.status.success() {
            bail!(
                "docker run --rm {image} --version: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    };
    once().await?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(once().await?);
    }
    Ok(v)
}

/// `VmRSS` of a process in bytes (0 when it is gone).
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Every live descendant of `root`: `(pid, comm)`.
pub fn descendants(root: u32) -> Vec<(u32, String)> {
    let mut parent: HashMap<u32, (u32, String)> = HashMap::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for e in rd.filter_map(Result::ok) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0);
        parent.insert(pid, (ppid, comm));
    }
    let mut out = Vec::new();
    for (&pid, (_, comm)) in &parent {
        let mut p = pid;
        let mut hops = 0;
        while let Some((pp, _)) = parent.get(&p) {
            if *pp == root {
                out.push((pid, comm.clone()));
                break;
            }
            p = *pp;
            hops += 1;
            if p <= 1 || hops > 64 {
                break;
            }
        }
    }
    out
}
