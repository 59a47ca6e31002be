//! Scale-out with the real binary: one `api` replica and two `worker` replicas on one
//! PostgreSQL, process sandboxes, the scripted mock LLM.
//!
//! - 200 runs of two organizations triggered through the api replica are spread
//!   over the workers in proportion to their capacity, each executed exactly once,
//!   never more in flight than a worker's capacity or an organization's cap (across
//!   the cluster), and the smaller organization is not starved by the larger one;
//! - an SSE viewer on the api replica sees a worker's run live, and a cancel sent to
//!   the api replica stops it on its worker;
//! - SIGTERM drains a worker (its runs finish, it claims nothing more);
//! - SIGKILL of a worker mid-burst: its runs are re-queued or failed within 30 s and
//!   the rest finish on the other worker; its sandboxes are reaped when it returns.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_mockllm::{MockLlm, Turn};
use corral_testkit::client::Client;
use corral_testkit::sse::connect;
use serde_json::{json, Value};
use sqlx::Row;

mod common;

use common::{free_port, sigterm_and_wait, start, wait_healthy, Server};

const ENCRYPTION_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const ADMIN: &str = "ops@example.com";

struct Cluster {
    root: tempfile::TempDir,
    db_url: String,
    db: corral_store::Db,
    mock: MockLlm,
    env: Vec<(String, String)>,
}

impl Cluster {
    async fn new(sleep_secs: u32, org_cap: u32) -> Cluster {
        let db_url = corral_testkit::fresh_postgres_database().await;
        let mock = MockLlm::start_per_conversation(
            ([127, 0, 0, 1], 0).into(),
            vec![
                Turn::tool_call("bash", json!({"command": format!("sleep {sleep_secs}")})),
                Turn::tool_call("output", json!({"greeting": "Hello, Ada!", "length": 11})),
                Turn::text("Done."),
            ],
        )
        .await
        .unwrap();
        let env: Vec<(String, String)> = [
            ("DATABASE_URL", db_url.as_str()),
            ("CORRAL_SANDBOX", "process"),
            ("CORRAL_MODEL_API", "openai"),
            ("CORRAL_MODEL_ID", "mock-model"),
            ("CORRAL_MODEL_BASE_URL", &mock.openai_base_url()),
            ("CORRAL_MODEL_API_KEY", "sk-real"),
            ("CORRAL_SESSION_SECRET", &"s".repeat(40)),
            ("CORRAL_RUN_TOKEN_SECRET", &"r".repeat(40)),
            ("CORRAL_ENCRYPTION_KEY", ENCRYPTION_KEY),
            ("CORRAL_RATE_LIMITS", "off"),
            ("CORRAL_ORG_MAX_QUEUED_RUNS", "1000"),
            ("CORRAL_ORG_MAX_CONCURRENT_RUNS", &org_cap.to_string()),
            ("CORRAL_PLATFORM_ADMIN_EMAILS", ADMIN),
            ("CORRAL_SHUTDOWN_GRACE_SECONDS", "20"),
            ("CORRAL_WARM_POOL_SIZE", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let db = corral_store::Db::connect(&db_url, 2).await.unwrap();
        Cluster {
            root: tempfile::tempdir().unwrap(),
            db_url,
            db,
            mock,
            env,
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        let d = self.root.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Starts `corral serve` with `role` (workers named `name`, with `capacity`).
    fn start(&self, name: &str, role: &str, capacity: Option<u32>) -> Server {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.push(("CORRAL_ROLE", role));
        env.push(("CORRAL_WORKER_NAME", name));
        let cap = capacity.map(|c| c.to_string());
        if let Some(c) = &cap {
            env.push(("CORRAL_WORKER_CAPACITY", c));
        }
        start(&self.dir(name), free_port(), &env)
    }

    async fn scalar(&self, sql: &str) -> i64 {
        let mut conn = self.db.conn().await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut *conn).await.unwrap()
    }

    async fn rows(&self, sql: &str) -> Vec<sqlx::any::AnyRow> {
        let mut conn = self.db.conn().await.unwrap();
        sqlx::query(sql).fetch_all(&mut *conn).await.unwrap()
    }

    /// Waits until every run is terminal.
    async fn all_terminal(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let open = self
                .scalar("SELECT COUNT(*) FROM runs WHERE status IN ('pending', 'running')")
                .await;
            if open == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{open} runs still open; logs under {}",
                self.root.path().display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs running per worker instance.
    async fn running_by_server(&self) -> HashMap<String, i64> {
        self.rows(
            "SELECT server_id, COUNT(*) FROM runs WHERE status = 'running' GROUP BY server_id",
        )
        .await
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect()
    }
}

async fn worker_healthy(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/health", server.base)).await {
            if r.status() == 200 {
                let v: Value = r.json().await.unwrap();
                if v["checks"]["sandbox"]["status"] == "ready" {
                    assert_eq!(v["role"], "worker");
                    return;
                }
            }
        }
        assert!(Instant::now() < deadline, "worker never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs `email` up, creates an org, and returns (session client, API-key client,
/// the key).
async fn org_clients(base: &str, spec: Arc<Value>, email: &str) -> (Client, Client, String) {
    let c = Client::new(base, spec.clone())
        .sign_up(email, "correct horse battery", "Ops")
        .await;
    let org = c.post("/api/orgs", json!({"name": email}), 201).await;
    let c = c.org(org["id"].as_str().unwrap());
    let apps = c.get("/api/applications", 200).await;
    let app_id = apps["data"][0]["id"].as_str().unwrap().to_owned();
    let c = c.app(&app_id);
    let key = c.post("/api/api-keys", json!({"name": "ops"}), 201).await;
    let key = key["key"].as_str().unwrap().to_owned();
    (c, Client::new(base, spec).bearer(&key), key)
}

async fn trigger(c: &Client, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let runs = futures::future::join_all(chunk.iter().map(|_| {
            c.post(
                "/api/agents/@corral/hello-world/run",
                json!({"input": {"name": "Ada"}}),
                201,
            )
        }))
        .await;
        ids.extend(runs.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_spread_over_workers_exactly_once_within_caps() {
    let cluster = Cluster::new(1, 5).await;
    let api = cluster.start("api", "api", None);
    let spec = wait_healthy(&api.base).await;
    let a = cluster.start("worker-a", "worker", Some(3));
    let b = cluster.start("worker-b", "worker", Some(6));
    worker_healthy(&a).await;
    worker_healthy(&b).await;
    let health: Value = reqwest::get(format!("{}/health", api.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["role"], "api");
    assert_eq!(health["checks"]["sandbox"]["status"], "none");

    let (admin, big, _) = org_clients(&api.base, spec.clone(), ADMIN).await;
    let (_, small, _) = org_clients(&api.base, spec.clone(), "small@example.com").await;

    // The operators' view: both workers and the api replica, with their capacity.
    let view = admin.get("/api/admin/workers", 200).await;
    let names: BTreeMap<String, (String, i64)> = view["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let name = w["name"].as_str().unwrap().to_owned();
            (
                name,
                (
                    w["role"].as_str().unwrap().to_owned(),
                    w["capacity"].as_i64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(names["worker-a"], ("worker".into(), 3));
    assert_eq!(names["worker-b"], ("worker".into(), 6));
    assert_eq!(names["api"], ("api".into(), 0));
    assert_eq!(view["capacity"], 9);
    // Not for API keys, nor for a user who is not an operator.
    big.get("/api/admin/workers", 403).await;

    // Watch the in-flight counts per org and per worker while the burst runs.
    let max_org = Arc::new(Mutex::new(HashMap::<String, i64>::new()));
    let max_worker = Arc::new(Mutex::new(HashMap::<String, i64>::new()));
    let watcher = {
        let db = corral_store::Db::connect(&cluster.db_url, 1).await.unwrap();
        let (max_org, max_worker) = (max_org.clone(), max_worker.clone());
        tokio::spawn(async move {
            loop {
                let mut conn = db.conn().await.unwrap();
                for (sql, into) in [
                    ("SELECT org_id, COUNT(*) FROM runs WHERE status IN ('pending', 'running') \
                      AND server_id IS NOT NULL GROUP BY org_id", &max_org),
                    ("SELECT server_id, COUNT(*) FROM runs WHERE status IN ('pending', 'running') \
                      AND server_id IS NOT NULL GROUP BY server_id", &max_worker),
                ] {
                    for r in sqlx::query(sql).fetch_all(&mut *conn).await.unwrap() {
                        let (k, n): (String, i64) = (r.get(0), r.get(1));
                        let mut m = into.lock().unwrap();
                        let e = m.entry(k).or_default();
                        *e = (*e).max(n);
                    }
                }
                drop(conn);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let started = Instant::now();
    let big_runs = trigger(&big, 150).await;
    let small_runs = trigger(&small, 50).await;
    cluster.all_terminal(Duration::from_secs(240)).await;
    let elapsed = started.elapsed();
    watcher.abort();

    // Every run succeeded, and each was executed once: three model calls per run.
    let ok = cluster
        .scalar("SELECT COUNT(*) FROM runs WHERE status = 'success'")
        .await;
    assert_eq!(ok, 200, "every run succeeds");
    let chats: Vec<_> = cluster
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .collect();
    let firsts = chats
        .iter()
        .filter(|r| !r.body_text().contains(r#""role":"assistant""#))
        .count();
    assert_eq!(
        firsts, 200,
        "one conversation per run: no run executed twice"
    );
    assert_eq!(chats.len(), 600, "three model calls per run");

    // Spread in proportion to capacity (6 vs 3: two thirds on worker-b).
    let by_runner: BTreeMap<String, i64> = cluster
        .rows("SELECT runner_name, COUNT(*) FROM runs GROUP BY runner_name")
        .await
        .iter()
        .map(|r| {
            (
                r.get::<Option<String>, _>(0).unwrap_or_default(),
                r.get::<i64, _>(1),
            )
        })
        .collect();
    let (na, nb) = (by_runner["worker-a"], by_runner["worker-b"]);
    assert_eq!(na + nb, 200, "{by_runner:?}");
    let share_b = nb as f64 / 200.0;
    assert!(
        (0.52..=0.85).contains(&share_b),
        "worker-b (capacity 6 of 9) ran {nb} of 200: {by_runner:?}"
    );

    // The caps held across the cluster, and they were reached (the test can fail).
    let max_org = max_org.lock().unwrap().clone();
    let max_worker = max_worker.lock().unwrap().clone();
    assert!(max_org.values().all(|n| *n <= 5), "org cap 5: {max_org:?}");
    assert!(
        max_org.values().any(|n| *n == 5),
        "the org cap was reached: {max_org:?}"
    );
    let caps: Vec<i64> = max_worker.values().copied().collect();
    assert!(
        caps.iter().all(|n| *n <= 6),
        "worker capacity: {max_worker:?}"
    );
    assert_eq!(
        caps.iter().filter(|n| **n == 6).count(),
        1,
        "{max_worker:?}"
    );

    // Fairness: the small org's 50 runs, queued after the big org's 150, are not
    // served last.
    let last = |ids: &[String]| {
        let list = ids
            .iter()
            .map(|i| format!("'{i}'"))
            .collect::<Vec<_>>()
            .join(",");
        format!("SELECT MAX(completed_at) FROM runs WHERE id IN ({list})")
    };
    let small_done = cluster.scalar(&last(&small_runs)).await;
    let big_done = cluster.scalar(&last(&big_runs)).await;
    assert!(
        small_done < big_done,
        "the small org finished after the big one"
    );

    // The run's shape names its runner and its kind.
    let run = big.get(&format!("/api/runs/{}", big_runs[0]), 200).await;
    assert_eq!(run["runner_kind"], "process");
    assert!(
        ["worker-a", "worker-b"].contains(&run["runner_name"].as_str().unwrap_or("")),
        "{run}"
    );
    eprintln!(
        "200 runs in {:.1} s over 2 workers: worker-a {na}, worker-b {nb}; max in flight {max_worker:?}",
        elapsed.as_secs_f64()
    );
}

/// Sandbox directories of a worker (process backend).
fn sandbox_dirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("data/sandboxes"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_for(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewers_cancel_drain_and_node_loss_across_replicas() {
    let cluster = Cluster::new(6, 50).await;
    let api = cluster.start("api", "api", None);
    let spec = wait_healthy(&api.base).await;
    let a = cluster.start("worker-a", "worker", Some(3));
    let mut b = cluster.start("worker-b", "worker", Some(3));
    worker_healthy(&a).await;
    worker_healthy(&b).await;
    let (_, c, key) = org_clients(&api.base, spec.clone(), ADMIN).await;

    // An SSE viewer on the api replica sees the worker's run go live; a cancel sent
    // to the api replica stops it on its worker.
    let run = trigger(&c, 1).await.remove(0);
    let url = format!("{}/api/realtime/runs/{run}?token={key}", api.base);
    let (status, stream, ct) = connect(&url, &[]).await;
    assert_eq!(status, 200, "{ct}");
    let mut stream = stream.unwrap();
    let mut saw_running = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !saw_running && Instant::now() < deadline {
        if let Some(f) = stream.next(Duration::from_secs(1)).await {
            saw_running = f.event == "run_update" && f.json()["status"] == "running";
        }
    }
    assert!(
        saw_running,
        "the viewer on the api replica saw the run start on a worker"
    );
    let row = &cluster
        .rows(&format!(
            "SELECT sandbox_id, runner_name FROM runs WHERE id = '{run}'"
        ))
        .await[0];
    let (sandbox, runner): (String, String) = (row.get(0), row.get(1));
    let worker_dir = cluster.dir(&runner);
    assert!(sandbox_dirs(&worker_dir).contains(&sandbox));
    let cancelled_at = Instant::now();
    c.post(&format!("/api/runs/{run}/cancel"), json!({}), 200)
        .await;
    wait_for("the sandbox to go", Duration::from_secs(10), async || {
        !sandbox_dirs(&worker_dir).contains(&sandbox)
    })
    .await;
    let stopped_in = cancelled_at.elapsed();
    let status = cluster
        .scalar(&format!(
            "SELECT COUNT(*) FROM runs WHERE id = '{run}' AND status = 'cancelled'"
        ))
        .await;
    assert_eq!(status, 1);
    eprintln!("cancel on the api replica stopped the worker's sandbox in {stopped_in:?}");

    // SIGTERM drains worker-b: its running runs finish there, it claims no more.
    let burst = trigger(&c, 12).await;
    wait_for(
        "both workers running 3",
        Duration::from_secs(30),
        async || {
            let m = cluster.running_by_server().await;
            m.len() == 2 && m.values().all(|n| *n == 3)
        },
    )
    .await;
    let b_runs: Vec<String> = cluster
        .rows("SELECT id FROM runs WHERE runner_name = 'worker-b' AND status = 'running'")
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(b_runs.len(), 3);
    let status = tokio::task::spawn_blocking(move || {
        let s = sigterm_and_wait(&mut b);
        (s, b)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "worker-b exits cleanly: {:?}", status.0);
    for id in &b_runs {
        let ok = cluster
            .scalar(&format!(
                "SELECT COUNT(*) FROM runs WHERE id = '{id}' AND status = 'success' \
                 AND runner_name = 'worker-b'"
            ))
            .await;
        assert_eq!(ok, 1, "run {id} finished on the draining worker");
    }
    let burst_ids = burst
        .iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(",");
    let on_b = cluster
        .scalar(&format!(
            "SELECT COUNT(*) FROM runs WHERE runner_name = 'worker-b' AND id IN ({burst_ids})"
        ))
        .await;
    assert_eq!(on_b, 3, "the draining worker claimed nothing more");

    // SIGKILL worker-a mid-burst: what it ran fails (its process sandboxes are not
    // visible to worker-b), what it had claimed is re-queued; within 30 s. The rest
    // of the burst finishes on worker-b.
    let b = cluster.start("worker-b", "worker", Some(3));
    worker_healthy(&b).await;
    let mut a = a;
    wait_for("worker-a running 3", Duration::from_secs(60), async || {
        cluster
            .scalar(
                "SELECT COUNT(*) FROM runs WHERE runner_name = 'worker-a' AND status = 'running'",
            )
            .await
            == 3
    })
    .await;
    let a_dir = cluster.dir("worker-a");
    let a_sandboxes = sandbox_dirs(&a_dir);
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = Instant::now();
    wait_for(
        "worker-a's runs handled",
        Duration::from_secs(30),
        async || {
            cluster
                .scalar(
                    "SELECT COUNT(*) FROM runs r WHERE r.status IN ('pending', 'running') \
                 AND r.server_id IS NOT NULL AND r.server_id NOT IN \
                   (SELECT id FROM server_instances WHERE role = 'worker' AND name = 'worker-b')",
                )
                .await
                == 0
        },
    )
    .await;
    let handled_in = killed.elapsed();
    cluster.all_terminal(Duration::from_secs(120)).await;
    let failed: i64 = cluster
        .scalar(
            "SELECT COUNT(*) FROM runs WHERE status = 'failed' AND error_code = 'server_restarted' \
             AND runner_name = 'worker-a'",
        )
        .await;
    assert!(
        failed >= 1,
        "worker-a's running runs failed with server_restarted"
    );
    let lost = cluster
        .scalar("SELECT COUNT(*) FROM runs WHERE status NOT IN ('success', 'failed', 'cancelled')")
        .await;
    assert_eq!(lost, 0);
    let burst_ok = cluster
        .scalar(&format!(
            "SELECT COUNT(*) FROM runs WHERE status = 'success' AND id IN ({})",
            burst
                .iter()
                .map(|i| format!("'{i}'"))
                .collect::<Vec<_>>()
                .join(",")
        ))
        .await;
    assert_eq!(
        burst_ok + failed,
        12,
        "every run of the burst succeeded but worker-a's"
    );
    eprintln!("worker-a's runs handled {handled_in:?} after its SIGKILL; {failed} failed");

    // worker-a comes back: the sandboxes its previous life left are reaped.
    let a = cluster.start("worker-a", "worker", Some(3));
    worker_healthy(&a).await;
    wait_for(
        "the dead worker's sandboxes reaped",
        Duration::from_secs(30),
        async || {
            let now = sandbox_dirs(&a_dir);
            a_sandboxes.iter().all(|s| !now.contains(s))
        },
    )
    .await;
    drop((a, b));
}
