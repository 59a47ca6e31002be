//! End to end: the real `corral-agent` binary against the real `corral-sidecar`,
//! with the scripted mock LLM as provider, a local service as the integration's
//! API and a recorder as the platform's event sink. The run uses `bash`, writes a
//! file, calls `demo__api_call` and emits a schema-valid output; the credential
//! reaches the service and nothing else.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use axum::response::IntoResponse as _;
use corral_mockllm::{MockLlm, Turn};
use corral_protocol::events::run_source;
use corral_protocol::sidecar_api::PLACEHOLDER_API_KEY;
use corral_protocol::{CloudEvent, EventType, RunResult, RunStatus};
use serde_json::{json, Value};
use tokio::process::Command;

use crate::events::verify;
use crate::{
    config, Recorder, Sidecar, INTEGRATION_SECRET, REAL_KEY, RUN_ID, RUN_TOKEN, SINK_SECRET,
};

/// Builds the agent binary (a workspace member) next to the sidecar's, once.
fn agent_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let sidecar = PathBuf::from(env!("CARGO_BIN_EXE_corral-sidecar"));
            // The same profile directory as this test's binaries.
            let target_dir = sidecar.parent().and_then(Path::parent).unwrap().to_owned();
            // A clean environment: the test's own `CARGO_PKG_*`/`CARGO_MANIFEST_DIR`
            // would otherwise re-trigger env-tracking build scripts, and the next
            // `cargo test` would rebuild them back.
            let keep = [
                "PATH",
                "HOME",
                "CARGO_HOME",
                "RUSTUP_HOME",
                "RUSTUP_TOOLCHAIN",
                "CARGO_INCREMENTAL",
            ];
            // `--workspace --bins`, as the test command builds before the suite: the
            // same feature set, so this is a no-op there. `-p corral-agent` alone
            // resolves features differently and rebuilt half the dependency tree
            // (minutes, the slowest test of the suite).
            let status = std::process::Command::new(cargo)
                .args(["build", "--quiet", "--workspace", "--bins"])
                .arg("--manifest-path")
                .arg(&manifest)
                .env_clear()
                .envs(std::env::vars_os().filter(|(k, _)| keep.iter().any(|w| k == w)))
                .env("CARGO_TARGET_DIR", &target_dir)
                .status()
                .expect("run cargo build --workspace --bins");
            assert!(status.success(), "building corral-agent failed");
            let path = sidecar.with_file_name("corral-agent");
            assert!(path.exists(), "{} missing", path.display());
            path
        })
        .clone()
}

fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"greeting": {"type": "string"}, "stars": {"type": "integer"}},
        "required": ["greeting", "stars"],
        "additionalProperties": false
    })
}

fn files_under(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
}

#[tokio::test]
async fn agent_and_sidecar_run_end_to_end() {
    let agent_bin = tokio::task::spawn_blocking(agent_binary).await.unwrap();
    let service = Recorder::start(|seen, _| {
        axum::Json(json!({"repo": seen.path, "stars": 7})).into_response()
    })
    .await;
    let sink = Recorder::sink().await;
    let target = format!("{}/api/repo", service.url);
    let mock = MockLlm::start(vec![
        Turn::tool_call(
            "bash",
            json!({"command": "printf hello > greeting.txt && env && cat greeting.txt"}),
        )
        .with_text("Let me write the greeting."),
        Turn::tool_calls([
            (
                "write_file",
                json!({"path": "out/report.md", "content": "# Report\nhello\n"}),
            ),
            ("demo__api_call", json!({"method": "GET", "target": target})),
        ]),
        Turn::tool_calls([
            ("log", json!({"message": "almost done", "level": "info"})),
            ("output", json!({"greeting": "hello", "stars": 7})),
        ]),
        Turn::text("Done: greeted the world."),
    ])
    .await
    .unwrap();

    let sidecar = Sidecar::start().await;
    let workspace = tempfile::tempdir().unwrap();
    let log = if std::env::var_os("CORRAL_SIDECAR_TEST_LOG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    // The agent starts first, as in the warm pool, and waits for its task.
    let mut agent = Command::new(agent_bin)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CORRAL_SIDECAR_URL", &sidecar.url)
        .env("CORRAL_WORKSPACE", workspace.path())
        .env("CORRAL_HEARTBEAT_SECS", "1")
        .env("CORRAL_TASK_WAIT_SECS", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let mut cfg = config(&mock.openai_base_url(), "openai", &sink.url);
    cfg["task"]["output_schema"] = schema();
    cfg["integrations"] = json!([{
        "namespace": "demo",
        "delivery": {"type": "header", "name": "Authorization", "template": "Bearer {{token}}"},
        "authorized_uris": [format!("{}/api/*", service.url)],
        "credentials": {"token": INTEGRATION_SECRET}
    }]);
    sidecar.configure(&cfg).await;

    let finalize_path = format!("/api/runs/{RUN_ID}/events/finalize");
    let seen = sink
        .wait_until(|seen| seen.iter().any(|s| s.path == finalize_path))
        .await;
    let status = tokio::time::timeout(Duration::from_secs(20), agent.wait())
        .await
        .expect("agent exited")
        .unwrap();
    assert_eq!(status.code(), Some(0));

    // The run's result.
    let fin = seen.iter().find(|s| s.path == finalize_path).unwrap();
    assert_eq!(verify(fin), Ok(()));
    let result: RunResult = serde_json::from_slice(&fin.body).unwrap();
    assert_eq!(result.status, RunStatus::Success, "{result:?}");
    assert_eq!(
        result.output,
        Some(json!({"greeting": "hello", "stars": 7}))
    );

    // Events: every one signed, numbered 1..=n without gap, in order, ours.
    let events: Vec<CloudEvent> = seen
        .iter()
        .filter(|s| s.path == format!("/api/runs/{RUN_ID}/events"))
        .map(|s| {
            assert_eq!(verify(s), Ok(()));
            serde_json::from_slice(&s.body).unwrap()
        })
        .collect();
    let seqs: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(result.last_sequence, events.len() as u64);
    assert!(events.iter().all(|e| e.source == run_source(RUN_ID)));
    assert!(events
        .iter()
        .any(|e| e.event_type == EventType::OutputEmitted));
    assert!(events.iter().any(|e| e.event_type == EventType::LogWritten));
    assert!(seen
        .iter()
        .any(|s| s.path.ends_with("/heartbeat") && verify(s).is_ok()));

    // The integration saw its credential, injected by the sidecar.
    let calls = service.seen();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, "/api/repo");
    assert_eq!(
        calls[0].header("authorization"),
        Some(format!("Bearer {INTEGRATION_SECRET}").as_str())
    );

    // The model got the tool result but never a secret; the provider got the real
    // key, never the placeholder.
    let requests = mock.requests();
    assert_eq!(requests.len(), 4);
    let last = requests.last().unwrap().body_text();
    assert!(
        last.contains("stars"),
        "the api_call result reached the model"
    );
    assert!(last.contains("hello"), "the bash output reached the model");
    for r in &requests {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {REAL_KEY}").as_str())
        );
        let text = format!("{:?} {}", r.headers, r.body);
        assert!(!text.contains(PLACEHOLDER_API_KEY));
        for secret in [
            INTEGRATION_SECRET,
            RUN_TOKEN,
            SINK_SECRET,
            "CORRAL_CONFIGURE_TOKEN",
        ] {
            assert!(
                !r.body_text().contains(secret),
                "{secret} reached the model"
            );
        }
    }

    // The workspace holds the agent's files and no secret.
    let mut files = Vec::new();
    files_under(workspace.path(), &mut files);
    let names: Vec<String> = files
        .iter()
        .map(|(p, _)| {
            p.strip_prefix(workspace.path())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert!(names.contains(&"greeting.txt".to_owned()), "{names:?}");
    assert!(names.contains(&"out/report.md".to_owned()), "{names:?}");
    for (path, content) in &files {
        let text = String::from_utf8_lossy(content);
        for secret in [INTEGRATION_SECRET, REAL_KEY, RUN_TOKEN] {
            assert!(!text.contains(secret), "{secret} in {}", path.display());
        }
    }
    // Nothing the events carried holds a secret either.
    for s in &seen {
        let body = String::from_utf8_lossy(&s.body);
        for secret in [INTEGRATION_SECRET, REAL_KEY, RUN_TOKEN] {
            assert!(!body.contains(secret), "{secret} in an event");
        }
    }
}
