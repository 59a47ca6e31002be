//! Reference operations added for compatibility: package version info, fork and
//! GitHub import; the caller's context and the welcome setup; model seeding and the
//! OpenRouter search.

use corral_testkit::{both, Backend, TestApp};
use serde_json::{json, Value};

async fn slug(s: &corral_testkit::Session) -> String {
    s.client.get(&format!("/api/orgs/{}", s.org_id), 200).await["slug"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn version_info_and_fork(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Forker").await;
    let c = &s.client;
    let scope = slug(&s).await;

    // versions/info: draft only, then published, then a newer draft.
    let id = format!("@{scope}/notes");
    c.post(
        "/api/packages/skills",
        json!({"manifest": {"name": id, "version": "1.0.0", "type": "skill", "schema_version": "2.0",
                            "display_name": "Notes", "description": "d"},
               "content": "---\nname: notes\ndescription: d\n---\nTake notes."}),
        201,
    )
    .await;
    let info = c
        .get(&format!("/api/packages/skills/{id}/versions/info"), 200)
        .await;
    assert_eq!(
        info,
        json!({"latest_published_version": null, "active_version": "1.0.0"})
    );
    c.post(
        &format!("/api/packages/skills/{id}/versions"),
        json!({}),
        201,
    )
    .await;
    let info = c
        .get(&format!("/api/packages/skills/{id}/versions/info"), 200)
        .await;
    assert_eq!(info["latest_published_version"], "1.0.0", "{info}");
    // The wrong type's route, an unknown package: 404.
    c.get(&format!("/api/packages/agents/{id}/versions/info"), 404)
        .await;
    c.get(
        &format!("/api/packages/mcp-servers/{id}/versions/info"),
        404,
    )
    .await;
    c.get(
        &format!("/api/packages/integrations/@{scope}/nope/versions/info"),
        404,
    )
    .await;
    let sys = c
        .get(
            "/api/packages/agents/@corral/hello-world/versions/info",
            200,
        )
        .await;
    assert!(sys["latest_published_version"].is_string(), "{sys}");

    // Fork a system agent: a local copy, published, `forked_from` the source.
    let forked = c
        .post("/api/packages/@corral/hello-world/fork", json!({}), 201)
        .await;
    let new_id = format!("@{scope}/hello-world");
    assert_eq!(forked["id"], new_id.as_str(), "{forked}");
    assert_eq!(forked["forked_from"], "@corral/hello-world");
    assert_eq!(forked["source"], "local");
    assert_eq!(forked["manifest"]["name"], new_id.as_str());
    assert!(
        forked["prompt"].as_str().is_some_and(|p| !p.is_empty()),
        "{forked}"
    );
    let versions = c
        .get(&format!("/api/packages/agents/{new_id}/versions"), 200)
        .await;
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        1,
        "{versions}"
    );
    // Again under the same name: a collision, nothing written; another name works.
    let before = app.scalar("SELECT COUNT(*) FROM packages").await;
    let e = c
        .post("/api/packages/@corral/hello-world/fork", json!({}), 400)
        .await;
    assert_eq!(e["code"], "name_collision", "{e}");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM packages").await, before);
    let other = c
        .post(
            "/api/packages/@corral/summarize/fork",
            json!({"name": "my-summary"}),
            201,
        )
        .await;
    assert_eq!(other["id"], format!("@{scope}/my-summary"), "{other}");
    assert_eq!(other["type"], "skill");
    // Owned already, unpublished, bad name, unknown: refused.
    let e = c
        .post(&format!("/api/packages/{new_id}/fork"), json!({}), 400)
        .await;
    assert_eq!(e["code"], "invalid_request", "{e}");
    c.post(
        "/api/packages/skills",
        json!({"manifest": {"name": format!("@{scope}/draft-only"), "version": "1.0.0", "type": "skill",
                            "schema_version": "2.0", "display_name": "D", "description": "d"},
               "content": "---\nname: d\ndescription: d\n---\nx"}),
        201,
    )
    .await;
    let e = c
        .post(
            "/api/packages/@corral/summarize/fork",
            json!({"name": "Bad Name"}),
            400,
        )
        .await;
    assert_eq!(e["code"], "validation_failed", "{e}");
    c.post("/api/packages/@corral/nope/fork", json!({}), 404)
        .await;
    c.post(
        "/api/packages/@corral/summarize/fork",
        json!({"extra": 1}),
        400,
    )
    .await;

    // A viewer-less API key without packages:write cannot fork.
    let (_, key) = s.api_key(Some(vec!["packages:read"])).await;
    app.client()
        .bearer(&key)
        .post(
            "/api/packages/@corral/summarize/fork",
            json!({"name": "x"}),
            403,
        )
        .await;
}

async fn import_github_is_refused_clearly(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Gh").await;
    let c = &s.client;
    let before = app.scalar("SELECT COUNT(*) FROM packages").await;
    for url in [
        "not a url",
        "https://gitlab.com/a/b",
        "http://github.com/a/b",
        "https://github.com/a",
    ] {
        let e = c
            .post("/api/packages/import-github", json!({"url": url}), 400)
            .await;
        assert_eq!(e["code"], "INVALID_URL", "{url}: {e}");
    }
    let e = c
        .post(
            "/api/packages/import-github",
            json!({"url": "https://github.com/acme/agents/tree/main/triage"}),
            400,
        )
        .await;
    assert_eq!(e["code"], "GITHUB_ERROR", "{e}");
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("/api/packages/import"),
        "{e}"
    );
    c.post("/api/packages/import-github", json!({}), 400).await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM packages").await, before);
}

async fn my_context_and_welcome(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Ctx").await;
    let c = &s.client;
    let ctx = c.get("/api/me/context", 200).await;
    assert_eq!(ctx["user"]["id"], s.user_id.as_str(), "{ctx}");
    assert_eq!(ctx["user"]["email"], s.email.as_str());
    assert_eq!(ctx["org"]["id"], s.org_id.as_str());
    assert_eq!(ctx["org"]["role"], "owner");
    assert_eq!(ctx["connections"], json!([]));
    assert_eq!(ctx["recent_runs"], json!([]));
    let agents = ctx["agents"].as_array().unwrap();
    assert!(
        agents
            .iter()
            .any(|a| a["package_id"] == "@corral/hello-world" && a["source"] == "system"),
        "{ctx}"
    );
    assert_eq!(ctx["agents_total"].as_i64().unwrap() as usize, agents.len());
    assert_eq!(ctx["agents_truncated"], false);
    assert!(ctx["skills"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["package_id"] == "@corral/summarize"));

    // A read-only key (no agents:run) sees no agents or skills, and its creator.
    let (_, key) = s.api_key(Some(vec!["runs:read"])).await;
    let k = app.client().bearer(&key).get("/api/me/context", 200).await;
    assert_eq!(k["user"]["id"], s.user_id.as_str(), "{k}");
    assert_eq!(k["agents"], json!([]));
    assert_eq!(k["skills_total"], 0);

    // Welcome setup sets the display name; a bad one changes nothing.
    c.post("/api/welcome/setup", json!({"displayName": "  Ada  "}), 204)
        .await;
    assert_eq!(c.get("/api/profile", 200).await["displayName"], "Ada");
    c.post(
        "/api/welcome/setup",
        json!({"displayName": "x".repeat(101)}),
        400,
    )
    .await;
    c.post("/api/welcome/setup", json!({"name": "x"}), 400)
        .await;
    assert_eq!(c.get("/api/profile", 200).await["displayName"], "Ada");
    c.post("/api/welcome/setup", json!({}), 204).await;
    assert_eq!(c.get("/api/me/context", 200).await["user"]["name"], "Ada");
    app.client()
        .post("/api/welcome/setup", json!({}), 401)
        .await;
}

async fn seed_models_and_openrouter(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Seed").await;
    let c = &s.client;
    let cred = c
        .post(
            "/api/model-provider-credentials",
            json!({"providerId": "openai-compatible", "apiKey": "sk-seed-test-1234", "baseUrlOverride": "http://127.0.0.1:9/v1"}),
            201,
        )
        .await;
    let cred_id = cred["id"].as_str().unwrap();
    // Invalid bodies change nothing.
    c.post(
        "/api/models/seed",
        json!({"credentialId": cred_id, "modelIds": []}),
        400,
    )
    .await;
    c.post(
        "/api/models/seed",
        json!({"credentialId": "nope", "modelIds": ["a"]}),
        400,
    )
    .await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM org_models").await, 0);

    let seeded: Value = c
        .post(
            "/api/models/seed",
            json!({"credentialId": cred_id, "modelIds": ["llama3.2", "qwen2.5", "llama3.2"]}),
            201,
        )
        .await;
    assert_eq!(seeded["created"], 2, "{seeded}");
    assert_eq!(seeded["promotedDefault"], true);
    let first = seeded["ids"][0].as_str().unwrap();
    let models = c.get("/api/models", 200).await;
    let def = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["isDefault"] == true || m["is_default"] == true)
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(def["id"], first, "{models}");
    // Idempotent: the credential has models now.
    let again = c
        .post(
            "/api/models/seed",
            json!({"credentialId": cred_id, "modelIds": ["other"]}),
            201,
        )
        .await;
    assert_eq!(
        again,
        json!({"created": 0, "ids": [], "promotedDefault": false})
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM org_models").await, 2);

    // OpenRouter: no outbound call, a clear 502.
    let e = c.get("/api/models/openrouter?q=claude", 502).await;
    assert_eq!(e["code"], "upstream_error", "{e}");
    assert!(e["detail"].as_str().unwrap().contains("openrouter"), "{e}");
}

async fn bootstrap_redeem(b: Backend) {
    let app = TestApp::spawn_with(b, |c| {
        c.bootstrap_token = Some(corral_api::config::Secret::new("boot-7f3a9c1e5d"));
    })
    .await;
    let anon = app.client();
    let body = |token: &str| json!({"token": token, "email": "owner@example.com", "password": "correct horse battery", "name": "Olga"});
    let e = anon
        .post("/api/auth/bootstrap/redeem", body("wrong"), 401)
        .await;
    assert_eq!(e["code"], "invalid_credentials", "{e}");
    anon.post(
        "/api/auth/bootstrap/redeem",
        json!({"token": "boot-7f3a9c1e5d"}),
        400,
    )
    .await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM users").await, 0);
    let r = anon
        .send(
            reqwest::Method::POST,
            "/api/auth/bootstrap/redeem",
            Some(body("boot-7f3a9c1e5d")),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["user"]["email"], "owner@example.com");
    let org_id = r.body["bootstrap"]["orgId"].as_str().unwrap().to_owned();
    assert!(r.body["bootstrap"]["orgSlug"].is_string());
    let token = corral_testkit::client::session_from(&r);
    let me = app.client().cookie(&token);
    let orgs = me.get("/api/me/orgs", 200).await;
    assert_eq!(orgs["data"][0]["id"], org_id.as_str(), "{orgs}");
    assert_eq!(orgs["data"][0]["role"], "owner");
    let apps = me.org(&org_id).get("/api/applications", 200).await;
    assert_eq!(apps["data"][0]["isDefault"], true, "{apps}");
    // Single use: an organization exists now.
    let e = anon
        .post("/api/auth/bootstrap/redeem", json!({"token": "boot-7f3a9c1e5d", "email": "x@example.com", "password": "correct horse battery", "name": "X"}), 410)
        .await;
    assert_eq!(e["code"], "bootstrap_unavailable", "{e}");

    // Without a configured token: 410.
    let plain = TestApp::spawn(b).await;
    plain
        .client()
        .post("/api/auth/bootstrap/redeem", body("anything"), 410)
        .await;
}

both!(
    version_info_and_fork,
    import_github_is_refused_clearly,
    my_context_and_welcome,
    seed_models_and_openrouter,
    bootstrap_redeem
);
