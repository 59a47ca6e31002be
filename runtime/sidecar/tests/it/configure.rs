//! `POST /configure` is accepted once, only with the one-time token, and releases
//! the `/task` long poll; `/health` shows no secret.

use axum::http::StatusCode;
use corral_protocol::AgentTask;

use crate::{config, Recorder, Sidecar, INTEGRATION_SECRET, REAL_KEY, RUN_ID, RUN_TOKEN, TOKEN};

#[tokio::test]
async fn configure_once_with_the_token_and_serve_the_task() {
    let sidecar = Sidecar::start().await;
    let sink = Recorder::sink().await;
    let mut cfg = config("http://127.0.0.1:9/v1", "openai", &sink.url);
    cfg["integrations"] = serde_json::json!([{
        "namespace": "demo",
        "delivery": {"type": "header", "name": "Authorization", "template": "Bearer {{token}}"},
        "authorized_uris": ["http://127.0.0.1:9/*"],
        "credentials": {"token": INTEGRATION_SECRET}
    }]);

    let health: serde_json::Value = sidecar
        .http
        .get(format!("{}/health", sidecar.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health,
        serde_json::json!({"status": "ok", "configured": false})
    );

    // Before configuration the long poll ends empty.
    let before = sidecar
        .http
        .get(format!("{}/task?wait=1", sidecar.url))
        .send()
        .await
        .unwrap();
    assert_eq!(before.status(), StatusCode::NO_CONTENT);

    // A poll already waiting is released by the configuration.
    let waiting = tokio::spawn({
        let http = sidecar.http.clone();
        let url = format!("{}/task?wait=30", sidecar.url);
        async move { http.get(url).send().await.unwrap() }
    });

    let wrong = sidecar.configure_with("not-the-token", &cfg).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let missing = sidecar
        .http
        .post(format!("{}/configure", sidecar.url))
        .json(&cfg)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let bad = sidecar
        .configure_with(TOKEN, &serde_json::json!({"run_id": 1}))
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    sidecar.configure(&cfg).await;
    let again = sidecar.configure_with(TOKEN, &cfg).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);

    let released = waiting.await.unwrap();
    assert_eq!(released.status(), StatusCode::OK);
    let task: AgentTask = released.json().await.unwrap();
    assert_eq!(task.run_id, RUN_ID);
    assert_eq!(task.model.model, "mock-model-1");

    let text = sidecar
        .http
        .get(format!("{}/task?wait=1", sidecar.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let health = sidecar
        .http
        .get(format!("{}/health", sidecar.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(health, r#"{"configured":true,"status":"ok"}"#);
    for secret in [
        REAL_KEY,
        RUN_TOKEN,
        INTEGRATION_SECRET,
        "whsec_",
        "127.0.0.1:9",
        TOKEN,
    ] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the task: {text}"
        );
        assert!(!health.contains(secret), "{secret} leaked into health");
    }
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully_with_open_sessions() {
    let sidecar = Sidecar::start().await;
    let sink = Recorder::sink().await;
    sidecar
        .configure(&config("http://127.0.0.1:9/v1", "openai", &sink.url))
        .await;
    // An MCP session and a pending long poll are open while the signal arrives.
    let _mcp = crate::Mcp::connect(sidecar.mcp_url()).await;
    let poll = sidecar
        .http
        .get(format!("{}/health", sidecar.url))
        .send()
        .await
        .unwrap();
    assert_eq!(poll.status(), StatusCode::OK);
    assert_eq!(sidecar.terminate().await, Some(0));
}
