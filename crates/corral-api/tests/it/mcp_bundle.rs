//! `GET /internal/mcp-server-bundle/{scope}/{name}`: a sandbox fetches the archive
//! of the mcp-server an integration of its run runs, with its run token; any other
//! package, token or run is refused.

use corral_mockllm::MockLlm;
use corral_testkit::{both, Backend};
use serde_json::{json, Value};

use crate::runs::app_with_model;

async fn mcp_server_bundle_for_the_run(b: Backend) {
    let mock = MockLlm::start(Vec::<corral_mockllm::Turn>::new())
        .await
        .unwrap();
    // No run is ever dispatched: the run stays pending with a valid run token.
    let app = app_with_model(b, &mock, |c| c.org_max_concurrent_runs = 0).await;
    let s = app.user_with_org("Bundle").await;
    let c = &s.client;
    let scope = c.get(&format!("/api/orgs/{}", s.org_id), 200).await["slug"]
        .as_str()
        .unwrap()
        .to_owned();
    let server = format!("@{scope}/files-server");
    let other = format!("@{scope}/other-server");
    for id in [&server, &other] {
        c.post(
            "/api/packages/mcp-servers",
            json!({"manifest": {
                "name": id, "version": "1.2.0", "type": "mcp-server", "manifest_version": "0.3",
                "display_name": "Files", "description": "test",
                "server": {"type": "node", "entry_point": "index.js", "mcp_config": {"command": "node", "args": ["index.js"]}}
            }, "files": {"index.js": "console.log('mcp')"}}),
            201,
        )
        .await;
        c.post(
            &format!("/api/packages/mcp-servers/{id}/versions"),
            json!({}),
            201,
        )
        .await;
    }
    let integ = format!("@{scope}/files");
    c.post(
        "/api/packages/integrations",
        json!({"manifest": {
            "name": integ, "version": "1.0.0", "type": "integration", "schema_version": "2.0",
            "display_name": "Files", "description": "test",
            "source": {"kind": "local", "server": {"name": server, "version": "^1.0.0"}},
            "auths": {"api_key": {
                "type": "api_key",
                "credentials": {"schema": {"type": "object", "properties": {"api_key": {"type": "string"}}, "required": ["api_key"]}},
                "delivery": {"http": {"in": "header", "name": "X-Api-Key", "value": "{$credential.api_key}"}},
                "authorized_uris": ["https://files.example.test/*"]
            }}
        }}),
        201,
    )
    .await;
    c.post(
        &format!("/api/packages/integrations/{integ}/versions"),
        json!({}),
        201,
    )
    .await;
    c.post(
        &format!(
            "/api/integrations/{}/auths/api_key/connect/fields",
            integ.replace('@', "%40").replace('/', "%2F")
        ),
        json!({"credentials": {"api_key": "k-123456789"}}),
        200,
    )
    .await;
    let agent = format!("@{scope}/filer");
    c.post(
        "/api/packages/agents",
        json!({"manifest": {
            "name": agent, "version": "1.0.0", "type": "agent", "schema_version": "2.0",
            "display_name": "Filer", "author": "tests",
            "dependencies": {"integrations": {integ.clone(): "^1.0.0"}}
        }, "content": "List files."}),
        201,
    )
    .await;
    c.post(
        &format!("/api/packages/agents/{agent}/versions"),
        json!({}),
        201,
    )
    .await;
    let run = c
        .post(&format!("/api/agents/{agent}/run"), json!({}), 201)
        .await;
    let run_id = run["id"].as_str().unwrap().to_owned();
    let token = corral_engine::runs::executor::run_token(&app.state, &run_id.as_str().into());
    let http = reqwest::Client::new();
    let url = |id: &str| format!("{}/internal/mcp-server-bundle/{id}", app.base);

    let r = http
        .get(url(&server))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    let bytes = r.bytes().await.unwrap();
    let pkg = corral_afps::Package::from_archive(&bytes, &corral_afps::Limits::default()).unwrap();
    assert_eq!(pkg.name.id(), server);
    assert_eq!(
        pkg.files.get("index.js").map(Vec::as_slice),
        Some(&b"console.log('mcp')"[..])
    );
    // An exact version; one that does not exist.
    let r = http
        .get(format!("{}?version=1.2.0", url(&server)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}?version=9.0.0", url(&server)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A server no integration of the run runs; no token; an API key.
    let r = http
        .get(url(&other))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let p: Value = r.json().await.unwrap();
    assert!(
        p["detail"].as_str().unwrap().contains("no integration"),
        "{p}"
    );
    assert_eq!(http.get(url(&server)).send().await.unwrap().status(), 401);
    let (_, key) = s.api_key(None).await;
    assert_eq!(
        http.get(url(&server))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Once the run is over, its token opens nothing.
    c.post(&format!("/api/runs/{run_id}/cancel"), json!({}), 200)
        .await;
    assert_eq!(
        http.get(url(&server))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

both!(mcp_server_bundle_for_the_run);
