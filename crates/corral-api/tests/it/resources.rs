//! Behaviour of the resources themselves: applications, end-users, profile, orgs.

use corral_testkit::{both, Backend, TestApp};
use reqwest::Method;
use serde_json::json;

async fn end_users_crud_and_pagination(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let c = &alice.client;

    let mut ids = Vec::new();
    for i in 0..25 {
        let eu = c
            .post(
                "/api/end-users",
                json!({"name": format!("User {i}"), "email": format!("u{i}@Example.com"), "externalId": format!("ext-{i}"), "metadata": {"plan": "pro", "seats": i, "trial": false, "note": null}}),
                201,
            )
            .await;
        ids.push(eu["id"].as_str().unwrap().to_owned());
    }
    // Newest first, pages of 10, forward then backward.
    let p1 = c.get("/api/end-users?limit=10", 200).await;
    let p1_ids: Vec<&str> = p1["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let expect: Vec<&str> = ids.iter().rev().take(10).map(String::as_str).collect();
    assert_eq!(p1_ids, expect);
    assert_eq!(p1["hasMore"], true);
    let p2 = c
        .get(
            &format!("/api/end-users?limit=10&startingAfter={}", p1_ids[9]),
            200,
        )
        .await;
    let p3 = c
        .get(
            &format!(
                "/api/end-users?limit=10&startingAfter={}",
                p2["data"][9]["id"].as_str().unwrap()
            ),
            200,
        )
        .await;
    assert_eq!(p3["data"].as_array().unwrap().len(), 5);
    assert_eq!(p3["hasMore"], false);
    let back = c
        .get(
            &format!(
                "/api/end-users?limit=10&endingBefore={}",
                p2["data"][0]["id"].as_str().unwrap()
            ),
            200,
        )
        .await;
    assert_eq!(back["data"], p1["data"]);

    // Filters.
    let by_ext = c.get("/api/end-users?externalId=ext-7", 200).await;
    assert_eq!(by_ext["data"][0]["id"], ids[7].as_str());
    let by_email = c.get("/api/end-users?email=U7@example.COM", 200).await;
    assert_eq!(by_email["data"].as_array().unwrap().len(), 1);
    let search = c.get("/api/end-users?search=user%202&limit=100", 200).await;
    assert_eq!(
        search["data"].as_array().unwrap().len(),
        6,
        "User 2, 20..24"
    );
    let none = c.get("/api/end-users?search=%25", 200).await;
    assert_eq!(none["data"].as_array().unwrap().len(), 0, "% is a literal");

    // Bad queries.
    for q in [
        "limit=0",
        "limit=101",
        "limit=ten",
        &format!("startingAfter={}&endingBefore={}", ids[0], ids[1]),
    ] {
        let r = c
            .send(Method::GET, &format!("/api/end-users?{q}"), None, &[])
            .await;
        assert_eq!(r.status, 400, "{q}");
    }

    // Update: given fields change, null clears, duplicate externalId is 409.
    let u = c
        .patch(
            &format!("/api/end-users/{}", ids[0]),
            json!({"name": null, "metadata": {"plan": "free"}}),
            200,
        )
        .await;
    assert!(u["name"].is_null());
    assert_eq!(u["metadata"], json!({"plan": "free"}));
    assert_eq!(u["externalId"], "ext-0");
    let r = c
        .send(
            Method::PATCH,
            &format!("/api/end-users/{}", ids[0]),
            Some(json!({"externalId": "ext-1"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "external_id_taken");
    let r = c
        .send(
            Method::POST,
            "/api/end-users",
            Some(json!({"externalId": "ext-1"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 409);

    // Metadata and email validation, all reported together.
    let r = c
        .send(
            Method::POST,
            "/api/end-users",
            Some(
                json!({"email": "nope", "metadata": {"nested": {"a": 1}, "long": "x".repeat(501)}}),
            ),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["errors"].as_array().unwrap().len(), 3, "{}", r.text);

    c.delete(&format!("/api/end-users/{}", ids[0]), 204).await;
    let r = c
        .send(
            Method::GET,
            &format!("/api/end-users/{}", ids[0]),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 404);
}

async fn applications_crud(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let c = &alice.client;
    let a = c
        .post(
            "/api/applications",
            json!({"name": "Portal", "settings": {"allowedRedirectDomains": ["app.example.com"]}}),
            201,
        )
        .await;
    let id = a["id"].as_str().unwrap();
    assert_eq!(a["isDefault"], false);
    assert_eq!(a["created_by"], alice.user_id.as_str());
    let u = c
        .patch(
            &format!("/api/applications/{id}"),
            json!({"name": "Portal 2"}),
            200,
        )
        .await;
    assert_eq!(u["name"], "Portal 2");
    assert_eq!(
        u["settings"]["allowedRedirectDomains"][0],
        "app.example.com"
    );
    let r = c
        .send(Method::POST, "/api/applications", Some(json!({"name": "x", "settings": {"allowedRedirectDomains": vec!["a.example.com"; 21]}})), &[])
        .await;
    assert_eq!(r.status, 400);
    let list = c.get("/api/applications", 200).await;
    assert_eq!(list["data"][0]["isDefault"], true, "default first");
    assert_eq!(list["total"], 2);
    c.delete(&format!("/api/applications/{id}"), 204).await;
    c.get(&format!("/api/applications/{id}"), 404).await;
}

async fn profile_and_orgs(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let c = &alice.client;
    let p = c.get("/api/profile", 200).await;
    assert_eq!(p["language"], "en");
    assert!(p["displayName"].is_null());
    let p = c
        .patch(
            "/api/profile",
            json!({"displayName": "Al", "language": "fr"}),
            200,
        )
        .await;
    assert_eq!(p["displayName"], "Al");
    let r = c
        .send(
            Method::PATCH,
            "/api/profile",
            Some(json!({"language": "de"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .send(
            Method::POST,
            "/api/profile/password",
            Some(json!({"newPassword": "another long one"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "password_already_set");
    let batch = c
        .post(
            "/api/profiles/batch",
            json!({"ids": [alice.user_id, "someone-else"]}),
            200,
        )
        .await;
    assert_eq!(batch["data"][0]["displayName"], "Al");
    assert_eq!(batch["data"].as_array().unwrap().len(), 1);

    // Slugs: explicit ones must be free; generated ones get a suffix when taken.
    let one = c.post("/api/orgs", json!({"name": "Same Name"}), 201).await;
    let two = c.post("/api/orgs", json!({"name": "Same Name"}), 201).await;
    assert_eq!(one["slug"], "same-name");
    assert!(two["slug"].as_str().unwrap().starts_with("same-name-"));
    let r = c
        .send(
            Method::POST,
            "/api/orgs",
            Some(json!({"name": "X", "slug": "same-name"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["errors"][0]["code"], "taken");
    let r = c
        .send(
            Method::POST,
            "/api/orgs",
            Some(json!({"name": "X", "slug": "Bad Slug"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        c.get("/api/orgs", 200).await["data"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

both!(
    end_users_crud_and_pagination,
    applications_crud,
    profile_and_orgs
);
