//! Cross-site request forgery: an unsafe request authenticated by the session cookie
//! must come from the server's own origin or a trusted one. An Authorization header
//! that is not an accepted credential is a 401 even beside a valid cookie.

use corral_testkit::{both, Backend, TestApp};
use reqwest::Method;
use serde_json::json;

const TRUSTED: &str = "https://dashboard.example";

async fn post(app: &TestApp, cookie: &str, org: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/applications", app.base))
        .header("cookie", cookie)
        .header("x-org-id", org)
        .json(&json!({"name": "From somewhere"}));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status().as_u16()
}

async fn cookie_writes_need_a_trusted_origin(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.trusted_origins = vec![TRUSTED.into()]).await;
    let alice = app.user_with_org("Alice").await;
    let cookie = alice.client.header_value("cookie").unwrap();
    let org = alice.org_id.as_str();
    let count = || async {
        alice.client.get("/api/applications", 200).await["data"]
            .as_array()
            .unwrap()
            .len()
    };
    let before = count().await;

    for (headers, what) in [
        (vec![("origin", "https://evil.example")], "a foreign origin"),
        (vec![("origin", "null")], "an opaque origin"),
        (vec![("sec-fetch-site", "cross-site")], "a cross-site fetch"),
    ] {
        assert_eq!(post(&app, &cookie, org, &headers).await, 403, "{what}");
    }
    assert_eq!(count().await, before, "refused writes created nothing");

    let own = app.base.clone();
    for (headers, what) in [
        (vec![("origin", own.as_str())], "the server's own origin"),
        (vec![("origin", TRUSTED)], "a trusted origin"),
        (
            vec![("sec-fetch-site", "same-origin")],
            "a same-origin fetch",
        ),
        (vec![], "a client that is not a browser"),
    ] {
        assert_eq!(post(&app, &cookie, org, &headers).await, 201, "{what}");
    }

    // An API key is not sent by browsers on their own: no origin rule for it.
    let (_, key) = alice.api_key(None).await;
    let r = app
        .client()
        .bearer(&key)
        .send(
            Method::POST,
            "/api/end-users",
            Some(json!({"name": "Eve"})),
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // A bearer that is no credential is a 401, the valid cookie beside it ignored.
    let r = alice
        .client
        .send(
            Method::GET,
            "/api/applications",
            None,
            &[("authorization", "Bearer not-a-key")],
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
}

both!(cookie_writes_need_a_trusted_origin);
