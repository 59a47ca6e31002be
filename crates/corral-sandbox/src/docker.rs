//! The Docker backend (SPEC §8), through bollard.
//!
//! Per sandbox `sbx_<hex>`:
//! - `corral-run-<hex>`: an `internal` bridge network **without an IPv4 address on
//!   the host side** (`com.docker.network.bridge.inhibit_ipv4=true`): `internal`
//!   alone only stops forwarding, and on engine 20.10 a container still reaches
//!   every service bound on the host through the bridge's gateway address;
//! - `corral-sidecar-<hex>`: the sidecar, on the shared egress network (its default
//!   route; an ordinary bridge with inter-container traffic disabled, so sidecars
//!   cannot reach each other) and on the run network under the alias `sidecar`;
//!   non-root, no capabilities, read-only root, `host.docker.internal` mapped to the
//!   host gateway, its one-time configure token in its environment;
//! - `corral-agent-<hex>`: the agent, only on the run network; non-root
//!   (10001:10001), no capabilities, `no-new-privileges`, read-only root with tmpfs
//!   `/workspace` and `/tmp`, pids/memory(=swap)/CPU limits, no mounts. It starts at
//!   once and long-polls the sidecar for its task.
//!
//! Every object carries [`object_labels`], so [`DockerBackend::list`] and
//! [`DockerBackend::destroy`] work on sandboxes any server instance created.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, ContainerUpdateBody, EndpointIpamConfig,
    EndpointSettings, HostConfig, HostConfigLogConfig, Ipam, IpamConfig, NetworkConnectRequest,
    NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, KillContainerOptions, ListContainersOptions,
    ListNetworksOptions, LogsOptions, RemoveContainerOptions,
};
use bollard::Docker;
use corral_protocol::sidecar_api::{self, SIDECAR_PORT};
use corral_protocol::Secret;
use futures::{StreamExt as _, TryFutureExt as _};
use tokio::sync::{Mutex as AsyncMutex, OnceCell};
use tokio::time::Instant;

use crate::images::BUILD_COMMAND;
use crate::pool::{Factory, Pool, Prepared};
use crate::{
    labels, object_labels, Lease, PoolStats, Resources, RunnerKind, SandboxBackend, SandboxError,
    SandboxInfo, SandboxState,
};

/// User the agent runs as (owns the `/workspace` tmpfs).
pub const AGENT_USER: &str = "10001:10001";
/// User the sidecar runs as.
pub const SIDECAR_USER: &str = "10002:10002";
/// The name sidecars resolve to the host (mapped to `host-gateway`).
pub const HOST_ALIAS: &str = "host.docker.internal";
/// Driver option that keeps the host from owning an address on a bridge.
pub const INHIBIT_IPV4: &str = "com.docker.network.bridge.inhibit_ipv4";
/// Driver option that forbids traffic between containers of one bridge.
pub const ENABLE_ICC: &str = "com.docker.network.bridge.enable_icc";
/// Pids limit of the sidecar (it may run bundled MCP servers).
const SIDECAR_PIDS_LIMIT: i64 = 512;
/// Bytes of container logs Docker keeps per container (`json-file`, one file).
const LOG_MAX_SIZE: &str = "4m";

/// Configuration of [`DockerBackend`].
#[derive(Debug, Clone)]
pub struct DockerOptions {
    /// Image of the agent container.
    pub agent_image: String,
    /// Image of the sidecar container.
    pub sidecar_image: String,
    /// This server instance (label `corral.owner`).
    pub owner: String,
    /// This deployment (label `corral.deployment`): only sandboxes carrying it are
    /// listed, hence ever reaped.
    pub deployment: String,
    /// Ready sandboxes kept in the warm pool (0: every lease is cold).
    pub pool_size: usize,
    /// Sandboxes kept half-started (objects made, sidecar running, agent created),
    /// for misses of the warm pool: one container start instead of a build (0: none).
    pub prepared_pool_size: usize,
    /// Pool members older than this are destroyed and replaced.
    pub pool_ttl: Duration,
    /// Name of the shared egress network (created on demand).
    pub egress_network: String,
    /// Extra environment of the agent container (e.g. `CORRAL_HEARTBEAT_SECS`).
    pub agent_env: Vec<(String, String)>,
    /// How long a new sandbox may take until its sidecar answers `/health`.
    pub start_timeout: Duration,
    /// IPv4 range run networks take their small (/29) subnets from, so that the
    /// engine's default address pools (about 30 networks) do not cap concurrency.
    pub subnet_pool: ipnet::Ipv4Net,
}

impl Default for DockerOptions {
    fn default() -> Self {
        Self {
            agent_image: "corral-agent:latest".to_owned(),
            sidecar_image: "corral-sidecar:latest".to_owned(),
            owner: "corral".to_owned(),
            deployment: "corral".to_owned(),
            pool_size: 2,
            prepared_pool_size: 0,
            pool_ttl: Duration::from_secs(600),
            egress_network: "corral-egress".to_owned(),
            agent_env: Vec::new(),
            start_timeout: Duration::from_secs(30),
            subnet_pool: "10.213.0.0/16".parse().expect("valid CIDR"),
        }
    }
}

/// The addresses of one run network: a /29 out of [`DockerOptions::subnet_pool`]
/// with the sidecar and the agent at fixed addresses, so the agent finds its sidecar
/// through `/etc/hosts` (no DNS on an internal network) and both can start together.
#[derive(Debug, Clone, Copy)]
pub struct RunSubnet {
    /// The /29.
    pub net: ipnet::Ipv4Net,
    /// Reserved by the engine (the bridge itself gets no address: `inhibit_ipv4`).
    pub gateway: std::net::Ipv4Addr,
    /// The sidecar's address on the run network (`sidecar` in the agent's hosts).
    pub sidecar: std::net::Ipv4Addr,
    /// The agent's address.
    pub agent: std::net::Ipv4Addr,
}

impl RunSubnet {
    /// A random /29 of `pool`.
    pub fn pick(pool: ipnet::Ipv4Net) -> Option<RunSubnet> {
        use rand::seq::IteratorRandom as _;
        let net = pool.subnets(29).ok()?.choose(&mut rand::thread_rng())?;
        let base = u32::from(net.network());
        Some(RunSubnet {
            net,
            gateway: (base + 1).into(),
            sidecar: (base + 2).into(),
            agent: (base + 3).into(),
        })
    }
}

/// Docker object names of one sandbox.
#[derive(Debug, Clone)]
pub struct SandboxNames {
    /// `corral-run-<hex>`.
    pub run_network: String,
    /// `corral-sidecar-<hex>`.
    pub sidecar: String,
    /// `corral-agent-<hex>`.
    pub agent: String,
}

impl SandboxNames {
    /// Names of sandbox `id` (`sbx_<hex>`); `None` for an id Corral never makes.
    pub fn of(id: &str) -> Option<Self> {
        let hex = id.strip_prefix("sbx_")?;
        if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Self {
            run_network: format!("corral-run-{hex}"),
            sidecar: format!("corral-sidecar-{hex}"),
            agent: format!("corral-agent-{hex}"),
        })
    }
}

/// The engine side: everything but the pool.
pub(crate) struct Engine {
    docker: Docker,
    opts: DockerOptions,
    /// Talks to sidecars on bridge addresses: never through a proxy.
    http: reqwest::Client,
    /// Id of the egress network once ensured.
    egress: AsyncMutex<Option<String>>,
    gateway: OnceCell<IpAddr>,
}

/// Sandboxes as Docker containers. Cheap to share behind an `Arc`.
pub struct DockerBackend {
    engine: Arc<Engine>,
    pool: Pool<Engine>,
}

impl std::fmt::Debug for DockerBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerBackend")
            .field("opts", &self.engine.opts)
            .finish_non_exhaustive()
    }
}

impl DockerBackend {
    /// Connects to the local engine (`DOCKER_HOST` or the default socket),
    /// negotiates the API version and starts the warm pool. Fails with
    /// [`SandboxError::Unavailable`] when the engine does not answer; missing images
    /// are reported by [`DockerBackend::check_images`] and by every lease.
    pub async fn connect(opts: DockerOptions) -> Result<Self, SandboxError> {
        let engine = Arc::new(Engine::connect(opts).await?);
        if let Err(e) = engine.check_images().await {
            tracing::warn!(error = %e, "sandbox images missing; leases will fail until built");
        }
        let pool = Pool::start(
            engine.clone(),
            engine.opts.pool_size,
            engine.opts.prepared_pool_size,
            engine.opts.pool_ttl,
        );
        Ok(Self { engine, pool })
    }

    /// The bollard client (for tests and diagnostics).
    pub fn docker(&self) -> &Docker {
        &self.engine.docker
    }

    /// The options this backend runs with.
    pub fn options(&self) -> &DockerOptions {
        &self.engine.opts
    }

    /// Fails with [`SandboxError::ImageMissing`] unless both images exist locally.
    pub async fn check_images(&self) -> Result<(), SandboxError> {
        self.engine.check_images().await
    }
}

/// Whether the engine answers and both images exist, without starting a pool.
pub(crate) async fn probe(opts: &DockerOptions) -> Result<(), SandboxError> {
    Engine::connect(opts.clone()).await?.check_images().await
}

fn is_status(e: &DockerError, code: u16) -> bool {
    matches!(e, DockerError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

fn is_not_found(e: &DockerError) -> bool {
    is_status(e, 404)
}

/// Errors that mean "the engine is not there" rather than "the request failed".
fn is_unavailable(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::HyperLegacyError { .. }
            | DockerError::IOError { .. }
            | DockerError::SocketNotFoundError(_)
            | DockerError::RequestTimeoutError
            | DockerError::HttpClientError { .. }
            | DockerError::HyperResponseError { .. }
    )
}

/// Maps an engine error during `what`.
pub(crate) fn engine_error(what: &str, e: DockerError) -> SandboxError {
    if is_unavailable(&e) {
        SandboxError::Unavailable(format!("{what}: {e}"))
    } else {
        SandboxError::Other(anyhow::anyhow!("{what}: {e}"))
    }
}

/// Maps an engine error while creating something from `image`.
fn create_error(what: &str, image: &str, e: DockerError) -> SandboxError {
    match &e {
        DockerError::DockerResponseServerError {
            status_code: 404,
            message,
        } if message.contains("image") => SandboxError::ImageMissing {
            image: image.to_owned(),
            command: BUILD_COMMAND.to_owned(),
        },
        _ if is_unavailable(&e) => SandboxError::Unavailable(format!("{what}: {e}")),
        _ => SandboxError::Start(format!("{what}: {e}")),
    }
}

fn to_map(labels: BTreeMap<String, String>) -> HashMap<String, String> {
    labels.into_iter().collect()
}

fn label_filter(label: String) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![label])])
}

fn log_config() -> HostConfigLogConfig {
    HostConfigLogConfig {
        typ: Some("json-file".to_owned()),
        config: Some(HashMap::from([
            ("max-size".to_owned(), LOG_MAX_SIZE.to_owned()),
            ("max-file".to_owned(), "1".to_owned()),
        ])),
    }
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore as _;
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A new sandbox id: `sbx_` and 24 hex digits.
pub(crate) fn new_sandbox_id() -> String {
    format!("sbx_{}", random_hex(12))
}

/// A new one-time configure token: 32 random bytes, hex.
pub(crate) fn new_configure_token() -> String {
    random_hex(32)
}

impl Engine {
    async fn connect(opts: DockerOptions) -> Result<Self, SandboxError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| SandboxError::Unavailable(format!("connecting to Docker: {e}")))?
            .with_timeout(Duration::from_secs(60));
        let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
            .await
            .map_err(|_| SandboxError::Unavailable("the Docker engine does not answer".into()))?
            .map_err(|e| {
                SandboxError::Unavailable(format!("the Docker engine does not answer: {e}"))
            })?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| SandboxError::Other(e.into()))?;
        Ok(Self {
            docker,
            opts,
            http,
            egress: AsyncMutex::new(None),
            gateway: OnceCell::new(),
        })
    }

    async fn check_images(&self) -> Result<(), SandboxError> {
        for image in [&self.opts.agent_image, &self.opts.sidecar_image] {
            match self.docker.inspect_image(image).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {
                    return Err(SandboxError::ImageMissing {
                        image: image.clone(),
                        command: BUILD_COMMAND.to_owned(),
                    })
                }
                Err(e) => return Err(engine_error(&format!("inspecting image {image}"), e)),
            }
        }
        Ok(())
    }

    /// The id of the shared egress network, created on first use. Another server
    /// may create it at the same time (the engine allows duplicate names): every
    /// process keeps the one with the smallest id and removes its own extra.
    async fn egress_network(&self) -> Result<String, SandboxError> {
        let mut cached = self.egress.lock().await;
        if let Some(id) = cached.as_ref() {
            return Ok(id.clone());
        }
        let name = &self.opts.egress_network;
        let mut found = self.networks_named(name).await?;
        let mut mine = None;
        if found.is_empty() {
            let created = self
                .docker
                .create_network(NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".to_owned()),
                    options: Some(HashMap::from([(ENABLE_ICC.to_owned(), "false".to_owned())])),
                    labels: Some(HashMap::from([(
                        labels::EGRESS.to_owned(),
                        "true".to_owned(),
                    )])),
                    ..Default::default()
                })
                .await
                .map_err(|e| engine_error(&format!("creating network {name}"), e))?;
            tracing::info!(network = name, "created the sandbox egress network");
            mine = Some(created.id);
            found = self.networks_named(name).await?;
        }
        found.sort();
        let Some(keep) = found.first().cloned() else {
            return Err(SandboxError::Start(format!("network {name} vanished")));
        };
        if let Some(mine) = mine.filter(|m| *m != keep) {
            let _ = self.docker.remove_network(&mine).await;
        }
        *cached = Some(keep.clone());
        Ok(keep)
    }

    async fn networks_named(&self, name: &str) -> Result<Vec<String>, SandboxError> {
        let nets = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(HashMap::from([("name".to_owned(), vec![name.to_owned()])])),
            }))
            .await
            .map_err(|e| engine_error("listing networks", e))?;
        Ok(nets
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .filter_map(|n| n.id)
            .collect())
    }

    fn sidecar_body(
        &self,
        id: &str,
        token: &str,
        run_id: Option<&str>,
        egress: &str,
    ) -> ContainerCreateBody {
        ContainerCreateBody {
            image: Some(self.opts.sidecar_image.clone()),
            user: Some(SIDECAR_USER.to_owned()),
            env: Some(vec![format!(
                "{}={token}",
                sidecar_api::ENV_CONFIGURE_TOKEN
            )]),
            labels: Some(to_map(object_labels(
                id,
                &self.opts.owner,
                &self.opts.deployment,
                Some("sidecar"),
                run_id,
            ))),
            host_config: Some(HostConfig {
                cap_drop: Some(vec!["ALL".to_owned()]),
                security_opt: Some(vec!["no-new-privileges".to_owned()]),
                readonly_rootfs: Some(true),
                extra_hosts: Some(vec![format!("{HOST_ALIAS}:host-gateway")]),
                tmpfs: Some(HashMap::from([(
                    "/tmp".to_owned(),
                    "rw,nosuid,nodev,mode=1777".to_owned(),
                )])),
                pids_limit: Some(SIDECAR_PIDS_LIMIT),
                network_mode: Some(egress.to_owned()),
                log_config: Some(log_config()),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    egress.to_owned(),
                    EndpointSettings::default(),
                )])),
            }),
            ..Default::default()
        }
    }

    fn agent_body(
        &self,
        id: &str,
        run_id: Option<&str>,
        run_network: &str,
        subnet: RunSubnet,
        resources: Resources,
    ) -> ContainerCreateBody {
        let proxy = format!("http://sidecar:{}", sidecar_api::PROXY_PORT);
        let no_proxy = "sidecar,localhost,127.0.0.1";
        let mut env = vec![
            format!("HTTP_PROXY={proxy}"),
            format!("HTTPS_PROXY={proxy}"),
            format!("http_proxy={proxy}"),
            format!("https_proxy={proxy}"),
            format!("NO_PROXY={no_proxy}"),
            format!("no_proxy={no_proxy}"),
        ];
        env.extend(self.opts.agent_env.iter().map(|(k, v)| format!("{k}={v}")));
        ContainerCreateBody {
            image: Some(self.opts.agent_image.clone()),
            user: Some(AGENT_USER.to_owned()),
            env: Some(env),
            labels: Some(to_map(object_labels(
                id,
                &self.opts.owner,
                &self.opts.deployment,
                Some("agent"),
                run_id,
            ))),
            host_config: Some(HostConfig {
                cap_drop: Some(vec!["ALL".to_owned()]),
                security_opt: Some(vec!["no-new-privileges".to_owned()]),
                readonly_rootfs: Some(true),
                tmpfs: Some(HashMap::from([
                    (
                        "/workspace".to_owned(),
                        "rw,exec,nosuid,nodev,uid=10001,gid=10001,mode=0755".to_owned(),
                    ),
                    (
                        "/tmp".to_owned(),
                        "rw,exec,nosuid,nodev,mode=1777".to_owned(),
                    ),
                ])),
                pids_limit: Some(resources.pids_limit),
                memory: Some(resources.memory_bytes),
                memory_swap: Some(resources.memory_bytes),
                nano_cpus: Some(resources.nano_cpus),
                network_mode: Some(run_network.to_owned()),
                log_config: Some(log_config()),
                extra_hosts: Some(vec![format!("sidecar:{}", subnet.sidecar)]),
                // The agent starts together with its sidecar, so its first packets
                // may find no neighbour yet; the kernel would only ask again after a
                // second (the default ARP retransmit time). Namespaced, harmless.
                sysctls: Some(HashMap::from([(
                    "net.ipv4.neigh.eth0.retrans_time_ms".to_owned(),
                    "50".to_owned(),
                )])),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    run_network.to_owned(),
                    EndpointSettings {
                        ipam_config: Some(EndpointIpamConfig {
                            ipv4_address: Some(subnet.agent.to_string()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        }
    }

    async fn create_container(
        &self,
        name: &str,
        image: &str,
        body: ContainerCreateBody,
    ) -> Result<(), SandboxError> {
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.to_owned()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map(drop)
            .map_err(|e| create_error(&format!("creating container {name}"), image, e))
    }

    async fn start_container(&self, name: &str) -> Result<(), SandboxError> {
        self.docker
            .start_container(name, None)
            .await
            .map_err(|e| create_error(&format!("starting container {name}"), name, e))
    }

    /// Creates and starts the whole sandbox; the caller destroys it on error.
    async fn build(
        &self,
        id: &str,
        names: &SandboxNames,
        token: &str,
        run_id: Option<&str>,
        resources: Resources,
    ) -> Result<String, SandboxError> {
        let t0 = Instant::now();
        let (t1, t2) = self.make(id, names, token, run_id, resources).await?;
        let url = self.start(names).await?;
        tracing::debug!(sandbox = id, create = ?t1, connect_start = ?t2, ready = ?t0.elapsed(),
            "docker sandbox ready");
        Ok(url)
    }

    /// Makes the sandbox's objects (run network, both containers, the sidecar on
    /// both networks) without starting anything; the caller destroys it on error.
    /// Returns when the first objects and the rest were made (since the call).
    async fn make(
        &self,
        id: &str,
        names: &SandboxNames,
        token: &str,
        run_id: Option<&str>,
        resources: Resources,
    ) -> Result<(Duration, Duration), SandboxError> {
        let t0 = Instant::now();
        // 1. The run network (a fresh small subnet; another sandbox may hold the one
        //    picked, then pick again) and, on the egress network, the sidecar.
        let run_network = async {
            let mut last = None;
            for _ in 0..16 {
                let subnet = RunSubnet::pick(self.opts.subnet_pool).ok_or_else(|| {
                    SandboxError::Start(format!(
                        "the subnet pool {} has no /29",
                        self.opts.subnet_pool
                    ))
                })?;
                let created = self
                    .docker
                    .create_network(NetworkCreateRequest {
                        name: names.run_network.clone(),
                        driver: Some("bridge".to_owned()),
                        internal: Some(true),
                        options: Some(HashMap::from([(
                            INHIBIT_IPV4.to_owned(),
                            "true".to_owned(),
                        )])),
                        ipam: Some(Ipam {
                            config: Some(vec![IpamConfig {
                                subnet: Some(subnet.net.to_string()),
                                gateway: Some(subnet.gateway.to_string()),
                                ..Default::default()
                            }]),
                            ..Default::default()
                        }),
                        labels: Some(to_map(object_labels(
                            id,
                            &self.opts.owner,
                            &self.opts.deployment,
                            None,
                            run_id,
                        ))),
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(_) => return Ok(subnet),
                    Err(e) if e.to_string().contains("overlap") => last = Some(e),
                    Err(e) => {
                        return Err(engine_error(
                            &format!("creating network {}", names.run_network),
                            e,
                        ))
                    }
                }
            }
            Err(SandboxError::Start(format!(
                "no free subnet in {} for {}: {last:?}",
                self.opts.subnet_pool, names.run_network
            )))
        };
        let sidecar = async {
            let egress = self.egress_network().await?;
            let body = self.sidecar_body(id, token, run_id, &egress);
            match self
                .create_container(&names.sidecar, &self.opts.sidecar_image, body)
                .await
            {
                // The egress network was removed behind our back: make it again.
                Err(SandboxError::Start(msg))
                    if msg.contains("network") && msg.contains("not found") =>
                {
                    *self.egress.lock().await = None;
                    let egress = self.egress_network().await?;
                    let body = self.sidecar_body(id, token, run_id, &egress);
                    self.create_container(&names.sidecar, &self.opts.sidecar_image, body)
                        .await
                }
                other => other,
            }
        };
        // `join!`, not `try_join!`: a request dropped mid-flight could still create
        // its object after the cleanup looked for it.
        let (a, b) = futures::join!(run_network, sidecar);
        let subnet = a?;
        b?;
        let t1 = t0.elapsed();
        // 2. The sidecar joins the run network at its fixed address (alias
        //    `sidecar`) while the agent container is created.
        let sidecar = async {
            self.docker
                .connect_network(
                    &names.run_network,
                    NetworkConnectRequest {
                        container: names.sidecar.clone(),
                        endpoint_config: Some(EndpointSettings {
                            aliases: Some(vec!["sidecar".to_owned()]),
                            ipam_config: Some(EndpointIpamConfig {
                                ipv4_address: Some(subnet.sidecar.to_string()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                    },
                )
                .await
                .map_err(|e| engine_error("connecting the sidecar to the run network", e))
        };
        let agent_body = self.agent_body(id, run_id, &names.run_network, subnet, resources);
        let agent = self.create_container(&names.agent, &self.opts.agent_image, agent_body);
        let (a, b) = futures::join!(sidecar, agent);
        a.and(b)?;
        Ok((t1, t0.elapsed()))
    }

    /// Starts a made sandbox and returns its sidecar's URL once it is healthy.
    async fn start(&self, names: &SandboxNames) -> Result<String, SandboxError> {
        // 3. Both start together: the agent reaches the sidecar by address (from
        //    `/etc/hosts`) and retries until it listens. Meanwhile learn the
        //    sidecar's egress address and wait for its health.
        let (agent, sidecar) = futures::join!(self.start_agent(names), self.start_sidecar(names));
        agent?;
        sidecar
    }

    /// Starts the sidecar and returns its URL once it is healthy.
    async fn start_sidecar(&self, names: &SandboxNames) -> Result<String, SandboxError> {
        self.start_container(&names.sidecar).await?;
        let url = self.sidecar_url(&names.sidecar).await?;
        self.wait_healthy(&url).await?;
        Ok(url)
    }

    /// Starts the agent container and checks that it runs.
    async fn start_agent(&self, names: &SandboxNames) -> Result<(), SandboxError> {
        self.start_container(&names.agent).await?;
        self.agent_running(&names.agent).await
    }

    /// `http://<sidecar address on the egress network>:8080`.
    async fn sidecar_url(&self, sidecar: &str) -> Result<String, SandboxError> {
        let info = self
            .docker
            .inspect_container(sidecar, None::<InspectContainerOptions>)
            .await
            .map_err(|e| engine_error(&format!("inspecting {sidecar}"), e))?;
        let egress = self.egress.lock().await.clone().unwrap_or_default();
        let networks = info
            .network_settings
            .and_then(|s| s.networks)
            .unwrap_or_default();
        let ip = networks
            .iter()
            .find(|(name, ep)| {
                **name == self.opts.egress_network || ep.network_id.as_deref() == Some(&*egress)
            })
            .and_then(|(_, ep)| ep.ip_address.clone())
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| {
                SandboxError::Start(format!("{sidecar} has no address on the egress network"))
            })?;
        Ok(format!("http://{ip}:{SIDECAR_PORT}"))
    }

    async fn agent_running(&self, agent: &str) -> Result<(), SandboxError> {
        let info = self
            .docker
            .inspect_container(agent, None::<InspectContainerOptions>)
            .await
            .map_err(|e| engine_error(&format!("inspecting {agent}"), e))?;
        let state = info.state.unwrap_or_default();
        if state.running == Some(true) {
            Ok(())
        } else {
            Err(SandboxError::Start(format!(
                "the agent container is not running (status {:?}, exit code {:?}, {})",
                state.status,
                state.exit_code,
                state.error.unwrap_or_default()
            )))
        }
    }

    async fn health(&self, url: &str) -> bool {
        self.http
            .get(format!("{url}{}", sidecar_api::HEALTH_PATH))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    async fn wait_healthy(&self, url: &str) -> Result<(), SandboxError> {
        let deadline = Instant::now() + self.opts.start_timeout;
        let mut delay = Duration::from_millis(5);
        loop {
            if self.health(url).await {
                return Ok(());
            }
            if Instant::now() + delay > deadline {
                return Err(SandboxError::Start(format!(
                    "the sidecar did not answer {url}{} within {:?}",
                    sidecar_api::HEALTH_PATH,
                    self.opts.start_timeout
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }

    async fn remove_sandbox(&self, id: &str) -> Result<(), SandboxError> {
        let filter = label_filter(format!("{}={id}", labels::SANDBOX));
        let containers = self.docker.list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filter.clone()),
            ..Default::default()
        }));
        let networks = self.docker.list_networks(Some(ListNetworksOptions {
            filters: Some(filter),
        }));
        let (containers, networks) = futures::try_join!(
            containers.map_err(|e| engine_error("listing containers", e)),
            networks.map_err(|e| engine_error("listing networks", e)),
        )?;
        let removals = containers
            .into_iter()
            .filter_map(|c| c.id)
            .map(|cid| async move {
                match self
                    .docker
                    .remove_container(
                        &cid,
                        Some(RemoveContainerOptions {
                            force: true,
                            v: true,
                            ..Default::default()
                        }),
                    )
                    .await
                {
                    Ok(()) => Ok(()),
                    // Gone already, or being removed by a concurrent destroy.
                    Err(e) if is_not_found(&e) || is_status(&e, 409) => Ok(()),
                    Err(e) => Err(engine_error(&format!("removing container {cid}"), e)),
                }
            });
        futures::future::try_join_all(removals).await?;
        for net in networks.into_iter().filter_map(|n| n.id) {
            self.remove_network(&net).await?;
        }
        Ok(())
    }

    /// Removes a network, waiting out endpoints the engine is still releasing.
    async fn remove_network(&self, net: &str) -> Result<(), SandboxError> {
        let mut attempt = 0;
        loop {
            match self.docker.remove_network(net).await {
                Ok(()) => return Ok(()),
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) if attempt < 20 && !is_unavailable(&e) => {
                    attempt += 1;
                    tracing::debug!(network = net, error = %e, "network busy; retrying");
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => return Err(engine_error(&format!("removing network {net}"), e)),
            }
        }
    }
}

#[async_trait]
impl Factory for Engine {
    async fn create(
        &self,
        run_id: Option<&str>,
        resources: Resources,
    ) -> Result<Lease, SandboxError> {
        let id = new_sandbox_id();
        let names = SandboxNames::of(&id).expect("a generated id is valid");
        let token = new_configure_token();
        match self.build(&id, &names, &token, run_id, resources).await {
            Ok(sidecar_url) => Ok(Lease {
                id,
                sidecar_url,
                configure_token: Secret::new(token),
                warm: false,
                kind: RunnerKind::Docker,
            }),
            Err(e) => {
                if let Err(cleanup) = self.remove_sandbox(&id).await {
                    tracing::warn!(sandbox = id, error = %cleanup, "cleanup after a failed start");
                }
                Err(e)
            }
        }
    }

    async fn adapt(&self, lease: &Lease, resources: Resources) -> Result<(), SandboxError> {
        let names = SandboxNames::of(&lease.id)
            .ok_or_else(|| SandboxError::Start(format!("bad sandbox id {}", lease.id)))?;
        self.docker
            .update_container(
                &names.agent,
                ContainerUpdateBody {
                    memory: Some(resources.memory_bytes),
                    memory_swap: Some(resources.memory_bytes),
                    nano_cpus: Some(resources.nano_cpus),
                    pids_limit: Some(resources.pids_limit),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| engine_error(&format!("updating {}", names.agent), e))
    }

    async fn alive(&self, lease: &Lease) -> bool {
        let Some(names) = SandboxNames::of(&lease.id) else {
            return false;
        };
        let (agent, healthy) = futures::join!(
            self.agent_running(&names.agent),
            self.health(&lease.sidecar_url)
        );
        agent.is_ok() && healthy
    }

    async fn destroy(&self, id: &str) -> Result<(), SandboxError> {
        self.remove_sandbox(id).await
    }

    fn prepares(&self) -> bool {
        true
    }

    async fn prepare(&self) -> Result<Prepared, SandboxError> {
        // Made, and the sidecar started: a lease then starts one container, the
        // agent's. One container start is what a bare `docker run` costs; two at once
        // cost half as much again on a small engine, and the objects' creation a
        // sixth, so only this leaves a miss near that floor. An idle sidecar holds
        // nothing (it is configured at lease) and uses a few MiB.
        let id = new_sandbox_id();
        let names = SandboxNames::of(&id).expect("a generated id is valid");
        let token = new_configure_token();
        let made = async {
            self.make(&id, &names, &token, None, Resources::default())
                .await?;
            self.start_sidecar(&names).await
        };
        match made.await {
            Ok(sidecar_url) => Ok(Prepared {
                id,
                sidecar_url,
                configure_token: Secret::new(token),
            }),
            Err(e) => {
                if let Err(cleanup) = self.remove_sandbox(&id).await {
                    tracing::warn!(sandbox = id, error = %cleanup, "cleanup after a failed prepare");
                }
                Err(e)
            }
        }
    }

    async fn start_prepared(
        &self,
        prepared: Prepared,
        _run_id: Option<&str>,
        resources: Resources,
    ) -> Result<Lease, SandboxError> {
        let t0 = Instant::now();
        let names = SandboxNames::of(&prepared.id)
            .ok_or_else(|| SandboxError::Start(format!("bad sandbox id {}", prepared.id)))?;
        let lease = Lease {
            id: prepared.id,
            sidecar_url: prepared.sidecar_url,
            configure_token: prepared.configure_token,
            warm: false,
            kind: RunnerKind::Docker,
        };
        if !self.health(&lease.sidecar_url).await {
            return Err(SandboxError::Start(format!(
                "the sidecar of prepared sandbox {} does not answer",
                lease.id
            )));
        }
        if resources != Resources::default() {
            self.adapt(&lease, resources).await?;
        }
        self.start_agent(&names).await?;
        tracing::debug!(sandbox = lease.id, ready = ?t0.elapsed(), "prepared docker sandbox started");
        Ok(lease)
    }
}

#[async_trait]
impl SandboxBackend for DockerBackend {
    fn kind(&self) -> RunnerKind {
        RunnerKind::Docker
    }

    fn sidecar_view(&self, url: &str) -> String {
        rewrite_loopback(url, HOST_ALIAS)
    }

    async fn platform_bind_ip(&self) -> Result<Option<IpAddr>, SandboxError> {
        let engine = &self.engine;
        let ip = engine
            .gateway
            .get_or_try_init(|| async {
                let (ip, source) = crate::bridge::default_bridge_address(&engine.docker).await?;
                tracing::info!(%ip, ?source, "sandbox-facing address on the default bridge");
                Ok::<_, SandboxError>(IpAddr::V4(ip))
            })
            .await?;
        Ok(Some(*ip))
    }

    async fn lease(&self, run_id: &str, resources: Resources) -> Result<Lease, SandboxError> {
        self.pool.lease(run_id, resources).await
    }

    async fn state(&self, id: &str) -> Result<SandboxState, SandboxError> {
        let Some(names) = SandboxNames::of(id) else {
            return Ok(SandboxState::Gone);
        };
        let info = match self
            .engine
            .docker
            .inspect_container(&names.agent, None::<InspectContainerOptions>)
            .await
        {
            Ok(info) => info,
            Err(e) if is_not_found(&e) => return Ok(SandboxState::Gone),
            Err(e) => return Err(engine_error(&format!("inspecting {}", names.agent), e)),
        };
        let state = info.state.unwrap_or_default();
        Ok(match state.status {
            Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD) => {
                SandboxState::AgentExited {
                    code: state.exit_code,
                }
            }
            Some(ContainerStateStatusEnum::REMOVING) => SandboxState::Gone,
            _ => SandboxState::Running,
        })
    }

    async fn agent_logs(&self, id: &str, max_bytes: usize) -> String {
        let Some(names) = SandboxNames::of(id) else {
            return String::new();
        };
        let mut stream = self.engine.docker.logs(
            &names.agent,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                tail: "2000".to_owned(),
                ..Default::default()
            }),
        );
        let mut buf: Vec<u8> = Vec::new();
        while let Some(item) = stream.next().await {
            let Ok(chunk) = item else { break };
            buf.extend_from_slice(chunk.as_ref());
            if buf.len() > max_bytes.saturating_mul(2).max(64 * 1024) {
                buf.drain(..buf.len() - max_bytes);
            }
        }
        tail_utf8(&buf, max_bytes)
    }

    async fn signal_stop(&self, id: &str) -> Result<(), SandboxError> {
        let Some(names) = SandboxNames::of(id) else {
            return Ok(());
        };
        match self
            .engine
            .docker
            .kill_container(
                &names.agent,
                Some(KillContainerOptions {
                    signal: "SIGTERM".to_owned(),
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            // Not there or not running: nothing to stop.
            Err(e) if is_not_found(&e) || is_status(&e, 409) => Ok(()),
            Err(e) => Err(engine_error(&format!("signalling {}", names.agent), e)),
        }
    }

    async fn destroy(&self, id: &str) -> Result<(), SandboxError> {
        if SandboxNames::of(id).is_none() {
            return Ok(());
        }
        self.engine.remove_sandbox(id).await
    }

    async fn list(&self) -> Result<Vec<SandboxInfo>, SandboxError> {
        let engine = &self.engine;
        // Only this deployment's: another deployment's sandboxes on the same engine
        // belong to servers this one cannot see, whose runs it knows nothing of.
        let filter = HashMap::from([(
            "label".to_owned(),
            vec![
                format!("{}=true", labels::MANAGED),
                format!("{}={}", labels::DEPLOYMENT, engine.opts.deployment),
            ],
        )]);
        let (containers, networks) = futures::try_join!(
            engine
                .docker
                .list_containers(Some(ListContainersOptions {
                    all: true,
                    filters: Some(filter.clone()),
                    ..Default::default()
                }))
                .map_err(|e| engine_error("listing containers", e)),
            engine
                .docker
                .list_networks(Some(ListNetworksOptions {
                    filters: Some(filter)
                }))
                .map_err(|e| engine_error("listing networks", e)),
        )?;
        let mut found: BTreeMap<String, SandboxInfo> = BTreeMap::new();
        let mut add = |labels: Option<HashMap<String, String>>, created: Option<i64>| {
            let labels = labels.unwrap_or_default();
            let Some(id) = labels.get(labels::SANDBOX) else {
                return;
            };
            let info = found.entry(id.clone()).or_insert_with(|| SandboxInfo {
                id: id.clone(),
                owner: None,
                run_id: None,
                created_at: None,
            });
            info.owner = info
                .owner
                .take()
                .or_else(|| labels.get(labels::OWNER).cloned());
            info.run_id = info
                .run_id
                .take()
                .or_else(|| labels.get(labels::RUN).cloned());
            info.created_at = match (info.created_at, created) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        };
        for c in containers {
            add(c.labels, c.created);
        }
        // A sandbox is a network alone for a moment while it is created: its age
        // must be known then too, or the reaper would take it for an old leak.
        for n in networks {
            let created = n
                .created
                .as_deref()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .map(|c| c.timestamp());
            add(n.labels, created);
        }
        Ok(found.into_values().collect())
    }

    fn pool_members(&self) -> Vec<String> {
        self.pool.members()
    }

    fn stats(&self) -> PoolStats {
        self.pool.stats()
    }

    async fn shutdown(&self) {
        self.pool.shutdown().await;
    }
}

/// The last `max` bytes of `buf` as text, starting on a character boundary.
pub(crate) fn tail_utf8(buf: &[u8], max: usize) -> String {
    let mut start = buf.len().saturating_sub(max);
    // Skip UTF-8 continuation bytes so the cut does not split a character.
    while start < buf.len() && (buf[start] & 0xC0) == 0x80 {
        start += 1;
    }
    String::from_utf8_lossy(&buf[start..]).into_owned()
}

/// Replaces a loopback host (`127.0.0.1`, `localhost`, `[::1]`) of `url` with
/// `host`, keeping scheme, user info, port, path, query and fragment. Anything else
/// is returned unchanged.
pub fn rewrite_loopback(url: &str, host: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let auth_start = scheme_end + 3;
    let auth_end = url[auth_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| auth_start + i);
    let authority = &url[auth_start..auth_end];
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    let host_len = if host_port.starts_with('[') {
        match host_port.find(']') {
            Some(i) => i + 1,
            None => return url.to_owned(),
        }
    } else {
        host_port.find(':').unwrap_or(host_port.len())
    };
    let current = &host_port[..host_len];
    if !(current == "127.0.0.1" || current.eq_ignore_ascii_case("localhost") || current == "[::1]")
    {
        return url.to_owned();
    }
    let at = auth_start + host_start;
    format!("{}{host}{}", &url[..at], &url[at + host_len..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_subnets_are_small_slices_of_the_pool() {
        let pool: ipnet::Ipv4Net = "10.213.0.0/16".parse().unwrap();
        for _ in 0..100 {
            let s = RunSubnet::pick(pool).unwrap();
            assert_eq!(s.net.prefix_len(), 29);
            assert!(pool.contains(&s.net));
            assert!(s.net.contains(&s.sidecar) && s.net.contains(&s.agent));
            assert_eq!(u32::from(s.sidecar), u32::from(s.net.network()) + 2);
            assert_ne!(s.sidecar, s.agent);
        }
        assert!(RunSubnet::pick("10.0.0.0/30".parse().unwrap()).is_none());
    }

    #[test]
    fn loopback_urls_are_rewritten_to_the_host_gateway() {
        let r = |u: &str| rewrite_loopback(u, HOST_ALIAS);
        assert_eq!(
            r("http://127.0.0.1:3000/api/runs/x/events?a=1"),
            "http://host.docker.internal:3000/api/runs/x/events?a=1"
        );
        assert_eq!(
            r("http://localhost:11434/v1"),
            "http://host.docker.internal:11434/v1"
        );
        assert_eq!(r("https://[::1]:8443"), "https://host.docker.internal:8443");
        assert_eq!(r("http://LOCALHOST"), "http://host.docker.internal");
        assert_eq!(
            r("http://u:p@127.0.0.1:1/x"),
            "http://u:p@host.docker.internal:1/x"
        );
        for same in [
            "https://api.openai.com/v1",
            "http://127.0.0.10:80/",
            "http://localhost.example.com/",
            "http://10.0.0.1:3000",
            "not a url",
        ] {
            assert_eq!(r(same), same);
        }
    }

    #[test]
    fn names_come_from_the_id_only() {
        let n = SandboxNames::of("sbx_00ff").unwrap();
        assert_eq!(n.run_network, "corral-run-00ff");
        assert_eq!(n.sidecar, "corral-sidecar-00ff");
        assert_eq!(n.agent, "corral-agent-00ff");
        for bad in ["", "sbx_", "00ff", "sbx_zz", "sbx_1,label=x"] {
            assert!(SandboxNames::of(bad).is_none(), "{bad}");
        }
        assert!(SandboxNames::of(&new_sandbox_id()).is_some());
    }

    #[test]
    fn log_tails_cut_on_character_boundaries() {
        assert_eq!(tail_utf8("héllo".as_bytes(), 4), "llo");
        assert_eq!(tail_utf8(b"abc", 10), "abc");
    }
}
