//! Models (SPEC §12) through the API, on SQLite and PostgreSQL: provider credentials
//! (write-only keys sealed at rest, another org sees nothing), models, the org
//! default and the built-in system model, the model of an agent, test calls and
//! discovery against the mock LLM (which can insist on one key and answer others with
//! a real 401), the resolution of a run's model (request > agent > org default >
//! system) proven by which mock provider received which model id and key, a run
//! whose key cannot be had, and key rotation.

use std::time::{Duration, Instant};

use corral_api::config::crypto::Keyring;
use corral_api::config::Secret;
use corral_mockllm::{MockLlm, Turn};
use corral_testkit::{both, Backend, Client, Session, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

use crate::runs::{app_with_model, wait_terminal};

const HELLO: &str = "/api/agents/@corral/hello-world/run";
const AGENT_MODEL: &str = "/api/agents/@corral/hello-world/model";
const OLD_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
const NEW_KEY: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";

/// Sends and asserts the status; the body must never contain `secret`.
async fn call(
    c: &Client,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: u16,
    secret: &str,
) -> Value {
    let r = c.send(method.clone(), path, body, &[]).await;
    assert_eq!(r.status, status, "{method} {path}: {}", r.text);
    assert!(
        !r.text.contains(secret),
        "{method} {path} leaked the key: {}",
        r.text
    );
    r.body
}

async fn credential(s: &Session, provider: &str, key: &str, base: Option<&str>) -> Value {
    let mut body = json!({"providerId": provider, "apiKey": key});
    if let Some(b) = base {
        body["baseUrlOverride"] = json!(b);
    }
    call(
        &s.client,
        Method::POST,
        "/api/model-provider-credentials",
        Some(body),
        201,
        key,
    )
    .await
}

async fn model(s: &Session, credential_id: &str, model_id: &str) -> Value {
    s.client
        .post(
            "/api/models",
            json!({"credentialId": credential_id, "modelId": model_id}),
            201,
        )
        .await
}

async fn count(app: &TestApp, table: &str) -> i64 {
    app.scalar(&format!("SELECT COUNT(*) FROM {table}")).await
}

async fn stored_key(app: &TestApp, id: &str) -> String {
    sqlx::query_scalar("SELECT api_key FROM model_provider_credentials WHERE id = $1")
        .bind(id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

async fn credentials_crud_validation_and_isolation(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Keys").await;
    const KEY: &str = "sk-live-0123456789abcdef";

    // The registry.
    let reg = s
        .client
        .get("/api/model-provider-credentials/registry", 200)
        .await;
    let ids: Vec<&str> = reg["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["providerId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "openai",
            "anthropic",
            "openai-compatible",
            "claude-code",
            "codex"
        ]
    );
    assert_eq!(reg["total"], 5);
    assert_eq!(reg["data"][1]["apiShape"], "anthropic-messages");
    let slim = s
        .client
        .get(
            "/api/model-provider-credentials/registry?fields=providerId,authMode&limit=1",
            200,
        )
        .await;
    assert_eq!(
        slim["data"][0],
        json!({"providerId": "openai", "authMode": "api_key"})
    );
    assert_eq!(slim["hasMore"], true);
    s.client
        .get(
            "/api/model-provider-credentials/registry?fields=secret",
            400,
        )
        .await;

    // Create: the key is never echoed, the label is derived, the key is sealed.
    let c = credential(&s, "openai", KEY, None).await;
    let id = c["id"].as_str().unwrap().to_owned();
    assert_eq!(c["label"], "OpenAI");
    assert_eq!(c["providerId"], "openai");
    assert_eq!(c["apiShape"], "openai-completions");
    assert_eq!(c["baseUrl"], "https://api.openai.com/v1");
    assert_eq!(c["source"], "custom");
    assert_eq!(c["authMode"], "api_key");
    assert_eq!(c["needs_reconnection"], false);
    assert_eq!(c["created_by"], s.user_id.as_str());
    let again = credential(&s, "openai", "sk-other", None).await;
    assert_eq!(again["label"], "OpenAI (2)");
    let stored = stored_key(&app, &id).await;
    let kid = &app.state.secrets.encryption_key_id;
    assert!(stored.starts_with(&format!("v1:{kid}:")), "{stored}");
    assert!(!stored.contains(KEY));
    let local = credential(
        &s,
        "openai-compatible",
        "ollama",
        Some("http://localhost:11434/v1/"),
    )
    .await;
    assert_eq!(local["baseUrl"], "http://localhost:11434/v1");
    assert_eq!(local["label"], "OpenAI-compatible");

    // Bad input: problem+json, nothing written.
    let before = count(&app, "model_provider_credentials").await;
    let cases = [
        (
            json!({"providerId": "mistral", "apiKey": "k"}),
            "invalid_request",
            "providerId",
        ),
        (
            json!({"providerId": "openai-compatible", "apiKey": "k"}),
            "validation_failed",
            "baseUrlOverride",
        ),
        (
            json!({"providerId": "openai-compatible", "apiKey": "k", "baseUrlOverride": "ftp://x/v1"}),
            "validation_failed",
            "baseUrlOverride",
        ),
        (
            json!({"providerId": "openai", "apiKey": "k", "baseUrlOverride": "not a url"}),
            "validation_failed",
            "baseUrlOverride",
        ),
        (
            json!({"providerId": "openai"}),
            "validation_failed",
            "apiKey",
        ),
        (
            json!({"providerId": "openai", "apiKey": ""}),
            "validation_failed",
            "apiKey",
        ),
        (
            json!({"providerId": "openai", "apiKey": "k", "secret": 1}),
            "validation_failed",
            "secret",
        ),
    ];
    for (body, code, param) in cases {
        let r = s
            .client
            .send(
                Method::POST,
                "/api/model-provider-credentials",
                Some(body.clone()),
                &[],
            )
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.code(), code, "{body}: {}", r.text);
        assert_eq!(r.body["param"], param, "{body}: {}", r.text);
    }
    assert_eq!(count(&app, "model_provider_credentials").await, before);

    // List and update: a new key is sealed again, never shown.
    let list = call(
        &s.client,
        Method::GET,
        "/api/model-provider-credentials",
        None,
        200,
        KEY,
    )
    .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 3);
    let path = format!("/api/model-provider-credentials/{id}");
    let upd = call(
        &s.client,
        Method::PUT,
        &path,
        Some(json!({"label": "Prod", "apiKey": "sk-rotated-key-000"})),
        200,
        "sk-rotated-key-000",
    )
    .await;
    assert_eq!(upd["label"], "Prod");
    let restored = stored_key(&app, &id).await;
    assert_ne!(restored, stored);
    assert!(!restored.contains("sk-rotated"));
    s.client
        .put(&path, json!({"baseUrl": "http://evil"}), 400)
        .await;
    s.client.put(&path, json!({"label": ""}), 400).await;

    // Another org sees nothing and can touch nothing.
    let other = app.user_with_org("Stranger").await;
    let theirs = other
        .client
        .get("/api/model-provider-credentials", 200)
        .await;
    assert_eq!(theirs["data"], json!([]));
    other.client.put(&path, json!({"label": "mine"}), 404).await;
    other.client.delete(&path, 404).await;
    other
        .client
        .post(&format!("{path}/test"), json!({}), 404)
        .await;
    other
        .client
        .post(&format!("{path}/refresh-models"), json!({}), 404)
        .await;
    let e = other
        .client
        .post(
            "/api/models",
            json!({"credentialId": id, "modelId": "gpt-4o"}),
            400,
        )
        .await;
    assert_eq!(e["param"], "credentialId");
    let e = other
        .client
        .post(
            "/api/model-provider-credentials/test",
            json!({"apiShape": "openai-completions", "baseUrl": "http://127.0.0.1:9/v1", "existingKeyId": id}),
            404,
        )
        .await;
    assert_eq!(e["param"], "existingKeyId");

    // A viewer reads but cannot write; an API key with models:read only, likewise.
    let (_, key) = s.api_key(Some(vec!["models:read"])).await;
    let ro = app.client().bearer(&key);
    ro.get("/api/model-provider-credentials", 200).await;
    ro.get("/api/models", 200).await;
    let e = ro
        .post(
            "/api/model-provider-credentials",
            json!({"providerId": "openai", "apiKey": "k"}),
            403,
        )
        .await;
    assert_eq!(e["code"], "forbidden");

    // Delete: refused while a model uses it, then allowed.
    let m = model(&s, &id, "gpt-4o").await;
    let e = s.client.delete(&path, 409).await;
    assert_eq!(e["code"], "credential_in_use");
    s.client
        .delete(&format!("/api/models/{}", m["id"].as_str().unwrap()), 204)
        .await;
    s.client.delete(&path, 204).await;
    s.client.delete(&path, 404).await;

    // Deleting the org takes its credentials and models with it.
    let c2 = again["id"].as_str().unwrap();
    model(&s, c2, "gpt-4o-mini").await;
    s.client
        .delete(&format!("/api/orgs/{}", s.org_id), 204)
        .await;
    assert_eq!(count(&app, "org_models").await, 0);
    assert_eq!(count(&app, "model_provider_credentials").await, 0);
}

async fn models_default_and_agent_model(b: Backend) {
    let mock = MockLlm::start(Vec::<Turn>::new()).await.unwrap();
    let app = app_with_model(b, &mock, |_| {}).await;
    let s = app.user_with_org("Models").await;

    // Only the built-in system model, which is the default.
    let list = s.client.get("/api/models", 200).await;
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{list}");
    let sys = &data[0];
    assert_eq!(sys["id"], "mock-model");
    assert_eq!(sys["source"], "built-in");
    assert_eq!(sys["is_default"], true);
    assert_eq!(sys["credentialId"], Value::Null);
    assert_eq!(sys["providerId"], "openai");
    assert!(!list.to_string().contains("sk-test-real-key"));
    let e = s
        .client
        .put("/api/models/mock-model", json!({"label": "x"}), 403)
        .await;
    assert_eq!(e["code"], "operation_not_allowed");
    s.client.delete("/api/models/mock-model", 403).await;

    let c = credential(&s, "openai", "sk-m", Some(&mock.openai_base_url())).await;
    let cid = c["id"].as_str().unwrap();
    let m = s
        .client
        .post(
            "/api/models",
            json!({"credentialId": cid, "modelId": "gpt-4o", "contextWindow": 128000, "reasoning": false,
                   "cost": {"input": 2.5, "output": 10}, "input": ["text", "image"]}),
            201,
        )
        .await;
    let mid = m["id"].as_str().unwrap().to_owned();
    assert_eq!(m["label"], "gpt-4o");
    assert_eq!(m["modelId"], "gpt-4o");
    assert_eq!(m["credentialId"], cid);
    assert_eq!(m["baseUrl"], mock.openai_base_url().as_str());
    assert_eq!(m["providerName"], "OpenAI");
    assert_eq!(m["source"], "custom");
    assert_eq!(m["enabled"], true);
    assert_eq!(m["is_default"], false);
    assert_eq!(m["contextWindow"], 128000);
    assert_eq!(m["cost"]["output"], 10.0);
    assert_eq!(m["generation"]["reasoning"]["supported"], "unsupported");
    let dup = model(&s, cid, "gpt-4o").await;
    assert_eq!(dup["label"], "gpt-4o (2)");
    let dup_id = dup["id"].as_str().unwrap().to_owned();

    // Bad model input, nothing written.
    let before = count(&app, "org_models").await;
    for body in [
        json!({"credentialId": "nope", "modelId": "x"}),
        json!({"credentialId": cid}),
        json!({"credentialId": cid, "modelId": " "}),
        json!({"credentialId": cid, "modelId": "x", "maxTokens": 0}),
        json!({"credentialId": cid, "modelId": "x", "cost": {"input": -1}}),
        json!({"credentialId": cid, "modelId": "x", "temperature": 1}),
    ] {
        s.client.post("/api/models", body, 400).await;
    }
    assert_eq!(count(&app, "org_models").await, before);

    // Update.
    let u = s
        .client
        .put(
            &format!("/api/models/{mid}"),
            json!({"label": "GPT-4o", "contextWindow": null, "maxTokens": 4096}),
            200,
        )
        .await;
    assert_eq!(u["label"], "GPT-4o");
    assert_eq!(u["contextWindow"], Value::Null);
    assert_eq!(u["maxTokens"], 4096);
    assert_eq!(u["modelId"], "gpt-4o");
    s.client
        .put(
            &format!("/api/models/{mid}"),
            json!({"credentialId": "nope"}),
            400,
        )
        .await;
    s.client
        .put(
            "/api/models/00000000-0000-0000-0000-000000000000",
            json!({"label": "x"}),
            404,
        )
        .await;

    // The default: set, seen in the list, cleared back to the system model.
    let d = s
        .client
        .put("/api/models/default", json!({"modelId": mid}), 200)
        .await;
    assert_eq!(d["id"], mid.as_str());
    assert_eq!(d["is_default"], true);
    let list = s.client.get("/api/models", 200).await;
    let flags: Vec<(String, bool)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_owned(),
                m["is_default"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flags,
        [
            ("mock-model".to_owned(), false),
            (mid.clone(), true),
            (dup_id.clone(), false)
        ]
    );
    // Moving the default keeps a single one.
    s.client
        .put("/api/models/default", json!({"modelId": dup_id}), 200)
        .await;
    let defaults = app
        .scalar("SELECT COUNT(*) FROM org_models WHERE is_default = 1")
        .await;
    assert_eq!(defaults, 1);
    let d = s
        .client
        .put("/api/models/default", json!({"modelId": null}), 200)
        .await;
    assert_eq!(d["id"], "mock-model");
    assert_eq!(d["source"], "built-in");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM org_models WHERE is_default = 1")
            .await,
        0
    );
    let e = s
        .client
        .put("/api/models/default", json!({"modelId": "nope"}), 404)
        .await;
    assert_eq!(e["param"], "modelId");
    s.client.put("/api/models/default", json!({}), 400).await;
    // A disabled model cannot be the default, and disabling the default unsets it.
    s.client
        .put("/api/models/default", json!({"modelId": mid}), 200)
        .await;
    let off = s
        .client
        .put(
            &format!("/api/models/{mid}"),
            json!({"enabled": false}),
            200,
        )
        .await;
    assert_eq!(off["is_default"], false);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM org_models WHERE is_default = 1")
            .await,
        0
    );
    s.client
        .put("/api/models/default", json!({"modelId": mid}), 400)
        .await;
    s.client
        .put(&format!("/api/models/{mid}"), json!({"enabled": true}), 200)
        .await;

    // The model of an agent.
    let a = s.client.get(AGENT_MODEL, 200).await;
    assert_eq!(a, json!({"modelId": null, "generation": null}));
    let a = s
        .client
        .put(
            AGENT_MODEL,
            json!({"modelId": mid, "generation": {"temperature": 0.2, "reasoningLevel": "low"}}),
            200,
        )
        .await;
    assert_eq!(a["modelId"], mid.as_str());
    let a = s.client.get(AGENT_MODEL, 200).await;
    assert_eq!(a["modelId"], mid.as_str());
    assert_eq!(
        a["generation"],
        json!({"temperature": 0.2, "reasoningLevel": "low"})
    );
    s.client
        .put(AGENT_MODEL, json!({"modelId": "mock-model"}), 200)
        .await;
    let e = s
        .client
        .put(AGENT_MODEL, json!({"modelId": "gpt-nope"}), 404)
        .await;
    assert_eq!(e["param"], "modelId");
    s.client
        .put(
            AGENT_MODEL,
            json!({"modelId": mid, "generation": {"temperature": 3}}),
            400,
        )
        .await;
    s.client
        .put(
            AGENT_MODEL,
            json!({"modelId": mid, "generation": {"topK": 3}}),
            400,
        )
        .await;
    s.client
        .put(AGENT_MODEL, json!({"generation": null}), 400)
        .await;
    s.client
        .put(
            "/api/agents/@corral/nope/model",
            json!({"modelId": null}),
            404,
        )
        .await;
    assert_eq!(
        s.client.get(AGENT_MODEL, 200).await["modelId"],
        "mock-model"
    );

    // Another org's model is not a choice; it sees none of ours.
    let other = app.user_with_org("Elsewhere").await;
    let e = other
        .client
        .put(AGENT_MODEL, json!({"modelId": mid}), 404)
        .await;
    assert_eq!(e["param"], "modelId");
    other
        .client
        .put("/api/models/default", json!({"modelId": mid}), 404)
        .await;
    other
        .client
        .put(&format!("/api/models/{mid}"), json!({"label": "x"}), 404)
        .await;
    other
        .client
        .delete(&format!("/api/models/{mid}"), 404)
        .await;
    other
        .client
        .post(&format!("/api/models/{mid}/test"), json!({}), 404)
        .await;
    let theirs = other.client.get("/api/models", 200).await;
    assert_eq!(
        theirs["data"].as_array().unwrap().len(),
        1,
        "only the system model"
    );

    // Deleting a model forgets it as an agent's choice.
    s.client
        .put(AGENT_MODEL, json!({"modelId": mid}), 200)
        .await;
    s.client.delete(&format!("/api/models/{mid}"), 204).await;
    assert_eq!(s.client.get(AGENT_MODEL, 200).await["modelId"], Value::Null);

    // Without a system model, clearing the default leaves nothing in effect: 204.
    let bare = TestApp::spawn(b).await;
    let s2 = bare.user_with_org("Bare").await;
    assert_eq!(s2.client.get("/api/models", 200).await["data"], json!([]));
    let r = s2
        .client
        .send(
            Method::PUT,
            "/api/models/default",
            Some(json!({"modelId": null})),
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let c = credential(&s2, "anthropic", "sk-ant", None).await;
    let m = model(&s2, c["id"].as_str().unwrap(), "claude-sonnet-4-5").await;
    assert_eq!(m["apiShape"], "anthropic-messages");
    assert_eq!(m["baseUrl"], "https://api.anthropic.com");
    let d = s2
        .client
        .put("/api/models/default", json!({"modelId": m["id"]}), 200)
        .await;
    assert_eq!(d["is_default"], true);
}

async fn test_calls_and_discovery(b: Backend) {
    const GOOD: &str = "sk-good-key-123456";
    const BAD: &str = "sk-wrong-key-654321";
    let mock = MockLlm::start(Vec::<Turn>::new()).await.unwrap();
    mock.require_api_key(GOOD);
    mock.set_models(["gpt-4o", "gpt-4o-mini"]);
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Prober").await;
    let (_, api_key) = s.api_key(None).await;
    // Test calls are limited to 5 a minute per principal: spread them over two.
    let k = app.client().bearer(&api_key);

    let c = credential(&s, "openai", GOOD, Some(&mock.openai_base_url())).await;
    let cid = c["id"].as_str().unwrap().to_owned();
    // 1. The stored key works: the provider listed its models.
    let t = call(
        &s.client,
        Method::POST,
        &format!("/api/model-provider-credentials/{cid}/test"),
        Some(json!({})),
        200,
        GOOD,
    )
    .await;
    assert_eq!(t["ok"], true, "{t}");
    assert!(t["latency"].as_f64().unwrap() >= 0.0);
    let last = mock.requests().pop().unwrap();
    assert_eq!(last.path, "/v1/models");
    assert_eq!(
        last.header("authorization"),
        Some(format!("Bearer {GOOD}").as_str())
    );
    // 2. A wrong key: the provider's 401 is a result, not an API error.
    let t = call(
        &s.client,
        Method::POST,
        "/api/model-provider-credentials/test",
        Some(json!({"apiShape": "openai-completions", "baseUrl": mock.openai_base_url(), "apiKey": BAD})),
        200,
        BAD,
    )
    .await;
    assert_eq!(t["ok"], false, "{t}");
    assert_eq!(t["status"], 401);
    assert_eq!(t["error"], "auth_failed");
    assert!(t["message"].is_string());
    // 3. The stored key through existingKeyId.
    let t = s
        .client
        .post(
            "/api/model-provider-credentials/test",
            json!({"apiShape": "openai-completions", "baseUrl": mock.openai_base_url(), "existingKeyId": cid}),
            200,
        )
        .await;
    assert_eq!(t["ok"], true, "{t}");
    // 4. Nobody listening: a network error, no status.
    let t = s
        .client
        .post(
            "/api/model-provider-credentials/test",
            json!({"apiShape": "openai-completions", "baseUrl": "http://127.0.0.1:9/v1", "apiKey": GOOD}),
            200,
        )
        .await;
    assert_eq!(t["ok"], false);
    assert_eq!(t["error"], "network_error");
    assert!(t.get("status").is_none(), "{t}");
    // Bad test input (rate limited too, so only one).
    s.client
        .post(
            "/api/model-provider-credentials/test",
            json!({"apiShape": "openai-completions", "baseUrl": "file:///etc/passwd", "apiKey": GOOD}),
            400,
        )
        .await;

    // Models: one completion of at most one token, with the model's key.
    let m = model(&s, &cid, "gpt-4o").await;
    let mid = m["id"].as_str().unwrap();
    mock.push(Turn::text("p"));
    let t = k
        .post(&format!("/api/models/{mid}/test"), json!({}), 200)
        .await;
    assert_eq!(t["ok"], true, "{t}");
    let last = mock.requests().pop().unwrap();
    assert_eq!(last.path, "/v1/chat/completions");
    assert_eq!(last.body["model"], "gpt-4o");
    assert_eq!(last.body["max_tokens"], 1);
    assert_eq!(
        last.header("authorization"),
        Some(format!("Bearer {GOOD}").as_str())
    );
    // Inline, with a wrong key: 401 from the provider, turn not consumed.
    let t = call(
        &k,
        Method::POST,
        "/api/models/test",
        Some(json!({"credentialId": cid, "modelId": "gpt-4o-mini", "apiKey": BAD})),
        200,
        BAD,
    )
    .await;
    assert_eq!(
        (t["ok"].clone(), t["status"].clone()),
        (json!(false), json!(401)),
        "{t}"
    );
    // Inline with the stored key of an existing model.
    mock.push(Turn::text("p"));
    let t = k
        .post(
            "/api/models/test",
            json!({"credentialId": cid, "modelId": "gpt-4o-mini", "existingModelId": mid}),
            200,
        )
        .await;
    assert_eq!(t["ok"], true, "{t}");
    assert_eq!(mock.requests().pop().unwrap().body["model"], "gpt-4o-mini");
    let e = k
        .post(
            "/api/models/test",
            json!({"credentialId": "nope", "modelId": "x"}),
            404,
        )
        .await;
    assert_eq!(e["param"], "credentialId");

    // Discovery: the provider's list becomes the credential's available models.
    let r = s
        .client
        .post(
            &format!("/api/model-provider-credentials/{cid}/refresh-models"),
            json!({}),
            200,
        )
        .await;
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(r["available_model_ids"], json!(["gpt-4o", "gpt-4o-mini"]));
    assert_eq!(r["probed_count"], 2);
    let list = s.client.get("/api/model-provider-credentials", 200).await;
    assert_eq!(
        list["data"][0]["available_model_ids"],
        json!(["gpt-4o", "gpt-4o-mini"])
    );
    // A rejected key keeps the list.
    s.client
        .put(
            &format!("/api/model-provider-credentials/{cid}"),
            json!({"apiKey": BAD}),
            200,
        )
        .await;
    let r = s
        .client
        .post(
            &format!("/api/model-provider-credentials/{cid}/refresh-models"),
            json!({}),
            200,
        )
        .await;
    assert_eq!(r["outcome"], "auth_failed");
    assert_eq!(r["available_model_ids"], json!(["gpt-4o", "gpt-4o-mini"]));

    // Anthropic: x-api-key and anthropic-version, its own paths.
    let ant = credential(&s, "anthropic", GOOD, Some(&mock.anthropic_base_url())).await;
    let aid = ant["id"].as_str().unwrap().to_owned();
    let am = model(&s, &aid, "claude-haiku").await;
    mock.push(Turn::text("p"));
    let t = k
        .post(
            &format!("/api/models/{}/test", am["id"].as_str().unwrap()),
            json!({}),
            200,
        )
        .await;
    assert_eq!(t["ok"], true, "{t}");
    let last = mock.requests().pop().unwrap();
    assert_eq!(last.path, "/v1/messages");
    assert_eq!(last.header("x-api-key"), Some(GOOD));
    assert_eq!(last.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(last.header("authorization"), None);
    assert_eq!(last.body["max_tokens"], 1);

    // No more than five test calls of a principal pass within a minute (the calls
    // above count too), so one of the next six is refused.
    let mut limited = None;
    for _ in 0..6 {
        let r = s
            .client
            .send(
                Method::POST,
                &format!("/api/model-provider-credentials/{aid}/test"),
                Some(json!({})),
                &[],
            )
            .await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r
            .header("ratelimit-policy")
            .is_some_and(|p| p.starts_with("5;")));
    }
    let r = limited.expect("no 429 after 6 test calls");
    assert_eq!(r.code(), "rate_limited");
    assert!(r.header("retry-after").is_some());
}

/// Queues hello-world's two turns on `mock` and runs it; returns the finished run.
async fn run_on(s: &Session, mock: &MockLlm, body: Value) -> Value {
    mock.push(Turn::tool_call(
        "output",
        json!({"greeting": "Hi, Ada!", "length": 8}),
    ));
    mock.push(Turn::text("Done."));
    let run = s.client.post(HELLO, body, 201).await;
    let done = wait_terminal(s, run["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "success", "{done}");
    done
}

/// (model, credential) of every request `mock` received since `from`.
fn seen(mock: &MockLlm, from: usize) -> Vec<(String, String)> {
    mock.requests()[from..]
        .iter()
        .map(|r| {
            let key = r
                .header("x-api-key")
                .map(str::to_owned)
                .or_else(|| r.header("authorization").map(str::to_owned))
                .unwrap_or_default();
            (r.body["model"].as_str().unwrap_or("").to_owned(), key)
        })
        .collect()
}

async fn resolution_order_is_request_agent_default_system(b: Backend) {
    // The system model (configuration) on one mock, org models on two others.
    let system = MockLlm::start(Vec::<Turn>::new()).await.unwrap();
    let openai = MockLlm::start(Vec::<Turn>::new()).await.unwrap();
    let anthropic = MockLlm::start(Vec::<Turn>::new()).await.unwrap();
    let app = app_with_model(b, &system, |_| {}).await;
    let s = app.user_with_org("Resolver").await;
    let input = json!({"input": {"name": "Ada"}});
    let counts = |m: &MockLlm| m.requests().len();

    // Nothing chosen: the system model with the configured key.
    let n = counts(&system);
    let run = run_on(&s, &system, input.clone()).await;
    assert_eq!(run["model_source"], "system");
    assert_eq!(run["model_label"], "mock-model");
    assert_eq!(
        seen(&system, n)[0],
        ("mock-model".into(), "Bearer sk-test-real-key".into())
    );

    // An org default.
    let c1 = credential(&s, "openai", "sk-org-one", Some(&openai.openai_base_url())).await;
    let c1 = c1["id"].as_str().unwrap().to_owned();
    let default = model(&s, &c1, "org-default-model").await;
    let default_id = default["id"].as_str().unwrap().to_owned();
    s.client
        .put("/api/models/default", json!({"modelId": default_id}), 200)
        .await;
    let n = counts(&openai);
    let run = run_on(&s, &openai, input.clone()).await;
    assert_eq!(run["model_source"], "org");
    assert_eq!(run["model_label"], "org-default-model");
    let got = seen(&openai, n);
    assert!(!got.is_empty());
    assert!(
        got.iter()
            .all(|g| *g == ("org-default-model".into(), "Bearer sk-org-one".into())),
        "{got:?}"
    );

    // The agent's setting beats the default (an Anthropic model, its own key).
    let c2 = credential(
        &s,
        "anthropic",
        "sk-ant-two",
        Some(&anthropic.anthropic_base_url()),
    )
    .await;
    let agent_model = model(&s, c2["id"].as_str().unwrap(), "agent-model").await;
    let agent_id = agent_model["id"].as_str().unwrap().to_owned();
    s.client
        .put(
            AGENT_MODEL,
            json!({"modelId": agent_id, "generation": {"temperature": 0.3}}),
            200,
        )
        .await;
    let n = counts(&anthropic);
    let run = run_on(&s, &anthropic, input.clone()).await;
    assert_eq!(run["model_label"], "agent-model");
    assert_eq!(run["generation"], json!({"temperature": 0.3}));
    let got = seen(&anthropic, n);
    assert!(!got.is_empty());
    assert!(
        got.iter()
            .all(|g| *g == ("agent-model".into(), "sk-ant-two".into())),
        "{got:?}"
    );
    assert!(anthropic.requests()[n..]
        .iter()
        .all(|r| r.path == "/v1/messages"));

    // The trigger's modelId beats both (a third key, on the OpenAI mock).
    let c3 = credential(
        &s,
        "openai",
        "sk-org-three",
        Some(&openai.openai_base_url()),
    )
    .await;
    let requested = model(&s, c3["id"].as_str().unwrap(), "requested-model").await;
    let requested_id = requested["id"].as_str().unwrap();
    let n = counts(&openai);
    let mut body = input.clone();
    body["modelId"] = json!(requested_id);
    let run = run_on(&s, &openai, body).await;
    assert_eq!(run["model_label"], "requested-model");
    let got = seen(&openai, n);
    assert!(!got.is_empty());
    assert!(
        got.iter()
            .all(|g| *g == ("requested-model".into(), "Bearer sk-org-three".into())),
        "{got:?}"
    );
    // …and may name the system model.
    let n = counts(&system);
    let mut body = input.clone();
    body["modelId"] = json!("mock-model");
    run_on(&s, &system, body).await;
    assert_eq!(
        seen(&system, n)[0],
        ("mock-model".into(), "Bearer sk-test-real-key".into())
    );

    // Unknown, disabled and other orgs' models are refused at the trigger, no row.
    let runs_before = app.scalar("SELECT COUNT(*) FROM runs").await;
    let other = app.user_with_org("Other").await;
    let oc = credential(
        &other,
        "openai",
        "sk-theirs",
        Some(&openai.openai_base_url()),
    )
    .await;
    let theirs = model(&other, oc["id"].as_str().unwrap(), "their-model").await;
    s.client
        .put(
            &format!("/api/models/{requested_id}"),
            json!({"enabled": false}),
            200,
        )
        .await;
    for id in ["gpt-nope", theirs["id"].as_str().unwrap(), requested_id] {
        let mut body = input.clone();
        body["modelId"] = json!(id);
        let e = s.client.post(HELLO, body, 404).await;
        assert_eq!(e["param"], "modelId", "{e}");
    }
    // An agent setting that names a disabled model is an error, not a silent fallback.
    s.client
        .put(
            &format!("/api/models/{agent_id}"),
            json!({"enabled": false}),
            200,
        )
        .await;
    let e = s.client.post(HELLO, input.clone(), 422).await;
    assert_eq!(e["code"], "model_not_configured");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM runs").await, runs_before);

    // Clearing the agent's setting falls back to the default, clearing that to the
    // system model.
    s.client
        .put(AGENT_MODEL, json!({"modelId": null}), 200)
        .await;
    let n = counts(&openai);
    run_on(&s, &openai, input.clone()).await;
    assert_eq!(
        seen(&openai, n)[0],
        ("org-default-model".into(), "Bearer sk-org-one".into())
    );
    s.client
        .put("/api/models/default", json!({"modelId": null}), 200)
        .await;
    let n = counts(&system);
    let run = run_on(&s, &system, input.clone()).await;
    assert_eq!(run["model_source"], "system");
    assert_eq!(seen(&system, n)[0].0, "mock-model");

    // The definition names the credential, never a key.
    let defs: Vec<String> = sqlx::query_scalar("SELECT definition FROM runs")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap();
    assert!(defs.iter().any(|d| d.contains(&c1)));
    for d in &defs {
        for key in [
            "sk-org-one",
            "sk-ant-two",
            "sk-org-three",
            "sk-test-real-key",
        ] {
            assert!(!d.contains(key), "{d}");
        }
    }
}

/// Inserts a pending run whose model uses credential `credential_id` and queues it.
async fn queue_run_with_credential(app: &TestApp, s: &Session, credential_id: &str) -> String {
    let id = format!("run_{}", uuid::Uuid::now_v7());
    let definition = json!({
        "prompt": "p",
        "model": {"api": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1", "credential_id": credential_id},
        "limits": {}
    });
    let now = corral_core::time::now_ms();
    sqlx::query(
        "INSERT INTO runs (id, org_id, application_id, kind, run_number, status, version_ref, \
           definition, timeout_secs, sink_secret, sink_expires_at, run_token_hash, created_at, server_id) \
         VALUES ($1, $2, $3, 'inline', 1, 'pending', 'draft', $4, 300, $5, $6, 'x', $7, $8)",
    )
    .bind(&id)
    .bind(&s.org_id)
    .bind(&s.app_id)
    .bind(definition.to_string())
    .bind(app.state.keyring.seal(b"whsec_x", &corral_engine::runs::sink_aad(&id)))
    .bind(now + 600_000)
    .bind(now)
    // Queued where the trigger would queue it: this server's own queue on SQLite,
    // the cluster's (no owner) on PostgreSQL.
    .bind(app.state.runs.queue_owner())
    .execute(app.state.db.pool())
    .await
    .unwrap();
    app.state
        .runs
        .executor
        .enqueue(&s.org_id.as_str().into(), &id.as_str().into());
    id
}

async fn a_run_whose_key_cannot_be_had_fails_before_any_sandbox(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("NoKey").await;
    let c = credential(&s, "openai", "sk-x", Some("http://127.0.0.1:9/v1")).await;
    let cid = c["id"].as_str().unwrap().to_owned();
    // A key sealed under a key nobody has any more.
    let foreign = Keyring::new(("gone", &[3u8; 32]), &[]);
    let sealed = foreign.seal(b"sk-x", &corral_connect::models::key_aad(&cid));
    sqlx::query("UPDATE model_provider_credentials SET api_key = $1 WHERE id = $2")
        .bind(&sealed)
        .bind(&cid)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    let listed = s.client.get("/api/model-provider-credentials", 200).await;
    assert_eq!(listed["data"][0]["needs_reconnection"], true);
    // The trigger refuses a model whose key does not open…
    let m = model(&s, &cid, "m").await;
    assert_eq!(m["needs_reconnection"], true);
    let e = s
        .client
        .put("/api/models/default", json!({"modelId": m["id"]}), 409)
        .await;
    assert_eq!(e["code"], "model_needs_reconnection");
    let e = s
        .client
        .post(
            HELLO,
            json!({"input": {"name": "A"}, "modelId": m["id"]}),
            409,
        )
        .await;
    assert_eq!(e["code"], "model_needs_reconnection");
    let t = s
        .client
        .post(
            &format!("/api/models/{}/test", m["id"].as_str().unwrap()),
            json!({}),
            200,
        )
        .await;
    assert_eq!(
        (t["ok"].clone(), t["error"].clone()),
        (json!(false), json!("needs_reconnection"))
    );

    // …and a run that reaches the executor anyway fails with the reason, unleased.
    for cred in [cid.as_str(), "deleted-credential"] {
        let id = queue_run_with_credential(&app, &s, cred).await;
        let done = wait_terminal(&s, &id, Duration::from_secs(30)).await;
        assert_eq!(done["status"], "failed", "{done}");
        assert_eq!(
            done["metadata"]["error_code"], "model_credential_unavailable",
            "{done}"
        );
        assert_eq!(
            done["runner_kind"],
            Value::Null,
            "no sandbox was leased: {done}"
        );
        let why = done["error"].as_str().unwrap();
        assert!(why.contains("credential"), "{why}");
    }
}

async fn rotation_reseals_model_keys_and_runs_still_work(b: Backend) {
    let mock = MockLlm::start(Vec::<Turn>::new()).await.unwrap();
    let a = TestApp::spawn_with(b, |c| {
        c.encryption_key = Some(Secret::new(OLD_KEY));
        c.encryption_key_id = Some("k-old".into());
    })
    .await;
    let s = a.user_with_org("Rotator").await;
    let (_, api_key) = s.api_key(None).await;
    let c = credential(&s, "openai", "sk-rotate-me", Some(&mock.openai_base_url())).await;
    let cid = c["id"].as_str().unwrap().to_owned();
    let m = model(&s, &cid, "rotated-model").await;
    s.client
        .put("/api/models/default", json!({"modelId": m["id"]}), 200)
        .await;
    assert!(stored_key(&a, &cid).await.starts_with("v1:k-old:"));

    // A replica with the new primary key and the old one retired, on the same
    // database and storage.
    let url = a.state.config.effective_database_url();
    let data_dir = a.dir.path().to_owned();
    let b2 = TestApp::spawn_with(b, |c| {
        c.database_url = Some(url);
        c.data_dir = data_dir;
        c.encryption_key = Some(Secret::new(NEW_KEY));
        c.encryption_key_id = Some("k-new".into());
        c.encryption_keys = Some(Secret::new(format!("k-old:{OLD_KEY}")));
        c.agent_env = vec!["CORRAL_HEARTBEAT_SECS=1".into()];
    })
    .await;
    let report = corral_engine::secrets::rotate_secrets(&b2.state.db, &b2.state.keyring)
        .await
        .unwrap();
    assert_eq!(report.failed, 0);
    assert!(report.resealed >= 1);
    let stored = stored_key(&a, &cid).await;
    assert!(stored.starts_with("v1:k-new:"), "{stored}");
    assert_eq!(
        b2.state
            .keyring
            .open_str(&stored, &corral_connect::models::key_aad(&cid))
            .unwrap(),
        "sk-rotate-me"
    );
    let again = corral_engine::secrets::rotate_secrets(&b2.state.db, &b2.state.keyring)
        .await
        .unwrap();
    assert_eq!((again.resealed, again.failed), (0, 0));

    // The old server can no longer open it; the new one runs with it.
    let old_view = s.client.get("/api/models", 200).await;
    assert_eq!(old_view["data"][0]["needs_reconnection"], true);
    let c2 = b2.client().bearer(&api_key);
    assert_eq!(
        c2.get("/api/models", 200).await["data"][0]["needs_reconnection"],
        false
    );
    // The old server leaves (on PostgreSQL any replica may take the run, and every
    // replica of a cluster must hold the keys: docs/scale-out.md).
    // (Its data dir is the new one's: stop it without dropping it.)
    a.begin_shutdown();
    let stopping = Instant::now();
    while !a.is_finished() {
        assert!(
            stopping.elapsed() < Duration::from_secs(40),
            "the old server never stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    mock.push(Turn::tool_call(
        "output",
        json!({"greeting": "Hi", "length": 2}),
    ));
    mock.push(Turn::text("Done."));
    let run = c2.post(HELLO, json!({"input": {"name": "Ada"}}), 201).await;
    let id = run["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let r = c2.get(&format!("/api/runs/{id}?wait=10"), 200).await;
        if ["success", "failed", "timeout", "cancelled"].contains(&r["status"].as_str().unwrap()) {
            break r;
        }
        assert!(Instant::now() < deadline, "{r}");
    };
    assert_eq!(done["status"], "success", "{done}");
    let reqs = mock.requests();
    assert!(!reqs.is_empty());
    assert!(reqs
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer sk-rotate-me")));
    assert_eq!(reqs[0].body["model"], "rotated-model");
}

both!(
    credentials_crud_validation_and_isolation,
    models_default_and_agent_model,
    test_calls_and_discovery,
    resolution_order_is_request_agent_default_system,
    a_run_whose_key_cannot_be_had_fails_before_any_sandbox,
    rotation_reseals_model_keys_and_runs_still_work,
);
