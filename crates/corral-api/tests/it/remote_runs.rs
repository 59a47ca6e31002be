//! Remote runs (`POST /api/runs/remote`): the caller's host runs the agent. The test
//! plays the external runner: it creates the run, then posts signed CloudEvents,
//! heartbeats and the result to the sink it was given. Checked: the one-time sink
//! credentials, a run no executor, queue or reconciler takes, pending → running on
//! the first event → terminal on finalize (logs, result, webhooks), refused
//! signatures, cancel, the watchdog for runners that go silent, and every refusal
//! of the trigger (nothing written).

use std::time::{Duration, Instant};

use corral_mockllm::{MockLlm, Turn};
use corral_protocol::events::{EventPayload, OutputEmitted};
use corral_protocol::{CloudEvent, RunResult, RunStatus, SigningSecret, Usage};
use corral_testkit::receiver::Receiver;
use corral_testkit::{both, Backend, Session, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

use crate::run_events::log_event;
use crate::runs::app_with_model;

const REMOTE: &str = "/api/runs/remote";

fn hello(s: &Session) -> Value {
    json!({
        "source": {"kind": "registry", "packageId": "@corral/hello-world"},
        "applicationId": s.app_id,
        "input": {"name": "Ada"},
    })
}

async fn model_app(
    b: Backend,
    tweak: impl FnOnce(&mut corral_api::config::Config),
) -> (MockLlm, TestApp) {
    // The system model; a remote run never calls it, but a run needs one configured.
    let mock = MockLlm::start(vec![Turn::text("unused")]).await.unwrap();
    let app = app_with_model(b, &mock, tweak).await;
    (mock, app)
}

/// Posts `body` to `path` signed as a runner would, with the sink secret's bytes as
/// the HMAC key.
async fn post_signed(app: &TestApp, path: &str, body: &[u8], secret: &str) -> (u16, Value) {
    let key = SigningSecret::from_bytes(secret.as_bytes()).unwrap();
    let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let h = key.sign_headers(&id, corral_core::time::now_ms() / 1000, body);
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/cloudevents+json")
        .body(body.to_vec());
    for (k, v) in h.pairs() {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn runs_count(app: &TestApp) -> i64 {
    app.scalar("SELECT COUNT(*) FROM runs").await
}

async fn status_of(s: &Session, id: &str) -> Value {
    s.client.get(&format!("/api/runs/{id}"), 200).await
}

async fn wait_status(s: &Session, id: &str, want: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let run = status_of(s, id).await;
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

async fn a_remote_run_from_creation_to_result(b: Backend) {
    let (_mock, app) = model_app(b, |_| {}).await;
    let s = app.user_with_org("Remote").await;
    let rx = Receiver::start().await;
    s.client
        .post(
            "/api/webhooks",
            json!({"url": rx.url, "events": ["run.started", "run.success"]}),
            201,
        )
        .await;
    let (key_id, key) = s.api_key(None).await;
    let runner = app.client().bearer(&key);

    let mut body = hello(&s);
    body["contextSnapshot"] = json!({"os": "linux", "cli": "1.2.3"});
    body["sink"] = json!({"ttl_seconds": 600});
    let r = runner
        .send(
            Method::POST,
            REMOTE,
            Some(body),
            &[
                ("x-appstrate-runner-name", "ci-host"),
                ("x-appstrate-runner-kind", "github-action"),
            ],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let created = r.body;
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(id.starts_with("run_"), "{created}");
    let events = format!("/api/runs/{id}/events");
    assert_eq!(
        created["url"],
        format!("{}{events}", app.state.config.public_url).as_str()
    );
    assert_eq!(
        created["finalize_url"],
        format!("{}{events}/finalize", app.state.config.public_url).as_str()
    );
    assert_eq!(secret.len(), 43, "32 bytes, base64url: {secret}");
    let expires = chrono::DateTime::parse_from_rfc3339(created["expiresAt"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    let in_ms = expires - corral_core::time::now_ms();
    assert!((590_000..=600_000).contains(&in_ms), "{in_ms}");

    // A pending remote run: never handed to a sandbox.
    let run = status_of(&s, &id).await;
    assert_eq!(run["status"], "pending");
    assert_eq!(run["runOrigin"], "remote");
    assert_eq!(
        run["contextSnapshot"],
        json!({"os": "linux", "cli": "1.2.3"})
    );
    assert_eq!(run["runner_name"], "ci-host");
    assert_eq!(run["runner_kind"], "github-action");
    assert_eq!(run["apiKeyId"], key_id.as_str());
    assert_eq!(run["agent_scope"], "@corral");
    assert_eq!(run["input"], json!({"name": "Ada", "language": "en"}));
    let sealed: String = sqlx::query_scalar("SELECT sink_secret FROM runs WHERE id = $1")
        .bind(&id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(sealed.starts_with("v1:") && !sealed.contains(&secret));
    if b == Backend::Postgres {
        // The cluster's queue does not offer it to any worker.
        let mut conn = app.state.db.conn().await.unwrap();
        let claim = corral_store::queue::claim_next(&mut conn, "another-worker", 100, 0)
            .await
            .unwrap();
        assert_eq!(claim, corral_store::queue::Claim::Empty);
    }
    // Nor does the reconciler, which re-queues pending runs it finds unowned.
    let stop = tokio_util::sync::CancellationToken::new();
    corral_engine::runs::reconcile::pass(&app.state, &stop)
        .await
        .unwrap();
    assert_eq!(app.state.runs.executor.stats().queued, 0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let run = status_of(&s, &id).await;
    assert_eq!(run["status"], "pending", "{run}");
    let (server, sandbox): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT server_id, sandbox_id FROM runs WHERE id = $1")
            .bind(&id)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!((server, sandbox), (None, None));
    let sandboxes = app.dir.path().join("sandboxes");
    assert!(
        std::fs::read_dir(&sandboxes).map_or(true, |mut d| d.next().is_none()),
        "a sandbox was created"
    );

    // The run's realtime stream: a snapshot, then what the runner reports.
    let (st, stream, ct) = corral_testkit::sse::connect(
        &format!("{}/api/realtime/runs/{id}?token={key}", app.base),
        &[],
    )
    .await;
    assert_eq!(st, 200, "{ct}");
    let mut stream = stream.unwrap();
    let snap = stream
        .next(Duration::from_secs(10))
        .await
        .expect("snapshot");
    assert_eq!(snap.event, "run_update");
    assert_eq!(snap.json()["status"], "pending");

    // A wrong signature changes nothing.
    let other = SigningSecret::generate().to_whsec();
    let (st, e) = post_signed(&app, &events, &log_event(&id, 1, "forged"), &other).await;
    assert_eq!(st, 401, "{e}");
    assert_eq!(e["code"], "invalid_signature");
    assert_eq!(status_of(&s, &id).await["status"], "pending");

    // The first event starts it.
    let (st, r1) = post_signed(
        &app,
        &events,
        &log_event(&id, 1, "cloning the repo"),
        &secret,
    )
    .await;
    assert_eq!(
        (st, r1["outcome"].as_str()),
        (200, Some("persisted")),
        "{r1}"
    );
    let run = status_of(&s, &id).await;
    assert_eq!(run["status"], "running", "{run}");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let f = stream
            .next(Duration::from_secs(10))
            .await
            .expect("live frames");
        seen.push((f.event.clone(), f.json()));
    }
    assert!(
        seen.iter()
            .any(|(e, j)| e == "run_update" && j["status"] == "running"),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(e, j)| e == "run_log" && j["message"] == "cloning the repo"),
        "{seen:?}"
    );
    let (st, _) = post_signed(&app, &format!("{events}/heartbeat"), b"", &secret).await;
    assert_eq!(st, 200);
    let out = CloudEvent::new(
        &id,
        2,
        &EventPayload::Output(OutputEmitted {
            output: json!({"greeting": "Hello, Ada!", "length": 11}),
        }),
    );
    let (st, _) = post_signed(&app, &events, &serde_json::to_vec(&out).unwrap(), &secret).await;
    assert_eq!(st, 200);
    let result = RunResult {
        run_id: id.clone(),
        status: RunStatus::Success,
        output: None,
        error: None,
        usage: Usage {
            input_tokens: 300,
            output_tokens: 40,
        },
        duration_ms: 4321,
        last_sequence: 2,
    };
    let (st, _) = post_signed(
        &app,
        &format!("{events}/finalize"),
        &serde_json::to_vec(&result).unwrap(),
        &secret,
    )
    .await;
    assert_eq!(st, 200);
    let done = status_of(&s, &id).await;
    assert_eq!(done["status"], "success", "{done}");
    let last = loop {
        let f = stream.next(Duration::from_secs(10)).await.expect("the end");
        if f.event == "run_update" && f.json()["status"] != "running" {
            break f.json();
        }
    };
    assert_eq!(last["status"], "success");
    assert_eq!(
        done["result"]["output"],
        json!({"greeting": "Hello, Ada!", "length": 11})
    );
    assert_eq!(done["duration"], 4321);
    assert_eq!(done["token_usage"]["input_tokens"], 300);
    let logs = s.client.get(&format!("/api/runs/{id}/logs"), 200).await;
    let messages: Vec<&str> = logs["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert_eq!(messages, vec!["cloning the repo"]);
    let listed = s.client.get("/api/runs", 200).await;
    assert_eq!(listed["data"][0]["runOrigin"], "remote");

    // Webhooks saw it start and succeed, like any run.
    let got = rx.wait_for(2, Duration::from_secs(15)).await;
    let mut types: Vec<String> = got
        .iter()
        .map(|d| d.json()["type"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    assert_eq!(types, vec!["run.started", "run.success"], "{types:?}");
    for d in &got {
        assert_eq!(d.json()["data"]["object"]["id"], id.as_str());
    }

    // Closed: later events are refused.
    let (st, e) = post_signed(&app, &events, &log_event(&id, 3, "late"), &secret).await;
    assert_eq!(st, 410);
    assert_eq!(e["code"], "run_sink_closed");
}

async fn refusals_leave_nothing_behind(b: Backend) {
    // No model at all: a remote run is refused like any run.
    let bare = TestApp::spawn(b).await;
    let s = bare.user_with_org("Bare").await;
    let e = s.client.post(REMOTE, hello(&s), 422).await;
    assert_eq!(e["code"], "model_not_configured");
    assert_eq!(runs_count(&bare).await, 0);
    drop(bare);

    let (_mock, app) = model_app(b, |_| {}).await;
    let s = app.user_with_org("Refused").await;
    let other = app.user_with_org("Elsewhere").await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = hello(&s);
        f(&mut v);
        v
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        (with(&|v| v["extra"] = json!(1)), 400, "extra"),
        (
            with(&|v| v["source"]["kind"] = json!("bundle")),
            400,
            "source",
        ),
        (
            with(&|v| {
                v["source"]["stage"] = json!("draft");
                v["source"]["spec"] = json!("1.0.0");
            }),
            400,
            "source.spec",
        ),
        (with(&|v| v["input"] = json!({})), 400, "input"),
        (
            with(&|v| v["input"]["name"] = json!("upload://upl_123")),
            400,
            "input.name",
        ),
        (
            with(&|v| v["contextSnapshot"] = json!({"blob": "x".repeat(17 * 1024)})),
            400,
            "contextSnapshot",
        ),
        (
            with(&|v| v["sink"] = json!({"ttl_seconds": 0})),
            400,
            "sink.ttl_seconds",
        ),
        (
            with(&|v| v["applicationId"] = json!(other.app_id)),
            400,
            "applicationId",
        ),
        (
            with(&|v| {
                v["source"] =
                    json!({"kind": "inline", "manifest": {"type": "agent"}, "prompt": "p"})
            }),
            400,
            "",
        ),
    ];
    for (body, status, param) in cases {
        let e = s.client.post(REMOTE, body.clone(), status).await;
        if !param.is_empty() {
            assert!(
                e["param"].as_str().is_some_and(|p| p.starts_with(param)),
                "{param}: {e}"
            );
        }
    }
    let e = s
        .client
        .post(
            REMOTE,
            with(&|v| v["source"]["packageId"] = json!("@nobody/nothing")),
            404,
        )
        .await;
    assert_eq!(e["code"], "not_found");
    // Callers: none, an API key of another application, a key without agents:run.
    app.client().post(REMOTE, hello(&s), 401).await;
    let (_, other_key) = other.api_key(None).await;
    app.client()
        .bearer(&other_key)
        .post(REMOTE, hello(&s), 403)
        .await;
    let (_, ro_key) = s.api_key(Some(vec!["runs:read"])).await;
    app.client()
        .bearer(&ro_key)
        .post(REMOTE, hello(&s), 403)
        .await;
    assert_eq!(runs_count(&app).await, 0);

    // An inline agent; the same Idempotency-Key replays the first answer (and its
    // secret) instead of creating a second run.
    let manifest = json!({
        "name": "@inline/adder", "version": "0.0.0", "type": "agent", "schema_version": "2.0",
        "author": "tests", "display_name": "Adder",
        "input": {"schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}
    });
    let body = json!({
        "source": {"kind": "inline", "manifest": manifest, "prompt": "Add."},
        "applicationId": s.app_id,
        "input": {"a": "3"},
    });
    let first = s
        .client
        .send(
            Method::POST,
            REMOTE,
            Some(body.clone()),
            &[("idempotency-key", "remote-1")],
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let again = s
        .client
        .send(
            Method::POST,
            REMOTE,
            Some(body),
            &[("idempotency-key", "remote-1")],
        )
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(runs_count(&app).await, 1);
    let run = status_of(&s, first.body["id"].as_str().unwrap()).await;
    assert_eq!(run["package_ephemeral"], true);
    assert_eq!(run["input"], json!({"a": 3}));
}

async fn cancel_and_silent_runners(b: Backend) {
    let (_mock, app) = model_app(b, |c| {
        c.run_boot_deadline_seconds = 2;
        c.run_stall_seconds = 2;
    })
    .await;
    let s = app.user_with_org("Watch").await;
    let create = || async { s.client.post(REMOTE, hello(&s), 201).await };

    // Cancelled: terminal at once, its sink closed.
    let a = create().await;
    let a_id = a["id"].as_str().unwrap();
    let cancelled = s
        .client
        .post(&format!("/api/runs/{a_id}/cancel"), json!({}), 200)
        .await;
    assert_eq!(cancelled["status"], "cancelled");
    let (st, e) = post_signed(
        &app,
        &format!("/api/runs/{a_id}/events"),
        &log_event(a_id, 1, "too late"),
        a["secret"].as_str().unwrap(),
    )
    .await;
    assert_eq!(st, 410);
    assert_eq!(e["code"], "run_sink_closed");

    // Never reports: failed after the boot deadline. Reports, then falls silent:
    // failed as stalled.
    let quiet = create().await;
    let talker = create().await;
    let t_id = talker["id"].as_str().unwrap();
    let (st, _) = post_signed(
        &app,
        &format!("/api/runs/{t_id}/events"),
        &log_event(t_id, 1, "starting"),
        talker["secret"].as_str().unwrap(),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(status_of(&s, t_id).await["status"], "running");
    let q = wait_status(
        &s,
        quiet["id"].as_str().unwrap(),
        "failed",
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(q["metadata"]["error_code"], "boot_timeout", "{q}");
    let t = wait_status(&s, t_id, "failed", Duration::from_secs(15)).await;
    assert_eq!(t["metadata"]["error_code"], "stalled", "{t}");
}

both!(
    a_remote_run_from_creation_to_result,
    refusals_leave_nothing_behind,
    cancel_and_silent_runners,
);
