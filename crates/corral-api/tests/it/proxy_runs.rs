//! A run's outbound traffic through the organization's proxy, end to end with the
//! process sandbox and the scripted mock LLM: the agent's `curl` goes to the
//! sidecar's forward proxy, which chains plain HTTP (absolute form) and CONNECT
//! tunnels through a loopback upstream proxy with its credentials; the upstream
//! records what passed. The egress guard still refuses a forbidden destination
//! (cloud metadata) before anything reaches the upstream. A run with `proxyId:
//! "none"` goes out directly; unknown or disabled proxies refuse the trigger. A
//! schedule's proxy override applies to its fires.

use std::time::Duration;

use base64::Engine as _;
use corral_mockllm::{MockLlm, Turn};
use corral_testkit::forward_proxy::ForwardProxy;
use corral_testkit::receiver::Receiver;
use corral_testkit::{both, Backend};
use serde_json::json;

use crate::proxies::create;
use crate::runs::{app_with_model, wait_terminal};

const HELLO: &str = "/api/agents/@corral/hello-world/run";
const SECRET: &str = "s3cretPw";

/// Two fetches of the target through the sidecar's forward proxy (plain, then
/// tunnelled with CONNECT) and one of the cloud metadata address; prints the three
/// status codes. `--noproxy ''` overrides the sandbox's NO_PROXY for loopback.
fn script(port: u16) -> String {
    let fetch = |extra: &str, url: &str| {
        format!("curl -sS --noproxy '' {extra} -o /dev/null -w '%{{http_code}}' {url}")
    };
    format!(
        "{}; echo -n ' '; {}; echo -n ' '; {}",
        fetch("", &format!("http://127.0.0.1:{port}/hook?via=plain")),
        fetch(
            "--proxytunnel",
            &format!("http://127.0.0.1:{port}/hook?via=tunnel")
        ),
        fetch("--max-time 5", "http://169.254.169.254/latest/meta-data/"),
    )
}

fn turns(port: u16) -> Vec<Turn> {
    vec![
        Turn::tool_call("bash", json!({ "command": script(port) })),
        Turn::tool_call("output", json!({"greeting": "Hello, Ada!", "length": 11})),
        Turn::text("Done."),
    ]
}

async fn runs_go_through_the_proxy(b: Backend) {
    let target = Receiver::start().await;
    let upstream = ForwardProxy::start(Some(("agent", SECRET))).await;
    let mock = MockLlm::start(turns(target.port)).await.unwrap();
    let app = app_with_model(b, &mock, |c| {
        // The target is on loopback; the metadata address stays forbidden.
        c.egress_allowed_ranges = vec!["127.0.0.0/8".into()];
    })
    .await;
    let s = app.user_with_org("Proxied").await;
    let c = &s.client;
    let p = create(&s, "Upstream", &upstream.url()).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    c.put("/api/proxies/default", json!({ "proxyId": pid }), 200)
        .await;

    let run = c.post(HELLO, json!({"input": {"name": "Ada"}}), 201).await;
    assert_eq!(run["proxy_label"], "Upstream");
    let id = run["id"].as_str().unwrap();
    let done = wait_terminal(&s, id, Duration::from_secs(90)).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["proxy_label"], "Upstream");
    let tool_result = mock.requests()[1].body_text();
    assert!(
        tool_result.contains("200 200 403"),
        "plain and tunnelled fetches succeed, the metadata address is refused: {tool_result}"
    );

    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("agent:{SECRET}"))
    );
    let passed = upstream.passed();
    let port = target.port;
    assert_eq!(passed.len(), 2, "{passed:?}");
    assert_eq!(passed[0].method, "GET");
    assert_eq!(
        passed[0].target,
        format!("http://127.0.0.1:{port}/hook?via=plain")
    );
    assert_eq!(passed[1].method, "CONNECT");
    assert_eq!(passed[1].target, format!("127.0.0.1:{port}"));
    for p in &passed {
        assert_eq!(p.proxy_authorization.as_deref(), Some(auth.as_str()));
        assert_eq!(p.status, 200);
    }
    assert!(!passed.iter().any(|p| p.target.contains("169.254")));
    let got = target.deliveries();
    assert_eq!(got.len(), 2, "both fetches reached the target");

    // `none` for this run: out directly, the upstream sees nothing more.
    for t in turns(port) {
        mock.push(t);
    }
    let direct = c
        .post(
            HELLO,
            json!({"input": {"name": "Ada"}, "proxyId": "none"}),
            201,
        )
        .await;
    assert!(direct["proxy_label"].is_null());
    let done = wait_terminal(&s, direct["id"].as_str().unwrap(), Duration::from_secs(90)).await;
    assert_eq!(done["status"], "success", "{done}");
    assert!(mock.requests()[4].body_text().contains("200 200 403"));
    assert_eq!(upstream.passed().len(), 2);
    assert_eq!(target.deliveries().len(), 4);

    // Refused triggers leave no run behind.
    let runs = app.scalar("SELECT COUNT(*) FROM runs").await;
    let e = c
        .post(
            HELLO,
            json!({"input": {"name": "Ada"}, "proxyId": "prx_nope"}),
            404,
        )
        .await;
    assert_eq!(e["param"], "proxyId");
    c.put(
        &format!("/api/proxies/{pid}"),
        json!({"enabled": false}),
        200,
    )
    .await;
    let e = c
        .post(
            HELLO,
            json!({"input": {"name": "Ada"}, "proxyId": pid}),
            422,
        )
        .await;
    assert_eq!(e["code"], "proxy_unavailable");
    c.put(
        &format!("/api/proxies/{pid}"),
        json!({"enabled": true}),
        200,
    )
    .await;
    c.put(
        "/api/agents/@corral/hello-world/proxy",
        json!({ "proxyId": pid }),
        200,
    )
    .await;
    c.put(
        &format!("/api/proxies/{pid}"),
        json!({"enabled": false}),
        200,
    )
    .await;
    let e = c.post(HELLO, json!({"input": {"name": "Ada"}}), 422).await;
    assert_eq!(
        e["code"], "proxy_unavailable",
        "the agent's proxy is disabled"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM runs").await, runs);
}

/// A schedule's `proxy_id_override` applies to its fires; one naming a proxy that is
/// disabled refuses them (recorded on the schedule), never running unproxied.
async fn schedules_carry_their_proxy(b: Backend) {
    let mock = MockLlm::start_per_conversation(
        "127.0.0.1:0".parse().unwrap(),
        vec![
            Turn::tool_call("output", json!({"greeting": "Hi", "length": 2})),
            Turn::text("Done."),
        ],
    )
    .await
    .unwrap();
    let app = app_with_model(b, &mock, |_| {}).await;
    let s = app.user_with_org("Sched").await;
    let c = &s.client;
    let upstream = ForwardProxy::start(None).await;
    let p = create(&s, "Scheduled", &upstream.url()).await;
    let pid = p["id"].as_str().unwrap();
    let schedules = "/api/agents/@corral/hello-world/schedules";
    let good = c
        .post(
            schedules,
            json!({"cron_expression": "* * * * * *", "input": {"name": "x"},
                   "proxy_id_override": pid}),
            201,
        )
        .await;
    // A choice that names no proxy is refused at once; one disabled later refuses
    // the fires.
    let e = c
        .post(
            schedules,
            json!({"cron_expression": "* * * * * *", "input": {"name": "y"},
                   "proxy_id_override": "prx_gone"}),
            404,
        )
        .await;
    assert_eq!(e["param"], "proxy_id_override");
    let off = create(&s, "Off", "http://127.0.0.1:9").await;
    let off_id = off["id"].as_str().unwrap();
    let gone = c
        .post(
            schedules,
            json!({"cron_expression": "* * * * * *", "input": {"name": "y"},
                   "proxy_id_override": off_id}),
            201,
        )
        .await;
    c.put(
        &format!("/api/schedules/{}", gone["id"].as_str().unwrap()),
        json!({"proxy_id_override": "prx_gone"}),
        404,
    )
    .await;
    c.put(
        &format!("/api/proxies/{off_id}"),
        json!({"enabled": false}),
        200,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    for sc in [&good, &gone] {
        c.put(
            &format!("/api/schedules/{}", sc["id"].as_str().unwrap()),
            json!({"enabled": false}),
            200,
        )
        .await;
    }
    let runs = c
        .get(
            &format!(
                "/api/schedules/{}/runs?limit=100",
                good["id"].as_str().unwrap()
            ),
            200,
        )
        .await;
    let data = runs["data"].as_array().unwrap();
    assert!(!data.is_empty(), "{runs}");
    assert!(
        data.iter().all(|r| r["proxy_label"] == "Scheduled"),
        "{runs}"
    );
    let view = c
        .get(
            &format!("/api/schedules/{}", gone["id"].as_str().unwrap()),
            200,
        )
        .await;
    assert_eq!(view["last_error"]["code"], "proxy_unavailable", "{view}");
    let none = c
        .get(
            &format!("/api/schedules/{}/runs", gone["id"].as_str().unwrap()),
            200,
        )
        .await;
    assert_eq!(none["total"], 0);
    for r in data {
        let done = wait_terminal(&s, r["id"].as_str().unwrap(), Duration::from_secs(60)).await;
        assert_eq!(done["status"], "success", "{done}");
    }
}

/// A run whose proxy is deleted or disabled between its trigger and its start fails
/// with `proxy_unavailable` before any sandbox, rather than going out directly.
async fn a_run_whose_proxy_is_gone_fails_before_any_sandbox(b: Backend) {
    let mock = MockLlm::start(Vec::<Turn>::new()).await.unwrap();
    let app = app_with_model(b, &mock, |_| {}).await;
    let s = app.user_with_org("Gone").await;
    let off = create(&s, "Off", "http://127.0.0.1:9").await;
    let off_id = off["id"].as_str().unwrap();
    s.client
        .put(
            &format!("/api/proxies/{off_id}"),
            json!({"enabled": false}),
            200,
        )
        .await;
    for proxy_id in ["prx_deleted", off_id] {
        let id = format!("run_{}", uuid::Uuid::now_v7());
        let definition = json!({
            "prompt": "p",
            "model": {"api": "openai", "model": "mock-model", "base_url": mock.openai_base_url()},
            "limits": {},
            "proxy": {"id": proxy_id, "label": "Chosen"}
        });
        let now = corral_core::time::now_ms();
        sqlx::query(
            "INSERT INTO runs (id, org_id, application_id, kind, run_number, status, version_ref, \
               definition, timeout_secs, sink_secret, sink_expires_at, run_token_hash, created_at, \
               server_id, proxy_label) \
             VALUES ($1, $2, $3, 'inline', 1, 'pending', 'draft', $4, 300, $5, $6, 'x', $7, $8, 'Chosen')",
        )
        .bind(&id)
        .bind(&s.org_id)
        .bind(&s.app_id)
        .bind(definition.to_string())
        .bind(app.state.keyring.seal(b"whsec_x", &corral_engine::runs::sink_aad(&id)))
        .bind(now + 600_000)
        .bind(now)
        .bind(app.state.runs.queue_owner())
        .execute(app.state.db.pool())
        .await
        .unwrap();
        app.state
            .runs
            .executor
            .enqueue(&s.org_id.as_str().into(), &id.as_str().into());
        let done = wait_terminal(&s, &id, Duration::from_secs(30)).await;
        assert_eq!(done["status"], "failed", "{done}");
        assert_eq!(
            done["metadata"]["error_code"], "proxy_unavailable",
            "{done}"
        );
        assert!(
            done["runner_kind"].is_null(),
            "no sandbox was leased: {done}"
        );
    }
    assert!(mock.requests().is_empty());
}

both!(
    runs_go_through_the_proxy,
    schedules_carry_their_proxy,
    a_run_whose_proxy_is_gone_fails_before_any_sandbox,
);
