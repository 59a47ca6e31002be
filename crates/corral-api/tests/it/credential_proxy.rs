//! The credential proxy: an API key with `credential-proxy:call` calls an
//! integration's API through Corral; the stored credential is injected server-side
//! (the caller never sees it) and only into authorized URIs.

use corral_testkit::receiver::{Receiver, Reply};
use corral_testkit::{both, Backend, TestApp};
use serde_json::json;

const SECRET: &str = "ek_live_proxy_77aa11bb";

fn enc(id: &str) -> String {
    id.replace('@', "%40").replace('/', "%2F")
}

async fn credential_proxy_injects_the_credential(b: Backend) {
    let service = Receiver::start().await;
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("CredProxy").await;
    let c = &s.client;
    let slug = c.get(&format!("/api/orgs/{}", s.org_id), 200).await["slug"]
        .as_str()
        .unwrap()
        .to_owned();
    let integ = format!("@{slug}/echo-api");
    let allowed = format!("http://127.0.0.1:{}/*", service.port);
    c.post(
        "/api/packages/integrations",
        json!({"manifest": {
            "name": integ, "version": "1.0.0", "type": "integration", "schema_version": "2.0",
            "display_name": "Echo", "description": "test",
            "source": {"kind": "api", "api": {}},
            "auths": {"api_key": {
                "type": "api_key",
                "credentials": {"schema": {"type": "object",
                    "properties": {"api_key": {"type": "string", "minLength": 8}, "tenant": {"type": "string"}},
                    "required": ["api_key"], "additionalProperties": false}},
                "delivery": {"http": {"in": "header", "name": "X-Api-Key", "value": "{$credential.api_key}"}},
                "authorized_uris": [allowed]
            }}
        }}),
        201,
    )
    .await;
    let url = format!("{}/api/credential-proxy/proxy", app.base);
    let http = reqwest::Client::new();
    let (_, plain) = s.api_key(None).await;
    let (_, key) = s.api_key(Some(vec!["credential-proxy:call"])).await;
    let target = service.url.clone();

    // Not connected yet: 404; no scope: 403; missing headers: 400.
    let r = http
        .post(&url)
        .bearer_auth(&key)
        .header("x-integration-id", &integ)
        .header("x-target", &target)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    c.post(
        &format!(
            "/api/integrations/{}/auths/api_key/connect/fields",
            enc(&integ)
        ),
        json!({"credentials": {"api_key": SECRET, "tenant": "acme"}}),
        200,
    )
    .await;
    let r = http
        .post(&url)
        .bearer_auth(&plain)
        .header("x-integration-id", &integ)
        .header("x-target", &target)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(&url)
        .bearer_auth(&key)
        .header("x-target", &target)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A target outside the authorized URIs: refused before any request.
    let r = http
        .post(&url)
        .bearer_auth(&key)
        .header("x-integration-id", &integ)
        .header("x-target", "http://127.0.0.1:9/elsewhere")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(service.deliveries().is_empty());

    // Forwarded: the credential injected, placeholders filled, the body passed.
    service.script(vec![Reply::status(201)]);
    let r = http
        .post(&url)
        .bearer_auth(&key)
        .header("x-integration-id", &integ)
        .header("x-target", &target)
        .header("x-tenant", "{{tenant}}")
        .header("x-substitute-body", "true")
        .header("content-type", "application/json")
        .body(r#"{"tenant":"{{tenant}}"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let got = service.deliveries();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].headers.get("x-api-key").map(String::as_str),
        Some(SECRET)
    );
    assert_eq!(
        got[0].headers.get("x-tenant").map(String::as_str),
        Some("acme")
    );
    assert!(
        !got[0].headers.contains_key("authorization"),
        "the Corral key leaked upstream"
    );
    assert!(!got[0].headers.contains_key("x-integration-id"));
    assert_eq!(got[0].body, r#"{"tenant":"acme"}"#);
    // Without X-Substitute-Body the body is sent as is; GET and DELETE work too.
    for method in [
        reqwest::Method::PUT,
        reqwest::Method::GET,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        let r = http
            .request(method.clone(), &url)
            .bearer_auth(&key)
            .header("x-integration-id", &integ)
            .header("x-target", &target)
            .body("{{tenant}}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{method}");
    }
    let got = service.deliveries();
    assert_eq!(got.len(), 5);
    assert_eq!(got[1].body, "{{tenant}}");
    // An unknown placeholder is a 400, not a blank credential.
    let r = http
        .post(&url)
        .bearer_auth(&key)
        .header("x-integration-id", &integ)
        .header("x-target", &target)
        .header("x-other", "{{nope}}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(service.deliveries().len(), 5);
}

both!(credential_proxy_injects_the_credential);
