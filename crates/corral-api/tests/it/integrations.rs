//! Integration connections (SPEC §12) through the API: fields connects validated
//! against `credentials.schema` and stored sealed, never returned; a full OAuth2
//! flow against the testkit's local authorization server (RFC 8414 discovery,
//! PKCE S256 checked by the server, RFC 8707 resource, code exchange, refresh,
//! `invalid_grant` → `needs_reconnection`, replayed and expired states refused);
//! concurrent refreshes collapsing to one (20 runs at once through the API); and an
//! API-key credential injected by the sidecar into a request to a local service.

use std::time::Duration;

use corral_mockllm::{MockLlm, Turn};
use corral_testkit::oauth::AuthServer;
use corral_testkit::receiver::Receiver;
use corral_testkit::{both, Backend, Session, TestApp};
use serde_json::{json, Value};

use crate::runs::{app_with_model, wait_terminal};

const API_KEY: &str = "ek_live_4f9c2a7b1d6e8f03";
const MAIL_URIS: &str = "https://mail.example.test/*";

async fn slug(s: &Session) -> String {
    s.client.get(&format!("/api/orgs/{}", s.org_id), 200).await["slug"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn enc(package_id: &str) -> String {
    package_id.replace('@', "%40").replace('/', "%2F")
}

/// Creates and publishes an integration package.
async fn publish_integration(s: &Session, manifest: Value) {
    let name = manifest["name"].as_str().unwrap().to_owned();
    s.client
        .post(
            "/api/packages/integrations",
            json!({"manifest": manifest}),
            201,
        )
        .await;
    s.client
        .post(
            &format!("/api/packages/integrations/{name}/versions"),
            json!({}),
            201,
        )
        .await;
}

/// Creates and publishes an agent depending on `integration`.
async fn publish_agent(s: &Session, scope: &str, name: &str, integration: &str) -> String {
    let id = format!("@{scope}/{name}");
    s.client
        .post(
            "/api/packages/agents",
            json!({
                "manifest": {
                    "name": id, "version": "1.0.0", "type": "agent", "schema_version": "2.0",
                    "display_name": "Caller", "author": "tests",
                    "dependencies": {"integrations": {integration: "^1.0.0"}},
                    "output": {"schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}
                },
                "content": "Call the API once, then output ok."
            }),
            201,
        )
        .await;
    s.client
        .post(
            &format!("/api/packages/agents/{id}/versions"),
            json!({}),
            201,
        )
        .await;
    id
}

fn api_key_manifest(id: &str, authorized: &str) -> Value {
    json!({
        "name": id, "version": "1.0.0", "type": "integration", "schema_version": "2.0",
        "display_name": "Echo API", "description": "test",
        "source": {"kind": "api", "api": {}},
        "auths": {"api_key": {
            "type": "api_key",
            "credentials": {"schema": {
                "type": "object",
                "properties": {"api_key": {"type": "string", "minLength": 8}},
                "required": ["api_key"],
                "additionalProperties": false
            }},
            "delivery": {"http": {"in": "header", "name": "X-Api-Key", "value": "{$credential.api_key}"}},
            "authorized_uris": [authorized]
        }}
    })
}

fn oauth_manifest(id: &str, issuer: &str, authorized: &str) -> Value {
    json!({
        "name": id, "version": "1.0.0", "type": "integration", "schema_version": "2.0",
        "display_name": "Mail", "description": "test",
        "source": {"kind": "api", "api": {}},
        "auths": {"oauth": {
            "type": "oauth2",
            "issuer": issuer,
            "token_endpoint_auth_method": "client_secret_basic",
            "resource": "https://mail.example.test/api",
            "default_scopes": ["mail.read"],
            "authorization_params": {"access_type": "offline"},
            "delivery": {"http": {"in": "header", "name": "Authorization", "prefix": "Bearer ", "value": "{$credential.access_token}"}},
            "authorized_uris": [authorized]
        }}
    })
}

async fn fields_connections(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Fields").await;
    let scope = slug(&s).await;
    let id = format!("@{scope}/echo-api");
    publish_integration(&s, api_key_manifest(&id, "https://echo.example.test/*")).await;
    let c = &s.client;
    let listed = c.get("/api/integrations", 200).await;
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == id.as_str() && i["source"] == "local"),
        "{listed}"
    );
    let projected = c.get("/api/integrations?fields=source", 200).await;
    assert!(projected["data"][0].get("manifest").is_none());
    c.get("/api/integrations?limit=0", 400).await;

    let base = format!("/api/integrations/{}", enc(&id));
    let connect = format!("{base}/auths/api_key/connect/fields");
    // Schema violations, an unknown auth, a closed body: 4xx and nothing stored.
    let e = c.post(&connect, json!({"credentials": {}}), 400).await;
    assert_eq!(e["errors"][0]["field"], "credentials", "{e}");
    // Appstrate clients put the package id in the path with a literal slash (not a
    // path of the contract, so sent past the contract-checking client).
    let raw = |method: reqwest::Method, path: String| {
        let mut req = reqwest::Client::new().request(method, format!("{}{path}", c.base()));
        for h in ["cookie", "x-org-id", "x-app-id"] {
            if let Some(v) = c.header_value(h) {
                req = req.header(h, v);
            }
        }
        req
    };
    let literal = format!("/api/integrations/{id}/auths/api_key/connect/fields");
    assert!(literal.contains("/@"), "{literal}");
    let same: Value = raw(reqwest::Method::POST, literal)
        .json(&json!({"credentials": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(same["errors"], e["errors"], "{same}");
    let one = raw(reqwest::Method::GET, format!("/api/integrations/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    let one: Value = one.json().await.unwrap();
    assert_eq!(one["manifest"]["name"], id.as_str(), "{one}");
    assert!(
        e["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("api_key"),
        "{e}"
    );
    let e = c
        .post(&connect, json!({"credentials": {"api_key": "short"}}), 400)
        .await;
    assert!(!e.to_string().contains("short"), "the value is echoed: {e}");
    c.post(
        &connect,
        json!({"credentials": {"api_key": API_KEY, "extra": "x"}}),
        400,
    )
    .await;
    c.post(
        &format!("{base}/auths/nope/connect/fields"),
        json!({"credentials": {"api_key": API_KEY}}),
        404,
    )
    .await;
    c.post(
        &connect,
        json!({"credentials": {"api_key": API_KEY}, "bogus": 1}),
        400,
    )
    .await;
    c.post(
        &format!("{base}/auths/api_key/connect/oauth2"),
        json!({}),
        400,
    )
    .await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM integration_connections")
            .await,
        0
    );

    let conn = c
        .post(
            &connect,
            json!({"credentials": {"api_key": API_KEY}, "label": "prod"}),
            200,
        )
        .await;
    assert!(!conn.to_string().contains(API_KEY), "{conn}");
    assert!(conn.get("credentials").is_none());
    assert_eq!(conn["packageId"], id.as_str());
    assert_eq!(conn["owner_type"], "user");
    assert_eq!(conn["owner_id"], s.user_id.as_str());
    assert_eq!(conn["needs_reconnection"], false);
    assert_eq!(conn["label"], "prod");
    let cid = conn["id"].as_str().unwrap().to_owned();
    // Sealed at rest.
    let stored: String = sqlx::query_scalar("SELECT credentials FROM integration_connections")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(stored.starts_with("v1:"), "{stored}");
    assert!(!stored.contains(API_KEY));

    let detail = c.get(&base, 200).await;
    assert!(!detail.to_string().contains(API_KEY));
    assert_eq!(detail["auths"][0]["auth_key"], "api_key");
    assert_eq!(detail["auths"][0]["ready"], true);
    assert_eq!(detail["auths"][0]["connections"][0]["id"], cid.as_str());
    let list = c.get(&format!("{base}/connections"), 200).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    // Renewal in place keeps the id.
    let renewed = c
        .post(
            &connect,
            json!({"credentials": {"api_key": "ek_live_rotated_123456"}, "connection_id": cid}),
            200,
        )
        .await;
    assert_eq!(renewed["id"], cid.as_str());
    let patched = c
        .patch(
            &format!("{base}/connections/{cid}"),
            json!({"label": null, "shared_with_org": true}),
            200,
        )
        .await;
    assert_eq!(patched["label"], Value::Null);
    assert_eq!(patched["shared_with_org"], true);

    // Another organization sees neither the integration nor the connection.
    let other = app.user_with_org("Other").await;
    other.client.get(&base, 404).await;
    let mine = other.client.get("/api/me/connections", 200).await;
    assert_eq!(mine["data"], json!([]));
    other
        .client
        .delete(&format!("/api/me/connections/{cid}"), 204)
        .await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM integration_connections")
            .await,
        1
    );

    let mine = c.get("/api/me/connections", 200).await;
    assert_eq!(mine["data"][0]["source_id"], id.as_str());
    assert_eq!(
        mine["data"][0]["connections"][0]["connection_id"],
        cid.as_str()
    );
    assert!(!mine.to_string().contains("rotated"));
    c.delete(&format!("/api/me/connections/{cid}"), 204).await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM integration_connections")
            .await,
        0
    );
}

async fn api_key_credential_reaches_a_local_service(b: Backend) {
    let service = Receiver::start().await;
    let target = service.url.clone();
    let mock = MockLlm::start(vec![
        Turn::tool_call(
            "echo_api__api_call",
            json!({"method": "POST", "target": target, "body": {"q": "ping"}}),
        ),
        Turn::tool_call("output", json!({"ok": true})),
        Turn::text("Done."),
    ])
    .await
    .unwrap();
    let app = app_with_model(b, &mock, |_| {}).await;
    let s = app.user_with_org("E2E").await;
    let scope = slug(&s).await;
    let integ = format!("@{scope}/echo-api");
    publish_integration(
        &s,
        api_key_manifest(&integ, &format!("http://127.0.0.1:{}/*", service.port)),
    )
    .await;
    let agent = publish_agent(&s, &scope, "caller", &integ).await;
    let (_, key) = s.api_key(None).await;
    let c = app.client().bearer(&key);

    // Not connected: readiness says so, and so does the trigger (no run row).
    let ready = c
        .get(&format!("/api/agents/{agent}/connection-readiness"), 200)
        .await;
    assert_eq!(ready["blocks_run"], true, "{ready}");
    assert_eq!(ready["integrations"][0]["resolution"]["status"], "none");
    let e = c
        .post(&format!("/api/agents/{agent}/run"), json!({}), 412)
        .await;
    assert_eq!(e["code"], "connection_missing");
    assert_eq!(e["errors"][0]["field"], format!("integrations.{integ}"));
    assert_eq!(app.scalar("SELECT COUNT(*) FROM runs").await, 0);

    // Connected by a member and shared with the org, the API key's runs use it.
    let conn = s
        .client
        .post(
            &format!(
                "/api/integrations/{}/auths/api_key/connect/fields",
                enc(&integ)
            ),
            json!({"credentials": {"api_key": API_KEY}, "shared_with_org": true}),
            200,
        )
        .await;
    let ready = c
        .get(&format!("/api/agents/{agent}/connection-readiness"), 200)
        .await;
    assert_eq!(ready["blocks_run"], false, "{ready}");
    assert_eq!(
        ready["integrations"][0]["resolution"]["resolved_connection_id"],
        conn["id"]
    );

    let run = c
        .post(&format!("/api/agents/{agent}/run"), json!({}), 201)
        .await;
    let done = wait_terminal(&s, run["id"].as_str().unwrap(), Duration::from_secs(90)).await;
    assert_eq!(done["status"], "success", "{done}");
    let got = service.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(
        got[0].headers.get("x-api-key").map(String::as_str),
        Some(API_KEY)
    );
    assert_eq!(got[0].json(), json!({"q": "ping"}));
    // The credential went to the service only: never to the model.
    for r in mock.requests() {
        assert!(!r.body_text().contains(API_KEY), "the model saw the key");
    }
}

/// The OAuth integration, a registered client, and an authorization completed
/// through the callback: returns (server, session, integration id, connection id).
async fn oauth_connected(
    app: &TestApp,
    name: &str,
    authorized: &str,
) -> (AuthServer, Session, String, String) {
    let asv = AuthServer::start("corral-client", "corral-secret-9f8e7d").await;
    let s = app.user_with_org(name).await;
    let scope = slug(&s).await;
    let integ = format!("@{scope}/mail");
    publish_integration(&s, oauth_manifest(&integ, &asv.issuer(), authorized)).await;
    let base = format!("/api/integrations/{}", enc(&integ));
    let c = &s.client;
    // No client registered yet.
    let e = c
        .post(
            &format!("{base}/auths/oauth/connect/oauth2"),
            json!({}),
            422,
        )
        .await;
    assert_eq!(e["code"], "oauth_client_missing");
    // A confidential client must have a secret.
    c.post(
        &format!("{base}/auths/oauth/oauth-clients"),
        json!({"client_id": "corral-client"}),
        400,
    )
    .await;
    let client = c
        .post(
            &format!("{base}/auths/oauth/oauth-clients"),
            json!({
                "client_id": "corral-client",
                "client_secret": "corral-secret-9f8e7d",
                "redirect_uri": format!("{}/api/integrations/callback", app.base)
            }),
            201,
        )
        .await;
    assert_eq!(client["has_client_secret"], true);
    assert!(!client.to_string().contains("corral-secret"), "{client}");
    let clients = c.get(&format!("{base}/auths/oauth/clients"), 200).await;
    assert_eq!(clients["data"][0]["is_default"], true);
    assert!(!clients.to_string().contains("corral-secret"));

    let start = c
        .post(
            &format!("{base}/auths/oauth/connect/oauth2"),
            json!({}),
            200,
        )
        .await;
    let auth_url = start["auth_url"].as_str().unwrap();
    assert!(
        auth_url.starts_with(&format!("{}/authorize?", asv.issuer())),
        "{auth_url}"
    );
    let callback = asv.approve(auth_url).await;
    let page = reqwest::get(&callback).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("data-status=\"success\""), "{html}");
    let conns = c.get(&format!("{base}/connections"), 200).await;
    let cid = conns["data"][0]["id"].as_str().unwrap().to_owned();
    assert!(html.contains(&cid));
    (asv, s, integ, cid)
}

async fn oauth_flow_refresh_and_invalid_grant(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (asv, s, integ, cid) = oauth_connected(&app, "OAuth", MAIL_URIS).await;
    let base = format!("/api/integrations/{}", enc(&integ));
    let c = &s.client;

    // What the authorization server saw: PKCE S256, the resource, the manifest's
    // scopes and extra parameters; then a code exchange with the verifier (checked
    // by the server), the client's basic auth and the resource.
    let authz = &asv.authorizations()[0];
    assert_eq!(authz["code_challenge_method"], "S256");
    assert_eq!(authz["resource"], "https://mail.example.test/api");
    assert_eq!(authz["scope"], "mail.read");
    assert_eq!(authz["access_type"], "offline");
    let exchange = &asv.token_requests()[0];
    assert_eq!(exchange.status, 200);
    assert_eq!(exchange.form["grant_type"], "authorization_code");
    assert_eq!(exchange.form["code_verifier"].len(), 43);
    assert_eq!(exchange.form["resource"], "https://mail.example.test/api");
    assert!(exchange
        .authorization
        .as_deref()
        .unwrap()
        .starts_with("Basic "));

    let conn = c.get(&format!("{base}/connections"), 200).await["data"][0].clone();
    assert_eq!(conn["scopes_granted"], json!(["mail.read"]));
    assert!(conn["expiresAt"].is_string());
    assert!(conn["client_ref"].is_string());
    assert!(!conn.to_string().contains("at_1"), "{conn}");

    // A replayed state is refused and creates nothing.
    let start = c
        .post(
            &format!("{base}/auths/oauth/connect/oauth2"),
            json!({}),
            200,
        )
        .await;
    let callback = asv.approve(start["auth_url"].as_str().unwrap()).await;
    let html = reqwest::get(&callback).await.unwrap().text().await.unwrap();
    assert!(html.contains("data-status=\"success\""), "{html}");
    let html = reqwest::get(&callback).await.unwrap().text().await.unwrap();
    assert!(html.contains("data-code=\"oauth_state_invalid\""), "{html}");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM integration_connections")
            .await,
        2
    );
    // An expired state is refused (and consumed).
    let start = c
        .post(
            &format!("{base}/auths/oauth/connect/oauth2"),
            json!({}),
            200,
        )
        .await;
    app.sql("UPDATE integration_oauth_states SET expires_at = 1")
        .await;
    let callback = asv.approve(start["auth_url"].as_str().unwrap()).await;
    let html = reqwest::get(&callback).await.unwrap().text().await.unwrap();
    assert!(html.contains("data-code=\"oauth_state_invalid\""), "{html}");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM integration_oauth_states")
            .await,
        0
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM integration_connections")
            .await,
        2
    );
    let exchanges_before = asv.token_requests().len();
    // A forged state never reaches the token endpoint.
    let html = reqwest::get(format!(
        "{}/api/integrations/callback?code=x&state=forged",
        app.base
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(html.contains("oauth_state_invalid"));
    assert_eq!(asv.token_requests().len(), exchanges_before);

    // A token about to expire (within 5 minutes) is refreshed before use.
    let soon = corral_core::time::now_ms() + 60_000;
    app.sql(&format!(
        "UPDATE integration_connections SET expires_at = {soon} WHERE id = '{cid}'"
    ))
    .await;
    let fresh = corral_connect::integrations::fresh_credentials(&app.state.connect, &cid, false)
        .await
        .unwrap();
    assert_eq!(asv.refreshes(), 1);
    let refresh = asv
        .token_requests()
        .into_iter()
        .rfind(|r| r.form["grant_type"] == "refresh_token")
        .unwrap();
    assert_eq!(refresh.form["resource"], "https://mail.example.test/api");
    assert!(fresh.values["access_token"].starts_with("at_"));
    let again = corral_connect::integrations::fresh_credentials(&app.state.connect, &cid, false)
        .await
        .unwrap();
    assert_eq!(
        again.values["access_token"], fresh.values["access_token"],
        "fresh tokens are reused"
    );
    assert_eq!(asv.refreshes(), 1);

    // 20 callers at once with an expiring token: one refresh, one token for all.
    app.sql(&format!(
        "UPDATE integration_connections SET expires_at = {soon} WHERE id = '{cid}'"
    ))
    .await;
    asv.set_refresh_delay(Duration::from_millis(300));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let state = app.state.clone();
            let cid = cid.clone();
            tokio::spawn(async move {
                corral_connect::integrations::fresh_credentials(&state.connect, &cid, false)
                    .await
                    .map(|c| c.values["access_token"].clone())
            })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        tokens.insert(t.await.unwrap().unwrap());
    }
    assert_eq!(
        asv.refreshes(),
        2,
        "concurrent callers refreshed more than once"
    );
    assert_eq!(tokens.len(), 1);
    let count: i64 = app
        .scalar(&format!(
            "SELECT refresh_count FROM integration_connections WHERE id = '{cid}'"
        ))
        .await;
    assert_eq!(count, 2);

    // invalid_grant: the connection needs reconnection, and runs say so.
    asv.revoke_refresh_tokens();
    app.sql(&format!(
        "UPDATE integration_connections SET expires_at = {soon} WHERE id = '{cid}'"
    ))
    .await;
    let err = corral_connect::integrations::fresh_credentials(&app.state.connect, &cid, false)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        corral_connect::integrations::CredentialError::NeedsReconnection
    ));
    let conns = c.get(&format!("{base}/connections"), 200).await;
    let row = conns["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == cid.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["needs_reconnection"], true);

    // Re-authorizing in place clears it and keeps the id.
    let start = c
        .post(
            &format!("{base}/auths/oauth/connect/oauth2"),
            json!({"connection_id": cid}),
            200,
        )
        .await;
    let callback = asv.approve(start["auth_url"].as_str().unwrap()).await;
    let html = reqwest::get(&callback).await.unwrap().text().await.unwrap();
    assert!(
        html.contains(&format!("data-connection-id=\"{cid}\"")),
        "{html}"
    );
    let conns = c.get(&format!("{base}/connections"), 200).await;
    assert_eq!(conns["data"].as_array().unwrap().len(), 2);
    assert!(conns["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["needs_reconnection"] == false));

    // Client rotation keeps the secret unless given; delete works.
    let client_ref = conn["client_ref"].as_str().unwrap();
    let rotated = c
        .put(
            &format!("{base}/oauth-clients/{client_ref}"),
            json!({"client_id": "corral-client"}),
            200,
        )
        .await;
    assert_eq!(rotated["has_client_secret"], true);
    c.put(
        &format!("{base}/oauth-clients/{client_ref}"),
        json!({"client_id": "corral-client", "client_secret": ""}),
        400,
    )
    .await;
    let sealed: String = sqlx::query_scalar("SELECT client_secret FROM integration_oauth_clients")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(sealed.starts_with("v1:") && !sealed.contains("corral-secret"));

    // `secrets rotate` re-seals connection credentials and client secrets under the
    // new primary key; they still open to the same values.
    use corral_config::crypto::Keyring;
    let secrets = &app.state.secrets;
    let new_key = [9u8; 32];
    let rotated = Keyring::new(
        ("k-next", &new_key),
        &[(secrets.encryption_key_id.clone(), secrets.encryption_key)],
    );
    let report = corral_engine::secrets::rotate_secrets(&app.state.db, &rotated)
        .await
        .unwrap();
    assert_eq!(report.failed, 0);
    assert!(report.resealed >= 3, "{report:?}");
    let only_new = Keyring::new(("k-next", &new_key), &[]);
    let stored: String =
        sqlx::query_scalar("SELECT credentials FROM integration_connections WHERE id = $1")
            .bind(&cid)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert!(stored.starts_with("v1:k-next:"), "{stored}");
    let opened: Value = serde_json::from_str(
        &only_new
            .open_str(
                &stored,
                &corral_connect::integrations::credentials_aad(&cid),
            )
            .unwrap(),
    )
    .unwrap();
    assert!(opened["refresh_token"].as_str().unwrap().starts_with("rt_"));
    let sealed: String = sqlx::query_scalar("SELECT client_secret FROM integration_oauth_clients")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(
        only_new
            .open_str(
                &sealed,
                &corral_connect::integrations::client_secret_aad(client_ref)
            )
            .unwrap(),
        "corral-secret-9f8e7d"
    );
    // Tampering is an error, never garbage.
    let mut bad = stored.clone().into_bytes();
    let last = bad.len() - 2;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    assert!(only_new
        .open_str(
            &String::from_utf8(bad).unwrap(),
            &corral_connect::integrations::credentials_aad(&cid)
        )
        .is_err());
}

async fn runs_refresh_once_and_needs_reconnection(b: Backend) {
    // 20 runs of an agent using the OAuth integration, triggered at once with an
    // access token about to expire: the sidecars all get the token of one refresh.
    let steps = vec![
        Turn::tool_call("output", json!({"ok": true})),
        Turn::text("Done."),
    ];
    let mock = MockLlm::start_per_conversation("127.0.0.1:0".parse().unwrap(), steps)
        .await
        .unwrap();
    let app = app_with_model(b, &mock, |c| {
        c.max_concurrent_runs = 20;
        c.org_max_concurrent_runs = 20;
    })
    .await;
    let (asv, s, integ, cid) = oauth_connected(&app, "Runs", MAIL_URIS).await;
    let scope = slug(&s).await;
    let agent = publish_agent(&s, &scope, "mailer", &integ).await;
    let soon = corral_core::time::now_ms() + 60_000;
    app.sql(&format!(
        "UPDATE integration_connections SET expires_at = {soon} WHERE id = '{cid}'"
    ))
    .await;
    asv.set_refresh_delay(Duration::from_millis(500));
    // Half by the member's session, half by an API key of theirs (the trigger is
    // rate-limited per principal); both use the member's connection.
    let (_, k1) = s.api_key(None).await;
    let (_, k2) = s.api_key(None).await;
    let by_key = app.client().bearer(&k1);
    let later = app.client().bearer(&k2);
    let triggers: Vec<_> = (0..20)
        .map(|i| {
            let c = if i % 2 == 0 {
                s.client.clone()
            } else {
                by_key.clone()
            };
            let path = format!("/api/agents/{agent}/run");
            tokio::spawn(async move { c.post(&path, json!({}), 201).await })
        })
        .collect();
    let mut ids = Vec::new();
    for t in triggers {
        ids.push(t.await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let done = wait_terminal(&s, id, Duration::from_secs(180)).await;
        assert_eq!(done["status"], "success", "{done}");
    }
    assert_eq!(asv.refreshes(), 1, "20 runs refreshed more than once");

    // The refresh token is then revoked: the next run that needs a token fails
    // with a clear error, the connection is flagged, and triggers say 412.
    asv.revoke_refresh_tokens();
    app.sql(&format!(
        "UPDATE integration_connections SET expires_at = {soon} WHERE id = '{cid}'"
    ))
    .await;
    let run = later
        .post(&format!("/api/agents/{agent}/run"), json!({}), 201)
        .await;
    let done = wait_terminal(&s, run["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(
        done["metadata"]["error_code"], "connection_unavailable",
        "{done}"
    );
    let e = later
        .post(&format!("/api/agents/{agent}/run"), json!({}), 412)
        .await;
    assert_eq!(e["code"], "needs_reconnection");
    assert_eq!(e["errors"][0]["connection_id"], cid.as_str());
    let ready = s
        .client
        .get(&format!("/api/agents/{agent}/connection-readiness"), 200)
        .await;
    assert_eq!(
        ready["integrations"][0]["resolution"]["status"],
        "needs_reconnection"
    );
}

/// An OAuth token refused upstream in the middle of a run (revoked or rotated by
/// the provider): the sidecar asks the platform for a refresh through the internal
/// API with its run token, and sends the request once more with the new token. The
/// agent sees the successful answer, never a token.
async fn a_token_refused_mid_run_is_refreshed(b: Backend) {
    let service = Receiver::start().await;
    // (The local service answers POSTs.)
    let call = Turn::tool_call(
        "mail__api_call",
        json!({"method": "POST", "target": service.url, "body": {"q": "inbox"}}),
    );
    let mock = MockLlm::start(vec![
        call.clone(),
        call,
        Turn::tool_call("output", json!({"ok": true})),
        Turn::text("Done."),
    ])
    .await
    .unwrap();
    let app = app_with_model(b, &mock, |_| {}).await;
    let authorized = format!("http://127.0.0.1:{}/*", service.port);
    let (asv, s, integ, cid) = oauth_connected(&app, "MidRun", &authorized).await;
    // Connected a while ago (a forced refresh skips brand-new tokens).
    app.sql(&format!(
        "UPDATE integration_connections SET updated_at = updated_at - 120000 WHERE id = '{cid}'"
    ))
    .await;
    let scope = slug(&s).await;
    let agent = publish_agent(&s, &scope, "reader", &integ).await;
    let access_tokens = |asv: &AuthServer| -> Vec<String> {
        asv.issued_tokens()
            .into_iter()
            .filter(|t| t.starts_with("at_"))
            .collect()
    };
    let first_token = access_tokens(&asv).last().unwrap().clone();
    // The first call works; then the provider stops accepting that token.
    service.script(vec![
        corral_testkit::receiver::Reply::status(200),
        corral_testkit::receiver::Reply::status(401),
    ]);
    let run = s
        .client
        .post(&format!("/api/agents/{agent}/run"), json!({}), 201)
        .await;
    let run_id = run["id"].as_str().unwrap().to_owned();
    let done = wait_terminal(&s, &run_id, Duration::from_secs(90)).await;
    assert_eq!(done["status"], "success", "{done}");
    let got = service.wait_for(3, Duration::from_secs(5)).await;
    let auth = |i: usize| got[i].headers.get("authorization").cloned().unwrap();
    assert_eq!(auth(0), format!("Bearer {first_token}"));
    assert_eq!(
        auth(1),
        format!("Bearer {first_token}"),
        "the refused retry"
    );
    let second_token = access_tokens(&asv).last().unwrap().clone();
    assert_ne!(second_token, first_token);
    assert_eq!(
        auth(2),
        format!("Bearer {second_token}"),
        "sent again with the new token"
    );
    assert_eq!(got.len(), 3, "one retry only");
    assert_eq!(asv.refreshes(), 1);
    let refresh = asv
        .token_requests()
        .into_iter()
        .rfind(|r| r.form["grant_type"] == "refresh_token")
        .unwrap();
    assert_eq!(refresh.form["resource"], "https://mail.example.test/api");
    // What the model saw: two successful answers, no token, no 401.
    let results: Vec<String> = mock.requests().iter().map(|r| r.body_text()).collect();
    let last = results.last().unwrap();
    assert_eq!(last.matches("HTTP 200 OK").count(), 2, "{last}");
    assert!(!last.contains("HTTP 401"), "{last}");
    for r in &results {
        assert!(!r.contains(&first_token) && !r.contains(&second_token));
    }
    // The internal API only answers a run token of an active run.
    let url = format!("{}/internal/integration-credentials/{integ}", app.base);
    let http = reqwest::Client::new();
    let token = corral_engine::runs::executor::run_token(&app.state, &run_id.as_str().into());
    for (bearer, what) in [
        (token.as_str(), "a finished run's token"),
        ("rt_0000", "an unknown token"),
        ("ask_nope", "an API key"),
    ] {
        let r = http.get(&url).bearer_auth(bearer).send().await.unwrap();
        assert_eq!(r.status(), 401, "{what}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["code"], "unauthorized", "{what}: {p}");
    }
    let r = http.post(format!("{url}/refresh")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(asv.refreshes(), 1, "refused calls refresh nothing");
}

/// A schedule whose agent has no usable connection: each fire is a failed run
/// (`connection_missing`) of the schedule, the schedule shows the error, and a
/// webhook receiver gets `run.connection_missing`.
async fn scheduled_fire_without_connection_fails_visibly(b: Backend) {
    let app = corral_testkit::TestApp::spawn(b).await;
    let s = app.user_with_org("SchedConn").await;
    let scope = slug(&s).await;
    let integ = format!("@{scope}/echo-api");
    publish_integration(&s, api_key_manifest(&integ, "https://echo.example.test/*")).await;
    let agent = publish_agent(&s, &scope, "caller", &integ).await;
    let rx = Receiver::start().await;
    s.client
        .post(
            "/api/webhooks",
            json!({"url": rx.url, "events": ["run.connection_missing"]}),
            201,
        )
        .await;
    let sched = s
        .client
        .post(
            &format!("/api/agents/{agent}/schedules"),
            json!({"name": "Nightly", "cron_expression": "* * * * * *"}),
            201,
        )
        .await;
    let id = sched["id"].as_str().unwrap().to_owned();
    let got = rx.wait_for(1, Duration::from_secs(20)).await;
    s.client
        .put(
            &format!("/api/schedules/{id}"),
            json!({"enabled": false}),
            200,
        )
        .await;
    let event = got[0].json();
    assert_eq!(event["type"], "run.connection_missing", "{event}");
    let view = s.client.get(&format!("/api/schedules/{id}"), 200).await;
    assert_eq!(view["last_error"]["code"], "connection_missing", "{view}");
    let runs = s
        .client
        .get(&format!("/api/schedules/{id}/runs"), 200)
        .await;
    let run = &runs["data"][0];
    assert_eq!(run["status"], "failed", "{runs}");
    assert_eq!(run["metadata"]["error_code"], "connection_missing", "{run}");
    assert_eq!(run["schedule_name"], "Nightly");
}

both!(
    fields_connections,
    scheduled_fire_without_connection_fails_visibly,
    api_key_credential_reaches_a_local_service,
    oauth_flow_refresh_and_invalid_grant,
    runs_refresh_once_and_needs_reconnection,
    a_token_refused_mid_run_is_refreshed,
);
