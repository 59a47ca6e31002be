//! Runs through the API in real Docker sandboxes (images built offline from this
//! workspace), and a cancel received by one replica stopping a sandbox another
//! replica runs (two servers on one PostgreSQL).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use corral_mockllm::{MockLlm, Turn};
use corral_testkit::{Backend, TestApp};
use serde_json::json;

use crate::runs::{app_with_model, sandbox_of, wait_terminal};

const HELLO: &str = "/api/agents/@corral/hello-world/run";

pub fn images() -> &'static (String, String) {
    static IMAGES: OnceLock<(String, String)> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target: PathBuf = std::env::current_exe()
            .unwrap()
            .ancestors()
            .nth(3)
            .unwrap()
            .to_owned();
        corral_sandbox::build_images(&root, "debug", "api-it", Some(&target))
            .expect("scripts/build-images.sh")
    })
}

/// The address `host.docker.internal` resolves to inside containers, derived as the
/// server derives it (an engine on its first start reports no IPAM gateway).
pub async fn gateway() -> IpAddr {
    corral_sandbox::bridge::local_engine_bridge_address()
        .await
        .expect("the default bridge's host address")
        .into()
}

/// Ids of the containers (`all`: stopped ones too) carrying `label`.
fn containers_labelled(label: &str, all: bool) -> Vec<String> {
    let filter = format!("label={label}");
    let mut args = vec!["ps", "-q", "--filter", &filter];
    if all {
        args.push("-a");
    }
    let out = Command::new("docker").args(&args).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn containers_of(sandbox: &str) -> Vec<String> {
    containers_labelled(&format!("corral.sandbox={sandbox}"), true)
}

fn networks_of(sandbox: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=corral.sandbox={sandbox}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn assert_docker_gone(sandbox: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (c, n) = (containers_of(sandbox), networks_of(sandbox));
        if c.is_empty() && n.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sandbox {sandbox} left containers {c:?} networks {n:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn docker_app(b: Backend, mock: &MockLlm, pool: usize) -> TestApp {
    let (agent, sidecar) = tokio::task::spawn_blocking(images).await.unwrap().clone();
    app_with_model(b, mock, move |c| {
        c.sandbox = Some("docker".into());
        c.agent_image = agent;
        c.sidecar_image = sidecar;
        c.warm_pool_size = pool;
    })
    .await
}

async fn docker_run_succeeds_and_tears_down(b: Backend) {
    let mock = MockLlm::start_per_conversation(
        (gateway().await, 0).into(),
        vec![
            Turn::tool_call(
                "bash",
                json!({"command": "id -u && touch /workspace/ok && echo wrote"}),
            ),
            Turn::tool_call("output", json!({"greeting": "Hello, Ada!", "length": 11})),
            Turn::text("Done."),
        ],
    )
    .await
    .unwrap();
    let app = docker_app(b, &mock, 1).await;
    let s = app.user_with_org("Docker").await;
    // Twice: the first may be cold (pool still warming), the second should be warm.
    for _ in 0..2 {
        let run = s
            .client
            .post(HELLO, json!({"input": {"name": "Ada"}}), 201)
            .await;
        let id = run["id"].as_str().unwrap().to_owned();
        let done = wait_terminal(&s, &id, Duration::from_secs(120)).await;
        assert_eq!(done["status"], "success", "{done}");
        assert_eq!(done["runner_kind"], "docker");
        assert_eq!(done["result"]["output"]["greeting"], "Hello, Ada!");
        assert_docker_gone(&sandbox_of(&app, &id).await, Duration::from_secs(20)).await;
    }
    // The agent ran as its unprivileged user and could write its workspace.
    let tool_results: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| r.body_text())
        .filter(|t| t.contains("wrote"))
        .collect();
    assert!(!tool_results.is_empty());
    assert!(tool_results[0].contains("10001"), "{}", tool_results[0]);
    app.stop().await.unwrap();
}

async fn docker_cancel_removes_the_sandbox(b: Backend) {
    let mock = MockLlm::start_per_conversation(
        (gateway().await, 0).into(),
        vec![Turn::tool_call("bash", json!({"command": "sleep 120"}))],
    )
    .await
    .unwrap();
    let app = docker_app(b, &mock, 0).await;
    let s = app.user_with_org("DockerCancel").await;
    let run = s
        .client
        .post(HELLO, json!({"input": {"name": "Ada"}}), 201)
        .await;
    let id = run["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    while mock.requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the agent never called the model"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sandbox = sandbox_of(&app, &id).await;
    assert_eq!(containers_of(&sandbox).len(), 2, "agent and sidecar run");
    let t0 = Instant::now();
    let r = s
        .client
        .post(&format!("/api/runs/{id}/cancel"), json!({}), 200)
        .await;
    assert_eq!(r["status"], "cancelled");
    assert_docker_gone(&sandbox, Duration::from_secs(10)).await;
    eprintln!("docker teardown after cancel: {:?}", t0.elapsed());
    app.stop().await.unwrap();
}

fn containers_owned_by(instance: &str) -> Vec<String> {
    containers_labelled(&format!("corral.owner={instance}"), false)
}

/// Two deployments (two databases) on one engine, as staging beside production or
/// parallel CI jobs: B's reaper knows nothing of A's runs and instances, so it must
/// not even see A's sandboxes. (It used to take A's warm sandbox, owned by an
/// instance B's database has never heard of, for a leak and remove it, failing A's
/// run starting in it.)
async fn another_deployment_leaves_our_sandboxes_alone(b: Backend) {
    let mock = MockLlm::start_per_conversation((gateway().await, 0).into(), vec![Turn::text("Hi")])
        .await
        .unwrap();
    let a = docker_app(b, &mock, 1).await;
    let other = docker_app(Backend::Sqlite, &mock, 0).await;
    let instance = a.state.runs.instance_id.clone();
    // A's warm member: its containers run a moment before the pool lists it (the
    // sidecar's health is checked in between), so wait for the listing itself.
    let a_sandboxes = a.state.runs.sandboxes().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while a_sandboxes.backend.pool_members().is_empty() {
        assert!(Instant::now() < deadline, "A's warm sandbox never started");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let warm = a_sandboxes.backend.pool_members();
    assert_eq!(warm.len(), 1, "{warm:?}");
    assert_eq!(
        containers_owned_by(&instance).len(),
        2,
        "A's warm sandbox runs"
    );
    let listed = other
        .state
        .runs
        .sandboxes()
        .await
        .unwrap()
        .backend
        .list()
        .await
        .unwrap();
    assert!(
        !listed.iter().any(|s| s.id == warm[0]),
        "another deployment lists A's sandbox"
    );
    let stop = tokio_util::sync::CancellationToken::new();
    corral_engine::runs::reconcile::pass(&other.state, &stop)
        .await
        .unwrap();
    assert_eq!(
        containers_owned_by(&instance).len(),
        2,
        "B's reaper removed A's warm sandbox"
    );
    // And A's own pass keeps it too (it is A's idle pool member).
    corral_engine::runs::reconcile::pass(&a.state, &stop)
        .await
        .unwrap();
    assert_eq!(containers_owned_by(&instance).len(), 2);
    other.stop().await.unwrap();
    a.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_deployment_leaves_our_sandboxes_alone_postgres() {
    another_deployment_leaves_our_sandboxes_alone(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_run_succeeds_and_tears_down_sqlite() {
    docker_run_succeeds_and_tears_down(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_run_succeeds_and_tears_down_postgres() {
    docker_run_succeeds_and_tears_down(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_cancel_removes_the_sandbox_sqlite() {
    docker_cancel_removes_the_sandbox(Backend::Sqlite).await;
}

/// Two replicas on one PostgreSQL: the run executes on A, the cancel arrives at B,
/// and A's sandbox is gone within 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_another_replica_stops_the_sandbox() {
    let mock = MockLlm::start_per_conversation(
        "127.0.0.1:0".parse().unwrap(),
        vec![Turn::tool_call("bash", json!({"command": "sleep 120"}))],
    )
    .await
    .unwrap();
    let a = app_with_model(Backend::Postgres, &mock, |_| {}).await;
    let url = a.state.config.database_url.clone().unwrap();
    // B serves the API only (an api replica of the cluster): the run executes on A,
    // which holds the keys it was sealed with (replicas of one cluster share their
    // secrets; these test servers each generated their own).
    let b = app_with_model(Backend::Postgres, &mock, move |c| {
        c.database_url = Some(url);
        c.role = corral_api::config::Role::Api;
    })
    .await;
    let s = a.user_with_org("Replicas").await;
    let (_, key) = s.api_key(None).await;
    let on_a = a.client().bearer(&key);
    let on_b = b.client().bearer(&key);
    let run = on_a
        .post(HELLO, json!({"input": {"name": "Ada"}}), 201)
        .await;
    let id = run["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while mock.requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the agent never called the model"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sandbox = sandbox_of(&a, &id).await;
    let dir = a.dir.path().join("sandboxes").join(&sandbox);
    assert!(dir.exists(), "the run executes on replica A");
    let t0 = Instant::now();
    let r = on_b
        .post(&format!("/api/runs/{id}/cancel"), json!({}), 200)
        .await;
    assert_eq!(r["status"], "cancelled");
    while dir.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "replica A did not stop its sandbox within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Both replicas see the same terminal state.
    assert_eq!(
        on_a.get(&format!("/api/runs/{id}"), 200).await["status"],
        "cancelled"
    );
}
