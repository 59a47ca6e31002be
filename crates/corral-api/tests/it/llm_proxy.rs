//! The LLM proxy: an external runner calls an organization's model with an API key
//! holding `llm-proxy:call`, never the provider key. Checked against the scripted
//! mock LLM: the provider sees its own model id and the real key, the caller gets
//! the provider's answer unchanged (JSON and SSE).

use corral_mockllm::{MockLlm, Turn};
use corral_testkit::{both, Backend, TestApp};
use serde_json::{json, Value};

const PROVIDER_KEY: &str = "sk-provider-real-4d2c9a";

async fn llm_proxy_forwards_with_the_org_key(b: Backend) {
    let mock = MockLlm::start(vec![
        Turn::text("hello from the mock"),
        Turn::text("streamed reply"),
        Turn::text("anthropic reply"),
    ])
    .await
    .unwrap();
    mock.require_api_key(PROVIDER_KEY);
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Proxy").await;
    let c = &s.client;
    let cred = c
        .post(
            "/api/model-provider-credentials",
            json!({"providerId": "openai-compatible", "apiKey": PROVIDER_KEY, "baseUrlOverride": mock.openai_base_url()}),
            201,
        )
        .await;
    let model = c
        .post(
            "/api/models",
            json!({"modelId": "upstream-model-7", "credentialId": cred["id"]}),
            201,
        )
        .await;
    let model_id = model["id"].as_str().unwrap().to_owned();
    let url = format!(
        "{}/api/llm-proxy/openai-completions/v1/chat/completions",
        app.base
    );
    let http = reqwest::Client::new();
    let body = json!({"model": model_id, "messages": [{"role": "user", "content": "hi"}]});

    // A key without the opt-in scope, a default key, a browser session: refused.
    let (_, plain) = s.api_key(None).await;
    let (_, scoped) = s.api_key(Some(vec!["llm-proxy:call"])).await;
    for key in [&plain] {
        let r = http
            .post(&url)
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    let r = c
        .send(
            reqwest::Method::POST,
            "/api/llm-proxy/openai-completions/v1/chat/completions",
            Some(body.clone()),
            &[],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(mock.requests().is_empty());

    // Bad models: unknown, missing, the wrong wire format.
    for (b, field) in [
        (json!({"model": "nope", "messages": []}), "model"),
        (json!({"messages": []}), "model"),
        (json!({"model": model_id}), "messages"),
    ] {
        let r = http
            .post(&url)
            .bearer_auth(&scoped)
            .json(&b)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["errors"][0]["field"], field, "{e}");
    }
    let r = http
        .post(format!(
            "{}/api/llm-proxy/anthropic-messages/v1/messages",
            app.base
        ))
        .bearer_auth(&scoped)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!(
            "{}/api/llm-proxy/mistral-conversations/v1/chat/completions",
            app.base
        ))
        .bearer_auth(&scoped)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(mock.requests().is_empty());

    // Forwarded: the provider gets its model id and the real key.
    let r = http
        .post(&url)
        .bearer_auth(&scoped)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["content"], "hello from the mock",
        "{answer}"
    );
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body["model"], "upstream-model-7");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );
    assert_eq!(seen[0].body["messages"][0]["content"], "hi");

    // Streaming passes through as SSE.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = http
        .post(&url)
        .bearer_auth(&scoped)
        .json(&streamed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    assert!(
        text.contains("data:") && text.contains("chat.completion.chunk"),
        "{text}"
    );
    assert!(text.contains("\"model\":\"upstream-model-7\""), "{text}");
    assert!(!text.contains(PROVIDER_KEY));

    // An Anthropic credential through the Anthropic route, `anthropic-version` kept.
    let cred = c
        .post(
            "/api/model-provider-credentials",
            json!({"providerId": "anthropic", "apiKey": PROVIDER_KEY, "baseUrlOverride": mock.anthropic_base_url()}),
            201,
        )
        .await;
    let claude = c
        .post(
            "/api/models",
            json!({"modelId": "claude-upstream", "credentialId": cred["id"]}),
            201,
        )
        .await;
    let r = http
        .post(format!("{}/api/llm-proxy/anthropic-messages/v1/messages", app.base))
        .bearer_auth(&scoped)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": claude["id"], "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["content"][0]["text"], "anthropic reply", "{answer}");
    let last = mock.requests().pop().unwrap();
    assert_eq!(last.header("x-api-key"), Some(PROVIDER_KEY));
    assert_eq!(last.body["model"], "claude-upstream");

    // A provider error is forwarded with its status.
    mock.push(Turn::Error {
        status: 429,
        body: json!({"error": {"message": "slow down"}}),
        retry_after: None,
    });
    let r = http
        .post(&url)
        .bearer_auth(&scoped)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}

both!(llm_proxy_forwards_with_the_org_key);
