//! What an outside fuzzing run found accepted or answered off-contract: JSON with
//! trailing garbage, an empty or untyped body, an array where an object belongs,
//! query values that do not parse, an unknown method, an oversized URI or header
//! block. Each is now a problem+json refusal that changes nothing.

use corral_testkit::{both, Backend, Resp, TestApp};
use reqwest::Method;

fn assert_problem(r: &Resp, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/problem+json"),
        "{what}: content-type {ct:?}, body {:?}",
        r.text
    );
}

/// A request with no Content-Type, as a cross-site form or a bare client sends it.
async fn raw(
    app: &TestApp,
    cookie: &str,
    org: &str,
    method: &str,
    path: &str,
    body: &'static [u8],
) -> reqwest::Response {
    reqwest::Client::new()
        .request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", app.base),
        )
        .header("cookie", cookie)
        .header("x-org-id", org)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn malformed_input_is_refused(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let c = &alice.client;
    let apps = |c: &corral_testkit::Client| {
        let c = c.clone();
        async move {
            c.get("/api/applications", 200).await["data"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    let before = apps(c).await;

    let r = c
        .send_raw(
            Method::POST,
            "/api/applications",
            "application/json",
            br#"{"name":"A"} trailing"#.to_vec(),
        )
        .await;
    assert_problem(&r, 400, "trailing garbage");
    assert_eq!(r.code(), "malformed_json");

    let r = c
        .send_raw(
            Method::POST,
            "/api/applications",
            "application/json",
            Vec::new(),
        )
        .await;
    assert_problem(&r, 400, "empty body");
    assert_eq!(r.body["errors"][0]["field"], "body");
    assert_eq!(r.body["errors"][0]["code"], "required");

    let cookie = c.header_value("cookie").unwrap();
    let r = raw(
        &app,
        &cookie,
        &alice.org_id,
        "POST",
        "/api/applications",
        br#"{"name":"A"}"#,
    )
    .await;
    assert_eq!(r.status(), 415, "no content-type");

    let r = c
        .send_raw(
            Method::POST,
            "/api/applications",
            "application/json",
            b"[null,null]".to_vec(),
        )
        .await;
    assert_problem(&r, 400, "an array for an object");
    assert_eq!(r.body["errors"][0]["code"], "invalid_type");

    // A required body on PUT/PATCH too; an optional one (the reference's) may be empty.
    let app_id = alice.app_id.clone();
    let r = c
        .send_raw(
            Method::PUT,
            &format!("/api/orgs/{}", alice.org_id),
            "application/json",
            Vec::new(),
        )
        .await;
    assert_problem(&r, 400, "bodyless PUT");
    let r = c
        .send_raw(
            Method::PATCH,
            &format!("/api/applications/{app_id}"),
            "application/json",
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 200, "optional body: {}", r.text);
    assert_eq!(apps(c).await, before, "nothing was created");

    // Query values that do not parse name their parameter.
    for (q, param) in [
        ("limit=abc", "limit"),
        ("offset=9223372036854775808", "offset"),
    ] {
        let r = c
            .send(Method::GET, &format!("/api/runs?{q}"), None, &[])
            .await;
        assert_problem(&r, 400, q);
        assert_eq!(r.body["param"], param, "{q}");
    }
    let r = c
        .send(
            Method::GET,
            "/api/agents/@corral/hello-world/runs?limit=x",
            None,
            &[],
        )
        .await;
    assert_problem(&r, 400, "agent runs ?limit=x");

    // `?user=me` with an API key (no user) lists nothing, on both backends.
    let (_, key) = alice.api_key(None).await;
    let keyed = app.client().bearer(&key);
    let r = keyed.get("/api/runs?user=me", 200).await;
    assert_eq!(r["total"], 0, "{r}");

    // The realtime endpoints without credentials: 401 before any context check
    // (Appstrate clients expect it; a missing X-App-Id must not answer first).
    for path in [
        "/api/realtime/runs",
        "/api/realtime/runs?orgId=x&token=nope",
    ] {
        let (status, _, body) =
            corral_testkit::sse::connect(&format!("{}{path}", app.base), &[]).await;
        assert_eq!(status, 401, "{path}: {body}");
    }

    // An unknown method, an oversized URI and header block.
    let r = raw(
        &app,
        &cookie,
        &alice.org_id,
        "TRACE",
        "/api/applications",
        b"",
    )
    .await;
    assert_eq!(r.status(), 405);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/problem+json"));
    assert!(r.headers().contains_key("allow"));
    let long = format!("/api/runs?x={}", "a".repeat(10 * 1024));
    let r = c.send(Method::GET, &long, None, &[]).await;
    assert_problem(&r, 414, "long URI");
    let big = "b".repeat(8 * 1024);
    let r = c
        .send(
            Method::GET,
            "/api/runs",
            None,
            &[
                ("x-a", &big),
                ("x-b", &big),
                ("x-c", &big),
                ("x-d", &big),
                ("x-e", &big),
            ],
        )
        .await;
    assert_problem(&r, 431, "large headers");
}

both!(malformed_input_is_refused);
