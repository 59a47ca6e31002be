//! The process backend with the real binaries: a whole run on loopback, destroy
//! killing what the agent started, sandboxes left by a dead server, the pool.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use corral_mockllm::{MockLlm, Turn};
use corral_protocol::RunStatus;
use corral_sandbox::process::SandboxRecord;
use corral_sandbox::{
    ProcessBackend, ProcessOptions, Resources, RunnerKind, SandboxBackend, SandboxState,
};
use serde_json::json;

use crate::common::{
    alive, binaries, configure, owner, process_matches, tool_results, until, ProcessCleanup, Sink,
};

fn options(root: &Path, test: &str, pool_size: usize) -> ProcessOptions {
    let (agent, sidecar) = binaries().clone();
    ProcessOptions {
        agent_bin: agent,
        sidecar_bin: sidecar,
        root_dir: root.to_owned(),
        owner: owner(test),
        pool_size,
        agent_env: vec![("CORRAL_HEARTBEAT_SECS".to_owned(), "1".to_owned())],
        ..ProcessOptions::default()
    }
}

async fn new_backend(root: &Path, test: &str, pool_size: usize) -> ProcessBackend {
    let opts = tokio::task::spawn_blocking({
        let root = root.to_owned();
        let test = test.to_owned();
        move || options(&root, &test, pool_size)
    })
    .await
    .unwrap();
    ProcessBackend::new(opts).expect("process backend")
}

fn environ(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// Living descendants of `pid` (by walking `/proc`).
fn descendants(pid: i32) -> Vec<i32> {
    let mut parent = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            if let Some(i) = stat.rfind(')') {
                let fields: Vec<&str> = stat[i + 2..].split(' ').collect();
                if let Some(pp) = fields.get(1).and_then(|f| f.parse::<i32>().ok()) {
                    parent.insert(p, pp);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (&p, _) in parent.iter() {
        let mut cur = p;
        while let Some(&pp) = parent.get(&cur) {
            if pp == pid {
                out.push(p);
                break;
            }
            cur = pp;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_sandbox_runs_end_to_end() {
    let cleanup = ProcessCleanup::new();
    let backend = new_backend(&cleanup.root(), "proc-e2e", 0).await;
    assert_eq!(backend.platform_bind_ip().await.unwrap(), None);
    assert_eq!(
        backend.sidecar_view("http://127.0.0.1:9/x"),
        "http://127.0.0.1:9/x"
    );
    let sink = Sink::start([127, 0, 0, 1].into()).await;
    let mock = MockLlm::start(vec![
        Turn::tool_call(
            "bash",
            json!({"command": "echo hello > greeting.txt && cat greeting.txt && pwd"}),
        ),
        Turn::tool_call("output", json!({"greeting": "hello"})),
        Turn::text("Done."),
    ])
    .await
    .unwrap();
    let run_id = "run_process_e2e";
    let lease = backend.lease(run_id, Resources::default()).await.unwrap();
    assert_eq!(lease.kind, RunnerKind::Process);
    assert!(lease.sidecar_url.starts_with("http://127.0.0.1:"));
    let record: SandboxRecord = backend.record(&lease.id).expect("sandbox.json");
    let agent_pid = record.agent.as_ref().unwrap().pid;
    let sidecar_pid = record.sidecar.pid;

    // Allow-listed environments: the server's (here: cargo's) never gets in.
    let agent_env = environ(agent_pid);
    let sidecar_env = environ(sidecar_pid);
    assert!(agent_env
        .iter()
        .any(|v| v.starts_with("CORRAL_SIDECAR_URL=http://127.0.0.1:")));
    assert!(agent_env
        .iter()
        .any(|v| v.starts_with("HTTPS_PROXY=http://127.0.0.1:")));
    assert!(agent_env.contains(&"CORRAL_HEARTBEAT_SECS=1".to_owned()));
    assert!(sidecar_env.contains(&format!(
        "CORRAL_CONFIGURE_TOKEN={}",
        lease.configure_token.expose()
    )));
    for env in [&agent_env, &sidecar_env] {
        assert!(
            !env.iter().any(|v| v.starts_with("CARGO")),
            "the server's environment leaked: {env:?}"
        );
        assert!(!env.is_empty());
    }
    assert!(!agent_env
        .iter()
        .any(|v| v.contains("CORRAL_CONFIGURE_TOKEN")));

    configure(
        &backend,
        &lease,
        run_id,
        &mock.base_url(),
        &format!("http://127.0.0.1:{}", sink.port),
    )
    .await;
    let result = sink.finalize(run_id, Duration::from_secs(60)).await;
    assert_eq!(result.status, RunStatus::Success, "{result:?}");
    assert_eq!(result.output, Some(json!({"greeting": "hello"})));
    let workspace = backend.sandbox_dir(&lease.id).unwrap().join("workspace");
    let results = tool_results(&mock);
    assert!(
        results[0].contains(&format!("hello\n{}", workspace.display())),
        "{results:?}"
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("greeting.txt")).unwrap(),
        "hello\n"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while backend.state(&lease.id).await.unwrap() == SandboxState::Running {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent keeps running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        backend.state(&lease.id).await.unwrap(),
        SandboxState::AgentExited { code: Some(0) }
    );
    let logs = backend.agent_logs(&lease.id, 2000).await;
    assert!(logs.contains("task received"), "{logs}");
    assert!(logs.len() <= 2000);

    backend.destroy(&lease.id).await.unwrap();
    assert!(!alive(sidecar_pid), "the sidecar survived destroy");
    assert!(!backend.sandbox_dir(&lease.id).unwrap().exists());
    assert_eq!(backend.state(&lease.id).await.unwrap(), SandboxState::Gone);
    backend.destroy(&lease.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_kills_the_agent_and_what_it_started() {
    let cleanup = ProcessCleanup::new();
    let backend = new_backend(&cleanup.root(), "proc-kill", 0).await;
    let sink = Sink::start([127, 0, 0, 1].into()).await;
    let mock = MockLlm::start(vec![
        Turn::tool_call(
            "bash",
            // Both sleeps ignore SIGTERM, and one left the agent's process group
            // (setsid): destroy still kills them (SIGKILL after the grace, and the
            // descendants it found), so no agent process outlives its directory.
            json!({"command": "trap '' TERM; setsid sleep 300 & sleep 301; echo never"}),
        ),
        Turn::text("Done."),
    ])
    .await
    .unwrap();
    let run_id = "run_process_kill";
    let lease = backend.lease(run_id, Resources::default()).await.unwrap();
    let record = backend.record(&lease.id).unwrap();
    let agent = record.agent.clone().unwrap();
    configure(
        &backend,
        &lease,
        run_id,
        &mock.base_url(),
        &format!("http://127.0.0.1:{}", sink.port),
    )
    .await;
    // The command runs in its own process group, a child of the agent.
    let mut family = Vec::new();
    until("the sleeps to run", Duration::from_secs(30), || {
        family = descendants(agent.pid)
            .into_iter()
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"))
            })
            .collect();
        family.len() == 2
    })
    .await;
    let t = std::time::Instant::now();
    backend.destroy(&lease.id).await.unwrap();
    eprintln!("process destroy in {:?}", t.elapsed());
    for pid in family.iter().chain([&agent.pid, &record.sidecar.pid]) {
        assert!(!alive(*pid), "pid {pid} survived destroy");
    }
    assert!(!backend.sandbox_dir(&lease.id).unwrap().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_left_by_a_dead_server_are_found_and_destroyed() {
    let cleanup = ProcessCleanup::new();
    let dead = new_backend(&cleanup.root(), "proc-dead", 0).await;
    let dead_owner = dead.options().owner.clone();
    let lease = dead
        .lease("run_orphan", Resources::default())
        .await
        .unwrap();
    let record = dead.record(&lease.id).unwrap();
    // The server dies without cleaning up: nothing of it runs any destructor.
    std::mem::forget(dead);

    let next = new_backend(&cleanup.root(), "proc-next", 0).await;
    let found = next.list().await.unwrap();
    let info = found
        .iter()
        .find(|s| s.id == lease.id)
        .expect("the new server lists the orphan");
    assert_eq!(info.owner.as_deref(), Some(dead_owner.as_str()));
    assert_eq!(info.run_id.as_deref(), Some("run_orphan"));
    assert!(info.created_at.is_some());
    let agent = record.agent.clone().unwrap();
    assert_eq!(
        next.state(&lease.id).await.unwrap(),
        SandboxState::Running,
        "{record:?}: stat {:?} cmdline {:?}",
        std::fs::read_to_string(format!("/proc/{}/stat", agent.pid)),
        std::fs::read(format!("/proc/{}/cmdline", agent.pid))
            .map(|c| String::from_utf8_lossy(&c).into_owned()),
    );
    // (A process still inside `execve` shows no command line for a moment.)
    until(
        "the orphans to show their binaries",
        Duration::from_secs(5),
        || {
            process_matches(agent.pid, &agent.exe)
                && process_matches(record.sidecar.pid, &record.sidecar.exe)
        },
    )
    .await;

    next.destroy(&lease.id).await.unwrap();
    assert!(!alive(agent.pid), "the orphan agent survived");
    assert!(!alive(record.sidecar.pid), "the orphan sidecar survived");
    assert!(next.list().await.unwrap().iter().all(|s| s.id != lease.id));
    assert_eq!(next.state(&lease.id).await.unwrap(), SandboxState::Gone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_pool_hits_and_misses() {
    let cleanup = ProcessCleanup::new();
    let backend = new_backend(&cleanup.root(), "proc-pool", 1).await;
    until("a warm member", Duration::from_secs(30), || {
        backend.stats().ready == 1
    })
    .await;
    let member = backend.pool_members()[0].clone();
    let t = std::time::Instant::now();
    let (a, b) = tokio::join!(
        backend.lease("run_a", Resources::default()),
        backend.lease("run_b", Resources::default())
    );
    eprintln!("process hit + miss in {:?}", t.elapsed());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.id, b.id);
    assert_eq!(
        [a.warm, b.warm].iter().filter(|w| **w).count(),
        1,
        "one hit, one miss"
    );
    let warm = if a.warm { &a } else { &b };
    assert_eq!(warm.id, member);
    let stats = backend.stats();
    assert_eq!((stats.hits, stats.misses), (1, 1));
    until("the pool to refill", Duration::from_secs(30), || {
        backend.stats().ready == 1
    })
    .await;
    let members: HashSet<String> = backend.pool_members().into_iter().collect();
    assert!(!members.contains(&a.id) && !members.contains(&b.id));
    let cold = if a.warm { &b } else { &a };
    assert_eq!(
        backend.record(&cold.id).unwrap().run_id.as_deref(),
        Some(if a.warm { "run_b" } else { "run_a" })
    );
    backend.destroy(&a.id).await.unwrap();
    backend.destroy(&b.id).await.unwrap();
    backend.shutdown().await;
    assert!(backend.pool_members().is_empty());
    assert!(
        backend.list().await.unwrap().is_empty(),
        "shutdown left sandboxes"
    );
}

/// A sandbox whose directory exists but whose record is not written yet (its sidecar
/// is starting) is listed with an age, so that a reaper sees it is fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_being_created_is_listed_as_fresh() {
    let cleanup = ProcessCleanup::new();
    let backend = new_backend(&cleanup.root(), "proc-creating", 0).await;
    let id = "sbx_00c0ffee00c0ffee";
    std::fs::create_dir_all(cleanup.root().join(id).join("workspace")).unwrap();
    let found = backend.list().await.unwrap();
    let info = found.iter().find(|s| s.id == id).expect("listed");
    assert_eq!(info.owner, None);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let age = now - info.created_at.expect("an age from the directory");
    assert!((0..5).contains(&age), "age {age}");
}
