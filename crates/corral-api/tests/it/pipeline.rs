//! The outer pipeline: gates, body limit, closed bodies, versions, headers, CORS.

use corral_testkit::{both, Backend, TestApp};
use reqwest::Method;
use serde_json::json;

async fn shutdown_gate_refuses_writes_while_work_drains(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    // Running work (a run, a slow request) holds the server in its draining phase.
    let work = app.state.track_owned();
    app.begin_shutdown();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !app.state.gates.is_draining() {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let r = alice
        .client
        .send(
            Method::POST,
            "/api/end-users",
            Some(json!({"name": "late"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.code(), "shutting_down");
    assert!(r.header("retry-after").is_some());
    // Safe requests are still served so viewers can watch work finish.
    alice.client.get("/api/end-users", 200).await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM end_users").await,
        0,
        "the refused write changed nothing"
    );
    assert!(!app.is_finished(), "the server waits for running work");
    drop(work);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !app.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "server did not stop after work drained"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    app.stop().await.expect("clean stop");
}

async fn boot_gate_answers_503_until_ready(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = corral_api::config::Config::load_from(None, &[]).unwrap();
    config.data_dir = dir.path().to_path_buf();
    if b == Backend::Postgres {
        config.database_url = Some(corral_testkit::fresh_postgres_database().await);
    }
    let state = corral_api::build_state(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = corral_api::router(state.clone());
    let server = tokio::spawn(async move {
        axum_serve(listener, router).await;
    });
    let http = reqwest::Client::new();
    for path in ["/health", "/api/orgs"] {
        let r = http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], "starting");
    }
    state.db.migrate().await.unwrap();
    state.gates.set_ready();
    let r = http
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.abort();
}

async fn axum_serve(listener: tokio::net::TcpListener, router: axum::Router) {
    let _ = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await;
}

async fn body_limit(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.body_limit_bytes = 4096).await;
    let alice = app.user_with_org("Alice").await;
    let big = json!({"name": "x".repeat(5000)});
    let r = alice
        .client
        .send(Method::POST, "/api/end-users", Some(big), &[])
        .await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.code(), "payload_too_large");

    // A chunked body (no Content-Length) over the limit is refused too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(b"{\"name\":\"".to_vec()),
        Ok(vec![b'y'; 6000]),
        Ok(b"\"}".to_vec()),
    ];
    let resp = reqwest::Client::new()
        .post(format!("{}/api/applications", app.base))
        .header("cookie", alice.client.header_value("cookie").unwrap())
        .header("x-org-id", &alice.org_id)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM end_users").await, 0);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM applications").await, 1);
}

async fn closed_bodies(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let c = &alice.client;

    let r = c
        .send(
            Method::POST,
            "/api/applications",
            Some(json!({"name": "A", "colour": "red"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "colour");
    assert_eq!(r.body["errors"][0]["code"], "unknown_field");

    let r = c
        .send(
            Method::POST,
            "/api/applications",
            Some(json!({"name": 42})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["errors"][0]["field"], "name");
    assert_eq!(r.body["errors"][0]["code"], "invalid_type");

    let r = c
        .send(
            Method::POST,
            "/api/applications",
            Some(json!({"name": "A", "settings": {"allowedRedirectDomains": "x"}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body["errors"][0]["field"],
        "settings.allowedRedirectDomains"
    );

    let r = c
        .send(Method::POST, "/api/applications", Some(json!({})), &[])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["errors"][0]["field"], "name");
    assert_eq!(r.body["errors"][0]["code"], "required");

    let r = c
        .send_raw(
            Method::POST,
            "/api/applications",
            "application/json",
            b"{\"name\": ".to_vec(),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "malformed_json");

    let r = c
        .send_raw(
            Method::POST,
            "/api/applications",
            "text/plain",
            b"name=A".to_vec(),
        )
        .await;
    assert_eq!(r.status, 415);

    // None of it created anything.
    assert_eq!(
        c.get("/api/applications", 200).await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn versions_and_headers(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let c = &alice.client;

    let r = c
        .send(
            Method::GET,
            "/api/applications",
            None,
            &[("appstrate-version", "1999-01-01")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "unsupported_api_version");
    let r = c
        .send(
            Method::GET,
            "/api/applications",
            None,
            &[("appstrate-version", "2026-03-21")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("appstrate-version"), Some("2026-03-21"));

    // The org pin: readable, writable only to a version the server serves.
    let s = c
        .get(&format!("/api/orgs/{}/settings", alice.org_id), 200)
        .await;
    assert_eq!(s["api_version"], "2026-03-21");
    let r = c
        .send(
            Method::PUT,
            &format!("/api/orgs/{}/settings", alice.org_id),
            Some(json!({"api_version": "2000-01-01"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "unsupported_api_version");
    let s = c
        .put(
            &format!("/api/orgs/{}/settings", alice.org_id),
            json!({"dashboard_sso_enabled": true}),
            200,
        )
        .await;
    assert_eq!(s["dashboard_sso_enabled"], true);
    assert_eq!(s["api_version"], "2026-03-21");

    // Security headers and a request id on every response, errors included.
    let r = app.client().send(Method::GET, "/api/nope", None, &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "route_not_found");
    for h in [
        "x-content-type-options",
        "x-frame-options",
        "content-security-policy",
        "request-id",
    ] {
        assert!(r.header(h).is_some(), "{h} missing");
    }
    assert_eq!(
        r.header("request-id").unwrap(),
        r.body["requestId"].as_str().unwrap()
    );
    assert!(
        r.header("appstrate-version").is_none(),
        "only authenticated responses carry the version"
    );
    let r = app
        .client()
        .send(Method::DELETE, "/health", None, &[])
        .await;
    assert_eq!(r.status, 405);
}

async fn cors_allow_list(b: Backend) {
    let app = TestApp::spawn_with(b, |c| {
        c.trusted_origins = vec!["https://app.example.com".into()]
    })
    .await;
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(Method::OPTIONS, format!("{}/api/applications", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-org-id")
            .send()
    };
    let ok = preflight("https://app.example.com").await.unwrap();
    assert_eq!(
        ok.headers().get("access-control-allow-origin").unwrap(),
        "https://app.example.com"
    );
    assert_eq!(
        ok.headers()
            .get("access-control-allow-credentials")
            .unwrap(),
        "true"
    );
    let denied = preflight("https://evil.example.com").await.unwrap();
    assert!(denied
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

async fn health_reports_database(b: Backend) {
    let app = TestApp::spawn(b).await;
    let h = app.client().get("/health", 200).await;
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["checks"]["database"]["status"], "healthy");
    assert_eq!(
        h["checks"]["database"]["backend"],
        if b == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );
    // With the database gone, health says so (503) and requests get a clear error.
    app.state.db.close().await;
    let r = app.client().send(Method::GET, "/health", None, &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["checks"]["database"]["status"], "unhealthy");
}

both!(
    shutdown_gate_refuses_writes_while_work_drains,
    boot_gate_answers_503_until_ready,
    body_limit,
    closed_bodies,
    versions_and_headers,
    cors_allow_list,
    health_reports_database,
);
