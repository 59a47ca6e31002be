//! OAuth model credentials during runs: the sidecar's token endpoint
//! (`/internal/oauth-token/…`: fresh, proactive and forced refreshes against a
//! loopback token endpoint, one refresh for concurrent callers, a revoked refresh
//! token flagging the credential), and a run whose model is an OAuth account, end
//! to end through the process sandbox and the mock LLM.

use std::time::Duration;

use corral_mockllm::{MockLlm, Turn};
use corral_testkit::model_oauth::TokenServer;
use corral_testkit::{both, Backend, Session, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

use crate::model_oauth::{
    app_with_oauth, now, pair, redeem, tokens_body, CLAUDE_CLIENT, CODEX_CLIENT,
};
use crate::runs::{app_with_model, wait_terminal};

/// A remote run of the hello-world agent on `model`: a run token for the internal API.
async fn run_token_for(app: &TestApp, s: &Session, model: &str) -> String {
    let created = s
        .client
        .post(
            "/api/runs/remote",
            json!({
                "source": {"kind": "registry", "packageId": "@corral/hello-world"},
                "applicationId": s.app_id,
                "input": {"name": "Ada"},
            }),
            201,
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let run = s.client.get(&format!("/api/runs/{id}"), 200).await;
    assert_eq!(run["model_label"], model);
    corral_engine::runs::executor::run_token(&app.state, &corral_core::RunId::from(id))
}

async fn internal(app: &TestApp, token: &str, method: Method, path: &str) -> (u16, Value) {
    let r = app
        .client()
        .bearer(token)
        .send(method, path, None, &[])
        .await;
    (r.status, r.body)
}

async fn sidecar_tokens_refresh_once_and_revocation_flags(b: Backend) {
    let claude = TokenServer::start(CLAUDE_CLIENT).await;
    let codex = TokenServer::start(CODEX_CLIENT).await;
    let app = app_with_oauth(b, &claude, &codex).await;
    let s = app.user_with_org("Tokens").await;
    let (_, token) = pair(&s, "claude-code", None).await;
    let (access, refresh) = claude.grant();
    // Ten minutes left: fresh enough (the lead is five).
    let done = redeem(
        &app,
        &token,
        tokens_body("claude-code", &access, &refresh, Some(now() + 600_000)),
        200,
    )
    .await;
    let cid = done["credentialId"].as_str().unwrap().to_owned();
    let m = s
        .client
        .post(
            "/api/models",
            json!({"credentialId": cid, "modelId": "claude-sonnet-4-5", "label": "Sub"}),
            201,
        )
        .await;
    s.client
        .put("/api/models/default", json!({"modelId": m["id"]}), 200)
        .await;
    let rt = run_token_for(&app, &s, "Sub").await;
    let path = format!("/internal/oauth-token/{cid}");

    // Fresh: served as is, no call to the token endpoint.
    let (st, t) = internal(&app, &rt, Method::GET, &path).await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["accessToken"], access.as_str());
    assert!(t["expiresAt"].as_i64().unwrap() > now() + 500_000);
    assert_eq!(t["providerId"], "claude-code");
    assert_eq!(t["apiShape"], "anthropic-messages");
    assert_eq!(t["baseUrl"], "http://127.0.0.1:9");
    assert_eq!(claude.calls().len(), 0);

    // Refused callers: no run token, another credential, a finished run.
    let (st, _) = internal(&app, "rt_nope", Method::GET, &path).await;
    assert_eq!(st, 401);
    let stranger = format!("/internal/oauth-token/{}", uuid::Uuid::now_v7());
    let (st, _) = internal(&app, &rt, Method::GET, &stranger).await;
    assert_eq!(st, 403);

    // Forced: the token endpoint is called (JSON, the public client) and the new
    // tokens are kept.
    let (st, t) = internal(&app, &rt, Method::POST, &format!("{path}/refresh")).await;
    assert_eq!(st, 200, "{t}");
    let second = t["accessToken"].as_str().unwrap().to_owned();
    assert_ne!(second, access);
    assert_eq!(claude.refreshes(), 1);
    let call = &claude.calls()[0];
    assert_eq!(call.encoding, "json");
    assert_eq!(call.params["grant_type"], "refresh_token");
    assert_eq!(call.params["client_id"], CLAUDE_CLIENT);
    assert_eq!(call.params["refresh_token"], refresh.as_str());
    let (_, t) = internal(&app, &rt, Method::GET, &path).await;
    assert_eq!(t["accessToken"], second.as_str());

    // Expiring within five minutes: a read refreshes first.
    sqlx::query("UPDATE model_provider_credentials SET token_expires_at = $1 WHERE id = $2")
        .bind(now() + 60_000)
        .bind(&cid)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    let (_, t) = internal(&app, &rt, Method::GET, &path).await;
    let third = t["accessToken"].as_str().unwrap().to_owned();
    assert_ne!(third, second);
    assert_eq!(claude.refreshes(), 2);

    // Concurrent forced refreshes hit the token endpoint once (its refresh tokens
    // work once: a second refresh would be refused and cut the account off).
    claude.set_delay(Duration::from_millis(300));
    let calls_before = claude.calls().len();
    let forced = format!("{path}/refresh");
    let futs = (0..5).map(|_| internal(&app, &rt, Method::POST, &forced));
    let answers = futures::future::join_all(futs).await;
    let tokens: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(st, t)| {
            assert_eq!(*st, 200, "{t}");
            t["accessToken"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(claude.calls().len(), calls_before + 1);
    assert_eq!(claude.refreshes(), 3);
    claude.set_delay(Duration::ZERO);

    // Revoked upstream: 410, the credential flagged; runs on it are refused.
    claude.revoke_all();
    let (st, e) = internal(&app, &rt, Method::POST, &format!("{path}/refresh")).await;
    assert_eq!(st, 410, "{e}");
    assert_eq!(e["code"], "OAUTH_REFRESH_REVOKED");
    let (st, e) = internal(&app, &rt, Method::GET, &path).await;
    assert_eq!(st, 410);
    assert_eq!(e["code"], "OAUTH_CONNECTION_NEEDS_RECONNECTION");
    let list = s.client.get("/api/model-provider-credentials", 200).await;
    assert_eq!(list["data"][0]["needs_reconnection"], true);
    let e = s
        .client
        .post(
            "/api/agents/@corral/hello-world/run",
            json!({"input": {"name": "Ada"}}),
            409,
        )
        .await;
    assert_eq!(e["code"], "model_needs_reconnection");

    // Pairing the account again clears the flag.
    let (_, again) = pair(&s, "claude-code", Some(&cid)).await;
    let fresh = TokenServer::start(CLAUDE_CLIENT).await.grant();
    redeem(
        &app,
        &again,
        tokens_body("claude-code", &fresh.0, &fresh.1, Some(now() + 600_000)),
        200,
    )
    .await;
    let (st, t) = internal(&app, &rt, Method::GET, &path).await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["accessToken"], fresh.0.as_str());
}

/// A run on an OAuth account: the executor refreshes the nearly expired token before
/// configuring the sidecar, the provider sees it as a bearer with Anthropic's OAuth
/// flag; when the provider refuses it mid-run, the sidecar gets a new one from the
/// platform and sends the request again.
async fn a_run_on_an_oauth_account(b: Backend) {
    let mock = MockLlm::start(vec![
        Turn::error(401, json!({"type": "error", "error": {"type": "authentication_error", "message": "token expired"}})),
        Turn::tool_call("output", json!({"greeting": "Hello, Ada!", "length": 11})),
        Turn::text("Done."),
    ])
    .await
    .unwrap();
    let claude = TokenServer::start(CLAUDE_CLIENT).await;
    let token_url = claude.token_url();
    let llm = mock.anthropic_base_url();
    let app = app_with_model(b, &mock, move |c| {
        c.oauth_claude_code_token_url = Some(token_url);
        c.oauth_claude_code_base_url = Some(llm);
    })
    .await;
    let s = app.user_with_org("Sub").await;
    let (_, token) = pair(&s, "claude-code", None).await;
    let (access, refresh) = claude.grant();
    // Two minutes left: inside the five-minute lead.
    let done = redeem(
        &app,
        &token,
        tokens_body("claude-code", &access, &refresh, Some(now() + 120_000)),
        200,
    )
    .await;
    let m = s
        .client
        .post(
            "/api/models",
            json!({"credentialId": done["credentialId"], "modelId": "claude-sonnet-4-5"}),
            201,
        )
        .await;
    let run = s
        .client
        .post(
            "/api/agents/@corral/hello-world/run",
            json!({"input": {"name": "Ada"}, "modelId": m["id"]}),
            201,
        )
        .await;
    let id = run["id"].as_str().unwrap();
    let run = wait_terminal(&s, id, Duration::from_secs(90)).await;
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(
        run["result"]["output"],
        json!({"greeting": "Hello, Ada!", "length": 11})
    );

    let issued = claude.access_tokens();
    // grant + refresh at configure + refresh after the 401.
    assert_eq!(issued.len(), 3, "{issued:?}");
    assert_eq!(claude.refreshes(), 2);
    let reqs = mock.requests();
    assert!(reqs.len() >= 3, "{}", reqs.len());
    let bearer = |i: usize| reqs[i].header("authorization").map(str::to_owned);
    assert_eq!(bearer(0), Some(format!("Bearer {}", issued[1])));
    assert_eq!(bearer(1), Some(format!("Bearer {}", issued[2])));
    for r in &reqs {
        assert_eq!(r.path, "/v1/messages");
        assert!(r.header("x-api-key").is_none());
        assert!(r
            .header("anthropic-beta")
            .is_some_and(|b| b.contains("oauth-2025-04-20")));
        assert_ne!(
            r.header("authorization"),
            Some(format!("Bearer {access}").as_str())
        );
    }
}

/// `corral secrets rotate` reseals both tokens of an OAuth credential; the server
/// with the new key refreshes with the resealed refresh token.
async fn rotation_reseals_oauth_tokens(b: Backend) {
    const OLD_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    const NEW_KEY: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";
    use corral_api::config::Secret;
    let claude = TokenServer::start(CLAUDE_CLIENT).await;
    let url = claude.token_url();
    let a = TestApp::spawn_with(b, |c| {
        c.encryption_key = Some(Secret::new(OLD_KEY));
        c.encryption_key_id = Some("k-old".into());
        c.oauth_claude_code_token_url = Some(url.clone());
    })
    .await;
    let s = a.user_with_org("Rotate").await;
    let (_, token) = pair(&s, "claude-code", None).await;
    let (access, refresh) = claude.grant();
    let cid = redeem(
        &a,
        &token,
        tokens_body("claude-code", &access, &refresh, Some(now() + 600_000)),
        200,
    )
    .await["credentialId"]
        .as_str()
        .unwrap()
        .to_owned();
    let sealed = |app: &TestApp| {
        let pool = app.state.db.pool().clone();
        let cid = cid.clone();
        async move {
            sqlx::query_as::<_, (String, String)>(
                "SELECT api_key, refresh_token FROM model_provider_credentials WHERE id = $1",
            )
            .bind(&cid)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (at, rt) = sealed(&a).await;
    assert!(at.starts_with("v1:k-old:") && rt.starts_with("v1:k-old:"));

    let db = a.state.config.effective_database_url();
    let dir = a.dir.path().to_owned();
    let b2 = TestApp::spawn_with(b, |c| {
        c.database_url = Some(db);
        c.data_dir = dir;
        c.encryption_key = Some(Secret::new(NEW_KEY));
        c.encryption_key_id = Some("k-new".into());
        c.encryption_keys = Some(Secret::new(format!("k-old:{OLD_KEY}")));
        c.oauth_claude_code_token_url = Some(url);
    })
    .await;
    let report = corral_engine::secrets::rotate_secrets(&b2.state.db, &b2.state.keyring)
        .await
        .unwrap();
    assert_eq!(report.failed, 0);
    assert!(report.resealed >= 2, "{report:?}");
    let (at, rt) = sealed(&b2).await;
    assert!(
        at.starts_with("v1:k-new:") && rt.starts_with("v1:k-new:"),
        "{at} {rt}"
    );
    let fresh = corral_connect::model_oauth::fresh_token(
        &b2.state.connect,
        &corral_core::OrgId::from(s.org_id.as_str()),
        &cid,
        true,
    )
    .await
    .unwrap();
    assert_ne!(fresh.access_token, access);
    assert_eq!(claude.calls()[0].params["refresh_token"], refresh.as_str());
    a.begin_shutdown();
}

both!(
    sidecar_tokens_refresh_once_and_revocation_flags,
    a_run_on_an_oauth_account,
    rotation_reseals_oauth_tokens,
);
