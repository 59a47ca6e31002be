//! Tenant isolation: another org cannot list, read, update or delete the first org's
//! objects; another application of the same org cannot see app-scoped objects. A
//! foreign object is a 404 (never a 403 that confirms it exists).

use corral_testkit::{both, Backend, TestApp};
use reqwest::Method;
use serde_json::json;

async fn second_org_sees_nothing(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let bob = app.user_with_org("Bob").await;
    let a = &alice.client;

    let a_app = a
        .post("/api/applications", json!({"name": "Extra"}), 201)
        .await;
    let a_app_id = a_app["id"].as_str().unwrap();
    let eu = a
        .post(
            "/api/end-users",
            json!({"name": "Eve", "externalId": "x1"}),
            201,
        )
        .await;
    let eu_id = eu["id"].as_str().unwrap();
    let (key_id, _) = alice.api_key(None).await;
    let inv = a
        .post(
            &format!("/api/orgs/{}/members", alice.org_id),
            json!({"email": "carol@example.com"}),
            201,
        )
        .await;
    let inv_id = inv["id"].as_str().unwrap();

    // Bob, with his own session and his own API key, in his own org.
    let (_, bob_key) = bob.api_key(None).await;
    let bob_key_client = app.client().bearer(&bob_key);
    for bc in [&bob.client, &bob_key_client] {
        // Lists contain only Bob's objects.
        let apps = bc.get("/api/applications", 200).await;
        assert!(!apps.to_string().contains(a_app_id));
        let eus = bc.get("/api/end-users", 200).await;
        assert!(!eus.to_string().contains(eu_id));

        // Reads, updates and deletes of Alice's objects are 404.
        for (m, path, body) in [
            (Method::GET, format!("/api/applications/{a_app_id}"), None),
            (
                Method::PATCH,
                format!("/api/applications/{a_app_id}"),
                Some(json!({"name": "pwned"})),
            ),
            (
                Method::DELETE,
                format!("/api/applications/{a_app_id}"),
                None,
            ),
            (Method::GET, format!("/api/end-users/{eu_id}"), None),
            (
                Method::PATCH,
                format!("/api/end-users/{eu_id}"),
                Some(json!({"name": "pwned"})),
            ),
            (Method::DELETE, format!("/api/end-users/{eu_id}"), None),
        ] {
            let r = bc.send(m.clone(), &path, body, &[]).await;
            assert_eq!(r.status, 404, "{m} {path}: {}", r.text);
        }
        // API keys never manage keys (403 by permission, whatever the id); a session
        // that may manage keys gets 404 for a key of another org.
        let r = bc
            .send(
                Method::DELETE,
                &format!("/api/api-keys/{key_id}"),
                None,
                &[],
            )
            .await;
        assert_eq!(
            r.status,
            if std::ptr::eq(bc, &bob_key_client) {
                403
            } else {
                404
            },
            "{}",
            r.text
        );
    }
    // Keys of Bob's app never list Alice's key.
    let keys = bob.client.get("/api/api-keys", 200).await;
    assert!(!keys.to_string().contains(&key_id));

    // Bob cannot reach Alice's org by path: not found, whatever the method.
    let org = format!("/api/orgs/{}", alice.org_id);
    for (m, path, body) in [
        (Method::GET, org.clone(), None),
        (Method::PUT, org.clone(), Some(json!({"name": "pwned"}))),
        (Method::DELETE, org.clone(), None),
        (Method::GET, format!("{org}/settings"), None),
        (
            Method::PUT,
            format!("{org}/settings"),
            Some(json!({"dashboard_sso_enabled": true})),
        ),
        (
            Method::POST,
            format!("{org}/members"),
            Some(json!({"email": "x@example.com"})),
        ),
        (
            Method::PUT,
            format!("{org}/members/{}", alice.user_id),
            Some(json!({"role": "viewer"})),
        ),
        (
            Method::DELETE,
            format!("{org}/members/{}", alice.user_id),
            None,
        ),
        (
            Method::PUT,
            format!("{org}/invitations/{inv_id}"),
            Some(json!({"role": "viewer"})),
        ),
        (Method::DELETE, format!("{org}/invitations/{inv_id}"), None),
    ] {
        for bc in [&bob.client, &bob_key_client] {
            let r = bc.send(m.clone(), &path, body.clone(), &[]).await;
            assert_eq!(r.status, 404, "{m} {path}: {}", r.text);
        }
    }
    // Profiles of people outside the org are not returned.
    let p = bob
        .client
        .post("/api/profiles/batch", json!({"ids": [alice.user_id]}), 200)
        .await;
    assert_eq!(p["data"].as_array().unwrap().len(), 0);

    // Nothing changed on Alice's side.
    assert_eq!(
        a.get(&format!("/api/applications/{a_app_id}"), 200).await["name"],
        "Extra"
    );
    assert_eq!(
        a.get(&format!("/api/end-users/{eu_id}"), 200).await["name"],
        "Eve"
    );
    let detail = a.get(&org, 200).await;
    assert_eq!(detail["members"].as_array().unwrap().len(), 1);
    assert_eq!(detail["invitations"].as_array().unwrap().len(), 1);
}

async fn second_application_sees_nothing(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let first = &alice.client;
    let eu = first
        .post("/api/end-users", json!({"name": "Eve"}), 201)
        .await;
    let eu_id = eu["id"].as_str().unwrap();
    let (key_id, _) = alice.api_key(None).await;

    let other = first
        .post("/api/applications", json!({"name": "Second"}), 201)
        .await;
    let second = first.app(other["id"].as_str().unwrap());
    assert_eq!(
        second.get("/api/end-users", 200).await["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        second.get("/api/api-keys", 200).await["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    for (m, path) in [
        (Method::GET, format!("/api/end-users/{eu_id}")),
        (Method::DELETE, format!("/api/end-users/{eu_id}")),
        (Method::DELETE, format!("/api/api-keys/{key_id}")),
    ] {
        let r = second.send(m.clone(), &path, None, &[]).await;
        assert_eq!(r.status, 404, "{m} {path}");
    }
    // An API key of the second application cannot see the first's end-users.
    let k2 = second
        .post("/api/api-keys", json!({"name": "second"}), 201)
        .await;
    let kc = app.client().bearer(k2["key"].as_str().unwrap());
    assert_eq!(
        kc.get("/api/end-users", 200).await["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let r = kc
        .send(Method::GET, &format!("/api/end-users/{eu_id}"), None, &[])
        .await;
    assert_eq!(r.status, 404);
}

async fn deleting_cascades(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let c = &alice.client;

    // Deleting an application removes its end-users and keys.
    let extra = c
        .post("/api/applications", json!({"name": "Temp"}), 201)
        .await;
    let extra_id = extra["id"].as_str().unwrap();
    let ec = c.app(extra_id);
    ec.post("/api/end-users", json!({"name": "T"}), 201).await;
    let k = ec.post("/api/api-keys", json!({"name": "t"}), 201).await;
    let kc = app.client().bearer(k["key"].as_str().unwrap());
    kc.get("/api/end-users", 200).await;
    c.delete(&format!("/api/applications/{extra_id}"), 204)
        .await;
    assert_eq!(
        kc.send(Method::GET, "/api/end-users", None, &[])
            .await
            .status,
        401
    );
    let left: i64 = sqlx_count(
        &app,
        &format!("SELECT COUNT(*) FROM end_users WHERE application_id = '{extra_id}'"),
    )
    .await;
    assert_eq!(left, 0);

    // The default application cannot be deleted.
    let r = c
        .send(
            Method::DELETE,
            &format!("/api/applications/{}", alice.app_id),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 400);

    // Deleting the org removes everything; its keys stop working.
    let (_, key) = alice.api_key(None).await;
    c.post("/api/end-users", json!({"name": "U"}), 201).await;
    c.delete(&format!("/api/orgs/{}", alice.org_id), 204).await;
    assert_eq!(
        app.client()
            .bearer(&key)
            .send(Method::GET, "/api/end-users", None, &[])
            .await
            .status,
        401
    );
    for table in [
        "applications",
        "end_users",
        "api_keys",
        "org_members",
        "invitations",
    ] {
        let n = sqlx_count(
            &app,
            &format!(
                "SELECT COUNT(*) FROM {table} WHERE org_id = '{}'",
                alice.org_id
            ),
        )
        .await;
        assert_eq!(n, 0, "{table} rows left behind");
    }
    assert_eq!(
        c.get("/api/orgs", 200).await["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

async fn sqlx_count(app: &TestApp, sql: &str) -> i64 {
    app.scalar(sql).await
}

both!(
    second_org_sees_nothing,
    second_application_sees_nothing,
    deleting_cascades
);
