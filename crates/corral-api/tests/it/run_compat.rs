//! Smaller operations of the reference contract: an application's run configuration
//! for a package, and extending a run's event sink.

use corral_testkit::{both, Backend, TestApp};
use reqwest::Method;
use serde_json::json;

use crate::run_events::running_run;

async fn run_config_reflects_the_application_settings(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Config").await;
    let c = &s.client;
    let base = format!(
        "/api/applications/{}/packages/@corral/hello-world/run-config",
        s.app_id
    );
    // Not installed: nothing applied.
    let none = c.get(&base, 200).await;
    assert_eq!(
        none,
        json!({"generation": null, "modelId": null, "proxyId": null, "version_pin": null,
               "input": {"values": {}, "locked_fields": []}})
    );
    c.put(
        "/api/agents/@corral/hello-world/input-settings",
        json!({"values": {"name": "Ada"}, "locked_fields": ["name"]}),
        200,
    )
    .await;
    c.put(
        &format!(
            "/api/applications/{}/packages/@corral/hello-world",
            s.app_id
        ),
        json!({"generationConfig": {"temperature": 0.5}}),
        200,
    )
    .await;
    let cfg = c.get(&base, 200).await;
    assert_eq!(
        cfg["input"],
        json!({"values": {"name": "Ada"}, "locked_fields": ["name"]})
    );
    assert_eq!(cfg["generation"]["temperature"], 0.5);
    assert!(cfg["version_pin"].is_null());
    // Unknown package, or another org's application: 404.
    let r = c
        .send(
            Method::GET,
            &format!(
                "/api/applications/{}/packages/@corral/nope/run-config",
                s.app_id
            ),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 404);
    let other = app.user_with_org("Other").await;
    let r = other.client.send(Method::GET, &base, None, &[]).await;
    assert_eq!(r.status, 404);
}

async fn an_open_sink_is_extended(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Sink").await;
    let run = running_run(&app, &s).await;
    let path = format!("/api/runs/{run}/sink/extend");
    for bad in [
        json!({"ttl_seconds": 0}),
        json!({"ttl_seconds": 86401}),
        json!({}),
    ] {
        let r = s
            .client
            .send(Method::PATCH, &path, Some(bad.clone()), &[])
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    let before = corral_core::time::now_ms();
    let r = s
        .client
        .patch(&path, json!({"ttl_seconds": 7200}), 200)
        .await;
    assert_eq!(r["id"], run.as_str());
    let stored = app
        .scalar(&format!(
            "SELECT sink_expires_at FROM runs WHERE id = '{run}'"
        ))
        .await;
    assert!(
        stored >= before + 7_200_000 && stored <= before + 7_260_000,
        "{stored}"
    );
    assert_eq!(
        corral_core::time::parse_rfc3339(r["expiresAt"].as_str().unwrap()).map(|t| t / 1000),
        Some(stored / 1000)
    );
    // Another tenant, an expired sink, a finished run: 404, nothing changes.
    let other = app.user_with_org("Other").await;
    let r = other
        .client
        .send(Method::PATCH, &path, Some(json!({"ttl_seconds": 60})), &[])
        .await;
    assert_eq!(r.status, 404);
    app.sql(&format!(
        "UPDATE runs SET sink_expires_at = 1 WHERE id = '{run}'"
    ))
    .await;
    let r = s
        .client
        .send(Method::PATCH, &path, Some(json!({"ttl_seconds": 60})), &[])
        .await;
    assert_eq!(r.status, 404);
    app.sql(&format!(
        "UPDATE runs SET sink_expires_at = {}, status = 'success' WHERE id = '{run}'",
        before + 600_000
    ))
    .await;
    let r = s
        .client
        .send(Method::PATCH, &path, Some(json!({"ttl_seconds": 60})), &[])
        .await;
    assert_eq!(r.status, 404);
}

both!(
    run_config_reflects_the_application_settings,
    an_open_sink_is_extended
);
