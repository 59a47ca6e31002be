//! Runs across process faults, with the real `corral` binary: a server killed with
//! SIGKILL whose run's sandbox died with it fails the run as `server_restarted` and
//! leaves nothing behind; with the Docker engine unreachable, new runs fail fast with
//! `sandbox_unavailable` and none stays `running`. (`drills.rs`: re-attaching live
//! sandboxes after SIGKILL and SIGTERM, on both backends.)

use std::path::Path;
use std::time::{Duration, Instant};

use corral_mockllm::{MockLlm, Turn};
use corral_testkit::client::Client;
use serde_json::{json, Value};

mod common;

use common::{api_client, free_port, start, wait_healthy};

fn sandbox_dirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("data/sandboxes"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn run_status(c: &Client, id: &str) -> Value {
    c.get(&format!("/api/runs/{id}"), 200).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_a_dead_sandbox_fails_the_run_as_server_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockLlm::start_per_conversation(
        "127.0.0.1:0".parse().unwrap(),
        vec![Turn::tool_call("bash", json!({"command": "sleep 60"}))],
    )
    .await
    .unwrap();
    let base_url = mock.openai_base_url();
    let env: Vec<(&str, &str)> = vec![
        ("CORRAL_SANDBOX", "process"),
        ("CORRAL_WARM_POOL_SIZE", "0"),
        ("CORRAL_MODEL_API", "openai"),
        ("CORRAL_MODEL_ID", "mock-model"),
        ("CORRAL_MODEL_BASE_URL", &base_url),
    ];
    let port = free_port();
    let mut server = start(dir.path(), port, &env);
    let spec = wait_healthy(&server.base).await;
    let c = api_client(&server.base, spec).await;
    let run = c
        .post(
            "/api/agents/@corral/hello-world/run",
            json!({"input": {"name": "Ada"}}),
            201,
        )
        .await;
    let id = run["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while mock.requests().is_empty() {
        assert!(Instant::now() < deadline, "run never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // The machine "reboots": the sandbox's processes die with the server.
    for sbx in sandbox_dirs(dir.path()) {
        let record: Value = serde_json::from_slice(
            &std::fs::read(
                dir.path()
                    .join("data/sandboxes")
                    .join(&sbx)
                    .join("sandbox.json"),
            )
            .unwrap(),
        )
        .unwrap();
        for role in ["agent", "sidecar"] {
            if let Some(pgid) = record[role]["pgid"].as_i64() {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    let server = start(dir.path(), port, &env);
    wait_healthy(&server.base).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let r = run_status(&c, &id).await;
        if r["status"] != "running" && r["status"] != "pending" {
            break r;
        }
        assert!(Instant::now() < deadline, "run stayed {}", r["status"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["status"], "failed");
    assert_eq!(done["metadata"]["error_code"], "server_restarted", "{done}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sandbox_dirs(dir.path()).is_empty() {
        assert!(Instant::now() < deadline, "sandbox left behind");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_engine_unreachable_fails_new_runs_fast() {
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(&str, &str)> = vec![
        ("CORRAL_SANDBOX", "docker"),
        ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ("CORRAL_MODEL_API", "openai"),
        ("CORRAL_MODEL_ID", "mock-model"),
        ("CORRAL_MODEL_BASE_URL", "http://127.0.0.1:9/v1"),
    ];
    let server = start(dir.path(), free_port(), &env);
    let spec = wait_healthy(&server.base).await;
    let c = api_client(&server.base, spec).await;
    let run = c
        .post(
            "/api/agents/@corral/hello-world/run",
            json!({"input": {"name": "Ada"}}),
            201,
        )
        .await;
    let id = run["id"].as_str().unwrap();
    let health: Value = reqwest::get(format!("{}/health", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(
        health["checks"]["sandbox"]["status"], "unavailable",
        "{health}"
    );
    let done = c.get(&format!("/api/runs/{id}?wait=30"), 200).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(
        done["metadata"]["error_code"], "sandbox_unavailable",
        "{done}"
    );
    assert!(
        done["error"].as_str().unwrap().contains("unavailable")
            || done["error"].as_str().unwrap().contains("engine"),
        "{done}"
    );
}
