//! The self-hosting files: `docker-compose.yml` with each tier overlay validates
//! (docker-compose 1.29, as Debian ships it), and the tier-1 stack (PostgreSQL + the
//! server image, both built offline here) comes up and runs `@corral/hello-world` in
//! a Docker sandbox against a mock model.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_mockllm::{MockLlm, Turn};
use corral_testkit::Client;
use serde_json::{json, Value};

use crate::runs_docker::{gateway, images};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn compose(project: &str, env_file: &Path, overlay: &str, args: &[&str]) -> std::process::Output {
    Command::new("docker-compose")
        .current_dir(root())
        .args(["-p", project, "--env-file"])
        .arg(env_file)
        .args(["-f", "docker-compose.yml", "-f", overlay])
        .args(args)
        .output()
        .expect("docker-compose (scripts/test-services.sh installs it)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn compose_files_validate_for_every_tier() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join(".env");
    // Every variable .env.example marks as required, and nothing else.
    let required = "POSTGRES_PASSWORD=p\nS3_SECRET_KEY=s\nCORRAL_SESSION_SECRET=x\nCORRAL_RUN_TOKEN_SECRET=y\nCORRAL_ENCRYPTION_KEY=z\n";
    std::fs::write(
        &env,
        format!("{required}CORRAL_ENV_FILE={}\n", env.display()),
    )
    .unwrap();
    for tier in ["tier1.yml", "tier2.yml", "tier3.yml"] {
        let out = compose("corral-validate", &env, tier, &["config"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{tier}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let redis = text.contains("REDIS_URL: redis://");
        let s3 = text.contains("CORRAL_STORAGE: s3://");
        match tier {
            "tier1.yml" => assert!(!redis && !s3, "{tier}: {text}"),
            "tier2.yml" => assert!(redis && !s3, "{tier}: {text}"),
            _ => assert!(redis && s3, "{tier}: {text}"),
        }
    }
    // A missing secret is refused with its name.
    std::fs::write(
        &env,
        format!(
            "POSTGRES_PASSWORD=p\nS3_SECRET_KEY=s\nCORRAL_ENV_FILE={}\n",
            env.display()
        ),
    )
    .unwrap();
    let out = compose("corral-validate", &env, "tier1.yml", &["config"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CORRAL_SESSION_SECRET"));
}

/// `.env.example` documents every variable the server reads.
#[test]
fn env_example_lists_every_server_variable() {
    let example =
        std::fs::read_to_string(root().join("examples/self-hosting/.env.example")).unwrap();
    for (var, _) in corral_api::config::ENV_VARS {
        assert!(
            example.contains(&format!("{var}=")),
            "{var} is missing from examples/self-hosting/.env.example"
        );
    }
}

/// Takes the stack down (volumes included) however the test ends.
struct Stack {
    project: String,
    env: PathBuf,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let out = compose(
            &self.project,
            &self.env,
            "tier1.yml",
            &["down", "-v", "-t", "5"],
        );
        if !out.status.success() {
            eprintln!("compose down: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

fn build_offline_images() -> (String, String) {
    let (agent, sidecar) = images().clone();
    let out = Command::new(root().join("scripts/build-server-image.sh"))
        .args(["--profile", "debug", "--tag", "compose-it"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pg = root().join("examples/self-hosting/offline");
    let out = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", "corral-postgres:offline", "-f"])
        .arg(pg.join("postgres.Dockerfile"))
        .arg(&pg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (agent, sidecar)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tier1_compose_stack_runs_hello_world() {
    let (agent, sidecar) = tokio::task::spawn_blocking(build_offline_images)
        .await
        .unwrap();
    let mock = MockLlm::start_per_conversation(
        (gateway().await, 0).into(),
        vec![
            Turn::tool_call("output", json!({"greeting": "Hello, Ada!", "length": 11})),
            Turn::text("Done."),
        ],
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join(".env");
    let port = free_port();
    let gid = Command::new("stat")
        .args(["-c", "%g", "/var/run/docker.sock"])
        .output()
        .unwrap();
    let settings = [
        ("POSTGRES_PASSWORD", "pg-secret".to_owned()),
        ("S3_SECRET_KEY", "unused".into()),
        ("CORRAL_SESSION_SECRET", "s".repeat(48)),
        ("CORRAL_RUN_TOKEN_SECRET", "r".repeat(48)),
        (
            "CORRAL_ENCRYPTION_KEY",
            "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=".into(),
        ),
        ("CORRAL_IMAGE", "corral:compose-it".into()),
        ("CORRAL_POSTGRES_IMAGE", "corral-postgres:offline".into()),
        ("CORRAL_POSTGRES_PORT", free_port().to_string()),
        ("CORRAL_LISTEN", format!("127.0.0.1:{port}")),
        (
            "DOCKER_GID",
            String::from_utf8_lossy(&gid.stdout).trim().to_owned(),
        ),
        ("CORRAL_AGENT_IMAGE", agent),
        ("CORRAL_SIDECAR_IMAGE", sidecar),
        ("CORRAL_WARM_POOL_SIZE", "0".into()),
        ("CORRAL_MODEL_API", "openai".into()),
        ("CORRAL_MODEL_ID", "mock-model".into()),
        ("CORRAL_MODEL_BASE_URL", mock.openai_base_url()),
        ("CORRAL_MODEL_API_KEY", "sk-test".into()),
        ("CORRAL_ENV_FILE", env.display().to_string()),
    ];
    let text: String = settings.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&env, text).unwrap();
    let stack = Stack {
        project: format!(
            "corral-it-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        ),
        env: env.clone(),
    };
    let out = compose(&stack.project, &env, "tier1.yml", &["up", "-d"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let healthy = match http.get(format!("{base}/health")).send().await {
            Ok(r) if r.status().is_success() => {
                let h: Value = r.json().await.unwrap_or_default();
                h["checks"]["sandbox"]["backend"] == "docker"
            }
            _ => false,
        };
        if healthy {
            break;
        }
        if Instant::now() > deadline {
            let logs = Command::new("docker")
                .args([
                    "logs",
                    "--tail",
                    "30",
                    &format!("{}_corral_1", stack.project),
                ])
                .output()
                .unwrap();
            panic!(
                "the stack never became healthy with the Docker backend:\n{}",
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let spec: Value = http
        .get(format!("{base}/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let c = Client::new(&base, Arc::new(spec))
        .sign_up("ada@example.com", "correct horse battery", "Ada")
        .await;
    let org = c.post("/api/orgs", json!({"name": "Compose"}), 201).await;
    let c = c.org(org["id"].as_str().unwrap());
    let apps = c.get("/api/applications", 200).await;
    let app = apps["data"][0]["id"].as_str().unwrap().to_owned();
    let c = c.app(&app);
    let run = c
        .post(
            "/api/agents/@corral/hello-world/run",
            json!({"input": {"name": "Ada"}}),
            201,
        )
        .await;
    let id = run["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let r = c.get(&format!("/api/runs/{id}?wait=10"), 200).await;
        if ["success", "failed", "timeout", "cancelled"].contains(&r["status"].as_str().unwrap()) {
            break r;
        }
        assert!(Instant::now() < deadline, "still {}", r["status"]);
    };
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["runner_kind"], "docker");
    assert_eq!(done["result"]["output"]["greeting"], "Hello, Ada!");

    // The image's HEALTHCHECK agrees, and the server does not run as root.
    let container = format!("{}_corral_1", stack.project);
    let inspect = |format: &str| {
        let out = Command::new("docker")
            .args(["inspect", "--format", format, &container])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while inspect("{{.State.Health.Status}}") != "healthy" {
        assert!(
            Instant::now() < deadline,
            "HEALTHCHECK: {}",
            inspect("{{json .State.Health}}")
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(inspect("{{.Config.User}}"), "10002:10002");
    drop(stack);
}
