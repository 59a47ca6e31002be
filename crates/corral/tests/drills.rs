//! Fault drills with the real `corral` binary, on both sandbox backends: a run is
//! inside a 6 s bash call when the server dies (SIGKILL) or is stopped with a grace
//! period shorter than the run (SIGTERM). The run must survive either: the next boot
//! re-attaches to its live sandbox (which still reaches the server: the
//! sandbox-facing port is kept across boots), the run succeeds with its real output,
//! and nothing is left behind (the old idle pool member is reaped).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use corral_mockllm::{MockLlm, Turn};
use nix::sys::signal::Signal;
use serde_json::json;

mod common;

use common::{api_client, free_port, start, wait_healthy};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sandbox {
    Process,
    Docker,
}

fn images() -> (String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::current_exe()
        .unwrap()
        .ancestors()
        .nth(3)
        .unwrap()
        .to_owned();
    corral_sandbox::build_images(&root, "debug", "test", Some(&target)).expect("sandbox images")
}

async fn sqlite(dir: &Path) -> corral_store::Db {
    let url = format!("sqlite:{}", dir.join("data/corral.db").display());
    corral_store::Db::connect(&url, 1).await.unwrap()
}

/// The sandboxes this deployment has (process: directories; Docker: containers of
/// any state carrying the deployment's label).
fn sandboxes(kind: Sandbox, dir: &Path, deployment: &str) -> Vec<String> {
    match kind {
        Sandbox::Process => std::fs::read_dir(dir.join("data/sandboxes"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default(),
        Sandbox::Docker => {
            let filter = format!("label=corral.deployment={deployment}");
            let out = Command::new("docker")
                .args(["ps", "-aq", "--filter", &filter])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }
}

async fn drill(kind: Sandbox, signal: Signal) {
    let dir = tempfile::tempdir().unwrap();
    let bind: std::net::IpAddr = match kind {
        Sandbox::Process => "127.0.0.1".parse().unwrap(),
        Sandbox::Docker => corral_sandbox::bridge::local_engine_bridge_address()
            .await
            .expect("the default bridge's host address")
            .into(),
    };
    let mock = MockLlm::start_per_conversation(
        (bind, 0).into(),
        vec![
            Turn::tool_call("bash", json!({"command": "sleep 6"})),
            Turn::tool_call("output", json!({"greeting": "Hello, Ada!", "length": 11})),
            Turn::text("Done."),
        ],
    )
    .await
    .unwrap();
    let base_url = mock.openai_base_url();
    let (agent_image, sidecar_image) = match kind {
        Sandbox::Docker => tokio::task::spawn_blocking(images).await.unwrap(),
        Sandbox::Process => Default::default(),
    };
    let mut env: Vec<(&str, &str)> = vec![
        (
            "CORRAL_SANDBOX",
            if kind == Sandbox::Docker {
                "docker"
            } else {
                "process"
            },
        ),
        ("CORRAL_MODEL_API", "openai"),
        ("CORRAL_MODEL_ID", "mock-model"),
        ("CORRAL_MODEL_BASE_URL", &base_url),
        ("CORRAL_MODEL_API_KEY", "sk-real"),
        ("CORRAL_SHUTDOWN_GRACE_SECONDS", "1"),
    ];
    if kind == Sandbox::Docker {
        env.push(("CORRAL_AGENT_IMAGE", &agent_image));
        env.push(("CORRAL_SIDECAR_IMAGE", &sidecar_image));
    }
    let port = free_port();
    let mut first_env = env.clone();
    first_env.push(("CORRAL_WARM_POOL_SIZE", "1"));
    // Docker: a prepared (half-started) sandbox too, which the second life must
    // remove like the idle pool member.
    first_env.push(("CORRAL_PREPARED_POOL_SIZE", "1"));
    let mut server = start(dir.path(), port, &first_env);
    let spec = wait_healthy(&server.base).await;
    let c = api_client(&server.base, spec.clone()).await;
    let run = c
        .post(
            "/api/agents/@corral/hello-world/run",
            json!({"input": {"name": "Ada"}}),
            201,
        )
        .await;
    let id = run["id"].as_str().unwrap().to_owned();
    let deployment: String = sqlx::query_scalar("SELECT id FROM deployment")
        .fetch_one(sqlite(dir.path()).await.pool())
        .await
        .unwrap();
    // Running, inside its 6 s bash call, and the pool refilled beside it.
    let per_sandbox = if kind == Sandbox::Docker { 2 } else { 1 };
    let deadline = Instant::now() + Duration::from_secs(90);
    while mock.requests().is_empty()
        || sandboxes(kind, dir.path(), &deployment).len() < 2 * per_sandbox
    {
        assert!(Instant::now() < deadline, "run never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = c.get(&format!("/api/runs/{id}"), 200).await;
    assert_eq!(r["status"], "running", "{r}");

    let t0 = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.child.id() as i32), signal).unwrap();
    let exit = server.child.wait().unwrap();
    if signal == Signal::SIGTERM {
        assert!(exit.success(), "{exit:?}");
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        // Past the 1 s grace: left running for the next boot, never failed.
        let (status, code): (String, Option<String>) =
            sqlx::query_as("SELECT status, error_code FROM runs WHERE id = $1")
                .bind(&id)
                .fetch_one(sqlite(dir.path()).await.pool())
                .await
                .unwrap();
        assert_eq!((status.as_str(), code), ("running", None));
    }

    // Second life on the same port, no pool: the live run is re-attached, the old
    // idle pool member is reaped.
    let mut second_env = env.clone();
    second_env.push(("CORRAL_WARM_POOL_SIZE", "0"));
    second_env.push(("CORRAL_PREPARED_POOL_SIZE", "0"));
    let server = start(dir.path(), port, &second_env);
    wait_healthy(&server.base).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let done = loop {
        let r = c.get(&format!("/api/runs/{id}?wait=10"), 200).await;
        if ["success", "failed", "timeout", "cancelled"].contains(&r["status"].as_str().unwrap()) {
            break r;
        }
        assert!(Instant::now() < deadline, "run never finished: {r}");
    };
    assert_eq!(
        done["status"],
        "success",
        "{kind:?} after {signal}: {done}\nserver log:\n{}",
        std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
    );
    assert_eq!(done["result"]["output"]["greeting"], "Hello, Ada!");
    // The bash call really ran across the restart (not an instant tool error).
    let tool_result = mock.requests()[1].body["messages"]
        .as_array()
        .and_then(|m| m.last().cloned())
        .unwrap_or_default();
    assert!(
        !tool_result.to_string().contains("could not start"),
        "{tool_result}"
    );
    assert!(done["duration"].as_i64().unwrap_or(0) >= 5000, "{done}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = sandboxes(kind, dir.path(), &deployment);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "sandboxes left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_sigkill_mid_run_then_restart_reattaches() {
    drill(Sandbox::Process, Signal::SIGKILL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_sigterm_past_the_grace_then_restart_reattaches() {
    drill(Sandbox::Process, Signal::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_sigkill_mid_run_then_restart_reattaches() {
    drill(Sandbox::Docker, Signal::SIGKILL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_sigterm_past_the_grace_then_restart_reattaches() {
    drill(Sandbox::Docker, Signal::SIGTERM).await;
}
