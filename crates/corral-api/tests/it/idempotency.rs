//! Idempotency-Key: replay, conflict, in flight, not supported, and the rules around it.

use corral_testkit::{both, Backend, TestApp};
use reqwest::Method;
use serde_json::json;

async fn replay_conflict_in_flight(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let c = &alice.client;
    let body = json!({"name": "Eve", "externalId": "idem-1"});

    let first = c
        .send(
            Method::POST,
            "/api/end-users",
            Some(body.clone()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert!(first.header("idempotent-replayed").is_none());

    // Same key, same body: the stored response, marked as a replay; no second row.
    let again = c
        .send(
            Method::POST,
            "/api/end-users",
            Some(body.clone()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("content-type"), Some("application/json"));
    assert_eq!(
        c.get("/api/end-users", 200).await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Same key, other body: 422.
    let other = c
        .send(
            Method::POST,
            "/api/end-users",
            Some(json!({"name": "Mallory"})),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(other.status, 422);
    assert_eq!(other.code(), "idempotency_conflict");

    // Keys are scoped by application: the same key in another app is a new request.
    let second = c
        .post("/api/applications", json!({"name": "Second"}), 201)
        .await;
    let r = c
        .app(second["id"].as_str().unwrap())
        .send(
            Method::POST,
            "/api/end-users",
            Some(body.clone()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(r.header("idempotent-replayed").is_none());

    // A request holding the key (another replica, still running) makes a duplicate 409.
    let mut conn = app.state.db.conn().await.unwrap();
    let k = corral_store::idempotency::Key {
        org_id: &alice.org_id.as_str().into(),
        application_id: &alice.app_id.as_str().into(),
        key: "k-2",
    };
    let hash = "held-by-someone-else";
    let now = corral_core::time::now_ms();
    let begun = corral_store::idempotency::begin(&mut conn, &k, hash, now, 86_400_000, 300_000)
        .await
        .unwrap();
    assert!(matches!(begun, corral_store::idempotency::Begin::Started));
    drop(conn);
    let r = c
        .send(
            Method::POST,
            "/api/end-users",
            Some(json!({"name": "X"})),
            &[("idempotency-key", "k-2")],
        )
        .await;
    assert_eq!(
        r.status, 422,
        "a held key with another body is a conflict first"
    );
    app.sql(&format!(
        "UPDATE idempotency_keys SET request_hash = '{}' WHERE idem_key = 'k-2'",
        request_hash("/api/end-users", &json!({"name": "X"}))
    ))
    .await;
    let r = c
        .send(
            Method::POST,
            "/api/end-users",
            Some(json!({"name": "X"})),
            &[("idempotency-key", "k-2")],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.code(), "idempotency_in_progress");

    // An in-flight claim left by a dead request is taken over after the stale window.
    app.sql(&format!(
        "UPDATE idempotency_keys SET created_at = {} WHERE idem_key = 'k-2'",
        now - 600_000
    ))
    .await;
    let r = c
        .send(
            Method::POST,
            "/api/end-users",
            Some(json!({"name": "X"})),
            &[("idempotency-key", "k-2")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// The guard hashes method, route template and body, as the server does.
fn request_hash(route: &str, body: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"POST");
    h.update([0]);
    h.update(route.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(body).unwrap());
    hex::encode(h.finalize())
}

async fn errors_are_not_stored(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let c = &alice.client;
    c.post("/api/end-users", json!({"externalId": "dup"}), 201)
        .await;
    // A 4xx answer is stored and replayed like any non-5xx answer.
    let r1 = c
        .send(
            Method::POST,
            "/api/end-users",
            Some(json!({"externalId": "dup"})),
            &[("idempotency-key", "k-4")],
        )
        .await;
    assert_eq!(r1.status, 409);
    assert_eq!(r1.code(), "external_id_taken");
    let r2 = c
        .send(
            Method::POST,
            "/api/end-users",
            Some(json!({"externalId": "dup"})),
            &[("idempotency-key", "k-4")],
        )
        .await;
    assert_eq!(r2.status, 409);
    assert_eq!(r2.header("idempotent-replayed"), Some("true"));
}

async fn not_supported_and_invalid(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let c = &alice.client;
    // On an operation that does not declare it: 400, and nothing is created.
    let r = c
        .send(
            Method::POST,
            "/api/applications",
            Some(json!({"name": "X"})),
            &[("idempotency-key", "k")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "idempotency_not_supported");
    assert_eq!(
        c.get("/api/applications", 200).await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = c
        .send(
            Method::PATCH,
            &format!("/api/applications/{}", alice.app_id),
            Some(json!({"name": "Y"})),
            &[("idempotency-key", "k")],
        )
        .await;
    assert_eq!(r.status, 400);
    // Safe methods ignore it.
    let r = c
        .send(
            Method::GET,
            "/api/applications",
            None,
            &[("idempotency-key", "k")],
        )
        .await;
    assert_eq!(r.status, 200);
    // Too long a key.
    let long = "k".repeat(256);
    let r = c
        .send(
            Method::POST,
            "/api/end-users",
            Some(json!({})),
            &[("idempotency-key", &long)],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["param"], "Idempotency-Key");
}

both!(
    replay_conflict_in_flight,
    errors_are_not_stored,
    not_supported_and_invalid
);
