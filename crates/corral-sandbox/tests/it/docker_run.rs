//! Whole runs in leased Docker sandboxes: one end to end against the mock model and
//! a platform sink on the host gateway, and one whose agent probes its walls. Every
//! probe must fail, which the test reads from the tool results the agent sent back
//! to the model; each script also has a positive control, so that a probe that
//! cannot run does not pass silently.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bollard::query_parameters::InspectContainerOptions;
use corral_mockllm::{MockLlm, Turn};
use corral_protocol::RunStatus;
use corral_sandbox::docker::SandboxNames;
use corral_sandbox::{Resources, SandboxBackend, SandboxState};
use serde_json::json;

use crate::common::{configure, tool_results, Sink, REAL_KEY, RUN_TOKEN, SINK_SECRET};
use crate::docker_backend::backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_sandbox_runs_end_to_end() {
    let (backend, _cleanup) = backend("e2e", 0).await;
    let gateway: IpAddr = backend
        .platform_bind_ip()
        .await
        .unwrap()
        .expect("docker gateway");
    // The platform's servers listen on the gateway only; the sidecar reaches them as
    // host.docker.internal, the URLs being the platform's loopback ones rewritten.
    let sink = Sink::start(gateway).await;
    let mock = MockLlm::start_on(
        SocketAddr::new(gateway, 0),
        vec![
            Turn::tool_call(
                "bash",
                json!({"command": "echo hello > greeting.txt && cat greeting.txt && id -u && pwd"}),
            ),
            Turn::tool_call("output", json!({"greeting": "hello"})),
            Turn::text("Done."),
        ],
    )
    .await
    .unwrap();
    let mock_port = mock.base_url().rsplit(':').next().unwrap().to_owned();
    let run_id = "run_docker_e2e";
    let lease = backend.lease(run_id, Resources::default()).await.unwrap();
    configure(
        &backend,
        &lease,
        run_id,
        &format!("http://127.0.0.1:{mock_port}"),
        &format!("http://localhost:{}", sink.port),
    )
    .await;

    let result = sink.finalize(run_id, Duration::from_secs(120)).await;
    assert_eq!(result.status, RunStatus::Success, "{result:?}");
    assert_eq!(result.output, Some(json!({"greeting": "hello"})));
    let seen = sink.seen();
    assert!(seen
        .iter()
        .any(|s| s.path == format!("/api/runs/{run_id}/events")));
    assert!(seen
        .iter()
        .any(|s| s.path == format!("/api/runs/{run_id}/events/heartbeat")));
    let results = tool_results(&mock);
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(
        results[0].contains("hello\n10001\n/workspace"),
        "{}",
        results[0]
    );
    for r in mock.requests() {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {REAL_KEY}").as_str())
        );
    }

    // The agent exits after finalizing; its logs are there for diagnostics.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match backend.state(&lease.id).await.unwrap() {
            SandboxState::AgentExited { code } => {
                assert_eq!(code, Some(0));
                break;
            }
            SandboxState::Running => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "agent still running"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            SandboxState::Gone => panic!("the sandbox vanished"),
        }
    }
    let logs = backend.agent_logs(&lease.id, 4096).await;
    assert!(logs.contains("task received"), "{logs}");
    assert!(logs.len() <= 4096);
    backend.destroy(&lease.id).await.unwrap();
    assert_eq!(backend.state(&lease.id).await.unwrap(), SandboxState::Gone);
}

/// One probe: a bash script and what its tool result must (not) contain.
struct Probe {
    name: &'static str,
    script: String,
    must: Vec<String>,
    must_not: Vec<String>,
}

fn curl(url: &str) -> String {
    // Direct (no proxy), 3 s; prints `REACHED <url>` or `BLOCKED <url>`.
    format!(
        "if curl --noproxy '*' -sS -o /dev/null -m 3 {url}; then echo \"REACHED {url}\"; else echo \"BLOCKED {url}\"; fi\n"
    )
}

fn via_proxy(url: &str) -> String {
    // Through the sidecar's egress proxy; -f makes its 403 a failure.
    format!(
        "if curl -f -sS -o /dev/null -m 5 -x http://sidecar:8081 {url}; then echo \"PROXIED {url}\"; else echo \"REFUSED {url}\"; fi\n"
    )
}

/// The positive control of the network probes: the own sidecar answers.
const SIDECAR_CONTROL: &str =
    "curl --noproxy '*' -sS -m 5 http://sidecar:8080/health >/dev/null && echo CONTROL-SIDECAR-OK\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_cannot_escape_its_sandbox() {
    let (backend, _cleanup) = backend("probes", 0).await;
    let gateway = backend.platform_bind_ip().await.unwrap().unwrap();
    let sink = Sink::start(gateway).await;
    let (lease, other) = tokio::join!(
        backend.lease("run_probes", Resources::default()),
        backend.lease("run_probes_other", Resources::default())
    );
    let (lease, other) = (lease.unwrap(), other.unwrap());
    let other_names = SandboxNames::of(&other.id).unwrap();
    let other_sidecar = backend
        .docker()
        .inspect_container(&other_names.sidecar, None::<InspectContainerOptions>)
        .await
        .unwrap();
    let other_run_ip = other_sidecar.network_settings.unwrap().networks.unwrap()
        [&other_names.run_network]
        .ip_address
        .clone()
        .unwrap();
    let other_egress = other.sidecar_url.clone();

    let mut probes = vec![
        Probe {
            name: "internet",
            script: format!(
                "echo CONTROL-OK\n{SIDECAR_CONTROL}{}{}",
                curl("http://1.1.1.1/"),
                curl("https://example.com/")
            ),
            must: vec![
                "CONTROL-SIDECAR-OK".into(),
                "BLOCKED http://1.1.1.1/".into(),
                "BLOCKED https://example.com/".into(),
            ],
            must_not: vec!["REACHED".into()],
        },
        Probe {
            name: "host",
            script: format!(
                "echo CONTROL-OK\n{SIDECAR_CONTROL}{}{}{}",
                curl(&format!("http://{gateway}:{}/probe-host", sink.port)),
                curl(&format!("http://host.docker.internal:{}/probe-host", sink.port)),
                via_proxy(&format!("http://{gateway}:{}/probe-proxy", sink.port)),
            ),
            must: vec![
                "CONTROL-SIDECAR-OK".into(),
                format!("BLOCKED http://{gateway}:{}/probe-host", sink.port),
                format!("BLOCKED http://host.docker.internal:{}/probe-host", sink.port),
                format!("REFUSED http://{gateway}:{}/probe-proxy", sink.port),
            ],
            must_not: vec!["REACHED".into(), "PROXIED".into()],
        },
        Probe {
            name: "other sandbox",
            script: format!(
                "echo CONTROL-OK\n{SIDECAR_CONTROL}{}{}{}{}",
                curl(&format!("{other_egress}/health")),
                curl(&format!("http://{other_run_ip}:8080/health")),
                curl(&format!("http://{}:8080/health", other_names.sidecar)),
                via_proxy(&format!("{other_egress}/health")),
            ),
            must: vec![
                "CONTROL-SIDECAR-OK".into(),
                format!("BLOCKED {other_egress}/health"),
                format!("BLOCKED http://{other_run_ip}:8080/health"),
                format!("BLOCKED http://{}:8080/health", other_names.sidecar),
                format!("REFUSED {other_egress}/health"),
            ],
            must_not: vec!["REACHED".into(), "PROXIED".into()],
        },
        Probe {
            name: "docker socket",
            script: "echo CONTROL-OK\ntest -d /workspace && echo CONTROL-WORKSPACE\n\
                     for s in /var/run/docker.sock /run/docker.sock; do \
                     if test -e $s; then echo \"SOCKET-PRESENT $s\"; else echo \"SOCKET-ABSENT $s\"; fi; done\n"
                .into(),
            must: vec![
                "CONTROL-WORKSPACE".into(),
                "SOCKET-ABSENT /var/run/docker.sock".into(),
                "SOCKET-ABSENT /run/docker.sock".into(),
            ],
            must_not: vec!["SOCKET-PRESENT".into()],
        },
        Probe {
            name: "read-only root",
            script: "echo CONTROL-OK\n\
                     for f in /etc/x /x /usr/local/bin/x /workspace/ok; do \
                     if touch $f 2>/dev/null; then echo \"WROTE $f\"; else echo \"DENIED $f\"; fi; done\n"
                .into(),
            must: vec![
                "WROTE /workspace/ok".into(),
                "DENIED /etc/x".into(),
                "DENIED /x".into(),
                "DENIED /usr/local/bin/x".into(),
            ],
            must_not: vec!["WROTE /etc".into(), "WROTE /x".into(), "WROTE /usr".into()],
        },
        Probe {
            name: "pids limit",
            script: "echo CONTROL-OK\npython3 - <<'PY'\n\
                     import os, signal, time\n\
                     kids, failed = [], 0\n\
                     for _ in range(400):\n\
                     \x20   try:\n\
                     \x20       pid = os.fork()\n\
                     \x20   except OSError:\n\
                     \x20       failed += 1\n\
                     \x20       continue\n\
                     \x20   if pid == 0:\n\
                     \x20       time.sleep(30)\n\
                     \x20       os._exit(0)\n\
                     \x20   kids.append(pid)\n\
                     print('FORKED', len(kids), 'FAILED', failed)\n\
                     for k in kids:\n\
                     \x20   os.kill(k, signal.SIGKILL)\n\
                     for k in kids:\n\
                     \x20   os.waitpid(k, 0)\n\
                     PY\n"
                .into(),
            must: vec!["FORKED".into()],
            must_not: vec!["FAILED 0\n".into()],
        },
        Probe {
            name: "credentials",
            script: "echo CONTROL-OK\nenv\ntr '\\0' '\\n' < /proc/1/environ\n\
                     ls /proc | grep -c '^[0-9]' | sed 's/^/PROCS /'\n\
                     curl --noproxy '*' -sS -o /dev/null -m 5 -w 'CONFIGURE-STATUS %{http_code}\\n' \
                     -X POST -H 'content-type: application/json' -d '{}' http://sidecar:8080/configure\n"
                .into(),
            must: vec![
                "CORRAL_SIDECAR_URL=http://sidecar:8080".into(),
                // Refused without the token (401, or 400 for the empty body).
                "CONFIGURE-STATUS 4".into(),
            ],
            must_not: vec![
                "CONFIGURE-STATUS 2".into(),
                "CORRAL_CONFIGURE_TOKEN".into(),
                lease.configure_token.expose().to_owned(),
                other.configure_token.expose().to_owned(),
                REAL_KEY.into(),
                RUN_TOKEN.into(),
                SINK_SECRET.into(),
            ],
        },
    ];
    for p in &mut probes {
        p.must.push("CONTROL-OK".into());
    }

    let mut script: Vec<Turn> = probes
        .iter()
        .map(|p| Turn::tool_call("bash", json!({"command": p.script})))
        .collect();
    script.push(Turn::tool_call("output", json!({"greeting": "probed"})));
    script.push(Turn::text("Done."));
    let mock = MockLlm::start_on(SocketAddr::new(gateway, 0), script)
        .await
        .unwrap();
    let mock_port = mock.base_url().rsplit(':').next().unwrap().to_owned();
    configure(
        &backend,
        &lease,
        "run_probes",
        &format!("http://127.0.0.1:{mock_port}"),
        &format!("http://127.0.0.1:{}", sink.port),
    )
    .await;
    let result = sink.finalize("run_probes", Duration::from_secs(150)).await;
    assert_eq!(result.status, RunStatus::Success, "{result:?}");

    let results = tool_results(&mock);
    assert_eq!(results.len(), probes.len() + 1, "{results:#?}");
    for (probe, result) in probes.iter().zip(&results) {
        eprintln!("--- probe `{}`:\n{result}", probe.name);
        for m in &probe.must {
            assert!(
                result.contains(m.as_str()),
                "probe `{}`: missing {m:?} in:\n{result}",
                probe.name
            );
        }
        for m in &probe.must_not {
            assert!(
                !result.contains(m.as_str()),
                "probe `{}`: found {m:?} in:\n{result}",
                probe.name
            );
        }
    }
    // The fork bomb hit the limit after forking a good many (the control).
    let pids = &results[5];
    let count = |key: &str| -> u32 {
        pids.split_whitespace()
            .skip_while(|w| *w != key)
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {pids}"))
    };
    let (forked, failed) = (count("FORKED"), count("FAILED"));
    assert!((100..256).contains(&forked), "forked {forked} (limit 256)");
    assert!(failed > 0, "no fork failed");
    // Nothing from inside reached the platform's sink but the sidecar's calls.
    assert!(
        !sink.seen().iter().any(|s| s.path.starts_with("/probe")),
        "a probe reached the sink: {:?}",
        sink.seen()
    );
    // The other sandbox is still untouched and healthy.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let health = http
        .get(format!("{other_egress}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    backend.destroy(&lease.id).await.unwrap();
    backend.destroy(&other.id).await.unwrap();
}
