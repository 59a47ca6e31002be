//! A whole run in containers: bash + write_file + `demo__api_call` + a schema-valid
//! output; then what the sandbox must guarantee — the credential reached the API
//! and nothing inside the agent container, events arrived signed and in order, the
//! agent has no way out but the sidecar and no Docker socket, and teardown leaves
//! nothing behind.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use corral_mockllm::{MockLlm, Turn};
use corral_protocol::events::run_source;
use corral_protocol::signing::WebhookHeaders;
use corral_protocol::{CloudEvent, EventType, RunResult, RunStatus, SigningSecret};
use corral_testkit::recorder::{Recorder, Seen};
use serde_json::{json, Value};

use crate::docker::{docker, docker_ok, images, inspect, Cleanup};
use crate::servers::Relay;

const CONFIGURE_TOKEN: &str = "configure-token-ct-0017";
const RUN_TOKEN: &str = "rt_SECRET_container_run_token";
const REAL_KEY: &str = "sk-REAL-container-provider-key";
const SINK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const INTEGRATION_SECRET: &str = "gho_CONTAINER_INTEGRATION_SECRET";
const AGENT_UID: &str = "10001";

fn verify(seen: &Seen) -> bool {
    let Ok(headers) = WebhookHeaders::from_lookup(|name| seen.header(name)) else {
        return false;
    };
    SigningSecret::parse(SINK_SECRET)
        .unwrap()
        .verify(&headers, &seen.body, chrono::Utc::now().timestamp())
        .is_ok()
}

/// The address `host.docker.internal` (`host-gateway`) got inside `container`:
/// the only host address the test's servers bind.
fn host_gateway(container: &str) -> IpAddr {
    let hosts = docker_ok(&["exec", container, "cat", "/etc/hosts"]);
    hosts
        .lines()
        .find(|l| {
            l.split_whitespace()
                .skip(1)
                .any(|h| h == "host.docker.internal")
        })
        .and_then(|l| l.split_whitespace().next())
        .and_then(|ip| ip.parse().ok())
        .unwrap_or_else(|| panic!("no host.docker.internal in {hosts}"))
}

/// Polls the sidecar's published `/health` until it answers (bounded).
async fn wait_healthy(url: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{url}/health")).await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sidecar not healthy at {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `docker exec` exit code and combined output.
fn exec(container: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["exec", container];
    all.extend_from_slice(args);
    let out = docker(&all);
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {"greeting": {"type": "string"}, "stars": {"type": "integer"}},
        "required": ["greeting", "stars"],
        "additionalProperties": false
    })
}

// The docker CLI calls block; a multi-thread runtime keeps the servers answering
// while the test thread waits on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardened_sandbox_runs_end_to_end() {
    let images = tokio::task::spawn_blocking(images).await.unwrap();
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let run_id = format!("run_{id}");
    let run_net = format!("corral-run-{id}");
    let egress_net = format!("corral-egress-{id}");
    let sidecar = format!("corral-sidecar-{id}");
    let agent = format!("corral-agent-{id}");
    let run_label = format!("corral.run={id}");
    let mut cleanup = Cleanup::default();

    // Networks: the run network has no route out; egress is an ordinary bridge.
    // `--internal` alone only stops forwarding: the host still owns the bridge's
    // gateway address, and the agent's default route reaches every service bound
    // on any host address (engine 20.10). Without an address on the bridge the
    // host is out of reach too.
    cleanup.network(&run_net);
    docker_ok(&[
        "network",
        "create",
        "--internal",
        "--opt",
        "com.docker.network.bridge.inhibit_ipv4=true",
        "--label",
        "corral.managed=true",
        "--label",
        &run_label,
        &run_net,
    ]);
    cleanup.network(&egress_net);
    docker_ok(&[
        "network",
        "create",
        "--label",
        "corral.managed=true",
        "--label",
        &run_label,
        &egress_net,
    ]);

    // The sidecar: egress first (its default route), then the run network under
    // the alias the agent knows; started only once both are attached.
    cleanup.container(&sidecar);
    let token_env = format!("CORRAL_CONFIGURE_TOKEN={CONFIGURE_TOKEN}");
    docker_ok(&[
        "create",
        "--name",
        &sidecar,
        "--network",
        &egress_net,
        "--add-host",
        "host.docker.internal:host-gateway",
        "--publish",
        "127.0.0.1::8080",
        "--env",
        &token_env,
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--label",
        "corral.managed=true",
        "--label",
        &run_label,
        "--label",
        "corral.role=sidecar",
        &images.sidecar,
    ]);
    docker_ok(&[
        "network", "connect", "--alias", "sidecar", &run_net, &sidecar,
    ]);
    docker_ok(&["start", &sidecar]);
    let published = docker_ok(&["port", &sidecar, "8080/tcp"]);
    let sidecar_url = format!("http://{}", published.lines().next().unwrap());

    // The agent container, hardened; kept alive by `sleep` so the run can be
    // exec'd in it and its workspace inspected after the agent exits.
    cleanup.container(&agent);
    let user = format!("{AGENT_UID}:{AGENT_UID}");
    let workspace_tmpfs = format!("/workspace:rw,uid={AGENT_UID},gid={AGENT_UID},mode=0755");
    docker_ok(&[
        "run",
        "--detach",
        "--name",
        &agent,
        "--network",
        &run_net,
        "--user",
        &user,
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--read-only",
        "--tmpfs",
        &workspace_tmpfs,
        "--tmpfs",
        "/tmp:rw,mode=1777",
        "--pids-limit",
        "256",
        "--memory",
        "1g",
        "--memory-swap",
        "1g",
        "--cpus",
        "1",
        "--label",
        "corral.managed=true",
        "--label",
        &run_label,
        "--label",
        "corral.role=agent",
        "--entrypoint",
        "sleep",
        &images.agent,
        "infinity",
    ]);

    // Servers on the host gateway address only.
    let gateway = host_gateway(&sidecar);
    let service = Recorder::start_on(gateway, |seen, _| {
        axum::Json(json!({"repo": seen.path, "stars": 7})).into_response()
    })
    .await;
    let sink = Recorder::sink_on(gateway).await;
    let host = |port: u16| format!("http://host.docker.internal:{port}");
    let target = format!("{}/api/repo", host(service.port));
    let mock = MockLlm::start(vec![
        Turn::tool_call(
            "bash",
            json!({"command": "printf hello > greeting.txt && env && cat greeting.txt"}),
        ),
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
        Turn::text("Done."),
    ])
    .await
    .unwrap();
    let mock_addr: SocketAddr = mock.base_url()["http://".len()..].parse().unwrap();
    let relay = Relay::start(gateway, mock_addr).await;

    wait_healthy(&sidecar_url).await;
    let config = json!({
        "run_id": run_id,
        "run_token": RUN_TOKEN,
        "task": {
            "prompt": "Greet the world and report.",
            "input": {"who": "world"},
            "output_schema": schema(),
            "model": {"api": "openai", "model": "mock-model-1",
                      "base_url": format!("{}/v1", host(relay.port)), "api_key": REAL_KEY},
            "limits": {"max_steps": 10, "max_tokens": 1000000, "timeout_secs": 90, "bash_timeout_secs": 20}
        },
        "integrations": [{
            "namespace": "demo",
            "delivery": {"type": "header", "name": "Authorization", "template": "Bearer {{token}}"},
            "authorized_uris": [format!("{}/api/*", host(service.port))],
            "credentials": {"token": INTEGRATION_SECRET}
        }],
        "sink": {"events_url": format!("{}/api/runs/{run_id}/events", host(sink.port)), "secret": SINK_SECRET}
    });
    let http = reqwest::Client::new();
    let wrong = http
        .post(format!("{sidecar_url}/configure"))
        .bearer_auth("not-the-token")
        .json(&config)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let resp = http
        .post(format!("{sidecar_url}/configure"))
        .bearer_auth(CONFIGURE_TOKEN)
        .json(&config)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NO_CONTENT,
        "{:?}",
        resp.text().await
    );

    // The run itself, in the hardened container.
    let agent_c = agent.clone();
    let run = tokio::task::spawn_blocking(move || {
        let out = docker(&[
            "exec",
            "--env",
            "CORRAL_HEARTBEAT_SECS=1",
            &agent_c,
            "corral-agent",
        ]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    });
    let (code, agent_log) = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the agent finished within 180s")
        .unwrap();
    assert_eq!(code, Some(0), "agent output:\n{agent_log}");

    // The result and the events: all signed, numbered 1..=n, in order, ours.
    let finalize_path = format!("/api/runs/{run_id}/events/finalize");
    let seen = sink
        .wait_until_within(Duration::from_secs(60), |s| {
            s.iter().any(|s| s.path == finalize_path)
        })
        .await;
    let fin = seen.iter().find(|s| s.path == finalize_path).unwrap();
    assert!(verify(fin), "finalize signature");
    let result: RunResult = serde_json::from_slice(&fin.body).unwrap();
    assert_eq!(result.status, RunStatus::Success, "{result:?}");
    assert_eq!(
        result.output,
        Some(json!({"greeting": "hello", "stars": 7}))
    );
    let events: Vec<CloudEvent> = seen
        .iter()
        .filter(|s| s.path == format!("/api/runs/{run_id}/events"))
        .map(|s| {
            assert!(verify(s), "event signature");
            serde_json::from_slice(&s.body).unwrap()
        })
        .collect();
    let seqs: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(result.last_sequence, events.len() as u64);
    assert!(events.iter().all(|e| e.source == run_source(&run_id)));
    assert!(events
        .iter()
        .any(|e| e.event_type == EventType::OutputEmitted));
    assert!(events.iter().any(|e| e.event_type == EventType::LogWritten));
    assert!(seen
        .iter()
        .any(|s| s.path.ends_with("/events/heartbeat") && verify(s)));

    // The integration got the credential, injected by the sidecar; the provider got
    // the real key; the model saw neither.
    let calls = service.seen();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0].header("authorization"),
        Some(format!("Bearer {INTEGRATION_SECRET}").as_str())
    );
    let requests = mock.requests();
    assert_eq!(requests.len(), 4);
    for r in &requests {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {REAL_KEY}").as_str())
        );
        for secret in [
            INTEGRATION_SECRET,
            RUN_TOKEN,
            SINK_SECRET,
            CONFIGURE_TOKEN,
            REAL_KEY,
        ] {
            assert!(
                !r.body_text().contains(secret),
                "{secret} reached the model"
            );
        }
    }
    assert!(
        requests[3].body_text().contains("stars"),
        "api_call result reached the model"
    );

    // Nothing secret inside the agent container: image/container env, the
    // environment its processes get, the workspace.
    let secrets = [
        INTEGRATION_SECRET,
        REAL_KEY,
        RUN_TOKEN,
        SINK_SECRET,
        CONFIGURE_TOKEN,
    ];
    let config_env = inspect(&agent, "{{json .Config.Env}}");
    let (_, proc_env) = exec(&agent, &["env"]);
    let (_, pid1_env) = exec(&agent, &["cat", "/proc/1/environ"]);
    for secret in secrets {
        assert!(!config_env.contains(secret), "{secret} in the agent's env");
        assert!(!proc_env.contains(secret), "{secret} in the agent's env");
        assert!(!pid1_env.contains(secret), "{secret} in the agent's env");
    }
    assert!(!config_env.contains("CORRAL_CONFIGURE_TOKEN"));
    let (_, files) = exec(&agent, &["find", "/workspace", "-type", "f"]);
    assert!(files.contains("/workspace/greeting.txt"), "{files}");
    assert!(files.contains("/workspace/out/report.md"), "{files}");
    let mut grep = vec!["grep", "-rlF"];
    for s in &secrets {
        grep.extend(["-e", s]);
    }
    grep.push("/workspace");
    let (code, found) = exec(&agent, &grep);
    assert_eq!(code, Some(1), "secret found in the workspace: {found}");
    let (_, owner) = exec(&agent, &["stat", "-c", "%u", "/workspace/greeting.txt"]);
    assert_eq!(owner.trim(), AGENT_UID);

    // The hardening is what the engine applied, not just what was asked for.
    assert_eq!(
        inspect(&agent, "{{.Config.User}}"),
        format!("{AGENT_UID}:{AGENT_UID}")
    );
    assert_eq!(
        inspect(&agent, "{{json .HostConfig.CapDrop}}"),
        r#"["ALL"]"#
    );
    assert!(inspect(&agent, "{{json .HostConfig.SecurityOpt}}").contains("no-new-privileges"));
    assert_eq!(inspect(&agent, "{{.HostConfig.ReadonlyRootfs}}"), "true");
    assert_eq!(inspect(&agent, "{{.HostConfig.PidsLimit}}"), "256");
    assert_eq!(inspect(&agent, "{{.HostConfig.Memory}}"), "1073741824");
    assert_eq!(inspect(&agent, "{{.HostConfig.MemorySwap}}"), "1073741824");
    assert_eq!(inspect(&agent, "{{.HostConfig.NanoCpus}}"), "1000000000");
    assert_eq!(
        inspect(&agent, "{{len .Mounts}}"),
        "0",
        "no volume or host mount"
    );
    assert_eq!(
        inspect(&agent, r#"{{index .Config.Labels "corral.role"}}"#),
        "agent"
    );
    assert_eq!(
        inspect(&sidecar, r#"{{index .Config.Labels "corral.role"}}"#),
        "sidecar"
    );
    assert_eq!(
        inspect(&agent, r#"{{index .Config.Labels "corral.run"}}"#),
        id
    );
    assert_eq!(
        inspect(
            &agent,
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}"
        )
        .trim(),
        run_net
    );
    assert_eq!(
        docker_ok(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Entrypoint}}",
            &images.agent
        ]),
        r#"["/usr/local/bin/corral-agent"]"#
    );
    let (_, uid) = exec(&agent, &["id", "-u"]);
    assert_eq!(uid.trim(), AGENT_UID);
    let (code, _) = exec(&agent, &["touch", "/usr/local/bin/x"]);
    assert_ne!(code, Some(0), "the root filesystem is writable");

    // The only way out is the sidecar: it answers by its alias, while the host
    // service the sidecar just reached is out of its reach (no host address on the
    // run network, no forwarding off it).
    let (code, out) = exec(
        &agent,
        &["curl", "-sS", "-m", "5", "http://sidecar:8080/health"],
    );
    assert_eq!(code, Some(0), "sidecar unreachable from the agent: {out}");
    let direct = format!("http://{gateway}:{}/api/repo", service.port);
    let (code, out) = exec(&agent, &["curl", "-sS", "-m", "5", &direct]);
    assert_ne!(code, Some(0), "the agent reached the host directly: {out}");
    assert_eq!(service.seen().len(), 1, "a direct call reached the service");
    let (code, _) = exec(
        &agent,
        &[
            "sh",
            "-c",
            "test -e /var/run/docker.sock || test -e /run/docker.sock",
        ],
    );
    assert_eq!(
        code,
        Some(1),
        "a Docker socket is visible in the agent container"
    );

    // Teardown leaves nothing with this run's label.
    drop(cleanup);
    let filter = format!("label={run_label}");
    assert_eq!(docker_ok(&["ps", "-aq", "--filter", &filter]), "");
    assert_eq!(docker_ok(&["network", "ls", "-q", "--filter", &filter]), "");
}
