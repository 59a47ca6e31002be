//! Per-route, per-principal rate limits with IETF headers.

use corral_testkit::{both, Backend, TestApp};
use reqwest::Method;
use serde_json::json;

async fn write_limit_is_per_principal(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let (_, key_a) = alice.api_key(None).await;
    let (_, key_b) = alice.api_key(None).await;
    let a = app.client().bearer(&key_a);
    let bk = app.client().bearer(&key_b);

    let first = a
        .send(Method::POST, "/api/end-users", Some(json!({})), &[])
        .await;
    assert_eq!(first.status, 201);
    assert_eq!(first.header("ratelimit-policy"), Some("60;w=60"));
    let rl = first.header("ratelimit").unwrap().to_owned();
    assert!(rl.starts_with("limit=60, remaining=59, reset="), "{rl}");

    let mut last = None;
    for _ in 1..60 {
        last = Some(
            a.send(Method::POST, "/api/end-users", Some(json!({})), &[])
                .await,
        );
    }
    let last = last.unwrap();
    assert_eq!(last.status, 201);
    assert!(last.header("ratelimit").unwrap().contains("remaining=0"));

    let limited = a
        .send(Method::POST, "/api/end-users", Some(json!({})), &[])
        .await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.code(), "rate_limited");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(limited.body["retryAfter"], retry);
    assert!(limited.header("ratelimit").is_some() && limited.header("ratelimit-policy").is_some());

    // Nothing was created by the refused request.
    let n = app.scalar("SELECT COUNT(*) FROM end_users").await;
    assert_eq!(n, 60);
    // Reads have their own budget, and the other key is unaffected.
    a.get("/api/end-users?limit=1", 200).await;
    let other = bk
        .send(Method::POST, "/api/end-users", Some(json!({})), &[])
        .await;
    assert_eq!(other.status, 201);
    assert!(other.header("ratelimit").unwrap().contains("remaining=59"));
    // So is the session user.
    alice.client.post("/api/end-users", json!({}), 201).await;
}

async fn login_is_limited_per_ip_in_production(b: Backend) {
    let app = TestApp::spawn_with(b, |c| {
        c.env = corral_api::config::Environment::Production;
        c.session_secret = Some(corral_api::config::Secret::new("s".repeat(48)));
        c.run_token_secret = Some(corral_api::config::Secret::new("r".repeat(48)));
        c.encryption_key = Some(corral_api::config::Secret::new(
            "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
        ));
    })
    .await;
    let anon = app.client();
    for i in 0..10 {
        let r = anon
            .send(
                Method::POST,
                "/api/auth/sign-in/email",
                Some(json!({"email": "x@example.com", "password": "wrong"})),
                &[],
            )
            .await;
        assert_eq!(r.status, 401, "attempt {i}");
        assert!(r.header("ratelimit").is_some());
    }
    let r = anon
        .send(
            Method::POST,
            "/api/auth/sign-in/email",
            Some(json!({"email": "x@example.com", "password": "wrong"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
}

/// In development (the default) auth endpoints are not limited per IP: a client's
/// test suite signs up a user per test.
async fn auth_is_not_limited_in_development(b: Backend) {
    let app = TestApp::spawn(b).await;
    let anon = app.client();
    for i in 0..15 {
        let email = format!("dev{i}-{}@example.com", uuid::Uuid::new_v4().simple());
        anon.sign_up(&email, "correct horse battery", "Dev").await;
    }
}

both!(
    write_limit_is_per_principal,
    login_is_limited_per_ip_in_production,
    auth_is_not_limited_in_development
);

/// Issue 19's suite: 100 users signed up from one address within a minute, against a
/// production server, by configuration alone (`CORRAL_RATE_LIMITS=sign-up=100/60s`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_sign_up_limit_admits_a_suite_in_production() {
    let vars: Vec<(String, String)> = [
        ("CORRAL_ENV", "production"),
        ("CORRAL_RATE_LIMITS", "sign-up=100/60s"),
        ("CORRAL_SESSION_SECRET", &"s".repeat(48)),
        ("CORRAL_RUN_TOKEN_SECRET", &"r".repeat(48)),
        (
            "CORRAL_ENCRYPTION_KEY",
            "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let loaded = corral_api::config::Config::load_from(None, &vars).unwrap();
    let app = TestApp::spawn_with(Backend::Sqlite, move |c| {
        c.env = loaded.env;
        c.rate_limits = loaded.rate_limits.clone();
        c.session_secret = loaded.session_secret.clone();
        c.run_token_secret = loaded.run_token_secret.clone();
        c.encryption_key = loaded.encryption_key.clone();
    })
    .await;
    let anon = app.client();
    let body = |i: usize| json!({"email": format!("u{i}-{}@example.com", uuid::Uuid::new_v4().simple()), "password": "correct horse battery", "name": "U"});
    for i in 0..100 {
        let r = anon
            .send(Method::POST, "/api/auth/sign-up/email", Some(body(i)), &[])
            .await;
        assert_eq!(r.status, 200, "sign-up {i}: {}", r.text);
        assert_eq!(r.header("ratelimit-policy"), Some("100;w=60"));
    }
    let r = anon
        .send(
            Method::POST,
            "/api/auth/sign-up/email",
            Some(body(100)),
            &[],
        )
        .await;
    assert_eq!(r.status, 429, "the raised limit still holds");
}

/// A limit name the server does not know stops the boot, naming the known ones.
#[tokio::test]
async fn an_unknown_limit_name_refuses_to_boot() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = corral_api::config::Config::load_from(None, &[]).unwrap();
    config.data_dir = dir.path().to_path_buf();
    config.rate_limits = Some(corral_api::config::RateLimitsSetting::Text(
        "runs=50/60s".into(),
    ));
    let e = match corral_api::build_state(config).await {
        Ok(_) => panic!("booted with an unknown limit"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        e.contains("CORRAL_RATE_LIMITS") && e.contains("\"runs\""),
        "{e}"
    );
    assert!(e.contains("run, logs"), "lists the known limits: {e}");
}
