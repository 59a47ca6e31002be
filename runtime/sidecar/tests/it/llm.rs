//! The `/llm` proxy against the scripted mock LLM: key substitution, byte-exact
//! streaming in both wire formats, provider errors passed back intact, the token
//! budget, and refusal of any key but the placeholder.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use corral_mockllm::{MockLlm, Turn};
use corral_protocol::sidecar_api::PLACEHOLDER_API_KEY;
use futures::StreamExt as _;
use serde_json::{json, Value};

use crate::{config, Recorder, Sidecar, REAL_KEY};

fn openai_body(stream: bool) -> Value {
    json!({"model": "mock-model-1", "stream": stream, "stream_options": {"include_usage": true},
           "messages": [{"role": "user", "content": "hi"}]})
}

fn anthropic_body(stream: bool) -> Value {
    json!({"model": "mock-model-1", "stream": stream, "max_tokens": 100,
           "messages": [{"role": "user", "content": "hi"}]})
}

async fn configured(mock: &MockLlm, api: &str, max_tokens: u64) -> (Sidecar, Recorder) {
    let sidecar = Sidecar::start().await;
    let sink = Recorder::sink().await;
    let base = match api {
        "openai" => mock.openai_base_url(),
        _ => mock.anthropic_base_url(),
    };
    let mut cfg = config(&base, api, &sink.url);
    cfg["task"]["limits"]["max_tokens"] = json!(max_tokens);
    sidecar.configure(&cfg).await;
    (sidecar, sink)
}

async fn post(sidecar: &Sidecar, api: &str, key: &str, body: &Value) -> reqwest::Response {
    let req = sidecar.http.post(match api {
        "openai" => format!("{}/llm/chat/completions", sidecar.url),
        _ => format!("{}/llm/v1/messages", sidecar.url),
    });
    let req = match api {
        "openai" => req.bearer_auth(key),
        _ => req
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01"),
    };
    req.json(body).send().await.unwrap()
}

/// The same request straight to an identical mock, for byte comparison.
async fn direct(mock: &MockLlm, api: &str, body: &Value) -> Bytes {
    let url = match api {
        "openai" => format!("{}/chat/completions", mock.openai_base_url()),
        _ => format!("{}/v1/messages", mock.anthropic_base_url()),
    };
    reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
}

async fn swaps_key_and_streams_unchanged(api: &str) {
    let script = || {
        vec![
            Turn::tool_call("bash", json!({"command": "ls"}))
                .with_text("Looking.")
                .with_usage(11, 7),
            Turn::text("All done here.").with_usage(5, 3),
        ]
    };
    let mock = MockLlm::start(script()).await.unwrap();
    let twin = MockLlm::start(script()).await.unwrap();
    let (sidecar, _sink) = configured(&mock, api, 1_000_000).await;
    let body = |stream| match api {
        "openai" => openai_body(stream),
        _ => anthropic_body(stream),
    };

    let resp = post(&sidecar, api, PLACEHOLDER_API_KEY, &body(true)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let via_sidecar = resp.bytes().await.unwrap();
    assert_eq!(via_sidecar, direct(&twin, api, &body(true)).await);

    let resp = post(&sidecar, api, PLACEHOLDER_API_KEY, &body(false)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.bytes().await.unwrap(),
        direct(&twin, api, &body(false)).await
    );

    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        let (presented, other) = match api {
            "openai" => (r.header("authorization"), r.header("x-api-key")),
            _ => (r.header("x-api-key"), r.header("authorization")),
        };
        match api {
            "openai" => assert_eq!(presented, Some(format!("Bearer {REAL_KEY}").as_str())),
            _ => assert_eq!(presented, Some(REAL_KEY)),
        }
        assert_eq!(other, None);
        let all = format!("{:?}{}", r.headers, r.body);
        assert!(
            !all.contains(PLACEHOLDER_API_KEY),
            "placeholder reached the provider"
        );
        if api == "anthropic" {
            assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
        }
    }
}

#[tokio::test]
async fn openai_key_swapped_and_stream_passed_through() {
    swaps_key_and_streams_unchanged("openai").await;
}

#[tokio::test]
async fn anthropic_key_swapped_and_stream_passed_through() {
    swaps_key_and_streams_unchanged("anthropic").await;
}

/// Chunks reach the agent as the provider sends them: the provider holds its
/// second chunk back until the client has seen the first through the sidecar.
#[tokio::test]
async fn streaming_is_chunk_by_chunk() {
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let provider = Recorder::start(move |_, _| {
        let mut release = release_rx.clone();
        let first = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n";
        let rest = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n";
        let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(first)) })
            .chain(futures::stream::once(async move {
                let _ = release.wait_for(|r| *r).await;
                Ok(Bytes::from(rest))
            }));
        ([("content-type", "text/event-stream")], Body::from_stream(stream)).into_response()
    })
    .await;
    let sidecar = Sidecar::start().await;
    let sink = Recorder::sink().await;
    sidecar
        .configure(&config(&provider.url, "openai", &sink.url))
        .await;

    let resp = post(&sidecar, "openai", PLACEHOLDER_API_KEY, &openai_body(true)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = resp.bytes_stream();
    let mut got = Vec::new();
    // The first chunk arrives while the provider is still holding the rest.
    while !String::from_utf8_lossy(&got).contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("first chunk streamed before the response ended")
            .unwrap()
            .unwrap();
        got.extend_from_slice(&chunk);
    }
    assert!(!String::from_utf8_lossy(&got).contains("[DONE]"));
    release_tx.send_replace(true);
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert!(String::from_utf8_lossy(&got).ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn provider_errors_pass_back_intact() {
    let error = json!({"error": {"type": "invalid_request_error", "message": "bad thing"}});
    let mock = MockLlm::start(vec![
        Turn::error(400, error.clone()),
        Turn::error(429, json!({"error": {"type": "rate_limit_error"}})).with_retry_after(7),
    ])
    .await
    .unwrap();
    let (sidecar, _sink) = configured(&mock, "anthropic", 1_000_000).await;
    let resp = post(
        &sidecar,
        "anthropic",
        PLACEHOLDER_API_KEY,
        &anthropic_body(false),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.json::<Value>().await.unwrap(), error);
    let resp = post(
        &sidecar,
        "anthropic",
        PLACEHOLDER_API_KEY,
        &anthropic_body(false),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"error": {"type": "rate_limit_error"}})
    );
}

#[tokio::test]
async fn token_budget_is_enforced() {
    let mock = MockLlm::start(vec![
        Turn::text("one").with_usage(60, 10),
        Turn::text("two").with_usage(30, 10),
        Turn::text("never served"),
    ])
    .await
    .unwrap();
    let (sidecar, _sink) = configured(&mock, "anthropic", 100).await;
    // Streaming usage (Anthropic: message_start + message_delta) counts: 70.
    let resp = post(
        &sidecar,
        "anthropic",
        PLACEHOLDER_API_KEY,
        &anthropic_body(true),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.bytes().await.unwrap();
    // Non-streaming usage counts too: 110 ≥ 100.
    let resp = post(
        &sidecar,
        "anthropic",
        PLACEHOLDER_API_KEY,
        &anthropic_body(false),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.bytes().await.unwrap();
    let resp = post(
        &sidecar,
        "anthropic",
        PLACEHOLDER_API_KEY,
        &anthropic_body(false),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let text = resp.text().await.unwrap();
    assert!(text.contains("token_budget_exceeded"), "{text}");
    assert_eq!(
        mock.requests().len(),
        2,
        "the refused call never reached the provider"
    );
}

#[tokio::test]
async fn openai_streaming_usage_counts_toward_the_budget() {
    let mock = MockLlm::start(vec![Turn::text("one").with_usage(80, 20), Turn::text("no")])
        .await
        .unwrap();
    let (sidecar, _sink) = configured(&mock, "openai", 100).await;
    let resp = post(&sidecar, "openai", PLACEHOLDER_API_KEY, &openai_body(true)).await;
    resp.bytes().await.unwrap();
    let resp = post(&sidecar, "openai", PLACEHOLDER_API_KEY, &openai_body(true)).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.text().await.unwrap().contains("token_budget_exceeded"));
}

#[tokio::test]
async fn keys_other_than_the_placeholder_are_refused() {
    let mock = MockLlm::start(vec![Turn::text("never")]).await.unwrap();
    let (sidecar, _sink) = configured(&mock, "openai", 1_000_000).await;
    for key in [REAL_KEY, "sk-something-else"] {
        let resp = post(&sidecar, "openai", key, &openai_body(false)).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let resp = sidecar
        .http
        .post(format!("{}/llm/chat/completions", sidecar.url))
        .json(&openai_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(mock.requests().is_empty());
}
