//! Runs end to end through the API: trigger → sandbox (child processes here; the
//! Docker path has its own tests) → the testkit's scripted mock LLM → events →
//! result, on SQLite and PostgreSQL. Also every refusal of the trigger (no row left
//! behind), cancel, timeout, crash, provider errors, output schema mismatch, the
//! concurrency cap with fairness between orgs, and the long poll.

use std::time::{Duration, Instant};

use corral_mockllm::{MockLlm, Turn};
use corral_testkit::{both, Backend, Session, TestApp};
use serde_json::{json, Value};

const HELLO: &str = "/api/agents/@corral/hello-world/run";

/// A server whose runs use `mock` as the system model, with fast heartbeats.
pub async fn app_with_model(
    b: Backend,
    mock: &MockLlm,
    tweak: impl FnOnce(&mut corral_api::config::Config),
) -> TestApp {
    let base = mock.openai_base_url();
    TestApp::spawn_with(b, move |c| {
        c.model_api = Some("openai".into());
        c.model_id = Some("mock-model".into());
        c.model_base_url = Some(base);
        c.model_api_key = Some(corral_api::config::Secret::new("sk-test-real-key"));
        c.agent_env = vec!["CORRAL_HEARTBEAT_SECS=1".into()];
        tweak(c);
    })
    .await
}

async fn runs_count(app: &TestApp) -> i64 {
    app.scalar("SELECT COUNT(*) FROM runs").await
}

/// Polls `GET /api/runs/{id}?wait=` until the run is terminal.
pub async fn wait_terminal(s: &Session, id: &str, max: Duration) -> Value {
    let deadline = Instant::now() + max;
    loop {
        let run = s.client.get(&format!("/api/runs/{id}?wait=10"), 200).await;
        let status = run["status"].as_str().unwrap().to_owned();
        if ["success", "failed", "timeout", "cancelled"].contains(&status.as_str()) {
            return run;
        }
        assert!(Instant::now() < deadline, "run {id} still {status}: {run}");
    }
}

async fn wait_status(s: &Session, id: &str, want: &str, max: Duration) -> Value {
    let deadline = Instant::now() + max;
    loop {
        let run = s.client.get(&format!("/api/runs/{id}"), 200).await;
        if run["status"] == want {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} never became {want}: {run}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// No sandbox directory or process is left for the run's sandbox.
async fn assert_sandbox_gone(app: &TestApp, sandbox_id: &str) {
    let dir = app.dir.path().join("sandboxes").join(sandbox_id);
    let deadline = Instant::now() + Duration::from_secs(10);
    while dir.exists() {
        assert!(
            Instant::now() < deadline,
            "sandbox dir {} left behind",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn sandbox_of(app: &TestApp, run_id: &str) -> String {
    sqlx::query_scalar::<_, String>("SELECT sandbox_id FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

async fn hello_world_succeeds(b: Backend) {
    let mock = MockLlm::start(vec![
        Turn::tool_call("log", json!({"message": "greeting Ada", "level": "info"})),
        Turn::tool_call("output", json!({"greeting": "Hello, Ada!", "length": 11}))
            .with_usage(120, 30),
        Turn::text("Done."),
    ])
    .await
    .unwrap();
    let app = app_with_model(b, &mock, |_| {}).await;
    let s = app.user_with_org("Runner").await;
    let (key_id, key) = s.api_key(None).await;
    let c = app.client().bearer(&key);
    let t0 = Instant::now();
    let run = c.post(HELLO, json!({"input": {"name": "Ada"}}), 201).await;
    assert_eq!(run["status"], "pending");
    assert_eq!(run["apiKeyId"], key_id.as_str());
    assert_eq!(run["agent_scope"], "@corral");
    assert_eq!(run["agent_name"], "hello-world");
    assert_eq!(run["version_ref"], "1.0.0");
    assert_eq!(run["model_label"], "mock-model");
    assert_eq!(run["model_source"], "system");
    // Defaults of the input schema are applied.
    assert_eq!(run["input"], json!({"name": "Ada", "language": "en"}));
    let id = run["id"].as_str().unwrap().to_owned();

    let done = wait_terminal(&s, &id, Duration::from_secs(60)).await;
    eprintln!("run finished in {:?}", t0.elapsed());
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(
        done["result"]["output"],
        json!({"greeting": "Hello, Ada!", "length": 11})
    );
    assert_eq!(done["runner_kind"], "process");
    assert_eq!(done["error"], Value::Null);
    assert!(
        done["token_usage"]["input_tokens"].as_u64().unwrap() >= 120,
        "{done}"
    );
    assert!(done["duration"].as_i64().is_some());
    assert!(done["completed_at"].is_string());

    // The model saw the prompt, the skill and the input; the real key reached the
    // provider, never the agent.
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        reqs[0].header("authorization"),
        Some("Bearer sk-test-real-key")
    );
    let first = reqs[0].body_text();
    assert!(first.contains("Ada"), "{first}");

    let logs = s.client.get(&format!("/api/runs/{id}/logs"), 200).await;
    let entries = logs["data"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|l| l["message"] == "greeting Ada" && l["level"] == "info"),
        "{logs}"
    );
    let ids: Vec<i64> = entries.iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // Level filter and cursor.
    let info = s
        .client
        .get(&format!("/api/runs/{id}/logs?level=warn"), 200)
        .await;
    assert!(info["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["level"] == "warn" || l["level"] == "error"));
    let page = s
        .client
        .get(&format!("/api/runs/{id}/logs?limit=1"), 200)
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["hasMore"], entries.len() > 1);

    // Lists.
    let list = s.client.get("/api/runs", 200).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["data"][0]["id"], id.as_str());
    let mine = s
        .client
        .get("/api/runs?status=success&kind=package", 200)
        .await;
    assert_eq!(mine["total"], 1);
    let none = s.client.get("/api/runs?status=failed", 200).await;
    assert_eq!(none["total"], 0);
    s.client.get("/api/runs?status=bogus", 400).await;
    s.client.get("/api/runs?user=someone", 400).await;
    let agent_runs = s
        .client
        .get("/api/agents/@corral/hello-world/runs", 200)
        .await;
    assert_eq!(agent_runs["total"], 1);

    let sandbox = sandbox_of(&app, &id).await;
    assert_sandbox_gone(&app, &sandbox).await;

    // Another org sees nothing of it.
    let other = app.user_with_org("Other").await;
    other.client.get(&format!("/api/runs/{id}"), 404).await;
    other.client.get(&format!("/api/runs/{id}/logs"), 404).await;
    other
        .client
        .post(&format!("/api/runs/{id}/cancel"), json!({}), 404)
        .await;

    // A finished run cannot be cancelled; its agent's runs can be deleted.
    s.client
        .post(&format!("/api/runs/{id}/cancel"), json!({}), 409)
        .await;
    let del = s
        .client
        .delete("/api/agents/@corral/hello-world/runs", 200)
        .await;
    assert_eq!(del["deleted_count"], 1);
    assert_eq!(runs_count(&app).await, 0);
}

async fn refused_triggers_leave_no_row(b: Backend) {
    let mock = MockLlm::start(Vec::<Turn>::new()).await.unwrap();
    let app = app_with_model(b, &mock, |_| {}).await;
    let s = app.user_with_org("Refused").await;
    // Input missing a required field, wrong type, unknown enum value.
    let e = s.client.post(HELLO, json!({"input": {}}), 400).await;
    assert_eq!(e["code"], "validation_failed");
    let e = s
        .client
        .post(
            HELLO,
            json!({"input": {"name": "Ada", "language": "de"}}),
            400,
        )
        .await;
    assert!(e["errors"].to_string().contains("input.language"), "{e}");
    // Closed body.
    s.client
        .post(HELLO, json!({"input": {"name": "A"}, "bogus": 1}), 400)
        .await;
    // input and rerun_from together.
    s.client
        .post(
            HELLO,
            json!({"input": {"name": "A"}, "rerun_from": "run_x"}),
            400,
        )
        .await;
    // Unknown agent, unknown version.
    s.client
        .post("/api/agents/@corral/nope/run", json!({}), 404)
        .await;
    // An agent that needs an integration connection.
    let e = s
        .client
        .post(
            "/api/agents/@corral/http-fetcher/run",
            json!({"input": {"url": "https://example.com"}}),
            412,
        )
        .await;
    assert_eq!(e["code"], "connection_missing");
    // A model that does not exist.
    s.client
        .post(
            HELLO,
            json!({"input": {"name": "A"}, "modelId": "gpt-nope"}),
            404,
        )
        .await;
    assert_eq!(runs_count(&app).await, 0);

    // No model configured at all.
    let bare = TestApp::spawn(b).await;
    let s2 = bare.user_with_org("NoModel").await;
    let e = s2
        .client
        .post(HELLO, json!({"input": {"name": "A"}}), 422)
        .await;
    assert_eq!(e["code"], "model_not_configured");
    assert_eq!(runs_count(&bare).await, 0);

    // Inline validation uses the same checks and creates nothing.
    let manifest = json!({
        "name": "@inline/greeter", "version": "0.0.0", "type": "agent", "schema_version": "2.0", "author": "tests",
        "display_name": "Greeter",
        "input": {"schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}
    });
    let ok = s
        .client
        .post(
            "/api/runs/inline/validate",
            json!({"manifest": manifest, "prompt": "Greet", "input": {"n": "4"}}),
            200,
        )
        .await;
    assert_eq!(ok["valid"], true);
    s.client
        .post(
            "/api/runs/inline/validate",
            json!({"manifest": manifest, "prompt": "Greet", "input": {"n": "four"}}),
            400,
        )
        .await;
    s.client
        .post(
            "/api/runs/inline/validate",
            json!({"manifest": {"type": "agent"}, "prompt": "Greet"}),
            400,
        )
        .await;
    assert_eq!(runs_count(&app).await, 0);
}

async fn inline_run_succeeds(b: Backend) {
    let mock = MockLlm::start(vec![
        Turn::tool_call("output", json!({"sum": 7})),
        Turn::text("ok"),
    ])
    .await
    .unwrap();
    let app = app_with_model(b, &mock, |_| {}).await;
    let s = app.user_with_org("Inline").await;
    let manifest = json!({
        "name": "@inline/adder", "version": "0.0.0", "type": "agent", "schema_version": "2.0", "author": "tests",
        "display_name": "Adder",
        "input": {"schema": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}},
        "output": {"schema": {"type": "object", "properties": {"sum": {"type": "integer"}}, "required": ["sum"]}}
    });
    let run = s
        .client
        .post(
            "/api/runs/inline",
            json!({"manifest": manifest, "prompt": "Add a and b.", "input": {"a": 3, "b": "4"}}),
            201,
        )
        .await;
    assert_eq!(run["package_ephemeral"], true);
    assert_eq!(run["input"], json!({"a": 3, "b": 4}));
    let done = wait_terminal(&s, run["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["result"]["output"], json!({"sum": 7}));
    let inline = s.client.get("/api/runs?kind=inline", 200).await;
    assert_eq!(inline["total"], 1);
}

async fn failures_are_recorded(b: Backend) {
    // 1. The provider fails (non-retryable) → failed with the agent's llm_error.
    let mock = MockLlm::start(vec![Turn::error(
        400,
        json!({"error": {"message": "bad request", "type": "invalid_request_error"}}),
    )])
    .await
    .unwrap();
    let app = app_with_model(b, &mock, |_| {}).await;
    let s = app.user_with_org("Failing").await;
    let run = s
        .client
        .post(HELLO, json!({"input": {"name": "Ada"}}), 201)
        .await;
    let done = wait_terminal(&s, run["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["metadata"]["error_code"], "llm_error", "{done}");

    // 2. The output never matches the schema → output_schema_mismatch.
    for _ in 0..4 {
        mock.push(Turn::tool_call("output", json!({"greeting": 42})));
    }
    mock.push(Turn::text("I give up."));
    let run = s
        .client
        .post(HELLO, json!({"input": {"name": "Ada"}}), 201)
        .await;
    let done = wait_terminal(&s, run["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(
        done["metadata"]["error_code"], "output_schema_mismatch",
        "{done}"
    );

    // 3. The agent process dies mid-run → agent_crashed, with its output tail.
    mock.push(Turn::tool_call(
        "bash",
        json!({"command": "kill -9 $PPID; sleep 5"}),
    ));
    let run = s
        .client
        .post(HELLO, json!({"input": {"name": "Ada"}}), 201)
        .await;
    let id = run["id"].as_str().unwrap().to_owned();
    let done = wait_terminal(&s, &id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["metadata"]["error_code"], "agent_crashed", "{done}");
    assert_sandbox_gone(&app, &sandbox_of(&app, &id).await).await;
}

async fn cancel_stops_the_sandbox(b: Backend) {
    let mock = MockLlm::start(vec![Turn::tool_call(
        "bash",
        json!({"command": "sleep 60"}),
    )])
    .await
    .unwrap();
    let app = app_with_model(b, &mock, |_| {}).await;
    let s = app.user_with_org("Cancel").await;
    let run = s
        .client
        .post(HELLO, json!({"input": {"name": "Ada"}}), 201)
        .await;
    let id = run["id"].as_str().unwrap().to_owned();
    wait_status(&s, &id, "running", Duration::from_secs(30)).await;
    // Wait for the agent to reach its tool call.
    let deadline = Instant::now() + Duration::from_secs(30);
    while mock.requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the agent never called the model"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sandbox = sandbox_of(&app, &id).await;
    let agents = s.client.get("/api/agents", 200).await;
    let hello = agents["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "@corral/hello-world")
        .unwrap();
    assert_eq!(hello["running_runs"], 1, "{hello}");
    let t0 = Instant::now();
    let cancelled = s
        .client
        .post(&format!("/api/runs/{id}/cancel"), json!({}), 200)
        .await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["error"], "Cancelled by user");
    assert_sandbox_gone(&app, &sandbox).await;
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "teardown took {:?}",
        t0.elapsed()
    );
    // Terminal never changes; a second cancel is a conflict.
    s.client
        .post(&format!("/api/runs/{id}/cancel"), json!({}), 409)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = s.client.get(&format!("/api/runs/{id}"), 200).await;
    assert_eq!(again["status"], "cancelled");
}

async fn timeout_is_enforced(b: Backend) {
    let mock = MockLlm::start(vec![Turn::tool_call(
        "bash",
        json!({"command": "sleep 60"}),
    )])
    .await
    .unwrap();
    let app = app_with_model(b, &mock, |_| {}).await;
    let s = app.user_with_org("Slow").await;
    let manifest = json!({
        "name": "@inline/sleeper", "version": "0.0.0", "type": "agent", "schema_version": "2.0", "author": "tests",
        "display_name": "Sleeper", "timeout": 3
    });
    let run = s
        .client
        .post(
            "/api/runs/inline",
            json!({"manifest": manifest, "prompt": "Sleep."}),
            201,
        )
        .await;
    let id = run["id"].as_str().unwrap().to_owned();
    let t0 = Instant::now();
    let done = wait_terminal(&s, &id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "timeout", "{done}");
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert_sandbox_gone(&app, &sandbox_of(&app, &id).await).await;
}

async fn concurrency_cap_is_fair_between_orgs(b: Backend) {
    // Every run sleeps 2 s in bash, then outputs.
    let mock = MockLlm::start_per_conversation(
        "127.0.0.1:0".parse().unwrap(),
        vec![
            Turn::tool_call("bash", json!({"command": "sleep 2"})),
            Turn::tool_call("output", json!({"greeting": "hi", "length": 2})),
            Turn::text("done"),
        ],
    )
    .await
    .unwrap();
    let app = app_with_model(b, &mock, |c| {
        c.max_concurrent_runs = 2;
        c.org_max_concurrent_runs = 1;
    })
    .await;
    let a = app.user_with_org("Busy").await;
    let bb = app.user_with_org("Quiet").await;
    let mut a_runs = Vec::new();
    for _ in 0..4 {
        let r = a
            .client
            .post(HELLO, json!({"input": {"name": "A"}}), 201)
            .await;
        a_runs.push(r["id"].as_str().unwrap().to_owned());
    }
    let b_run = bb
        .client
        .post(HELLO, json!({"input": {"name": "B"}}), 201)
        .await;
    let b_id = b_run["id"].as_str().unwrap().to_owned();
    // Org A can only have one running; org B's run starts while A's queue waits.
    wait_status(&bb, &b_id, "running", Duration::from_secs(30)).await;
    let a_pending = a.client.get("/api/runs?status=pending", 200).await["total"]
        .as_i64()
        .unwrap();
    assert!(
        a_pending >= 2,
        "org A should still have queued runs: {a_pending}"
    );
    let mut max_running_a = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let running = a.client.get("/api/runs?status=running", 200).await["total"]
            .as_i64()
            .unwrap();
        max_running_a = max_running_a.max(running);
        let done = a.client.get("/api/runs?status=success", 200).await["total"]
            .as_i64()
            .unwrap();
        if done == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "org A's runs did not all finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(max_running_a, 1, "the per-org cap was exceeded");
    let b_done = wait_terminal(&bb, &b_id, Duration::from_secs(30)).await;
    assert_eq!(b_done["status"], "success");
    // Arrival order within org A.
    let mut started: Vec<(i64, String)> = Vec::new();
    for id in &a_runs {
        let t = sqlx::query_scalar::<_, i64>("SELECT started_at FROM runs WHERE id = $1")
            .bind(id)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        started.push((t, id.clone()));
    }
    started.sort();
    let order: Vec<String> = started.into_iter().map(|(_, id)| id).collect();
    assert_eq!(order, a_runs, "org A's runs started out of order");
}

async fn long_poll_wakes_on_completion(b: Backend) {
    let mock = MockLlm::start(vec![
        Turn::tool_call("bash", json!({"command": "sleep 2"})),
        Turn::tool_call("output", json!({"greeting": "hi", "length": 2})),
        Turn::text("done"),
    ])
    .await
    .unwrap();
    let app = app_with_model(b, &mock, |_| {}).await;
    let s = app.user_with_org("Waiter").await;
    let run = s
        .client
        .post(HELLO, json!({"input": {"name": "A"}}), 201)
        .await;
    let id = run["id"].as_str().unwrap().to_owned();
    let t0 = Instant::now();
    let done = s
        .client
        .get(&format!("/api/runs/{id}?wait=true"), 200)
        .await;
    let waited = t0.elapsed();
    assert_eq!(done["status"], "success", "{done}");
    assert!(waited < Duration::from_secs(30), "{waited:?}");
    // A bad wait value is refused; a finished run answers at once.
    s.client.get(&format!("/api/runs/{id}?wait=-1"), 400).await;
    s.client.get(&format!("/api/runs/{id}?wait=1.5"), 400).await;
    let t0 = Instant::now();
    s.client.get(&format!("/api/runs/{id}?wait=30"), 200).await;
    assert!(t0.elapsed() < Duration::from_secs(2));
}

async fn metrics_and_health_report_runs(b: Backend) {
    let mock = MockLlm::start_per_conversation(
        "127.0.0.1:0".parse().unwrap(),
        vec![
            Turn::tool_call("output", json!({"greeting": "hi", "length": 2})),
            Turn::text("done"),
        ],
    )
    .await
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = app_with_model(b, &mock, |c| {
        c.metrics_listen = Some(format!("127.0.0.1:{port}").parse().unwrap());
        c.warm_pool_size = 1;
    })
    .await;
    let s = app.user_with_org("Metrics").await;
    let run = s
        .client
        .post(HELLO, json!({"input": {"name": "A"}}), 201)
        .await;
    let done = wait_terminal(&s, run["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "success");
    let health = app.client().get("/health", 200).await;
    assert_eq!(health["checks"]["sandbox"]["status"], "ready", "{health}");
    assert_eq!(health["checks"]["sandbox"]["backend"], "process");
    assert_eq!(health["checks"]["sandbox"]["pool"]["target"], 1);
    // The runs list read twice: rendered, then kept (SQLite only).
    for _ in 0..2 {
        s.client.get("/api/runs", 200).await;
    }
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "corral_runs{state=\"success\"} 1",
        "corral_run_start_seconds_count 1",
        "corral_warm_pool_target 1",
        "corral_warm_pool_hits_total",
        "corral_executor_running ",
        "corral_db_pool_connections",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let kept = [
        "corral_run_list_pages_total{source=\"kept\"} 1\n",
        "corral_run_list_pages_total{source=\"rendered\"} 1\n",
        "corral_run_list_kept_bytes ",
    ];
    for needle in kept {
        let sqlite = b == Backend::Sqlite;
        assert_eq!(
            text.contains(needle),
            sqlite,
            "{needle} on SQLite only:\n{text}"
        );
    }
}

/// Starts a run whose agent runs `command` in bash, then waits until it is inside it.
async fn run_inside_bash(b: Backend, command: &str, grace_s: u64) -> (TestApp, MockLlm, String) {
    let mock = MockLlm::start_per_conversation(
        "127.0.0.1:0".parse().unwrap(),
        vec![
            Turn::tool_call("bash", json!({ "command": command })),
            Turn::tool_call("output", json!({"greeting": "Hello, A!", "length": 9})),
            Turn::text("Done."),
        ],
    )
    .await
    .unwrap();
    let app = app_with_model(b, &mock, |c| {
        c.warm_pool_size = 1;
        c.shutdown_grace_seconds = grace_s;
    })
    .await;
    let s = app.user_with_org("Shutdown").await;
    let run = s
        .client
        .post(HELLO, json!({"input": {"name": "A"}}), 201)
        .await;
    let id = run["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while mock.requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the agent never called the model"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (app, mock, id)
}

async fn stop_and_read(app: &TestApp, id: &str, within: Duration) -> (String, Option<String>) {
    app.begin_shutdown();
    let deadline = Instant::now() + within;
    while !app.is_finished() {
        assert!(Instant::now() < deadline, "the server did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let db = corral_store::Db::connect(&app.state.config.effective_database_url(), 1)
        .await
        .unwrap();
    sqlx::query_as("SELECT status, error_code FROM runs WHERE id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap()
}

fn sandboxes_left(app: &TestApp) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(app.dir.path().join("sandboxes"))
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

/// A graceful stop lets a running run finish within the grace period (its events
/// still get through the drain), then removes every sandbox, the idle pool member
/// included. (It used to fail every running run with `server_shutdown` at once.)
async fn shutdown_lets_a_running_run_finish(b: Backend) {
    let (app, _mock, id) = run_inside_bash(b, "sleep 2", 30).await;
    let t0 = Instant::now();
    let (status, code) = stop_and_read(&app, &id, Duration::from_secs(30)).await;
    assert_eq!((status.as_str(), code), ("success", None));
    assert!(t0.elapsed() >= Duration::from_secs(1), "{:?}", t0.elapsed());
    let left = sandboxes_left(&app);
    assert!(left.is_empty(), "sandboxes left after shutdown: {left:?}");
}

/// Past the grace period a run still going is left `running` with its sandbox alive,
/// as after a crash, for the next boot to re-attach (`corral/tests/runs.rs` restarts
/// the binary and sees it finish); the idle pool member is removed.
async fn shutdown_past_the_grace_leaves_the_run_running(b: Backend) {
    let (app, _mock, id) = run_inside_bash(b, "sleep 60", 1).await;
    let sandbox = sandbox_of(&app, &id).await;
    let t0 = Instant::now();
    let (status, code) = stop_and_read(&app, &id, Duration::from_secs(20)).await;
    assert_eq!((status.as_str(), code), ("running", None));
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let left = sandboxes_left(&app);
    assert_eq!(
        left,
        vec![std::ffi::OsString::from(&sandbox)],
        "only the run's sandbox stays"
    );
}

both!(
    shutdown_lets_a_running_run_finish,
    shutdown_past_the_grace_leaves_the_run_running,
    metrics_and_health_report_runs,
    hello_world_succeeds,
    refused_triggers_leave_no_row,
    inline_run_succeeds,
    failures_are_recorded,
    cancel_stops_the_sandbox,
    timeout_is_enforced,
    concurrency_cap_is_fair_between_orgs,
    long_poll_wakes_on_completion,
);
