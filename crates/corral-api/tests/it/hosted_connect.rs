//! The hosted connect portal: a single-use connect URL, the page cookie and CSRF
//! nonce of the hosted credential form, the connection stored for the caller who
//! minted the session; OAuth2 auths are sent on to the provider.

use corral_testkit::oauth::AuthServer;
use corral_testkit::{both, Backend, Session, TestApp};
use serde_json::{json, Value};

fn enc(id: &str) -> String {
    id.replace('@', "%40").replace('/', "%2F")
}

async fn slug(s: &Session) -> String {
    s.client.get(&format!("/api/orgs/{}", s.org_id), 200).await["slug"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn hosted_form_stores_the_connection(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Hosted").await;
    let scope = slug(&s).await;
    let integ = format!("@{scope}/echo-api");
    let c = &s.client;
    c.post(
        "/api/packages/integrations",
        json!({"manifest": {
            "name": integ, "version": "1.0.0", "type": "integration", "schema_version": "2.0",
            "display_name": "Echo API", "description": "test",
            "source": {"kind": "api", "api": {}},
            "auths": {"api_key": {
                "type": "api_key",
                "credentials": {"schema": {"type": "object",
                    "properties": {"api_key": {"type": "string", "minLength": 8}},
                    "required": ["api_key"], "additionalProperties": false}},
                "delivery": {"http": {"in": "header", "name": "X-Api-Key", "value": "{$credential.api_key}"}},
                "authorized_uris": ["https://echo.example.test/*"]
            }}
        }}),
        201,
    )
    .await;
    let base = format!("/api/integrations/{}", enc(&integ));
    c.post(
        &format!("{base}/auths/nope/connect/session"),
        json!({}),
        404,
    )
    .await;
    let session = c
        .post(
            &format!("{base}/auths/api_key/connect/session"),
            json!({}),
            200,
        )
        .await;
    let url = session["connect_url"].as_str().unwrap().to_owned();
    assert!(session["expires_at"].as_i64().unwrap() > 0);
    let token = url.split("token=").nth(1).unwrap().to_owned();
    let start = format!("{}/api/integrations/connect/start?token={token}", app.base);

    // No token, a wrong token: HTML error pages.
    let r = http()
        .get(format!("{}/api/integrations/connect/start", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http()
        .get(format!(
            "{}/api/integrations/connect/start?token=nope",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    assert!(r.text().await.unwrap().contains("data-status=\"error\""));

    // The real token: a redirect to the form with the page cookie; once only.
    let r = http().get(&start).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .ends_with("/connect"));
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let cookie = cookie.split(';').next().unwrap().to_owned();
    assert_eq!(http().get(&start).send().await.unwrap().status(), 410);

    let anon = app.client();
    anon.get("/api/integrations/connect/context", 404).await;
    let page = anon.with_header("cookie", &cookie);
    let ctx = page.get("/api/integrations/connect/context", 200).await;
    assert_eq!(ctx["package_id"], integ.as_str(), "{ctx}");
    assert_eq!(ctx["auth_key"], "api_key");
    assert_eq!(ctx["display_name"], "Echo API");
    assert_eq!(ctx["auth"]["type"], "api_key");
    let csrf = ctx["csrf"].as_str().unwrap().to_owned();

    // A wrong CSRF nonce, invalid credentials: refused, nothing stored.
    let submit = "/api/integrations/connect/submit";
    let body = json!({"credentials": {"api_key": "ek_live_hosted_1234"}});
    let r = page
        .send(
            reqwest::Method::POST,
            submit,
            Some(body.clone()),
            &[("x-connect-csrf", "wrong")],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = page
        .send(
            reqwest::Method::POST,
            submit,
            Some(json!({"credentials": {"api_key": "x"}})),
            &[("x-connect-csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM integration_connections")
            .await,
        0
    );

    let r = page
        .send(
            reqwest::Method::POST,
            submit,
            Some(body.clone()),
            &[("x-connect-csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["ok"], true);
    assert_eq!(
        r.body["connection"]["owner_id"],
        s.user_id.as_str(),
        "{}",
        r.text
    );
    assert!(!r.text.contains("ek_live_hosted_1234"));
    // The session is over; the connection is the minting user's.
    let r = page
        .send(
            reqwest::Method::POST,
            submit,
            Some(body),
            &[("x-connect-csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let listed: Value = c.get(&format!("{base}/connections"), 200).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
}

async fn hosted_oauth_redirects_to_the_provider(b: Backend) {
    let auth = AuthServer::start("corral-test", "s3cret-client-9f8e").await;
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("HostedOauth").await;
    let scope = slug(&s).await;
    let integ = format!("@{scope}/mail");
    let c = &s.client;
    c.post(
        "/api/packages/integrations",
        json!({"manifest": {
            "name": integ, "version": "1.0.0", "type": "integration", "schema_version": "2.0",
            "display_name": "Mail", "description": "test",
            "source": {"kind": "api", "api": {}},
            "auths": {"oauth": {
                "type": "oauth2", "issuer": auth.issuer(),
                "token_endpoint_auth_method": "client_secret_basic",
                "default_scopes": ["mail.read"],
                "delivery": {"http": {"in": "header", "name": "Authorization", "prefix": "Bearer ", "value": "{$credential.access_token}"}},
                "authorized_uris": ["https://mail.example.test/*"]
            }}
        }}),
        201,
    )
    .await;
    let base = format!("/api/integrations/{}", enc(&integ));
    c.post(
        &format!("{base}/auths/oauth/oauth-clients"),
        json!({"client_id": "corral-test", "client_secret": "s3cret-client-9f8e"}),
        201,
    )
    .await;
    let session = c
        .post(
            &format!("{base}/auths/oauth/connect/session"),
            json!({"scopes": ["mail.read"]}),
            200,
        )
        .await;
    let r = http()
        .get(session["connect_url"].as_str().unwrap().replace(
            &app.state.config.public_url.trim_end_matches('/').to_owned(),
            &app.base,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&auth.issuer()), "{location}");
    assert!(
        location.contains("code_challenge_method=S256"),
        "{location}"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM integration_oauth_states")
            .await,
        1
    );
}

both!(
    hosted_form_stores_the_connection,
    hosted_oauth_redirects_to_the_provider
);
