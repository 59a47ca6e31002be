//! OAuth model providers: the connect helper's pairing (mint, status, cancel,
//! redeem with the pairing token as bearer), the credential it creates or
//! reconnects, the registry entries, and `codex`'s form-encoded refresh and JWT
//! identity. Tokens during runs: `model_oauth_tokens`.

use corral_testkit::model_oauth::TokenServer;
use corral_testkit::{both, Backend, Session, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Digest as _;

pub(crate) const CLAUDE_CLIENT: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";
pub(crate) const CODEX_CLIENT: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
const PAIRING: &str = "/api/model-providers-oauth/pairing";
const REDEEM: &str = "/api/model-providers-oauth/pair/redeem";

pub(crate) async fn app_with_oauth(
    b: Backend,
    claude: &TokenServer,
    codex: &TokenServer,
) -> TestApp {
    let (claude, codex) = (claude.token_url(), codex.token_url());
    TestApp::spawn_with(b, move |c| {
        c.oauth_claude_code_token_url = Some(claude);
        c.oauth_claude_code_base_url = Some("http://127.0.0.1:9".into());
        c.oauth_codex_token_url = Some(codex);
    })
    .await
}

/// Mints a pairing: `(id, token)`.
pub(crate) async fn pair(
    s: &Session,
    provider: &str,
    credential: Option<&str>,
) -> (String, String) {
    let mut body = json!({"providerId": provider});
    if let Some(c) = credential {
        body["credentialId"] = json!(c);
    }
    let p = s.client.post(PAIRING, body, 200).await;
    (
        p["id"].as_str().unwrap().to_owned(),
        p["token"].as_str().unwrap().to_owned(),
    )
}

/// The helper's redeem with `token` as bearer.
pub(crate) async fn redeem(app: &TestApp, token: &str, body: Value, status: u16) -> Value {
    app.client().bearer(token).post(REDEEM, body, status).await
}

pub(crate) fn tokens_body(
    provider: &str,
    access: &str,
    refresh: &str,
    expires_at: Option<i64>,
) -> Value {
    json!({
        "providerId": provider,
        "accessToken": access,
        "refreshToken": refresh,
        "expiresAt": expires_at,
        "email": "ada@example.com",
    })
}

pub(crate) fn now() -> i64 {
    corral_core::time::now_ms()
}

async fn pairing_mint_redeem_and_reconnect(b: Backend) {
    let claude = TokenServer::start(CLAUDE_CLIENT).await;
    let codex = TokenServer::start(CODEX_CLIENT).await;
    let app = app_with_oauth(b, &claude, &codex).await;
    let s = app.user_with_org("Pair").await;

    // The registry tells which providers pair with OAuth, and what they serve.
    let reg = s
        .client
        .get("/api/model-provider-credentials/registry", 200)
        .await;
    let entry = |id: &str| {
        reg["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["providerId"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(entry("claude-code")["authMode"], "oauth2");
    assert_eq!(entry("claude-code")["apiShape"], "anthropic-messages");
    assert_eq!(entry("codex")["apiShape"], "openai-codex-responses");
    assert_eq!(entry("openai")["authMode"], "api_key");
    assert!(!entry("claude-code")["models"]
        .as_array()
        .unwrap()
        .is_empty());

    // Mint: the token once, its hash only in the database.
    let p = s
        .client
        .post(PAIRING, json!({"providerId": "claude-code"}), 200)
        .await;
    let (id, token) = (p["id"].as_str().unwrap(), p["token"].as_str().unwrap());
    assert!(id.starts_with("pair_"), "{p}");
    assert!(token.starts_with("appp_"), "{p}");
    assert!(p["command"].as_str().unwrap().ends_with(token), "{p}");
    let stored: String =
        sqlx::query_scalar("SELECT token_hash FROM model_provider_pairings WHERE id = $1")
            .bind(id)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(stored, hex::encode(sha2::Sha256::digest(token.as_bytes())));
    let status = s.client.get(&format!("{PAIRING}/{id}"), 200).await;
    assert_eq!(status["status"], "pending");
    assert_eq!(status["credentialId"], Value::Null);
    assert!(!status.to_string().contains(token));

    // Bad input and the wrong caller change nothing.
    for (body, field) in [
        (json!({"providerId": "openai"}), "providerId"),
        (json!({"providerId": "nope"}), "providerId"),
        (json!({"providerId": "Claude Code"}), "providerId"),
        (
            json!({"providerId": "claude-code", "credentialId": uuid::Uuid::now_v7().to_string()}),
            "credentialId",
        ),
        (json!({"providerId": "claude-code", "extra": 1}), "extra"),
    ] {
        let e = s.client.post(PAIRING, body, 400).await;
        assert_eq!(e["param"], field, "{e}");
    }
    s.client.get(&format!("{PAIRING}/not-a-pairing"), 400).await;
    s.client.get(&format!("{PAIRING}/pair_unknown"), 404).await;
    let other = app.user_with_org("Other").await;
    other.client.get(&format!("{PAIRING}/{id}"), 404).await;
    app.client()
        .post(PAIRING, json!({"providerId": "claude-code"}), 401)
        .await;
    let (_, ro_key) = s.api_key(Some(vec!["models:read"])).await;
    let ro = app.client().bearer(&ro_key);
    ro.get(&format!("{PAIRING}/{id}"), 200).await;
    ro.post(PAIRING, json!({"providerId": "claude-code"}), 403)
        .await;
    // API keys cannot add an OAuth provider as an API key either.
    let e = s
        .client
        .post(
            "/api/model-provider-credentials",
            json!({"providerId": "claude-code", "apiKey": "k"}),
            400,
        )
        .await;
    assert_eq!(e["param"], "providerId");

    // The redeem takes the pairing token only: no token, a session, an API key or an
    // unknown pairing token are 401.
    let (access, refresh) = claude.grant();
    let body = tokens_body("claude-code", &access, &refresh, Some(now() + 3_600_000));
    let r = app
        .client()
        .send(Method::POST, REDEEM, Some(body.clone()), &[])
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    s.client.post(REDEEM, body.clone(), 401).await;
    let (_, key) = s.api_key(None).await;
    app.client()
        .bearer(&key)
        .post(REDEEM, body.clone(), 401)
        .await;
    redeem(&app, "appp_eyJ9.bm9wZQ", body.clone(), 401).await;
    // Another provider than the pairing's, or a bad body: 400, the pairing unspent.
    let e = redeem(
        &app,
        token,
        tokens_body("codex", &access, &refresh, None),
        400,
    )
    .await;
    assert_eq!(e["param"], "providerId");
    let e = redeem(
        &app,
        token,
        json!({"providerId": "claude-code", "accessToken": "", "refreshToken": "r"}),
        400,
    )
    .await;
    assert_eq!(e["param"], "accessToken");
    redeem(
        &app,
        token,
        json!({"providerId": "claude-code", "accessToken": "a", "refreshToken": "r", "email": "not-an-email"}),
        400,
    )
    .await;
    assert_eq!(
        s.client.get(&format!("{PAIRING}/{id}"), 200).await["status"],
        "pending"
    );

    // Redeemed: a credential of the pairing's org, holding the tokens sealed.
    let done = redeem(&app, token, body.clone(), 200).await;
    let cid = done["credentialId"].as_str().unwrap().to_owned();
    assert_eq!(done["providerId"], "claude-code");
    assert_eq!(done["email"], "ada@example.com");
    assert!(done["availableModelIds"]
        .as_array()
        .unwrap()
        .contains(&json!("claude-sonnet-4-5")));
    let status = s.client.get(&format!("{PAIRING}/{id}"), 200).await;
    assert_eq!(status["status"], "consumed");
    assert_eq!(status["credentialId"], cid.as_str());
    assert!(status["consumedAt"].is_string());
    // Single use.
    let e = redeem(&app, token, body.clone(), 410).await;
    assert_eq!(e["code"], "pairing_expired_or_consumed");

    let list = s.client.get("/api/model-provider-credentials", 200).await;
    let text = list.to_string();
    assert!(
        !text.contains(&access) && !text.contains(&refresh),
        "{text}"
    );
    let c = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == cid.as_str())
        .unwrap()
        .clone();
    assert_eq!(c["authMode"], "oauth2");
    assert_eq!(c["providerId"], "claude-code");
    assert_eq!(c["oauth_email"], "ada@example.com");
    assert_eq!(c["needs_reconnection"], false);
    assert_eq!(c["label"], "Claude (subscription)");
    assert_eq!(c["baseUrl"], "http://127.0.0.1:9");
    assert_eq!(c["available_model_ids"], done["availableModelIds"]);
    assert!(other
        .client
        .get("/api/model-provider-credentials", 200)
        .await["data"]
        .as_array()
        .unwrap()
        .is_empty());
    let (sealed_access, sealed_refresh): (String, String) = sqlx::query_as(
        "SELECT api_key, refresh_token FROM model_provider_credentials WHERE id = $1",
    )
    .bind(&cid)
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    for (sealed, plain) in [(&sealed_access, &access), (&sealed_refresh, &refresh)] {
        assert!(sealed.starts_with("v1:") && !sealed.contains(plain.as_str()));
    }
    // Its key cannot be set like an API key's; discovery makes no upstream call.
    let e = s
        .client
        .put(
            &format!("/api/model-provider-credentials/{cid}"),
            json!({"apiKey": "sk"}),
            400,
        )
        .await;
    assert_eq!(e["param"], "apiKey");
    let refreshed = s
        .client
        .post(
            &format!("/api/model-provider-credentials/{cid}/refresh-models"),
            json!({}),
            200,
        )
        .await;
    assert_eq!(refreshed["outcome"], "ok");
    assert_eq!(refreshed["available_model_ids"], done["availableModelIds"]);

    // Reconnect in place: a pairing naming the credential; a label is kept from the body.
    let (rid, rtoken) = pair(&s, "claude-code", Some(&cid)).await;
    let (access2, refresh2) = claude.grant();
    let mut body2 = tokens_body("claude-code", &access2, &refresh2, None);
    body2["label"] = json!("Work account");
    body2["email"] = json!("ada@work.example");
    let again = redeem(&app, &rtoken, body2, 200).await;
    assert_eq!(again["credentialId"], cid.as_str());
    assert_eq!(
        s.client.get(&format!("{PAIRING}/{rid}"), 200).await["credentialId"],
        cid.as_str()
    );
    let list = s.client.get("/api/model-provider-credentials", 200).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["label"], "Work account");
    assert_eq!(list["data"][0]["oauth_email"], "ada@work.example");

    // Cancel: idempotent; the token no longer works.
    let (cancel_id, cancel_token) = pair(&s, "claude-code", None).await;
    s.client
        .delete(&format!("{PAIRING}/{cancel_id}"), 204)
        .await;
    s.client
        .delete(&format!("{PAIRING}/{cancel_id}"), 204)
        .await;
    other.client.delete(&format!("{PAIRING}/{rid}"), 204).await;
    s.client.get(&format!("{PAIRING}/{rid}"), 200).await;
    s.client.get(&format!("{PAIRING}/{cancel_id}"), 404).await;
    redeem(&app, &cancel_token, body.clone(), 401).await;

    // Expired: readable as such, no longer redeemable.
    let (old_id, old_token) = pair(&s, "claude-code", None).await;
    sqlx::query("UPDATE model_provider_pairings SET expires_at = $1 WHERE id = $2")
        .bind(now() - 1)
        .bind(&old_id)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(
        s.client.get(&format!("{PAIRING}/{old_id}"), 200).await["status"],
        "expired"
    );
    let e = redeem(&app, &old_token, body, 410).await;
    assert_eq!(e["code"], "pairing_expired_or_consumed");
    assert_eq!(claude.calls().len(), 0, "no refresh was needed so far");

    // Codex: the account comes out of the access token (a JWT) when the helper does
    // not forward it; refreshes are form-encoded with the provider's scope.
    let claims = json!({
        "https://api.openai.com/auth": {"chatgpt_account_id": "acct-7"},
        "https://api.openai.com/profile": {"email": "grace@example.com"},
    });
    use base64::Engine as _;
    let jwt = format!(
        "e30.{}.sig",
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims).unwrap())
    );
    let (_, codex_refresh) = codex.grant();
    let (_, ctoken) = pair(&s, "codex", None).await;
    let done = redeem(
        &app,
        &ctoken,
        json!({"providerId": "codex", "accessToken": jwt, "refreshToken": codex_refresh}),
        200,
    )
    .await;
    assert_eq!(done["email"], "grace@example.com");
    let codex_cid = done["credentialId"].as_str().unwrap();
    let account: Option<String> =
        sqlx::query_scalar("SELECT oauth_account_id FROM model_provider_credentials WHERE id = $1")
            .bind(codex_cid)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(account.as_deref(), Some("acct-7"));
    // Corral's agent does not speak the Codex Responses API: its models cannot run.
    let m = s
        .client
        .post(
            "/api/models",
            json!({"credentialId": codex_cid, "modelId": "gpt-5"}),
            201,
        )
        .await;
    let e = s
        .client
        .post(
            "/api/agents/@corral/hello-world/run",
            json!({"input": {"name": "Ada"}, "modelId": m["id"]}),
            422,
        )
        .await;
    assert_eq!(e["code"], "model_api_unsupported");
    let fresh = corral_connect::model_oauth::fresh_token(
        &app.state.connect,
        &corral_core::OrgId::from(s.org_id.as_str()),
        codex_cid,
        true,
    )
    .await
    .unwrap();
    assert_eq!(codex.refreshes(), 1);
    assert_eq!(fresh.account_id.as_deref(), Some("acct-7"));
    let call = &codex.calls()[0];
    assert_eq!(call.encoding, "form");
    assert_eq!(call.params["scope"], "openid profile email");
    assert_eq!(call.params["client_id"], CODEX_CLIENT);
}

both!(pairing_mint_redeem_and_reconnect);
