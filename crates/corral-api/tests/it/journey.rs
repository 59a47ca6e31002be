//! The full journey: sign up → create org → default app → create API key → use it.

use corral_testkit::{both, Backend, TestApp};
use serde_json::json;

async fn full_journey(b: Backend) {
    let app = TestApp::spawn(b).await;
    let anon = app.client();

    let email = format!("ada-{}@example.com", uuid::Uuid::new_v4().simple());
    let c = anon.sign_up(&email, "correct horse battery", "Ada").await;
    let session = c.get("/api/auth/get-session", 200).await;
    assert_eq!(session["user"]["email"], email);

    let org = c.post("/api/orgs", json!({"name": "Acme Corp"}), 201).await;
    assert_eq!(org["role"], "owner");
    assert_eq!(org["slug"], "acme-corp");
    let org_id = org["id"].as_str().unwrap();
    let listed = c.get("/api/orgs", 200).await;
    assert_eq!(listed["data"][0]["id"], org_id);
    assert_eq!(c.get("/api/me/orgs", 200).await["data"][0]["id"], org_id);

    let c = c.org(org_id);
    let apps = c.get("/api/applications", 200).await;
    assert_eq!(apps["object"], "list");
    let data = apps["data"].as_array().unwrap();
    assert_eq!(
        data.len(),
        1,
        "a new org has exactly its default application"
    );
    assert_eq!(data[0]["isDefault"], true);
    assert_eq!(data[0]["object"], "application");
    let app_id = data[0]["id"].as_str().unwrap();
    assert!(app_id.starts_with("app_"));

    let c = c.app(app_id);
    let key = c.post("/api/api-keys", json!({"name": "ci"}), 201).await;
    let secret = key["key"].as_str().unwrap();
    assert!(secret.starts_with("ask_") && secret.len() == 52);
    assert_eq!(key["keyPrefix"].as_str().unwrap(), &secret[..12]);

    // The key works on its own: org and app come from the key.
    let k = anon.bearer(secret);
    let via_key = k
        .send(reqwest::Method::GET, "/api/applications", None, &[])
        .await;
    assert_eq!(via_key.status, 200, "{}", via_key.text);
    assert_eq!(via_key.body["data"][0]["id"], app_id);
    assert_eq!(via_key.header("appstrate-version"), Some("2026-03-21"));
    let eu = k
        .post(
            "/api/end-users",
            json!({"name": "Eve", "externalId": "cust-1"}),
            201,
        )
        .await;
    assert!(eu["id"].as_str().unwrap().starts_with("eu_"));
    assert_eq!(eu["applicationId"], app_id);

    // The key was listed without its secret, and its use recorded.
    let mut seen_used = false;
    for _ in 0..50 {
        let keys = c.get("/api/api-keys", 200).await;
        assert!(
            !keys.to_string().contains(secret),
            "the secret must never be listed"
        );
        if !keys["data"][0]["lastUsedAt"].is_null() {
            seen_used = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(seen_used, "lastUsedAt is recorded after use");

    // Sign out ends the session.
    c.post("/api/auth/sign-out", json!({}), 200).await;
    let r = c.send(reqwest::Method::GET, "/api/orgs", None, &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        anon.get("/api/auth/get-session", 200).await,
        serde_json::Value::Null
    );

    // Sign in again with the same credentials.
    let again = anon.sign_in(&email, "correct horse battery").await;
    assert_eq!(again.get("/api/orgs", 200).await["data"][0]["id"], org_id);
}

async fn sign_up_and_sign_in_errors(b: Backend) {
    let app = TestApp::spawn(b).await;
    let anon = app.client();
    let email = format!("dup-{}@example.com", uuid::Uuid::new_v4().simple());
    anon.sign_up(&email, "correct horse battery", "Dup").await;

    let r = anon
        .send(
            reqwest::Method::POST,
            "/api/auth/sign-up/email",
            Some(
                json!({"email": email.to_uppercase(), "password": "another password", "name": "X"}),
            ),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["errors"][0]["field"], "email");
    assert_eq!(r.body["errors"][0]["code"], "taken");

    let r = anon
        .send(
            reqwest::Method::POST,
            "/api/auth/sign-up/email",
            Some(json!({"email": "not-an-email", "password": "short", "name": ""})),
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
        vec!["email", "password", "name"],
        "every invalid field is reported at once"
    );

    for (em, pw) in [
        (email.as_str(), "wrong password"),
        ("nobody@example.com", "correct horse battery"),
    ] {
        let r = anon
            .send(
                reqwest::Method::POST,
                "/api/auth/sign-in/email",
                Some(json!({"email": em, "password": pw})),
                &[],
            )
            .await;
        assert_eq!(r.status, 401, "{}", r.text);
        assert_eq!(r.code(), "invalid_credentials");
        assert!(r.header("set-cookie").is_none());
    }
}

both!(full_journey, sign_up_and_sign_in_errors);
