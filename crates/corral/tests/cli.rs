//! The CLI end to end: the real `corral` binary, as a child process, against a real
//! server (in-process, process sandboxes, the scripted mock LLM). Each CLI call gets a
//! fresh environment: its own config directory, no colour, the server's URL.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use corral_mockllm::{MockLlm, Turn};
use corral_testkit::{Backend, Session, TestApp};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;

const BIN: &str = env!("CARGO_BIN_EXE_corral");

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `corral args…` with `env` on top of a clean environment whose config dir is
/// `cfg`; `stdin` is written then closed. Bounded by 60 s.
async fn corral(cfg: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Out {
    let mut c = tokio::process::Command::new(BIN);
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", cfg)
        .env("XDG_CONFIG_HOME", cfg)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("spawn corral");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).await.expect("write stdin");
    }
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("corral {args:?} did not finish within 60 s"))
        .expect("wait corral");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A server whose runs use `mock` as the system model.
async fn app_with_model(mock: &MockLlm) -> TestApp {
    let base = mock.openai_base_url();
    TestApp::spawn_with(Backend::Sqlite, move |c| {
        c.model_api = Some("openai".into());
        c.model_id = Some("mock-model".into());
        c.model_base_url = Some(base);
        c.model_api_key = Some(corral_api::config::Secret::new("sk-test-real-key"));
        c.agent_env = vec!["CORRAL_HEARTBEAT_SECS=1".into()];
    })
    .await
}

/// The environment of an API-key caller with no profile.
fn key_env<'a>(app: &'a TestApp, key: &'a str) -> [(&'a str, &'a str); 2] {
    [("CORRAL_URL", app.base.as_str()), ("CORRAL_API_KEY", key)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_login_with_password_and_with_key_profiles_and_context() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let s: Session = app.user_with_org("Ada").await;
    let cfg = tempfile::tempdir().unwrap();
    let dir = cfg.path();

    // Not logged in: a clear error, exit 1.
    let out = corral(dir, &["whoami"], &[], None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("corral login"), "{out:?}");

    // A wrong password: the server's problem (title, detail, request id), exit 1.
    let out = corral(
        dir,
        &["login", &app.base, "--email", &s.email, "--password-stdin"],
        &[],
        Some("wrong password\n"),
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("(401)"), "{out:?}");
    assert!(out.stderr.contains("request id: "), "{out:?}");

    // No terminal and no password: refuses instead of hanging.
    let out = corral(dir, &["login", &app.base, "--email", &s.email], &[], None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("--password-stdin"), "{out:?}");

    let out = corral(
        dir,
        &[
            "login",
            &app.base,
            "--email",
            &s.email,
            "--password-stdin",
            "--json",
        ],
        &[],
        Some("correct horse battery\n"),
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let login = out.json();
    assert_eq!(login["auth"], "session");
    assert_eq!(login["orgId"], s.org_id.as_str());
    assert_eq!(login["appId"], s.app_id.as_str());

    // The profile file: 0600, the session token, never the password.
    use std::os::unix::fs::PermissionsExt as _;
    let file = dir.join("corral/config.toml");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("correct horse battery"), "{text}");
    assert!(text.contains("kind = \"session\""), "{text}");

    let out = corral(dir, &["whoami", "--json"], &[], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let who = out.json();
    assert_eq!(who["user"]["email"], s.email.as_str());
    assert_eq!(who["orgId"], s.org_id.as_str());
    assert_eq!(who["appId"], s.app_id.as_str());
    let out = corral(dir, &["whoami"], &[], None).await;
    assert!(out.stdout.contains(&s.email), "{out:?}");

    // Org and app lists carry the selection; a second app can be selected.
    let orgs = corral(dir, &["org", "list", "--json"], &[], None)
        .await
        .json();
    assert!(orgs
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["id"] == s.org_id.as_str()));
    let second = s
        .client
        .post("/api/applications", json!({"name": "Second"}), 201)
        .await;
    let out = corral(dir, &["app", "switch", "Second"], &[], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let apps = corral(dir, &["app", "list", "--json"], &[], None)
        .await
        .json();
    assert_eq!(apps.as_array().unwrap().len(), 2, "{apps}");
    let who = corral(dir, &["whoami", "--json"], &[], None).await.json();
    assert_eq!(who["appId"], second["id"]);
    // The app travels as X-App-Id: a run list works in it.
    let out = corral(dir, &["runs", "list", "--json"], &[], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json(), json!([]));
    let out = corral(dir, &["org", "switch", &s.org_id], &[], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let who = corral(dir, &["whoami", "--json"], &[], None).await.json();
    assert_eq!(
        who["appId"],
        s.app_id.as_str(),
        "org switch selects the default app"
    );

    // An API key, in a second profile.
    let (_, key) = s.api_key(None).await;
    let out = corral(
        dir,
        &["login", &app.base, "--api-key", &key, "--profile", "keyed"],
        &[],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let who = corral(dir, &["whoami", "--json"], &[], None).await.json();
    assert_eq!(who["auth"], "api_key");
    assert_eq!(who["profile"], "keyed");
    let out = corral(dir, &["org", "switch", "x"], &[], None).await;
    assert_eq!(out.code, 1, "an API key cannot switch org: {out:?}");
    // --profile picks the session one back.
    let host = app.base.trim_start_matches("http://");
    let who = corral(dir, &["whoami", "--json", "--profile", host], &[], None)
        .await
        .json();
    assert_eq!(who["auth"], "session", "{who}");
    // A refused key does not become a profile.
    let out = corral(
        dir,
        &["login", &app.base, "--api-key", "ask_nope"],
        &[],
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");

    // Environment only, no profile at all.
    let empty = tempfile::tempdir().unwrap();
    let out = corral(
        empty.path(),
        &["agents", "list", "--json"],
        &key_env(&app, &key),
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out
        .json()
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == "@corral/hello-world"));

    // Logout ends the session on the server and removes the profile.
    let out = corral(dir, &["logout", "--profile", host], &[], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("kind = \"session\""), "{text}");
    let sessions = app.scalar("SELECT COUNT(*) FROM sessions").await;
    // user_with_org's own session remains; the CLI's is gone.
    assert_eq!(sessions, 1);
}

async fn wait_first_log(app: &TestApp, key: &str, id: &str) {
    let c = app.client().bearer(key);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = c.get(&format!("/api/runs/{id}/logs"), 200).await;
        if logs["data"].as_array().is_some_and(|a| !a.is_empty()) {
            return;
        }
        assert!(Instant::now() < deadline, "no log within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_run_follow_success_failure_and_logs_attach_mid_run() {
    let mock = MockLlm::start(vec![
        Turn::tool_call("log", json!({"message": "greeting Ada", "level": "info"})),
        Turn::tool_call("output", json!({"greeting": "Hello, Ada!", "length": 11})),
        Turn::text("Done."),
    ])
    .await
    .unwrap();
    let app = app_with_model(&mock).await;
    let s = app.user_with_org("Runner").await;
    let (_, key) = s.api_key(None).await;
    let env = key_env(&app, &key);
    let cfg = tempfile::tempdir().unwrap();
    let dir = cfg.path();

    // 1. Success: logs on stderr as they come, the output on stdout, exit 0.
    let out = corral(
        dir,
        &[
            "run",
            "@corral/hello-world",
            "--input",
            r#"{"name":"Ada"}"#,
            "--follow",
        ],
        &env,
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("info  greeting Ada"), "{out:?}");
    assert!(out.stderr.contains("success"), "{out:?}");
    assert_eq!(out.json(), json!({"greeting": "Hello, Ada!", "length": 11}));

    // 2. Failure (the provider refuses): exit 3, the error code shown.
    mock.push(Turn::error(
        400,
        json!({"error": {"message": "bad request", "type": "invalid_request_error"}}),
    ));
    let input = dir.join("input.json");
    std::fs::write(&input, r#"{"name":"Bob"}"#).unwrap();
    let at_input = format!("@{}", input.display());
    let out = corral(
        dir,
        &[
            "run",
            "@corral/hello-world",
            "--input",
            &at_input,
            "-f",
            "--json",
        ],
        &env,
        None,
    )
    .await;
    assert_eq!(out.code, 3, "{out:?}");
    let run = out.json();
    assert_eq!(run["status"], "failed");
    assert_eq!(run["metadata"]["error_code"], "llm_error");
    assert_eq!(run["input"]["name"], "Bob");
    let failed_id = run["id"].as_str().unwrap().to_owned();

    // 3. `runs logs -f` attaches to a run already going: it sees the line logged
    // before it attached and the one after, once each, and exits with the outcome.
    mock.push(Turn::tool_call(
        "log",
        json!({"message": "first half", "level": "info"}),
    ));
    mock.push(Turn::tool_call("bash", json!({"command": "sleep 2.5"})));
    mock.push(Turn::tool_call(
        "log",
        json!({"message": "second half", "level": "warn"}),
    ));
    mock.push(Turn::tool_call(
        "output",
        json!({"greeting": "Hi", "length": 2}),
    ));
    mock.push(Turn::text("Done."));
    let out = corral(
        dir,
        &["run", "@corral/hello-world", "--input", r#"{"name":"Cy"}"#],
        &env,
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let id = out.stdout.trim().to_owned();
    assert!(id.starts_with("run_"), "{out:?}");
    wait_first_log(&app, &key, &id).await;
    let now = app
        .client()
        .bearer(&key)
        .get(&format!("/api/runs/{id}"), 200)
        .await;
    assert_eq!(now["status"], "running", "the CLI attaches mid-run");
    let out = corral(dir, &["runs", "logs", "-f", &id], &env, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.matches("first half").count(), 1, "{out:?}");
    assert_eq!(out.stdout.matches("second half").count(), 1, "{out:?}");
    assert!(
        out.stdout.find("first half") < out.stdout.find("second half"),
        "{out:?}"
    );
    // Logs of a finished run, as JSON lines.
    let out = corral(dir, &["runs", "logs", &id, "--json"], &env, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(lines
        .iter()
        .any(|l| l["message"] == "second half" && l["level"] == "warn"));

    // 4. Lists and details, --json and human; the failed run's exit code via -f.
    let runs = corral(dir, &["runs", "list", "--json"], &env, None)
        .await
        .json();
    assert_eq!(runs.as_array().unwrap().len(), 3, "{runs}");
    let failed = corral(
        dir,
        &["runs", "list", "--status", "failed", "--json"],
        &env,
        None,
    )
    .await
    .json();
    assert_eq!(failed.as_array().unwrap().len(), 1);
    assert_eq!(failed[0]["id"], failed_id.as_str());
    let by_agent = corral(
        dir,
        &[
            "runs",
            "list",
            "--agent",
            "@corral/hello-world",
            "--status",
            "success",
            "--limit",
            "1",
            "--json",
        ],
        &env,
        None,
    )
    .await
    .json();
    assert_eq!(by_agent.as_array().unwrap().len(), 1);
    let out = corral(dir, &["runs", "list"], &env, None).await;
    assert!(out.stdout.starts_with("ID "), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 4, "{out:?}");
    let shown = corral(dir, &["runs", "show", &id, "--json"], &env, None)
        .await
        .json();
    assert_eq!(shown["result"]["output"]["greeting"], "Hi");
    let out = corral(dir, &["runs", "logs", "-f", &failed_id], &env, None).await;
    assert_eq!(out.code, 3, "{out:?}");
    // Cancelling a finished run: the server's refusal, exit 1.
    let out = corral(dir, &["runs", "cancel", &failed_id], &env, None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("(409)"), "{out:?}");
    let out = corral(
        dir,
        &["agents", "show", "@corral/hello-world", "--json"],
        &env,
        None,
    )
    .await;
    assert_eq!(out.json()["id"], "@corral/hello-world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_cancel_exit_code_api_passthrough_packages_webhooks_openapi() {
    let mock = MockLlm::start(vec![Turn::tool_call(
        "bash",
        json!({"command": "sleep 30"}),
    )])
    .await
    .unwrap();
    let app = app_with_model(&mock).await;
    let s = app.user_with_org("Ops").await;
    let (_, key) = s.api_key(None).await;
    let env = key_env(&app, &key);
    let cfg = tempfile::tempdir().unwrap();
    let dir = cfg.path();

    // A run cancelled while `run -f` follows it: exit 5.
    let c = app.client().bearer(&key);
    let run = c
        .post(
            "/api/agents/@corral/hello-world/run",
            json!({"input": {"name": "Z"}}),
            201,
        )
        .await;
    let id = run["id"].as_str().unwrap().to_owned();
    let follower = {
        let dir = dir.to_owned();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let id = id.clone();
        tokio::spawn(async move {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            corral(&dir, &["runs", "logs", "-f", &id], &env, None).await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = corral(dir, &["runs", "cancel", &id, "--json"], &env, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["status"], "cancelled");
    let out = follower.await.unwrap();
    assert_eq!(out.code, 5, "{out:?}");

    // `api`: passthrough with the credential; non-zero on >= 400 with the body.
    let out = corral(dir, &["api", "GET", "/api/runs?limit=1"], &env, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["data"][0]["id"], id.as_str());
    let out = corral(dir, &["api", "GET", "/api/runs/run_missing"], &env, None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.json()["status"], 404);
    let out = corral(
        dir,
        &[
            "api",
            "POST",
            "/api/webhooks",
            "-d",
            r#"{"url":"http://localhost:9/h","events":["run.failed"]}"#,
            "-i",
        ],
        &env,
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("201"), "{out:?}");
    let hook = out.json()["id"].as_str().unwrap().to_owned();

    // Webhooks.
    let list = corral(dir, &["webhooks", "list", "--json"], &env, None)
        .await
        .json();
    assert_eq!(list[0]["id"], hook.as_str());
    let out = corral(
        dir,
        &[
            "webhooks",
            "create",
            "http://localhost:9/other",
            "--event",
            "run.success",
            "--json",
        ],
        &env,
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.json()["secret"].as_str().unwrap().starts_with("whsec_"));
    let out = corral(
        dir,
        &["webhooks", "deliveries", &hook, "--json"],
        &env,
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.json().is_array());
    let out = corral(dir, &["webhooks", "delete", &hook], &env, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let list = corral(dir, &["webhooks", "list", "--json"], &env, None)
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    // `test` reaches a real receiver; its delivery is listed.
    let rx = corral_testkit::receiver::Receiver::start().await;
    let out = corral(
        dir,
        &["webhooks", "create", &rx.url, "-e", "run.success"],
        &env,
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let live = out.stdout.trim().to_owned();
    assert!(out.stderr.contains("whsec_"), "{out:?}");
    let out = corral(dir, &["webhooks", "test", &live], &env, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("✓ delivered") && out.stdout.contains("status 200"),
        "{out:?}"
    );
    assert_eq!(
        rx.wait_for(1, Duration::from_secs(10)).await[0].json()["type"],
        "webhook.test"
    );
    let deliveries = corral(
        dir,
        &["webhooks", "deliveries", &live, "--json"],
        &env,
        None,
    )
    .await
    .json();
    assert_eq!(deliveries[0]["eventType"], "webhook.test", "{deliveries}");

    // Packages: a directory, zipped on the fly.
    let org = s.client.get(&format!("/api/orgs/{}", s.org_id), 200).await;
    let scope = org["slug"].as_str().unwrap().to_owned();
    let pkg = dir.join("greeter");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        pkg.join("manifest.json"),
        json!({
            "name": format!("@{scope}/greeter"), "version": "1.0.0", "type": "agent", "schema_version": "2.0",
            "display_name": "Greeter", "author": "tests",
            "output": {"schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(pkg.join("prompt.md"), "Say hello.").unwrap();
    let out = corral(
        dir,
        &["packages", "import", pkg.to_str().unwrap(), "--json"],
        &env,
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["version"], "1.0.0");
    let id = format!("@{scope}/greeter");
    let versions = corral(dir, &["packages", "versions", &id, "--json"], &env, None)
        .await
        .json();
    assert_eq!(versions[0]["version"], "1.0.0", "{versions}");
    let list = corral(
        dir,
        &["packages", "list", "--type", "agent", "--json"],
        &env,
        None,
    )
    .await
    .json();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == id.as_str()),
        "{list}"
    );
    let again = corral(
        dir,
        &["packages", "import", pkg.to_str().unwrap()],
        &env,
        None,
    )
    .await;
    assert_eq!(
        again.code, 1,
        "the same version again is a conflict: {again:?}"
    );
    assert!(again.stderr.contains("(409)"), "{again:?}");

    // OpenAPI from the server's contract.
    let ops = corral(
        dir,
        &["openapi", "list", "--tag", "runs", "--json"],
        &env,
        None,
    )
    .await
    .json();
    assert!(ops
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["operationId"] == "runAgent"));
    assert!(ops
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["tags"][0] == "Runs"));
    let op = corral(dir, &["openapi", "show", "getRun", "--json"], &env, None)
        .await
        .json();
    assert_eq!(op["path"], "/api/runs/{id}");
    let out = corral(dir, &["openapi", "show", "getRun"], &env, None).await;
    assert!(out.stdout.starts_with("GET /api/runs/{id}"), "{out:?}");
    // Bare `corral openapi` is still the server command (no server needed).
    let out = corral(dir, &["openapi"], &[], None).await;
    assert_eq!(out.code, 0);
    assert!(out.json()["paths"]["/api/runs"].is_object());

    // Completions.
    for shell in ["bash", "zsh", "fish"] {
        let out = corral(dir, &["completions", shell], &[], None).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("runs"), "{shell}: {out:?}");
    }
}

/// A command in a pseudo-terminal (util-linux `script`, which gives the child a
/// controlling terminal): what it prints is collected; keys are written as typed.
struct Pty {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    out: std::sync::Arc<std::sync::Mutex<String>>,
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Pty {
    fn spawn(cfg: &Path, args: &[&str], env: &[(&str, &str)]) -> Pty {
        use tokio::io::AsyncReadExt as _;
        // `exec`: the shell must not outlive the CLI (it would turn a Ctrl-C into 130).
        let line = std::iter::once(BIN)
            .chain(args.iter().copied())
            .map(sh_quote)
            .collect::<Vec<_>>()
            .join(" ");
        let line = format!("exec {line}");
        let mut c = tokio::process::Command::new("script");
        c.args(["-q", "-e", "-c", &line, "/dev/null"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SHELL", "/bin/sh")
            .env("TERM", "dumb")
            .env("HOME", cfg)
            .env("XDG_CONFIG_HOME", cfg)
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("spawn script (util-linux)");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = out.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Pty { child, stdin, out }
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Waits until the output contains `needle` (10 s at most).
    async fn expect(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.output().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "never saw {needle:?}; output so far:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn send(&mut self, keys: &str) {
        self.stdin.write_all(keys.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn wait(mut self) -> (i32, String) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the command did not exit")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        (status.code().unwrap_or(-1), self.output())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_interactive_login_hides_the_password_and_ctrl_c_offers_to_cancel() {
    let mock = MockLlm::start(vec![
        Turn::tool_call("log", json!({"message": "working on it", "level": "info"})),
        Turn::tool_call("bash", json!({"command": "sleep 30"})),
    ])
    .await
    .unwrap();
    let app = app_with_model(&mock).await;
    let s = app.user_with_org("Tty").await;
    let cfg = tempfile::tempdir().unwrap();
    let dir = cfg.path();

    // Prompts for the email (echoed) and the password (hidden) on the terminal.
    let mut pty = Pty::spawn(dir, &["login", &app.base], &[]);
    pty.expect("Email: ").await;
    pty.send(&format!("{}\n", s.email)).await;
    pty.expect("Password: ").await;
    pty.send("correct horse battery\n").await;
    let (code, out) = pty.wait().await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&s.email), "the email is echoed: {out}");
    assert!(!out.contains("correct horse"), "the password is not: {out}");
    assert!(out.contains("Logged in to"), "{out}");
    let who = corral(dir, &["whoami", "--json"], &[], None).await.json();
    assert_eq!(who["user"]["email"], s.email.as_str());

    // Ctrl-C while following asks; `y` cancels and the exit code says so.
    let mut pty = Pty::spawn(
        dir,
        &[
            "run",
            "@corral/hello-world",
            "--input",
            r#"{"name":"Ada"}"#,
            "-f",
        ],
        &[],
    );
    pty.expect("working on it").await;
    pty.send("\x03").await;
    pty.expect("[y/N]").await;
    pty.send("y\n").await;
    let (code, out) = pty.wait().await;
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("cancelled"), "{out}");
    let runs = corral(dir, &["runs", "list", "--json"], &[], None)
        .await
        .json();
    assert_eq!(runs[0]["status"], "cancelled");

    // Answering no detaches (130) and leaves the run going.
    mock.push(Turn::tool_call(
        "log",
        json!({"message": "again", "level": "info"}),
    ));
    mock.push(Turn::tool_call("bash", json!({"command": "sleep 30"})));
    let mut pty = Pty::spawn(
        dir,
        &[
            "run",
            "@corral/hello-world",
            "--input",
            r#"{"name":"Bo"}"#,
            "-f",
        ],
        &[],
    );
    pty.expect("again").await;
    pty.send("\x03").await;
    pty.expect("[y/N]").await;
    pty.send("n\n").await;
    let (code, out) = pty.wait().await;
    assert_eq!(code, 130, "{out}");
    let runs = corral(dir, &["runs", "list", "--json"], &[], None)
        .await
        .json();
    assert_eq!(runs[0]["status"], "running", "{runs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_doctor_reports_a_docker_engine_that_is_down() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let cfg = tempfile::tempdir().unwrap();
    let env = [
        ("CORRAL_URL", app.base.as_str()),
        ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
    ];
    let out = corral(cfg.path(), &["doctor"], &env, None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("✓ server"), "{out:?}");
    assert!(out.stdout.contains("✓ database"), "{out:?}");
    assert!(out.stdout.contains("✗ docker"), "{out:?}");
    assert!(out.stdout.contains("/nonexistent/docker.sock"), "{out:?}");
    assert!(out.stdout.contains("fix: start Docker"), "{out:?}");
    let out = corral(cfg.path(), &["doctor", "--json"], &env, None).await;
    let report = out.json();
    assert_eq!(report["ok"], false);
    let docker = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "docker")
        .unwrap()
        .clone();
    assert_eq!(docker["ok"], false, "{report}");
    assert!(docker["fix"].as_str().unwrap().contains("start Docker"));
    let clock = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "clock");
    assert_eq!(clock.unwrap()["ok"], true, "{report}");

    // A server that is not there.
    let down = [
        ("CORRAL_URL", "http://127.0.0.1:9"),
        ("DOCKER_HOST", "unix:///nonexistent"),
    ];
    let out = corral(cfg.path(), &["doctor"], &down, None).await;
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("✗ server"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_images_build_runs_the_checkout_script_and_reports_images() {
    let cfg = tempfile::tempdir().unwrap();
    let src = cfg.path().join("src");
    std::fs::create_dir_all(src.join("scripts")).unwrap();
    let script = src.join("scripts/build-images.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"args: $*\" >&2\necho 'corral-agent:t=corral-agent:c-aa'\necho 'corral-sidecar:t=corral-sidecar:c-bb'\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let src_s = src.to_str().unwrap();
    let out = corral(
        cfg.path(),
        &[
            "images",
            "build",
            "--source",
            src_s,
            "--profile",
            "debug",
            "--tag",
            "t",
            "--json",
        ],
        &[],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("args: --profile debug --tag t"),
        "{out:?}"
    );
    let r = out.json();
    assert_eq!(
        r["images"][0],
        json!({"name": "corral-agent:t", "image": "corral-agent:c-aa"})
    );
    assert_eq!(r["images"][1]["image"], "corral-sidecar:c-bb");
    // A failing script fails the command; no checkout is a clear error.
    std::fs::write(&script, "#!/bin/sh\necho boom >&2\nexit 7\n").unwrap();
    let out = corral(
        cfg.path(),
        &["images", "build", "--source", src_s],
        &[],
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("boom") && out.stderr.contains("failed"),
        "{out:?}"
    );
    let out = corral(
        cfg.path(),
        &["images", "build", "--source", "/nonexistent"],
        &[],
        None,
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("has no scripts/build-images.sh"),
        "{out:?}"
    );
}
