//! Outbound proxies through the API, on SQLite and PostgreSQL: custom proxies (the
//! URL sealed at rest and re-sealed by rotation, only ever shown masked, another
//! org sees nothing), the organization's default, the proxy of an agent and its
//! resolution, permissions. The built-in proxy and test calls are in
//! `proxy_tests`, runs through a proxy in `proxy_runs`.

use corral_testkit::{both, Backend, Client, Session, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

pub(crate) const SECRET: &str = "s3cretPw";
pub(crate) const AGENT_PROXY: &str = "/api/agents/@corral/hello-world/proxy";

/// Sends and asserts the status; the body never contains the proxy password.
pub(crate) async fn call(
    c: &Client,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let r = c.send(method.clone(), path, body, &[]).await;
    assert_eq!(r.status, status, "{method} {path}: {}", r.text);
    assert!(
        !r.text.contains(SECRET),
        "{method} {path} leaked the URL: {}",
        r.text
    );
    r.body
}

pub(crate) async fn create(s: &Session, label: &str, url: &str) -> Value {
    call(
        &s.client,
        Method::POST,
        "/api/proxies",
        Some(json!({"label": label, "url": url})),
        201,
    )
    .await
}

pub(crate) async fn sealed_url(app: &TestApp, id: &str) -> String {
    sqlx::query_scalar("SELECT url FROM org_proxies WHERE id = $1")
        .bind(id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

async fn custom_proxies(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Prox").await;
    let c = &s.client;
    let empty = call(c, Method::GET, "/api/proxies", None, 200).await;
    assert_eq!(empty["object"], "list");
    assert_eq!(empty["data"], json!([]));
    assert_eq!(empty["hasMore"], false);

    let url = format!("http://user:{SECRET}@127.0.0.1:3128");
    let p = create(&s, " US Residential ", &url).await;
    let id = p["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("prx_"), "{p}");
    assert_eq!(p["label"], "US Residential");
    assert_eq!(p["urlPrefix"], "http://user:****@127.0.0.1:3128");
    assert_eq!(p["source"], "custom");
    assert_eq!(p["enabled"], true);
    assert_eq!(p["is_default"], false);
    assert_eq!(p["created_by"], s.user_id.as_str());
    // Sealed at rest under the keyring, bound to its row.
    let stored = sealed_url(&app, &id).await;
    assert!(stored.starts_with("v1:"), "{stored}");
    assert!(!stored.contains(SECRET));
    assert_eq!(
        corral_connect::proxies::open_url(&app.state.connect, &id, &stored).unwrap(),
        url
    );
    assert!(corral_connect::proxies::open_url(&app.state.connect, "prx_other", &stored).is_err());

    // Bad input changes nothing.
    for (body, field) in [
        (json!({"label": "", "url": url}), "label"),
        (
            json!({"label": "x", "url": "https://proxy.example.com:443"}),
            "url",
        ),
        (
            json!({"label": "x", "url": "socks5://proxy.example.com:1080"}),
            "url",
        ),
        (
            json!({"label": "x", "url": "http://proxy.example.com/path"}),
            "url",
        ),
        (json!({"label": "x"}), "url"),
        (
            json!({"label": "x", "url": url, "enabled": true}),
            "enabled",
        ),
    ] {
        let e = call(c, Method::POST, "/api/proxies", Some(body.clone()), 400).await;
        assert_eq!(e["errors"][0]["field"], field, "{body}: {e}");
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM org_proxies").await, 1);

    // Update: label, URL (re-sealed, masked anew), enabled.
    let path = format!("/api/proxies/{id}");
    let other = format!("http://other:{SECRET}2@127.0.0.1:9999");
    let u = call(
        c,
        Method::PUT,
        &path,
        Some(json!({"label": "US East", "url": other})),
        200,
    )
    .await;
    assert_eq!(u["label"], "US East");
    assert_eq!(u["urlPrefix"], "http://other:****@127.0.0.1:9999");
    assert_ne!(sealed_url(&app, &id).await, stored);
    call(c, Method::PUT, &path, Some(json!({"url": "ftp://x"})), 400).await;
    call(
        c,
        Method::PUT,
        "/api/proxies/prx_nope",
        Some(json!({"label": "x"})),
        404,
    )
    .await;

    // The default: never a disabled proxy; disabling the default clears it.
    let off = call(c, Method::PUT, &path, Some(json!({"enabled": false})), 200).await;
    assert_eq!(off["enabled"], false);
    let e = call(
        c,
        Method::PUT,
        "/api/proxies/default",
        Some(json!({"proxyId": id})),
        400,
    )
    .await;
    assert_eq!(e["param"], "proxyId");
    call(c, Method::PUT, &path, Some(json!({"enabled": true})), 200).await;
    let d = call(
        c,
        Method::PUT,
        "/api/proxies/default",
        Some(json!({"proxyId": id})),
        200,
    )
    .await;
    assert_eq!(
        (d["id"].as_str(), d["is_default"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    // Private, link-local and metadata addresses are refused (loopback passes in
    // development only).
    for bad in [
        "http://10.0.0.8:8080",
        "http://169.254.169.254",
        "http://metadata.google.internal:80",
        "http://192.168.1.1:3128",
    ] {
        let e = call(
            c,
            Method::POST,
            "/api/proxies",
            Some(json!({"label": "x", "url": bad})),
            400,
        )
        .await;
        assert_eq!(
            (
                e["errors"][0]["field"].as_str(),
                e["errors"][0]["code"].as_str()
            ),
            (Some("url"), Some("forbidden_address")),
            "{bad}: {e}"
        );
    }
    call(
        c,
        Method::PUT,
        &path,
        Some(json!({"url": "http://10.0.0.8:8080"})),
        400,
    )
    .await;
    let second = create(&s, "EU", "http://93.184.216.34:8080").await;
    assert_eq!(second["urlPrefix"], "http://93.184.216.34:8080");
    let list = call(c, Method::GET, "/api/proxies", None, 200).await;
    let defaults: Vec<&Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["is_default"] == true)
        .collect();
    assert_eq!(defaults.len(), 1);
    assert_eq!(defaults[0]["id"], id.as_str());
    let off = call(c, Method::PUT, &path, Some(json!({"enabled": false})), 200).await;
    assert_eq!(off["is_default"], false, "a disabled proxy is no default");
    call(c, Method::PUT, &path, Some(json!({"enabled": true})), 200).await;
    let again = call(c, Method::GET, "/api/proxies", None, 200).await;
    assert!(again["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["is_default"] == false));
    call(
        c,
        Method::PUT,
        "/api/proxies/default",
        Some(json!({"proxyId": id})),
        200,
    )
    .await;
    // Cleared, with no built-in proxy: nothing remains in effect.
    let r = c
        .send(
            Method::PUT,
            "/api/proxies/default",
            Some(json!({"proxyId": null})),
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    call(c, Method::PUT, "/api/proxies/default", Some(json!({})), 400).await;
    let e = call(
        c,
        Method::PUT,
        "/api/proxies/default",
        Some(json!({"proxyId": "prx_nope"})),
        404,
    )
    .await;
    assert_eq!(e["param"], "proxyId");
    call(
        c,
        Method::PUT,
        "/api/proxies/default",
        Some(json!({"proxyId": "system"})),
        404,
    )
    .await;
    call(
        c,
        Method::PUT,
        "/api/proxies/default",
        Some(json!({"proxyId": id})),
        200,
    )
    .await;

    // The proxy of an agent: its choice, and whether its runs are proxied.
    let a = call(c, Method::GET, AGENT_PROXY, None, 200).await;
    assert_eq!(
        a,
        json!({"proxyId": null, "resolved": true}),
        "the org default applies"
    );
    let sid = second["id"].as_str().unwrap();
    let a = call(
        c,
        Method::PUT,
        AGENT_PROXY,
        Some(json!({"proxyId": sid})),
        200,
    )
    .await;
    assert_eq!(a, json!({"proxyId": sid, "resolved": true}));
    assert_eq!(call(c, Method::GET, AGENT_PROXY, None, 200).await, a);
    let a = call(
        c,
        Method::PUT,
        AGENT_PROXY,
        Some(json!({"proxyId": "none"})),
        200,
    )
    .await;
    assert_eq!(a, json!({"proxyId": "none", "resolved": false}));
    let e = call(
        c,
        Method::PUT,
        AGENT_PROXY,
        Some(json!({"proxyId": "prx_nope"})),
        404,
    )
    .await;
    assert_eq!(e["param"], "proxyId");
    call(c, Method::PUT, AGENT_PROXY, Some(json!({})), 400).await;
    call(
        c,
        Method::PUT,
        AGENT_PROXY,
        Some(json!({"proxyId": 5})),
        400,
    )
    .await;
    call(c, Method::GET, "/api/agents/@corral/nope/proxy", None, 404).await;
    call(
        c,
        Method::PUT,
        &format!("/api/proxies/{sid}"),
        Some(json!({"enabled": false})),
        200,
    )
    .await;
    let e = call(
        c,
        Method::PUT,
        AGENT_PROXY,
        Some(json!({"proxyId": sid})),
        400,
    )
    .await;
    assert_eq!(e["param"], "proxyId");
    call(
        c,
        Method::PUT,
        &format!("/api/proxies/{sid}"),
        Some(json!({"enabled": true})),
        200,
    )
    .await;
    call(
        c,
        Method::PUT,
        AGENT_PROXY,
        Some(json!({"proxyId": sid})),
        200,
    )
    .await;
    // A chosen proxy disabled later: the agent's runs are refused, not unproxied.
    call(
        c,
        Method::PUT,
        &format!("/api/proxies/{sid}"),
        Some(json!({"enabled": false})),
        200,
    )
    .await;
    let a = call(c, Method::GET, AGENT_PROXY, None, 200).await;
    assert_eq!(a, json!({"proxyId": sid, "resolved": false}));
    // Deleting it forgets it as the agent's choice: the default applies again.
    call(c, Method::DELETE, &format!("/api/proxies/{sid}"), None, 204).await;
    let a = call(c, Method::GET, AGENT_PROXY, None, 200).await;
    assert_eq!(a, json!({"proxyId": null, "resolved": true}));
    call(c, Method::DELETE, &format!("/api/proxies/{sid}"), None, 404).await;
    let a = call(
        c,
        Method::PUT,
        AGENT_PROXY,
        Some(json!({"proxyId": null})),
        200,
    )
    .await;
    assert_eq!(a, json!({"proxyId": null, "resolved": true}));
    // The application's package settings name the same choice.
    let install = format!(
        "/api/applications/{}/packages/@corral/hello-world",
        s.app_id
    );
    let e = call(
        c,
        Method::PUT,
        &install,
        Some(json!({"proxyId": "prx_nope"})),
        404,
    )
    .await;
    assert_eq!(e["param"], "proxyId");
    let i = call(
        c,
        Method::PUT,
        &install,
        Some(json!({"proxyId": "none"})),
        200,
    )
    .await;
    assert_eq!(i["proxyId"], "none");
    assert_eq!(
        call(c, Method::GET, AGENT_PROXY, None, 200).await["resolved"],
        false
    );
    let i = call(c, Method::PUT, &install, Some(json!({"proxyId": id})), 200).await;
    assert_eq!(i["proxyId"], id.as_str());
    call(
        c,
        Method::PUT,
        AGENT_PROXY,
        Some(json!({"proxyId": null})),
        200,
    )
    .await;

    // Another organization sees and touches nothing of it.
    let other_org = app.user_with_org("Other").await;
    let o = &other_org.client;
    assert_eq!(
        call(o, Method::GET, "/api/proxies", None, 200).await["data"],
        json!([])
    );
    call(o, Method::PUT, &path, Some(json!({"label": "mine"})), 404).await;
    call(o, Method::DELETE, &path, None, 404).await;
    call(o, Method::POST, &format!("{path}/test"), None, 404).await;
    call(
        o,
        Method::PUT,
        "/api/proxies/default",
        Some(json!({"proxyId": id})),
        404,
    )
    .await;
    call(
        o,
        Method::PUT,
        AGENT_PROXY,
        Some(json!({"proxyId": id})),
        404,
    )
    .await;
    let a = call(o, Method::GET, AGENT_PROXY, None, 200).await;
    assert_eq!(a, json!({"proxyId": null, "resolved": false}));

    // Permissions: proxies:read lists, proxies:write changes.
    let (_, reader) = s.api_key(Some(vec!["proxies:read", "agents:read"])).await;
    let reader = app.client().bearer(&reader);
    assert_eq!(
        call(&reader, Method::GET, "/api/proxies", None, 200).await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    call(
        &reader,
        Method::POST,
        "/api/proxies",
        Some(json!({"label": "x", "url": "http://h:1"})),
        403,
    )
    .await;
    call(
        &reader,
        Method::PUT,
        &path,
        Some(json!({"label": "x"})),
        403,
    )
    .await;
    call(&reader, Method::DELETE, &path, None, 403).await;
    call(
        &reader,
        Method::PUT,
        "/api/proxies/default",
        Some(json!({"proxyId": null})),
        403,
    )
    .await;
    call(&reader, Method::POST, &format!("{path}/test"), None, 403).await;
    let (_, runner) = s.api_key(Some(vec!["agents:read"])).await;
    let runner = app.client().bearer(&runner);
    call(&runner, Method::GET, "/api/proxies", None, 403).await;
    call(&runner, Method::GET, AGENT_PROXY, None, 200).await;
    call(
        &runner,
        Method::PUT,
        AGENT_PROXY,
        Some(json!({"proxyId": "none"})),
        403,
    )
    .await;
    let anon = app
        .client()
        .org(&s.org_id)
        .send(Method::GET, "/api/proxies", None, &[])
        .await;
    assert_eq!(anon.status, 401);

    // `corral secrets rotate` re-seals the URL under the new primary key.
    let secrets = &app.state.secrets;
    let old_id = secrets.encryption_key_id.clone();
    let new_key = [9u8; 32];
    let rotated = corral_api::config::crypto::Keyring::new(
        ("k-proxies", &new_key),
        &[(old_id.clone(), secrets.encryption_key)],
    );
    let report = corral_engine::secrets::rotate_secrets(&app.state.db, &rotated)
        .await
        .unwrap();
    assert_eq!(report.failed, 0);
    assert!(report.resealed >= 1);
    let resealed = sealed_url(&app, &id).await;
    assert!(resealed.starts_with("v1:k-proxies:"), "{resealed}");
    assert_eq!(
        corral_api::config::crypto::Keyring::new(("k-proxies", &new_key), &[])
            .open_str(&resealed, &corral_connect::proxies::url_aad(&id))
            .unwrap(),
        other
    );

    call(c, Method::DELETE, &path, None, 204).await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM org_proxies").await, 0);
}

both!(custom_proxies);
