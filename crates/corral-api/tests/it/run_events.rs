//! The sandbox-facing endpoints, driven directly with signed events: signature
//! checks, sequence compare-and-swap (duplicates ignored, gaps buffered and filled in
//! order), finalize with output validation, and the closed sink. Also the liveness
//! limits: a stalled agent and a sandbox that never reports.

use std::time::Duration;

use corral_mockllm::{MockLlm, Turn};
use corral_protocol::events::{EventPayload, LogLevel, LogWritten, OutputEmitted};
use corral_protocol::{CloudEvent, RunResult, RunStatus, SigningSecret, Usage};
use corral_testkit::{both, Backend, Session, TestApp};
use serde_json::{json, Value};

use crate::runs::{app_with_model, wait_terminal};

pub(crate) const SINK: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A `running` run owned by this server, with a known sink secret and an output
/// schema, inserted directly (no sandbox).
pub(crate) async fn running_run(app: &TestApp, s: &Session) -> String {
    let id = format!("run_{}", uuid::Uuid::now_v7());
    let definition = json!({
        "prompt": "p",
        "output_schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        "model": {"api": "openai", "model": "m", "base_url": "http://127.0.0.1:9"},
        "limits": {}
    });
    let now = corral_core::time::now_ms();
    sqlx::query(
        "INSERT INTO runs (id, org_id, application_id, kind, run_number, status, version_ref, \
           definition, timeout_secs, sink_secret, sink_expires_at, run_token_hash, created_at, \
           started_at, server_id) \
         VALUES ($1, $2, $3, 'inline', 1, 'running', 'draft', $4, 300, $5, $6, 'x', $7, $7, $8)",
    )
    .bind(&id)
    .bind(&s.org_id)
    .bind(&s.app_id)
    .bind(definition.to_string())
    .bind(
        app.state
            .keyring
            .seal(SINK.as_bytes(), &corral_engine::runs::sink_aad(&id)),
    )
    .bind(now + 600_000)
    .bind(now)
    .bind(&app.state.runs.instance_id)
    .execute(app.state.db.pool())
    .await
    .unwrap();
    id
}

pub(crate) async fn post_signed(
    app: &TestApp,
    path: &str,
    body: &[u8],
    secret: &str,
    msg_id: &str,
) -> (u16, Value) {
    let secret = SigningSecret::parse(secret).unwrap();
    let now = corral_core::time::now_ms() / 1000;
    let h = secret.sign_headers(msg_id, now, body);
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in h.pairs() {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub(crate) fn log_event(run: &str, seq: u64, msg: &str) -> Vec<u8> {
    let ev = CloudEvent::new(
        run,
        seq,
        &EventPayload::Log(LogWritten {
            level: LogLevel::Info,
            message: msg.into(),
        }),
    );
    serde_json::to_vec(&ev).unwrap()
}

async fn events_are_ordered_deduplicated_and_authenticated(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Sink").await;
    let run = running_run(&app, &s).await;
    let events = format!("/api/runs/{run}/events");

    // Wrong secret, tampered body, missing headers: 401 and nothing stored.
    let other = SigningSecret::generate().to_whsec();
    let (st, e) = post_signed(&app, &events, &log_event(&run, 1, "one"), &other, "m1").await;
    assert_eq!(st, 401, "{e}");
    assert_eq!(e["code"], "invalid_signature");
    let r = reqwest::Client::new()
        .post(format!("{}{events}", app.base))
        .body(log_event(&run, 1, "one"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Unknown run.
    let (st, _) = post_signed(&app, "/api/runs/run_nope/events", b"{}", SINK, "m0").await;
    assert_eq!(st, 404);

    // 2 and 3 arrive before 1: buffered, then drained in order when 1 comes.
    let (st, r2) = post_signed(&app, &events, &log_event(&run, 2, "two"), SINK, "m2").await;
    assert_eq!((st, r2["outcome"].as_str()), (200, Some("buffered")));
    let (_, r3) = post_signed(&app, &events, &log_event(&run, 3, "three"), SINK, "m3").await;
    assert_eq!(r3["outcome"], "buffered");
    let (_, r1) = post_signed(&app, &events, &log_event(&run, 1, "one"), SINK, "m1").await;
    assert_eq!(r1["outcome"], "persisted");
    // A retried delivery is a replay, stored once.
    let (_, again) = post_signed(&app, &events, &log_event(&run, 2, "two"), SINK, "m2b").await;
    assert_eq!(again["outcome"], "replay");
    // An event of another run's source is refused.
    let (st, _) = post_signed(&app, &events, &log_event("run_other", 4, "x"), SINK, "m4").await;
    assert_eq!(st, 400);

    // A gap that never fills: 6 waits in the buffer until finalize flushes it.
    let (_, r6) = post_signed(&app, &events, &log_event(&run, 6, "six"), SINK, "m6").await;
    assert_eq!(r6["outcome"], "buffered");
    let out = CloudEvent::new(
        &run,
        4,
        &EventPayload::Output(OutputEmitted {
            output: json!({"n": "not a number"}),
        }),
    );
    let (_, r4) = post_signed(
        &app,
        &events,
        &serde_json::to_vec(&out).unwrap(),
        SINK,
        "m4b",
    )
    .await;
    assert_eq!(r4["outcome"], "persisted");

    let result = RunResult {
        run_id: run.clone(),
        status: RunStatus::Success,
        output: None,
        error: None,
        usage: Usage {
            input_tokens: 10,
            output_tokens: 5,
        },
        duration_ms: 1234,
        last_sequence: 6,
    };
    let body = serde_json::to_vec(&result).unwrap();
    let fin = format!("/api/runs/{run}/events/finalize");
    let (st, _) = post_signed(&app, &fin, &body, SINK, "f1").await;
    assert_eq!(st, 200);
    let got = s.client.get(&format!("/api/runs/{run}"), 200).await;
    // The emitted output fails the schema: the run fails, the payload is kept.
    assert_eq!(got["status"], "failed", "{got}");
    assert_eq!(got["metadata"]["error_code"], "output_schema_mismatch");
    assert_eq!(got["result"]["output"], json!({"n": "not a number"}));
    assert_eq!(got["duration"], 1234);
    assert_eq!(got["token_usage"]["input_tokens"], 10);
    let logs = s.client.get(&format!("/api/runs/{run}/logs"), 200).await;
    let messages: Vec<&str> = logs["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert_eq!(messages, vec!["one", "two", "three", "six"]);

    // Closed: events are gone, a retried finalize is acknowledged without effect.
    let (st, e) = post_signed(&app, &events, &log_event(&run, 7, "late"), SINK, "m7").await;
    assert_eq!(st, 410);
    assert_eq!(e["code"], "run_sink_closed");
    let (st, _) = post_signed(&app, &fin, &body, SINK, "f2").await;
    assert_eq!(st, 200);
    let (st, _) = post_signed(&app, &format!("{events}/heartbeat"), b"{}", SINK, "h1").await;
    assert_eq!(st, 410);
    assert_eq!(
        s.client.get(&format!("/api/runs/{run}"), 200).await["status"],
        "failed"
    );
}

async fn a_stalled_agent_fails_the_run(b: Backend) {
    // The agent stops itself (SIGSTOP): no more heartbeats.
    let mock = MockLlm::start_per_conversation(
        "127.0.0.1:0".parse().unwrap(),
        vec![Turn::tool_call(
            "bash",
            json!({"command": "kill -STOP $PPID"}),
        )],
    )
    .await
    .unwrap();
    let app = app_with_model(b, &mock, |c| c.run_stall_seconds = 3).await;
    let s = app.user_with_org("Stall").await;
    let run = s
        .client
        .post(
            "/api/agents/@corral/hello-world/run",
            json!({"input": {"name": "A"}}),
            201,
        )
        .await;
    let id = run["id"].as_str().unwrap().to_owned();
    let done = wait_terminal(&s, &id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["metadata"]["error_code"], "stalled", "{done}");
}

async fn a_sandbox_that_never_reports_misses_the_boot_deadline(b: Backend) {
    let mock = MockLlm::start(Vec::<Turn>::new()).await.unwrap();
    // The sidecar is told to report to a port nobody listens on.
    let app = app_with_model(b, &mock, |c| {
        c.internal_url = Some("http://127.0.0.1:9".into());
        c.run_boot_deadline_seconds = 2;
    })
    .await;
    let s = app.user_with_org("Boot").await;
    let run = s
        .client
        .post(
            "/api/agents/@corral/hello-world/run",
            json!({"input": {"name": "A"}}),
            201,
        )
        .await;
    let done = wait_terminal(&s, run["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["metadata"]["error_code"], "boot_timeout", "{done}");
}

async fn a_flood_of_events_stops_being_stored_at_the_limit(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Flood").await;
    let run = running_run(&app, &s).await;
    let limit = corral_engine::runs::ingest::MAX_LOGS_PER_RUN;
    // As if the run had already sent limit - 1 events.
    app.sql(&format!(
        "UPDATE runs SET last_sequence = {} WHERE id = '{run}'",
        limit - 1
    ))
    .await;
    let events = format!("/api/runs/{run}/events");
    for (i, seq) in (limit..limit + 3).enumerate() {
        let (st, r) = post_signed(
            &app,
            &events,
            &log_event(&run, seq, &format!("m{i}")),
            SINK,
            &format!("f{i}"),
        )
        .await;
        assert_eq!((st, r["outcome"].as_str()), (200, Some("persisted")), "{r}");
    }
    let logs = s.client.get(&format!("/api/runs/{run}/logs"), 200).await;
    let messages: Vec<String> = logs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[0], "m0");
    assert!(messages[1].contains("log limit"), "{messages:?}");
    assert_eq!(
        app.scalar(&format!(
            "SELECT last_sequence FROM runs WHERE id = '{run}'"
        ))
        .await,
        (limit + 2) as i64
    );
}

async fn secrets_rotate_reseals_every_sink_secret(b: Backend) {
    use corral_config::crypto::Keyring;
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Rotate").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(running_run(&app, &s).await);
    }
    // A webhook with a rotated secret: both of its sealed secrets move too.
    let hook = s
        .client
        .post(
            "/api/webhooks",
            json!({"url": "http://127.0.0.1:9/h", "events": ["run.success"]}),
            201,
        )
        .await;
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    let rotated_secret = s
        .client
        .post(&format!("/api/webhooks/{hook_id}/rotate"), json!({}), 200)
        .await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let secrets = &app.state.secrets;
    let old_id = secrets.encryption_key_id.clone();
    // Stored sealed under the current key, never in clear.
    for id in &ids {
        let stored: String = sqlx::query_scalar("SELECT sink_secret FROM runs WHERE id = $1")
            .bind(id)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        assert!(stored.starts_with(&format!("v1:{old_id}:")), "{stored}");
        assert!(!stored.contains("whsec_"));
    }
    let new_key = [7u8; 32];
    let rotated = Keyring::new(
        ("k-next", &new_key),
        &[(old_id.clone(), secrets.encryption_key)],
    );
    let report = corral_engine::secrets::rotate_secrets(&app.state.db, &rotated)
        .await
        .unwrap();
    assert_eq!((report.resealed, report.failed), (4, 0));
    let (primary, previous): (String, String) =
        sqlx::query_as("SELECT secret, previous_secret FROM webhooks WHERE id = $1")
            .bind(&hook_id)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    let aad = corral_engine::webhooks::secret_aad(&hook_id);
    assert!(primary.starts_with("v1:k-next:") && previous.starts_with("v1:k-next:"));
    assert_eq!(
        Keyring::new(("k-next", &new_key), &[])
            .open_str(&primary, &aad)
            .unwrap(),
        rotated_secret
    );
    // Resumable and idempotent: nothing left to do.
    let again = corral_engine::secrets::rotate_secrets(&app.state.db, &rotated)
        .await
        .unwrap();
    assert_eq!((again.resealed, again.failed), (0, 0));
    let only_new = Keyring::new(("k-next", &new_key), &[]);
    for id in &ids {
        let stored: String = sqlx::query_scalar("SELECT sink_secret FROM runs WHERE id = $1")
            .bind(id)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        assert!(stored.starts_with("v1:k-next:"), "{stored}");
        assert_eq!(
            only_new
                .open_str(&stored, &corral_engine::runs::sink_aad(id))
                .unwrap(),
            SINK
        );
    }
    // A secret under a key nobody has any more is reported, not garbled.
    let orphan = running_run(&app, &s).await;
    let report = corral_engine::secrets::rotate_secrets(&app.state.db, &only_new)
        .await
        .unwrap();
    assert_eq!((report.resealed, report.failed), (0, 1));
    let stored: String = sqlx::query_scalar("SELECT sink_secret FROM runs WHERE id = $1")
        .bind(&orphan)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(
        stored.starts_with(&format!("v1:{old_id}:")),
        "left as it was"
    );
}

both!(
    secrets_rotate_reseals_every_sink_secret,
    a_flood_of_events_stops_being_stored_at_the_limit,
    events_are_ordered_deduplicated_and_authenticated,
    a_stalled_agent_fails_the_run,
    a_sandbox_that_never_reports_misses_the_boot_deadline,
);
