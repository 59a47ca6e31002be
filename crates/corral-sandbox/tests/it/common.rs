//! Shared by the sandbox tests: the images and binaries of this workspace, a
//! recording platform sink, the configure call, and guards that remove whatever a
//! test created in every outcome.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use corral_mockllm::MockLlm;
use corral_protocol::{RunResult, SidecarConfig};
use corral_sandbox::{Lease, SandboxBackend};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub const RUN_TOKEN: &str = "rt_SECRET_sandbox_it_run_token";
pub const REAL_KEY: &str = "sk-REAL-sandbox-it-provider-key";
pub const SINK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `<target>` of this test binary (`<target>/debug/deps/it-<hash>`).
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .expect("test binary path")
        .ancestors()
        .nth(3)
        .expect("test binary under <target>/<profile>/deps")
        .to_owned()
}

/// `(agent, sidecar)` images built from this workspace, once per test binary.
pub fn images() -> &'static (String, String) {
    static IMAGES: OnceLock<(String, String)> = OnceLock::new();
    IMAGES.get_or_init(|| {
        corral_sandbox::build_images(&repo_root(), "debug", "sandbox-it", Some(&target_dir()))
            .expect("scripts/build-images.sh")
    })
}

/// `(corral-agent, corral-sidecar)` debug binaries, built into this test's target
/// directory with exactly the command `scripts/build-images.sh` uses:
/// `--workspace --bins`, a no-op after the test command's own build. `-p corral-agent
/// -p corral-sidecar` resolves features differently: it rebuilt both binaries while
/// the suite ran, and the next image build rebuilt them back.
pub fn binaries() -> &'static (PathBuf, PathBuf) {
    static BINS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BINS.get_or_init(|| {
        let keep = [
            "PATH",
            "HOME",
            "CARGO_HOME",
            "RUSTUP_HOME",
            "RUSTUP_TOOLCHAIN",
            "CARGO_INCREMENTAL",
            "RUSTFLAGS",
        ];
        let status = Command::new("cargo")
            .args(["build", "--quiet", "--workspace", "--bins"])
            .current_dir(repo_root())
            .env_clear()
            .envs(std::env::vars_os().filter(|(k, _)| keep.iter().any(|w| k == w)))
            .env("CARGO_TARGET_DIR", target_dir())
            .status()
            .expect("cargo build");
        assert!(
            status.success(),
            "cargo build of the runtime binaries failed"
        );
        let dir = target_dir().join("debug");
        (dir.join("corral-agent"), dir.join("corral-sidecar"))
    })
}

/// A unique owner (server instance id) for one test.
pub fn owner(test: &str) -> String {
    format!(
        "it-{test}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Waits (bounded) until `f` holds.
pub async fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---- the platform's event sink ------------------------------------------------

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: Bytes,
}

struct SinkInner {
    seen: Mutex<Vec<Seen>>,
    changed: watch::Sender<usize>,
}

/// Records every request (events, heartbeats, finalize, probes) and answers 204.
pub struct Sink {
    pub port: u16,
    inner: Arc<SinkInner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(State(inner): State<Arc<SinkInner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    let n = {
        let mut seen = inner.seen.lock();
        seen.push(Seen {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            body,
        });
        seen.len()
    };
    inner.changed.send_replace(n);
    StatusCode::NO_CONTENT.into_response()
}

impl Sink {
    pub async fn start(ip: IpAddr) -> Sink {
        let inner = Arc::new(SinkInner {
            seen: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
        });
        let app = Router::new().fallback(record).with_state(inner.clone());
        let listener = TcpListener::bind((ip, 0)).await.expect("bind the sink");
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Sink { port, inner, task }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().clone()
    }

    /// The run's result, once the sidecar forwarded it (bounded wait).
    pub async fn finalize(&self, run_id: &str, timeout: Duration) -> RunResult {
        let path = format!("/api/runs/{run_id}/events/finalize");
        let mut rx = self.inner.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.seen().into_iter().find(|s| s.path == path) {
                assert_eq!(s.method, "POST");
                return serde_json::from_slice(&s.body).expect("a RunResult");
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                panic!(
                    "no finalize within {timeout:?}; recorded: {:?}",
                    self.seen()
                );
            }
        }
    }
}

// ---- configuring a leased sandbox -------------------------------------------

pub fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {"greeting": {"type": "string"}},
        "required": ["greeting"],
        "additionalProperties": false
    })
}

/// `POST /configure` on the leased sidecar with a complete `SidecarConfig`: the
/// model at `model_base` and the sink at `sink_base` (both as the platform sees
/// them; rewritten with [`SandboxBackend::sidecar_view`]).
pub async fn configure(
    backend: &dyn SandboxBackend,
    lease: &Lease,
    run_id: &str,
    model_base: &str,
    sink_base: &str,
) {
    let config = json!({
        "run_id": run_id,
        "run_token": RUN_TOKEN,
        "task": {
            "prompt": "Greet the world.",
            "input": {"who": "world"},
            "output_schema": schema(),
            "model": {"api": "openai", "model": "mock-model-1",
                      "base_url": backend.sidecar_view(&format!("{model_base}/v1")),
                      "api_key": REAL_KEY},
            "limits": {"max_steps": 20, "max_tokens": 1000000, "timeout_secs": 180,
                       "bash_timeout_secs": 600}
        },
        "sink": {
            "events_url": backend.sidecar_view(&format!("{sink_base}/api/runs/{run_id}/events")),
            "secret": SINK_SECRET
        }
    });
    // The payload is the protocol's type, not a look-alike.
    let typed: SidecarConfig = serde_json::from_value(config.clone()).expect("a SidecarConfig");
    assert_eq!(typed.run_id, run_id);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/configure", lease.sidecar_url);
    let wrong = http
        .post(&url)
        .bearer_auth("not-the-token")
        .json(&config)
        .send()
        .await
        .expect("sidecar reachable");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let resp = http
        .post(&url)
        .bearer_auth(lease.configure_token.expose())
        .json(&config)
        .send()
        .await
        .expect("sidecar reachable");
    assert_eq!(
        resp.status(),
        StatusCode::NO_CONTENT,
        "{:?}",
        resp.text().await
    );
}

/// The text of every tool result the agent sent back to the model, in order
/// (from the last request, which carries the whole conversation).
pub fn tool_results(mock: &MockLlm) -> Vec<String> {
    let requests = mock.requests();
    let Some(last) = requests.last() else {
        return Vec::new();
    };
    last.body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "tool")
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(""),
            other => other.to_string(),
        })
        .collect()
}

// ---- cleanup guards --------------------------------------------------------

/// Removes every container and network labelled with `owner` when dropped.
pub struct DockerCleanup {
    pub owner: String,
}

fn docker_cli(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Ids of containers and networks carrying `label` (`key=value`).
pub fn docker_objects(label: &str) -> (Vec<String>, Vec<String>) {
    let filter = format!("label={label}");
    let containers = docker_cli(&["ps", "-aq", "--filter", &filter]);
    let networks = docker_cli(&["network", "ls", "-q", "--filter", &filter]);
    let split = |s: String| s.split_whitespace().map(str::to_owned).collect();
    (split(containers), split(networks))
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        let (containers, networks) = docker_objects(&format!("corral.owner={}", self.owner));
        if std::thread::panicking() {
            for c in &containers {
                eprintln!(
                    "--- docker logs {c}\n{}",
                    docker_cli(&["logs", "--tail", "40", c])
                );
            }
        }
        for c in containers {
            docker_cli(&["rm", "-f", "-v", &c]);
        }
        for n in networks {
            docker_cli(&["network", "rm", &n]);
        }
    }
}

/// Kills every process recorded under `root` (the process backend's records) when
/// dropped; the temporary directory itself goes with `dir`.
pub struct ProcessCleanup {
    pub dir: tempfile::TempDir,
}

impl ProcessCleanup {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for ProcessCleanup {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(e.path().join("sandbox.json")) else {
                continue;
            };
            let Ok(rec) = serde_json::from_str::<corral_sandbox::process::SandboxRecord>(&text)
            else {
                continue;
            };
            for p in std::iter::once(rec.sidecar).chain(rec.agent) {
                if process_matches(p.pid, &p.exe) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(p.pgid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

/// Whether `pid` is a living (not zombie) process running `exe`.
pub fn process_matches(pid: i32, exe: &Path) -> bool {
    alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.split(|b| *b == 0).next() == Some(exe.as_os_str().as_encoded_bytes()))
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rfind(')')
            .and_then(|i| s[i + 2..].chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}
