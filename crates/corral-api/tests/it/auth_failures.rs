//! Every way authentication or context resolution can fail, and what the client gets.

use corral_testkit::{both, Backend, TestApp};
use reqwest::Method;
use serde_json::json;

async fn api_key_failures(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let anon = app.client();

    // Missing credentials: bare Bearer challenge.
    let r = anon.send(Method::GET, "/api/applications", None, &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));

    // Malformed, unknown: invalid_token challenge.
    for token in [
        "ask_nothex",
        "ask_0123456789abcdef0123456789abcdef0123456789abcdef",
        "not-a-key-at-all",
    ] {
        let r = anon
            .bearer(token)
            .send(Method::GET, "/api/applications", None, &[])
            .await;
        assert_eq!(r.status, 401, "{token}: {}", r.text);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\""),
            "{token}"
        );
    }

    // Revoked.
    let (key_id, key) = alice.api_key(None).await;
    let k = anon.bearer(&key);
    k.get("/api/applications", 200).await;
    alice
        .client
        .delete(&format!("/api/api-keys/{key_id}"), 204)
        .await;
    let r = k.send(Method::GET, "/api/applications", None, &[]).await;
    assert_eq!(r.status, 401);
    assert!(r.body["detail"].as_str().unwrap().contains("revoked"));
    let listed = alice.client.get("/api/api-keys", 200).await;
    assert!(!listed["data"][0]["revokedAt"].is_null());

    // Expired.
    let (key_id, key) = alice.api_key(None).await;
    app.sql(&format!(
        "UPDATE api_keys SET expires_at = 1 WHERE id = '{key_id}'"
    ))
    .await;
    let r = anon
        .bearer(&key)
        .send(Method::GET, "/api/applications", None, &[])
        .await;
    assert_eq!(r.status, 401);
    assert!(r.body["detail"].as_str().unwrap().contains("expired"));

    // A key whose expiry must be in the future.
    let r = alice
        .client
        .send(
            Method::POST,
            "/api/api-keys",
            Some(json!({"name": "old", "expiresAt": "2001-01-01T00:00:00Z"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["errors"][0]["field"], "expiresAt");
}

async fn session_failures(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let anon = app.client();

    // Forged session token.
    let r = anon
        .cookie("forged-token")
        .send(Method::GET, "/api/orgs", None, &[])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );

    // Expired session.
    app.sql("UPDATE sessions SET expires_at = 1").await;
    let r = alice.client.send(Method::GET, "/api/orgs", None, &[]).await;
    assert_eq!(r.status, 401);
}

async fn sliding_session_refresh(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    // A session last refreshed two days ago slides forward and re-sets the cookie.
    let now = corral_core::time::now_ms();
    app.sql(&format!(
        "UPDATE sessions SET refreshed_at = {}, expires_at = {}",
        now - 2 * 86_400_000,
        now + 86_400_000
    ))
    .await;
    let r = alice.client.send(Method::GET, "/api/orgs", None, &[]).await;
    assert_eq!(r.status, 200);
    let cookie = r.header("set-cookie").expect("refreshed cookie");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && cookie.contains("Max-Age=604800"),
        "{cookie}"
    );
    let after = alice.client.get("/api/auth/get-session", 200).await;
    let expires =
        corral_core::time::parse_rfc3339(after["session"]["expiresAt"].as_str().unwrap()).unwrap();
    assert!(
        expires > now + 6 * 86_400_000,
        "expiry moved forward to ~7 days"
    );
}

async fn org_and_app_context_failures(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let bob = app.user_with_org("Bob").await;
    let anon = app.client();

    // X-Org-Id of an org the user is not in.
    let r = alice
        .client
        .org(&bob.org_id)
        .send(Method::GET, "/api/applications", None, &[])
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    // Missing X-Org-Id on an org-scoped route with a session.
    let r = alice
        .client
        .without_header("x-org-id")
        .send(Method::GET, "/api/applications", None, &[])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["param"], "X-Org-Id");
    // Missing app on an app-scoped route; an app of another org.
    let r = alice
        .client
        .without_header("x-app-id")
        .send(Method::GET, "/api/end-users", None, &[])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["param"], "X-App-Id");
    let r = alice
        .client
        .app(&bob.app_id)
        .send(Method::GET, "/api/end-users", None, &[])
        .await;
    assert_eq!(r.status, 404);
    // X-Application-Id is accepted as well.
    let c = alice
        .client
        .without_header("x-app-id")
        .with_header("x-application-id", &alice.app_id);
    c.get("/api/end-users", 200).await;

    // An API key used with another org's id, or another application's id.
    let (_, key) = alice.api_key(None).await;
    let k = anon.bearer(&key);
    let r = k
        .org(&bob.org_id)
        .send(Method::GET, "/api/applications", None, &[])
        .await;
    assert_eq!(r.status, 403);
    k.org(&alice.org_id).get("/api/applications", 200).await;
    let r = k
        .app(&bob.app_id)
        .send(Method::GET, "/api/end-users", None, &[])
        .await;
    assert_eq!(r.status, 403);
    // An API key on a user-only route.
    let r = k.send(Method::GET, "/api/profile", None, &[]).await;
    assert_eq!(r.status, 403);
}

async fn end_user_header_rules(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let anon = app.client();
    let eu = alice
        .client
        .post("/api/end-users", json!({"name": "Eve"}), 201)
        .await;
    let eu_id = eu["id"].as_str().unwrap();

    // With session auth the header is refused.
    let r = alice
        .client
        .with_header("appstrate-user", eu_id)
        .send(Method::GET, "/api/end-users", None, &[])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "header_not_allowed");

    // With an API key of the same app it is accepted.
    let (_, key) = alice.api_key(None).await;
    anon.bearer(&key)
        .with_header("appstrate-user", eu_id)
        .get("/api/end-users", 200)
        .await;

    // An end-user of another application (same org) is 403; so is an unknown one.
    let other_app = alice
        .client
        .post("/api/applications", json!({"name": "Other"}), 201)
        .await;
    let other = alice
        .client
        .app(other_app["id"].as_str().unwrap())
        .post("/api/end-users", json!({"name": "Mallory"}), 201)
        .await;
    for id in [
        other["id"].as_str().unwrap(),
        "eu_00000000-0000-7000-8000-000000000000",
    ] {
        let r = anon
            .bearer(&key)
            .with_header("appstrate-user", id)
            .send(Method::GET, "/api/end-users", None, &[])
            .await;
        assert_eq!(r.status, 403, "{id}: {}", r.text);
    }
}

async fn key_permissions_follow_creator_role(b: Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.user_with_org("Owner").await;
    let anon = app.client();

    // Bring in an admin who creates a key.
    let admin_email = format!("adm-{}@example.com", uuid::Uuid::new_v4().simple());
    let inv = owner
        .client
        .post(
            &format!("/api/orgs/{}/members", owner.org_id),
            json!({"email": admin_email, "role": "admin"}),
            201,
        )
        .await;
    let admin = anon
        .sign_up(&admin_email, "correct horse battery", "Adm")
        .await;
    admin
        .post(
            &format!("/invite/{}/accept", inv["token"].as_str().unwrap()),
            json!({}),
            200,
        )
        .await;
    let admin = admin.org(&owner.org_id).app(&owner.app_id);
    let scopes = admin.get("/api/api-keys/available-scopes", 200).await;
    let scopes: Vec<&str> = scopes["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(scopes.contains(&"end-users:write"));
    assert!(
        !scopes.contains(&"api-keys:write"),
        "keys never manage keys"
    );
    assert!(!scopes.contains(&"orgs:delete"));

    // Scopes beyond what the caller may grant are refused, naming each.
    let r = admin
        .send(
            Method::POST,
            "/api/api-keys",
            Some(json!({"name": "k", "scopes": ["end-users:write", "orgs:delete", "bogus"]})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        vec!["scopes[2]"],
        "unknown scopes fail validation first: {}",
        r.text
    );
    let r = admin
        .send(
            Method::POST,
            "/api/api-keys",
            Some(json!({"name": "k", "scopes": ["end-users:write", "orgs:delete"]})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["errors"][0]["field"], "scopes[1]");

    let key = admin
        .post(
            "/api/api-keys",
            json!({"name": "k", "scopes": ["end-users:read", "end-users:write"]}),
            201,
        )
        .await;
    let k = anon.bearer(key["key"].as_str().unwrap());
    k.post("/api/end-users", json!({"name": "A"}), 201).await;
    // The key has no applications scope.
    let r = k
        .send(
            Method::POST,
            "/api/applications",
            Some(json!({"name": "nope"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 403);

    // Demote the creator to viewer: the key loses what a viewer cannot do.
    let admin_id = admin.get("/api/profile", 200).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    owner
        .client
        .put(
            &format!("/api/orgs/{}/members/{admin_id}", owner.org_id),
            json!({"role": "viewer"}),
            200,
        )
        .await;
    let r = k
        .send(
            Method::POST,
            "/api/end-users",
            Some(json!({"name": "B"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);

    // Remove the creator: the key stops authenticating.
    owner
        .client
        .delete(
            &format!("/api/orgs/{}/members/{admin_id}", owner.org_id),
            204,
        )
        .await;
    let r = k.send(Method::GET, "/api/end-users", None, &[]).await;
    assert_eq!(r.status, 401);
}

both!(
    api_key_failures,
    session_failures,
    sliding_session_refresh,
    org_and_app_context_failures,
    end_user_header_rules,
    key_permissions_follow_creator_role,
);
