//! Webhook delivery across a crash, with the real `corral` binary: a server killed
//! with SIGKILL while a receiver holds a delivery open loses nothing (the event is
//! delivered after the restart, once the claim lapses) and re-sends nothing a
//! receiver already answered with 2xx.

use std::time::{Duration, Instant};

use corral_testkit::client::Client;
use corral_testkit::receiver::{Receiver, Reply};
use serde_json::json;
use sqlx::Connection as _;

mod common;

use common::{free_port, start, wait_healthy};

/// Inserts a `running` run and moves it to `status` through the database file, as
/// the executor's writes would (the triggers write the outbox rows).
async fn run_reaches(db: &str, org: &str, app: &str, status: &str) -> String {
    let mut conn = sqlx::SqliteConnection::connect(db).await.unwrap();
    let id = format!("run_{}", uuid::Uuid::now_v7());
    let now = corral_core::time::now_ms();
    sqlx::query(
        "INSERT INTO runs (id, org_id, application_id, kind, run_number, status, version_ref, \
           definition, timeout_secs, sink_secret, sink_expires_at, run_token_hash, created_at) \
         VALUES ($1, $2, $3, 'inline', 1, 'pending', 'draft', '{}', 300, 'x', $4, 'x', $4)",
    )
    .bind(&id)
    .bind(org)
    .bind(app)
    .bind(now)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("UPDATE runs SET status = $2, completed_at = $3 WHERE id = $1")
        .bind(&id)
        .bind(status)
        .bind(now)
        .execute(&mut conn)
        .await
        .unwrap();
    id
}

fn event_run(d: &corral_testkit::receiver::Delivery) -> String {
    d.json()["data"]["object"]["id"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_delivery_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(&str, &str)> = vec![
        ("CORRAL_SANDBOX", "process"),
        ("CORRAL_WARM_POOL_SIZE", "0"),
        // A claim lasts the timeout plus 5 s: short, so the test need not wait long.
        ("CORRAL_WEBHOOK_TIMEOUT_SECONDS", "2"),
        ("CORRAL_WEBHOOK_RETRY_SCHEDULE", "0,0.5,0.5,0.5"),
    ];
    let port = free_port();
    let mut server = start(dir.path(), port, &env);
    let spec = wait_healthy(&server.base).await;
    let c = Client::new(&server.base, spec.clone())
        .sign_up("hooks@example.com", "correct horse battery", "Hooks")
        .await;
    let org = c.post("/api/orgs", json!({"name": "Hooks Org"}), 201).await;
    let org_id = org["id"].as_str().unwrap().to_owned();
    let c = c.org(&org_id);
    let apps = c.get("/api/applications", 200).await;
    let app_id = apps["data"][0]["id"].as_str().unwrap().to_owned();
    let c = c.app(&app_id);

    let rx = Receiver::start().await;
    // The first event is answered at once; the second is held until the server dies.
    rx.script(vec![
        Reply::status(200),
        Reply {
            status: 200,
            retry_after: None,
            delay: Duration::from_secs(60),
        },
    ]);
    c.post(
        "/api/webhooks",
        json!({"url": rx.url, "events": ["run.success", "run.failed"]}),
        201,
    )
    .await;
    let db = format!("sqlite://{}", dir.path().join("data/corral.db").display());
    let answered = run_reaches(&db, &org_id, &app_id, "success").await;
    rx.wait_for(1, Duration::from_secs(20)).await;
    let held = run_reaches(&db, &org_id, &app_id, "failed").await;
    let got = rx.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(event_run(&got[1]), held);

    server.child.kill().unwrap(); // SIGKILL, mid-delivery
    server.child.wait().unwrap();
    let t0 = Instant::now();
    let server = start(dir.path(), port, &env);
    wait_healthy(&server.base).await;

    // The held event comes again once its claim lapses; nothing else is re-sent.
    let got = rx.wait_for(3, Duration::from_secs(30)).await;
    eprintln!("re-delivered {:?} after the restart", t0.elapsed());
    assert_eq!(event_run(&got[2]), held);
    assert_eq!(
        got[2].id(),
        got[1].id(),
        "same event id (webhook-id) on the retry"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = rx.deliveries();
    assert_eq!(
        got.len(),
        3,
        "{:?}",
        got.iter().map(event_run).collect::<Vec<_>>()
    );
    assert_eq!(
        got.iter().filter(|d| event_run(d) == answered).count(),
        1,
        "an event answered 2xx is never sent again"
    );
    let hooks = c.get("/api/webhooks", 200).await;
    let wid = hooks["data"][0]["id"].as_str().unwrap();
    let d = c.get(&format!("/api/webhooks/{wid}/deliveries"), 200).await;
    let statuses: Vec<&str> = d["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["success", "success"], "{d}");
    drop(server);
}
