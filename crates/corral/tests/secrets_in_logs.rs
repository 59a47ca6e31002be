//! No log line contains a secret (SPEC §12): the real binary, logging at `debug`
//! (stdout and stderr kept, sandbox processes included), goes through everything
//! that creates or uses a secret — a password, an API key, a webhook secret, the
//! system model key, an API-key integration credential injected into a request to
//! a local service by a run's sidecar, an OAuth client secret, and OAuth access and
//! refresh tokens obtained and refreshed — then every secret is searched for in
//! the logs.

mod common;

use std::time::{Duration, Instant};

use corral_mockllm::{MockLlm, Turn};
use corral_testkit::client::Client;
use corral_testkit::oauth::AuthServer;
use corral_testkit::receiver::Receiver;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";
const MODEL_KEY: &str = "sk-model-7c1e55aa90d2b3f4";
const INTEGRATION_KEY: &str = "ek_live_log_probe_81d2c3e4";
const CLIENT_SECRET: &str = "oauth-client-secret-6b5a4c3d";
const ORG_MODEL_KEY: &str = "sk-org-model-2e9d8c7b6a5f";

fn enc(id: &str) -> String {
    id.replace('@', "%40").replace('/', "%2F")
}

async fn wait_terminal(c: &Client, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let run = c.get(&format!("/api/runs/{id}?wait=10"), 200).await;
        let status = run["status"].as_str().unwrap().to_owned();
        if ["success", "failed", "timeout", "cancelled"].contains(&status.as_str()) {
            return run;
        }
        assert!(Instant::now() < deadline, "run {id} still {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs() {
    let service = Receiver::start().await;
    let asv = AuthServer::start("log-client", CLIENT_SECRET).await;
    let mock = MockLlm::start_per_conversation(
        "127.0.0.1:0".parse().unwrap(),
        vec![
            Turn::tool_call(
                "probe__api_call",
                json!({"method": "POST", "target": service.url, "body": {"q": 1}}),
            ),
            Turn::tool_call("output", json!({"ok": true})),
            Turn::text("Done."),
        ],
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let base_url = mock.openai_base_url();
    let server = common::start(
        dir.path(),
        port,
        &[
            ("RUST_LOG", "debug"),
            ("CORRAL_SANDBOX", "process"),
            ("CORRAL_MODEL_API", "openai"),
            ("CORRAL_MODEL_ID", "mock-model"),
            ("CORRAL_MODEL_BASE_URL", &base_url),
            ("CORRAL_MODEL_API_KEY", MODEL_KEY),
        ],
    );
    let spec = common::wait_healthy(&server.base).await;

    let c = Client::new(&server.base, spec.clone())
        .sign_up("logs@example.com", PASSWORD, "Logs")
        .await;
    let org = c.post("/api/orgs", json!({"name": "Logs Org"}), 201).await;
    let slug = org["slug"].as_str().unwrap().to_owned();
    let c = c.org(org["id"].as_str().unwrap());
    let apps = c.get("/api/applications", 200).await;
    let c = c.app(apps["data"][0]["id"].as_str().unwrap());
    let api_key = c.post("/api/api-keys", json!({"name": "logs"}), 201).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let webhook_secret = c
        .post(
            "/api/webhooks",
            json!({"url": "http://127.0.0.1:9/hook", "events": ["run.success"]}),
            201,
        )
        .await["secret"]
        .as_str()
        .unwrap()
        .to_owned();

    // The organization's own model key, tested and used as the default model.
    let cred = c
        .post(
            "/api/model-provider-credentials",
            json!({"providerId": "openai-compatible", "label": "local", "apiKey": ORG_MODEL_KEY,
                   "baseUrlOverride": base_url}),
            201,
        )
        .await;
    let model = c
        .post(
            "/api/models",
            json!({"modelId": "mock-model", "credentialId": cred["id"]}),
            201,
        )
        .await;
    let model_id = model["id"].as_str().unwrap().to_owned();
    c.put("/api/models/default", json!({"modelId": model_id}), 200)
        .await;
    let probe = c
        .post(&format!("/api/models/{model_id}/test"), json!({}), 200)
        .await;
    assert_eq!(probe["ok"], true, "{probe}");

    // An API-key integration used by a run: the sidecar injects the key.
    let integ = format!("@{slug}/probe");
    c.post(
        "/api/packages/integrations",
        json!({"manifest": {
            "name": integ, "version": "1.0.0", "type": "integration", "schema_version": "2.0",
            "display_name": "Probe", "description": "t", "source": {"kind": "api", "api": {}},
            "auths": {"api_key": {
                "type": "api_key",
                "credentials": {"schema": {"type": "object", "properties": {"api_key": {"type": "string"}}, "required": ["api_key"]}},
                "delivery": {"http": {"in": "header", "name": "Authorization", "prefix": "Bearer ", "value": "{$credential.api_key}"}},
                "authorized_uris": [format!("http://127.0.0.1:{}/*", service.port)]
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
    let agent = format!("@{slug}/prober");
    c.post(
        "/api/packages/agents",
        json!({
            "manifest": {"name": agent, "version": "1.0.0", "type": "agent", "schema_version": "2.0",
                "display_name": "Prober", "author": "t",
                "dependencies": {"integrations": {integ.clone(): "^1.0.0"}},
                "output": {"schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}},
            "content": "Probe."
        }),
        201,
    )
    .await;
    c.post(
        &format!("/api/packages/agents/{agent}/versions"),
        json!({}),
        201,
    )
    .await;
    c.post(
        &format!(
            "/api/integrations/{}/auths/api_key/connect/fields",
            enc(&integ)
        ),
        json!({"credentials": {"api_key": INTEGRATION_KEY}}),
        200,
    )
    .await;
    let run = c
        .post(&format!("/api/agents/{agent}/run"), json!({}), 201)
        .await;
    let done = wait_terminal(&c, run["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "success", "{done}");
    let got = service.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(
        got[0].headers.get("authorization").map(String::as_str),
        Some(format!("Bearer {INTEGRATION_KEY}").as_str())
    );
    assert!(
        mock.requests()
            .iter()
            .any(|r| r.header("authorization") == Some(&format!("Bearer {ORG_MODEL_KEY}"))),
        "the run used the org's default model and key"
    );

    // An OAuth connection: client secret, code exchange, then a refresh.
    let oauth = format!("@{slug}/mail");
    c.post(
        "/api/packages/integrations",
        json!({"manifest": {
            "name": oauth, "version": "1.0.0", "type": "integration", "schema_version": "2.0",
            "display_name": "Mail", "description": "t", "source": {"kind": "api", "api": {}},
            "auths": {"oauth": {"type": "oauth2", "issuer": asv.issuer(), "default_scopes": ["read"],
                "delivery": {"http": {"in": "header", "name": "Authorization", "prefix": "Bearer ", "value": "{$credential.access_token}"}},
                "authorized_uris": ["https://mail.example.test/*"]}}
        }}),
        201,
    )
    .await;
    c.post(
        &format!("/api/packages/integrations/{oauth}/versions"),
        json!({}),
        201,
    )
    .await;
    let base = format!("/api/integrations/{}", enc(&oauth));
    c.post(
        &format!("{base}/auths/oauth/oauth-clients"),
        json!({"client_id": "log-client", "client_secret": CLIENT_SECRET,
               "redirect_uri": format!("{}/api/integrations/callback", server.base)}),
        201,
    )
    .await;
    let start = c
        .post(
            &format!("{base}/auths/oauth/connect/oauth2"),
            json!({}),
            200,
        )
        .await;
    let state = start["state"].as_str().unwrap().to_owned();
    let callback = asv.approve(start["auth_url"].as_str().unwrap()).await;
    let code = url_param(&callback, "code");
    let html = reqwest::get(&callback).await.unwrap().text().await.unwrap();
    assert!(html.contains("data-status=\"success\""), "{html}");
    // A second agent run would refresh; drive the refresh through a run trigger of
    // an agent that uses the OAuth integration.
    let mailer = format!("@{slug}/mailer");
    c.post(
        "/api/packages/agents",
        json!({
            "manifest": {"name": mailer, "version": "1.0.0", "type": "agent", "schema_version": "2.0",
                "display_name": "Mailer", "author": "t",
                "dependencies": {"integrations": {oauth.clone(): "^1.0.0"}}},
            "content": "Mail."
        }),
        201,
    )
    .await;
    c.post(
        &format!("/api/packages/agents/{mailer}/versions"),
        json!({}),
        201,
    )
    .await;
    // Make the token due for refresh (directly in the database of the server).
    let db = dir.path().join("data").join("corral.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE integration_connections SET expires_at = $1 WHERE auth_type = 'oauth2'")
        .bind(corral_core::time::now_ms() + 30_000)
        .execute(&pool)
        .await
        .unwrap();
    let run = c
        .post(&format!("/api/agents/{mailer}/run"), json!({}), 201)
        .await;
    wait_terminal(&c, run["id"].as_str().unwrap()).await;
    assert_eq!(asv.refreshes(), 1, "the run refreshed the token");

    // A graceful stop: the logs are complete and the warm pool's sandboxes are torn
    // down (a killed server would leave its child-process sandboxes to the reaper).
    let mut server = server;
    assert!(common::sigterm_and_wait(&mut server).success());
    let sandboxes = dir.path().join("data").join("sandboxes");
    let left: Vec<_> = std::fs::read_dir(&sandboxes)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "sandboxes left behind: {left:?}");
    let mut logs = String::new();
    for f in ["server.log", "server.stderr.log"] {
        logs.push_str(&std::fs::read_to_string(dir.path().join(f)).unwrap_or_default());
    }
    // The logs are real: they saw the runs and the refresh.
    assert!(logs.contains("run started"), "no run in the logs");
    assert!(
        logs.contains("access token refreshed"),
        "no refresh in the logs"
    );
    let mut secrets = vec![
        PASSWORD.to_owned(),
        api_key.clone(),
        webhook_secret.clone(),
        MODEL_KEY.to_owned(),
        INTEGRATION_KEY.to_owned(),
        CLIENT_SECRET.to_owned(),
        ORG_MODEL_KEY.to_owned(),
        state,
        code,
    ];
    secrets.extend(asv.issued_tokens());
    assert!(secrets.len() >= 13, "{secrets:?}");
    for s in &secrets {
        assert!(
            !logs.contains(s.as_str()),
            "a secret ({}…) is in the logs",
            &s[..6]
        );
    }
}

fn url_param(url: &str, name: &str) -> String {
    url.split(['?', '&'])
        .find_map(|p| p.strip_prefix(&format!("{name}=")))
        .unwrap()
        .to_owned()
}
