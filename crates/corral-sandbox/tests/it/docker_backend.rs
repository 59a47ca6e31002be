//! The Docker backend on the real engine: what a lease is made of (checked on the
//! engine, not on what we asked for), teardown, the warm pool, and sandboxes of
//! another server instance (seen) and of another deployment (not seen).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bollard::query_parameters::{InspectContainerOptions, InspectNetworkOptions};
use corral_sandbox::docker::{SandboxNames, ENABLE_ICC, INHIBIT_IPV4};
use corral_sandbox::{
    DockerBackend, DockerOptions, Resources, RunnerKind, SandboxBackend, SandboxState,
};

use crate::common::{docker_objects, images, owner, until, DockerCleanup};

pub fn options(owner: &str, pool_size: usize) -> DockerOptions {
    let (agent, sidecar) = images().clone();
    DockerOptions {
        agent_image: agent,
        sidecar_image: sidecar,
        owner: owner.to_owned(),
        pool_size,
        agent_env: vec![("CORRAL_HEARTBEAT_SECS".to_owned(), "1".to_owned())],
        ..DockerOptions::default()
    }
}

pub async fn backend(test: &str, pool_size: usize) -> (DockerBackend, DockerCleanup) {
    let owner = owner(test);
    let opts = tokio::task::spawn_blocking({
        let owner = owner.clone();
        move || options(&owner, pool_size)
    })
    .await
    .unwrap();
    let cleanup = DockerCleanup {
        owner: owner.clone(),
    };
    let backend = DockerBackend::connect(opts).await.expect("docker engine");
    (backend, cleanup)
}

fn assert_nothing_left(label: &str) {
    let (containers, networks) = docker_objects(label);
    assert!(
        containers.is_empty(),
        "containers left with {label}: {containers:?}"
    );
    assert!(
        networks.is_empty(),
        "networks left with {label}: {networks:?}"
    );
}

async fn wait_nothing_left(label: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (c, n) = docker_objects(label);
        if c.is_empty() && n.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "left with {label}: {c:?} {n:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_is_hardened_and_destroy_removes_everything() {
    let (backend, _cleanup) = backend("hardened", 0).await;
    let owner = backend.options().owner.clone();
    let docker = backend.docker().clone();
    let run_id = "run_hardened_1";
    let resources = Resources {
        memory_bytes: 512 << 20,
        nano_cpus: 500_000_000,
        pids_limit: 128,
    };
    let t = Instant::now();
    let (lease, default_lease) = tokio::join!(
        backend.lease(run_id, resources),
        backend.lease("run_hardened_2", Resources::default())
    );
    let (lease, default_lease) = (lease.unwrap(), default_lease.unwrap());
    eprintln!("two cold leases in {:?}", t.elapsed());
    assert_eq!(lease.kind, RunnerKind::Docker);
    assert!(!lease.warm);
    assert!(lease.id.starts_with("sbx_"));
    assert_eq!(lease.configure_token.expose().len(), 64, "32 bytes hex");
    assert_ne!(
        lease.configure_token.expose(),
        default_lease.configure_token.expose()
    );
    let names = SandboxNames::of(&lease.id).unwrap();

    // The agent container as the engine runs it.
    let agent = docker
        .inspect_container(&names.agent, None::<InspectContainerOptions>)
        .await
        .unwrap();
    let config = agent.config.clone().unwrap();
    let host = agent.host_config.clone().unwrap();
    assert_eq!(config.user.as_deref(), Some("10001:10001"));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
    assert!(host.cap_add.unwrap_or_default().is_empty());
    assert_ne!(host.privileged, Some(true));
    assert!(host
        .security_opt
        .unwrap_or_default()
        .iter()
        .any(|o| o == "no-new-privileges"));
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.pids_limit, Some(128));
    assert_eq!(host.memory, Some(512 << 20));
    assert_eq!(host.memory_swap, Some(512 << 20), "swap = memory");
    assert_eq!(host.nano_cpus, Some(500_000_000));
    let tmpfs = host.tmpfs.unwrap_or_default();
    let workspace = tmpfs.get("/workspace").expect("tmpfs /workspace");
    assert!(workspace.contains("uid=10001") && workspace.contains("gid=10001"));
    assert!(workspace.contains("mode=0755"));
    assert!(tmpfs.contains_key("/tmp"));
    assert!(host.binds.unwrap_or_default().is_empty(), "no bind mounts");
    assert!(agent.mounts.unwrap_or_default().is_empty(), "no mounts");
    let env = config.env.clone().unwrap_or_default();
    assert!(
        !env.iter()
            .any(|e| e.contains("CORRAL_CONFIGURE_TOKEN")
                || e.contains(lease.configure_token.expose())),
        "the configure token reached the agent: {env:?}"
    );
    assert!(env.iter().any(|e| e == "HTTPS_PROXY=http://sidecar:8081"));
    let labels = config.labels.clone().unwrap_or_default();
    let expect = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    for (k, v) in [
        expect("corral.managed", "true"),
        expect("corral.sandbox", &lease.id),
        expect("corral.owner", &owner),
        expect("corral.deployment", "corral"),
        expect("corral.role", "agent"),
        expect("corral.run", run_id),
    ] {
        assert_eq!(labels.get(&k), Some(&v), "label {k}");
    }
    let agent_nets: HashSet<String> = agent
        .network_settings
        .clone()
        .and_then(|s| s.networks)
        .unwrap_or_default()
        .into_keys()
        .collect();
    assert_eq!(
        agent_nets,
        HashSet::from([names.run_network.clone()]),
        "the agent is only on the run network"
    );
    assert_eq!(
        agent.state.and_then(|s| s.running),
        Some(true),
        "the agent is running (waiting for its task)"
    );

    // The sidecar.
    let sidecar = docker
        .inspect_container(&names.sidecar, None::<InspectContainerOptions>)
        .await
        .unwrap();
    let sconfig = sidecar.config.unwrap();
    let shost = sidecar.host_config.unwrap();
    assert_eq!(sconfig.user.as_deref(), Some("10002:10002"));
    assert_eq!(shost.cap_drop, Some(vec!["ALL".to_owned()]));
    assert!(shost
        .security_opt
        .unwrap_or_default()
        .iter()
        .any(|o| o == "no-new-privileges"));
    assert_eq!(shost.readonly_rootfs, Some(true));
    assert_eq!(
        shost.extra_hosts,
        Some(vec!["host.docker.internal:host-gateway".to_owned()])
    );
    assert!(sconfig.env.unwrap_or_default().contains(&format!(
        "CORRAL_CONFIGURE_TOKEN={}",
        lease.configure_token.expose()
    )));
    assert_eq!(
        sconfig.labels.unwrap_or_default().get("corral.role"),
        Some(&"sidecar".to_owned())
    );
    let snets: HashMap<_, _> = sidecar
        .network_settings
        .and_then(|s| s.networks)
        .unwrap_or_default();
    assert_eq!(
        snets.keys().cloned().collect::<HashSet<_>>(),
        HashSet::from([names.run_network.clone(), "corral-egress".to_owned()])
    );
    assert!(snets[&names.run_network]
        .aliases
        .clone()
        .unwrap_or_default()
        .contains(&"sidecar".to_owned()));
    let egress_ip = snets["corral-egress"].ip_address.clone().unwrap();
    assert_eq!(lease.sidecar_url, format!("http://{egress_ip}:8080"));

    // The networks.
    let run_net = docker
        .inspect_network(&names.run_network, None::<InspectNetworkOptions>)
        .await
        .unwrap();
    assert_eq!(run_net.internal, Some(true));
    assert_eq!(
        run_net.options.unwrap_or_default().get(INHIBIT_IPV4),
        Some(&"true".to_owned())
    );
    let run_labels = run_net.labels.unwrap_or_default();
    assert_eq!(run_labels.get("corral.sandbox"), Some(&lease.id));
    assert_eq!(run_labels.get("corral.managed"), Some(&"true".to_owned()));
    let egress = docker
        .inspect_network("corral-egress", None::<InspectNetworkOptions>)
        .await
        .unwrap();
    assert_eq!(egress.internal, Some(false));
    assert_eq!(
        egress.options.unwrap_or_default().get(ENABLE_ICC),
        Some(&"false".to_owned())
    );

    // The default resources are the SPEC's.
    let dnames = SandboxNames::of(&default_lease.id).unwrap();
    let dhost = docker
        .inspect_container(&dnames.agent, None::<InspectContainerOptions>)
        .await
        .unwrap()
        .host_config
        .unwrap();
    assert_eq!(
        (
            dhost.memory,
            dhost.memory_swap,
            dhost.nano_cpus,
            dhost.pids_limit
        ),
        (Some(1 << 30), Some(1 << 30), Some(1_000_000_000), Some(256))
    );

    // The platform reaches the sidecar at the lease URL.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let health = http
        .get(format!("{}/health", lease.sidecar_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["configured"], false);
    assert_eq!(
        backend.state(&lease.id).await.unwrap(),
        SandboxState::Running
    );
    let found: HashSet<String> = backend
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert!(found.contains(&lease.id) && found.contains(&default_lease.id));

    // Teardown: nothing with the sandbox's label, idempotent, state Gone.
    let t = Instant::now();
    backend.destroy(&lease.id).await.unwrap();
    eprintln!("destroy in {:?}", t.elapsed());
    assert_nothing_left(&format!("corral.sandbox={}", lease.id));
    backend.destroy(&lease.id).await.unwrap();
    assert_eq!(backend.state(&lease.id).await.unwrap(), SandboxState::Gone);
    assert!(backend.agent_logs(&lease.id, 100).await.is_empty());
    backend.destroy(&default_lease.id).await.unwrap();
    assert_nothing_left(&format!("corral.owner={owner}"));
    // Ids Corral never makes are not an error, and touch nothing.
    backend
        .destroy("sbx_,label=corral.managed=true")
        .await
        .unwrap();
    assert_eq!(
        backend.state("not-a-sandbox").await.unwrap(),
        SandboxState::Gone
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_serves_hits_refills_and_misses_when_empty() {
    let (backend, _cleanup) = backend("pool", 2).await;
    let owner = backend.options().owner.clone();
    until("two warm members", Duration::from_secs(90), || {
        backend.stats().ready == 2
    })
    .await;
    let members = backend.pool_members();
    assert_eq!(members.len(), 2);
    // A warm member is complete: the agent already waits for its task.
    for id in &members {
        assert_eq!(backend.state(id).await.unwrap(), SandboxState::Running);
    }

    let t = Instant::now();
    let first = backend
        .lease("run_pool_1", Resources::default())
        .await
        .unwrap();
    let hit_latency = t.elapsed();
    eprintln!("warm lease in {hit_latency:?}");
    assert!(first.warm);
    assert!(members.contains(&first.id));
    assert!(
        hit_latency < Duration::from_millis(500),
        "a warm lease took {hit_latency:?}"
    );
    assert!(!backend.pool_members().contains(&first.id));
    until("the pool to refill", Duration::from_secs(60), || {
        backend.stats().ready == 2
    })
    .await;
    assert!(!backend.pool_members().contains(&first.id));

    // A hit fitted to other resources (docker update), then another hit, then a
    // miss: the pool is empty and the refill cannot be done yet.
    let custom = Resources {
        memory_bytes: 768 << 20,
        nano_cpus: 500_000_000,
        pids_limit: 100,
    };
    let second = backend.lease("run_pool_2", custom).await.unwrap();
    let third = backend
        .lease("run_pool_3", Resources::default())
        .await
        .unwrap();
    let t = Instant::now();
    let fourth = backend
        .lease("run_pool_4", Resources::default())
        .await
        .unwrap();
    eprintln!("cold lease in {:?}", t.elapsed());
    assert!(second.warm && third.warm);
    assert!(!fourth.warm, "the pool was empty");
    let ids: HashSet<_> = [&first.id, &second.id, &third.id, &fourth.id]
        .into_iter()
        .collect();
    assert_eq!(ids.len(), 4, "a sandbox was leased twice");
    assert_eq!(agent_limits(&backend, &second.id).await, custom);
    let stats = backend.stats();
    assert_eq!((stats.target, stats.hits, stats.misses), (2, 3, 1));
    let labels = |id: &str| {
        let (c, _) = docker_objects(&format!("corral.sandbox={id}"));
        c.len()
    };
    assert_eq!(labels(&fourth.id), 2, "the cold sandbox exists");

    for lease in [&first, &second, &third, &fourth] {
        backend.destroy(&lease.id).await.unwrap();
    }
    backend.shutdown().await;
    assert!(backend.pool_members().is_empty());
    wait_nothing_left(&format!("corral.owner={owner}")).await;
    // Shut down means shut down: nothing comes back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_nothing_left(&format!("corral.owner={owner}"));
}

/// The limits the engine holds for a sandbox's agent container (memory and swap
/// must agree: no swap beyond the memory limit).
async fn agent_limits(backend: &DockerBackend, id: &str) -> Resources {
    let host = backend
        .docker()
        .inspect_container(
            &SandboxNames::of(id).unwrap().agent,
            None::<InspectContainerOptions>,
        )
        .await
        .unwrap()
        .host_config
        .unwrap();
    assert_eq!(
        host.memory, host.memory_swap,
        "swap beyond the memory limit"
    );
    Resources {
        memory_bytes: host.memory.unwrap(),
        nano_cpus: host.nano_cpus.unwrap(),
        pids_limit: host.pids_limit.unwrap(),
    }
}

/// The status of each of a sandbox's containers on the engine.
async fn container_statuses(backend: &DockerBackend, id: &str) -> Vec<String> {
    let names = SandboxNames::of(id).unwrap();
    let mut out = Vec::new();
    for c in [&names.sidecar, &names.agent] {
        let info = backend
            .docker()
            .inspect_container(c, None::<InspectContainerOptions>)
            .await
            .unwrap();
        out.push(format!("{:?}", info.state.unwrap().status.unwrap()).to_lowercase());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_sandboxes_wait_made_and_a_miss_only_starts_one() {
    let owner = owner("prepared");
    let opts = tokio::task::spawn_blocking({
        let owner = owner.clone();
        move || DockerOptions {
            prepared_pool_size: 2,
            ..options(&owner, 0)
        }
    })
    .await
    .unwrap();
    let _cleanup = DockerCleanup {
        owner: owner.clone(),
    };
    let backend = DockerBackend::connect(opts).await.expect("docker engine");
    until("two prepared sandboxes", Duration::from_secs(90), || {
        backend.stats().prepared == 2
    })
    .await;
    let members = backend.pool_members();
    assert_eq!(members.len(), 2);
    // Made, not started as a whole: the sidecar runs, the agent is only created.
    for id in &members {
        assert_eq!(
            container_statuses(&backend, id).await,
            ["running", "created"]
        );
        let names = SandboxNames::of(id).unwrap();
        backend
            .docker()
            .inspect_network(&names.run_network, None::<InspectNetworkOptions>)
            .await
            .expect("the run network exists");
    }

    // A miss (no warm tier) starts one's agent, fitted to the run's resources.
    let custom = Resources {
        memory_bytes: 640 << 20,
        nano_cpus: 700_000_000,
        pids_limit: 90,
    };
    let t = Instant::now();
    let lease = backend.lease("run_prepared_1", custom).await.unwrap();
    eprintln!("prepared lease in {:?}", t.elapsed());
    assert!(!lease.warm);
    assert!(members.contains(&lease.id), "not a prepared sandbox");
    assert_eq!(
        container_statuses(&backend, &lease.id).await,
        ["running", "running"]
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let health = http
        .get(format!("{}/health", lease.sidecar_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(agent_limits(&backend, &lease.id).await, custom);
    assert!(!backend.pool_members().contains(&lease.id));
    until("the second tier to refill", Duration::from_secs(60), || {
        backend.stats().prepared == 2
    })
    .await;
    let s = backend.stats();
    assert_eq!((s.misses, s.prepared_hits, s.prepared_target), (1, 1, 2));

    backend.destroy(&lease.id).await.unwrap();
    backend.shutdown().await;
    assert!(backend.pool_members().is_empty());
    wait_nothing_left(&format!("corral.owner={owner}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_recycles_members_older_than_the_ttl() {
    let owner = owner("ttl");
    let _cleanup = DockerCleanup {
        owner: owner.clone(),
    };
    let mut opts = tokio::task::spawn_blocking({
        let owner = owner.clone();
        move || options(&owner, 1)
    })
    .await
    .unwrap();
    opts.pool_ttl = Duration::from_secs(4);
    let backend = DockerBackend::connect(opts).await.unwrap();
    until("a warm member", Duration::from_secs(60), || {
        backend.stats().ready == 1
    })
    .await;
    let old = backend.pool_members()[0].clone();
    until("the member to be recycled", Duration::from_secs(60), || {
        let s = backend.stats();
        s.recycled >= 1 && s.ready == 1 && backend.pool_members()[0] != old
    })
    .await;
    wait_nothing_left(&format!("corral.sandbox={old}")).await;
    let new = backend.pool_members()[0].clone();
    assert_eq!(backend.state(&new).await.unwrap(), SandboxState::Running);
    backend.shutdown().await;
    wait_nothing_left(&format!("corral.owner={owner}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_lists_and_destroys_foreign_sandboxes() {
    let (a, _cleanup_a) = backend("instance-a", 0).await;
    let (b, _cleanup_b) = backend("instance-b", 0).await;
    let lease = a.lease("run_foreign", Resources::default()).await.unwrap();
    let seen = b.list().await.unwrap();
    let info = seen
        .iter()
        .find(|s| s.id == lease.id)
        .expect("B lists A's sandbox");
    assert_eq!(info.owner.as_deref(), Some(a.options().owner.as_str()));
    assert_eq!(info.run_id.as_deref(), Some("run_foreign"));
    assert!(info.created_at.is_some_and(|t| t > 1_600_000_000));
    assert_eq!(b.state(&lease.id).await.unwrap(), SandboxState::Running);
    // A server of another deployment (another database) on the same engine does not
    // see it, so its reaper can never take it for a leak.
    let other_owner = owner("instance-c");
    let _cleanup_c = DockerCleanup {
        owner: other_owner.clone(),
    };
    let other = DockerOptions {
        deployment: "another-deployment".to_owned(),
        ..a.options().clone()
    };
    let c = DockerBackend::connect(DockerOptions {
        owner: other_owner,
        pool_size: 0,
        ..other
    })
    .await
    .unwrap();
    assert!(
        !c.list().await.unwrap().iter().any(|s| s.id == lease.id),
        "another deployment lists our sandbox"
    );
    b.destroy(&lease.id).await.unwrap();
    assert_eq!(a.state(&lease.id).await.unwrap(), SandboxState::Gone);
    assert_nothing_left(&format!("corral.sandbox={}", lease.id));
    assert!(!b.list().await.unwrap().iter().any(|s| s.id == lease.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_is_named_with_the_build_command() {
    let owner = owner("noimage");
    let _cleanup = DockerCleanup {
        owner: owner.clone(),
    };
    let opts = DockerOptions {
        agent_image: "corral-agent:does-not-exist".to_owned(),
        owner,
        pool_size: 0,
        ..DockerOptions::default()
    };
    let backend = DockerBackend::connect(opts).await.unwrap();
    let err = backend.check_images().await.unwrap_err();
    assert!(
        matches!(&err, corral_sandbox::SandboxError::ImageMissing { image, command }
            if image == "corral-agent:does-not-exist" && command == "scripts/build-images.sh"),
        "{err}"
    );
    let err = backend
        .lease("run_x", Resources::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, corral_sandbox::SandboxError::ImageMissing { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("scripts/build-images.sh"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_prefers_docker_and_falls_back_to_processes() {
    let owner = owner("select");
    let _cleanup = DockerCleanup {
        owner: owner.clone(),
    };
    let docker = tokio::task::spawn_blocking({
        let owner = owner.clone();
        move || DockerOptions {
            pool_size: 0,
            ..options(&owner, 0)
        }
    })
    .await
    .unwrap();
    let (agent_bin, sidecar_bin) = tokio::task::spawn_blocking(crate::common::binaries)
        .await
        .unwrap()
        .clone();
    let root = tempfile::tempdir().unwrap();
    let process = corral_sandbox::ProcessOptions {
        agent_bin,
        sidecar_bin,
        root_dir: root.path().to_owned(),
        owner: owner.clone(),
        pool_size: 0,
        ..Default::default()
    };
    let chosen = corral_sandbox::select(None, docker.clone(), process.clone())
        .await
        .unwrap();
    assert_eq!(chosen.kind(), RunnerKind::Docker, "engine up, images there");
    let forced = corral_sandbox::select(Some(RunnerKind::Process), docker.clone(), process.clone())
        .await
        .unwrap();
    assert_eq!(forced.kind(), RunnerKind::Process);
    let no_image = DockerOptions {
        sidecar_image: "corral-sidecar:does-not-exist".to_owned(),
        ..docker.clone()
    };
    let fallback = corral_sandbox::select(None, no_image.clone(), process.clone())
        .await
        .unwrap();
    assert_eq!(fallback.kind(), RunnerKind::Process, "image missing");
    // An explicit choice does not fall back.
    let explicit = corral_sandbox::select(Some(RunnerKind::Docker), no_image, process)
        .await
        .unwrap();
    assert!(matches!(
        explicit.lease("run_x", Resources::default()).await,
        Err(corral_sandbox::SandboxError::ImageMissing { .. })
    ));
}
