//! The built-in proxy from configuration (read-only, the fallback default) and test
//! calls through a real loopback proxy (with and without the right credentials) and
//! an unreachable one, under the 5/min limit; on SQLite and PostgreSQL.

use corral_testkit::forward_proxy::ForwardProxy;
use corral_testkit::receiver::Receiver;
use corral_testkit::{both, Backend, TestApp};
use reqwest::Method;
use serde_json::json;

use crate::proxies::{call, create, AGENT_PROXY, SECRET};

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

async fn built_in_proxy(b: Backend) {
    let app = TestApp::spawn_with(b, |c| {
        // The operator's approved range: proxies there are accepted.
        c.egress_allowed_ranges = vec!["10.20.0.0/16".into()];
        c.proxy_url = Some(corral_api::config::Secret::new(format!(
            "http://sys:{SECRET}@127.0.0.1:3129"
        )));
    })
    .await;
    let s = app.user_with_org("Sys").await;
    let c = &s.client;
    let list = call(c, Method::GET, "/api/proxies", None, 200).await;
    let sys = &list["data"][0];
    assert_eq!(sys["id"], "system");
    assert_eq!(sys["source"], "built-in");
    assert_eq!(sys["is_default"], true, "the fallback default");
    assert_eq!(sys["urlPrefix"], "http://sys:****@127.0.0.1:3129");
    assert!(sys["created_by"].is_null());
    call(
        c,
        Method::PUT,
        "/api/proxies/system",
        Some(json!({"label": "x"})),
        403,
    )
    .await;
    let e = call(c, Method::DELETE, "/api/proxies/system", None, 403).await;
    assert_eq!(e["code"], "operation_not_allowed");

    let corp = create(&s, "Corporate", "http://10.20.0.5:3128").await;
    assert_eq!(corp["urlPrefix"], "http://10.20.0.5:3128");
    let e = call(
        c,
        Method::POST,
        "/api/proxies",
        Some(json!({"label": "x", "url": "http://10.21.0.5:3128"})),
        400,
    )
    .await;
    assert_eq!(e["errors"][0]["code"], "forbidden_address");
    let mine = create(&s, "Mine", "http://127.0.0.1:3130").await;
    let mid = mine["id"].as_str().unwrap();
    call(
        c,
        Method::PUT,
        "/api/proxies/default",
        Some(json!({"proxyId": mid})),
        200,
    )
    .await;
    let list = call(c, Method::GET, "/api/proxies", None, 200).await;
    assert_eq!(list["data"][0]["is_default"], false);
    assert_eq!(list["data"][2]["is_default"], true);
    // Clearing the org's default surfaces the built-in one.
    let d = call(
        c,
        Method::PUT,
        "/api/proxies/default",
        Some(json!({"proxyId": null})),
        200,
    )
    .await;
    assert_eq!(
        (d["id"].as_str(), d["is_default"].as_bool()),
        (Some("system"), Some(true))
    );
    call(
        c,
        Method::PUT,
        "/api/proxies/default",
        Some(json!({"proxyId": mid})),
        200,
    )
    .await;
    let d = call(
        c,
        Method::PUT,
        "/api/proxies/default",
        Some(json!({"proxyId": "system"})),
        200,
    )
    .await;
    assert_eq!(d["id"], "system");
    let a = call(
        c,
        Method::PUT,
        AGENT_PROXY,
        Some(json!({"proxyId": "system"})),
        200,
    )
    .await;
    assert_eq!(a, json!({"proxyId": "system", "resolved": true}));
}

async fn proxy_tests(b: Backend) {
    let target = Receiver::start().await;
    let target_url = target.url.clone();
    let app = TestApp::spawn_with(b, move |c| c.proxy_test_url = target_url).await;
    let s = app.user_with_org("Tester").await;
    let c = &s.client;
    let good = ForwardProxy::start(Some(("u", SECRET))).await;
    let p = create(&s, "Good", &good.url()).await;
    let r = call(
        c,
        Method::POST,
        &format!("/api/proxies/{}/test", p["id"].as_str().unwrap()),
        None,
        200,
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["status"], 200);
    assert!(r["latency"].as_f64().unwrap() >= 0.0);
    let passed = good.passed();
    assert_eq!(passed.len(), 1, "{passed:?}");
    assert_eq!(passed[0].method, "GET");
    assert_eq!(passed[0].target, target.url);
    assert!(passed[0]
        .proxy_authorization
        .as_deref()
        .is_some_and(|a| a.starts_with("Basic ")));
    assert_eq!(
        target.deliveries().len(),
        1,
        "the request reached the target"
    );

    // The wrong password: the proxy's 407 is a result.
    let wrong = create(&s, "Wrong", &format!("http://u:nope@{}", good.addr)).await;
    let r = call(
        c,
        Method::POST,
        &format!("/api/proxies/{}/test", wrong["id"].as_str().unwrap()),
        None,
        200,
    )
    .await;
    assert_eq!(
        (r["ok"].as_bool(), r["error"].as_str(), r["status"].as_u64()),
        (Some(false), Some("auth_failed"), Some(407)),
        "{r}"
    );
    assert_eq!(target.deliveries().len(), 1);

    // Nobody listening.
    let dead = create(
        &s,
        "Dead",
        &format!("http://u:{SECRET}@127.0.0.1:{}", closed_port().await),
    )
    .await;
    let r = call(
        c,
        Method::POST,
        &format!("/api/proxies/{}/test", dead["id"].as_str().unwrap()),
        None,
        200,
    )
    .await;
    assert_eq!(
        (r["ok"].as_bool(), r["error"].as_str()),
        (Some(false), Some("network_error")),
        "{r}"
    );
    assert!(r.get("status").is_none() || r["status"].is_null());

    call(c, Method::POST, "/api/proxies/prx_nope/test", None, 404).await;
    // The built-in one is not configured here.
    call(c, Method::POST, "/api/proxies/system/test", None, 404).await;
    // Five tests a minute: this is the sixth (the 404s counted too).
    let r = c
        .send(
            Method::POST,
            &format!("/api/proxies/{}/test", p["id"].as_str().unwrap()),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.header("retry-after").is_some());
    assert_eq!(good.passed().len(), 2, "the refused test sent nothing");
}

both!(built_in_proxy, proxy_tests);
