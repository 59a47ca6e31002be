//! Integration governance: activation, `block_user_connections`, the application's
//! default connection, admin pins and member pins, and the cascade a run's
//! connection goes through (admin pin > enforced default > run override > member
//! pin > default > newest usable connection) — checked on the readiness verdict and
//! on the connection frozen into a real run's definition.

use corral_mockllm::MockLlm;
use corral_testkit::{both, Backend, Session, TestApp};
use serde_json::{json, Value};

use crate::runs::app_with_model;

const KEY_A: &str = "ek_live_aaaaaaaaaaaa";
const KEY_B: &str = "ek_live_bbbbbbbbbbbb";

fn enc(id: &str) -> String {
    id.replace('@', "%40").replace('/', "%2F")
}

async fn slug(s: &Session) -> String {
    s.client.get(&format!("/api/orgs/{}", s.org_id), 200).await["slug"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn manifest(id: &str) -> Value {
    json!({
        "name": id, "version": "1.0.0", "type": "integration", "schema_version": "2.0",
        "display_name": "Echo API", "description": "test",
        "source": {"kind": "api", "api": {}},
        "auths": {"api_key": {
            "type": "api_key",
            "credentials": {"schema": {
                "type": "object",
                "properties": {"api_key": {"type": "string", "minLength": 8}},
                "required": ["api_key"], "additionalProperties": false
            }},
            "delivery": {"http": {"in": "header", "name": "X-Api-Key", "value": "{$credential.api_key}"}},
            "authorized_uris": ["https://echo.example.test/*"]
        }}
    })
}

/// An integration and an agent depending on it, both published; returns their ids.
async fn setup(s: &Session) -> (String, String) {
    let scope = slug(s).await;
    let integ = format!("@{scope}/echo-api");
    let agent = format!("@{scope}/caller");
    let c = &s.client;
    c.post(
        "/api/packages/integrations",
        json!({"manifest": manifest(&integ)}),
        201,
    )
    .await;
    c.post(
        &format!("/api/packages/integrations/{integ}/versions"),
        json!({}),
        201,
    )
    .await;
    c.post(
        "/api/packages/agents",
        json!({
            "manifest": {
                "name": agent, "version": "1.0.0", "type": "agent", "schema_version": "2.0",
                "display_name": "Caller", "author": "tests",
                "dependencies": {"integrations": {integ.clone(): "^1.0.0"}},
                "output": {"schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}
            },
            "content": "Output ok."
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
    (integ, agent)
}

async fn connect(s: &Session, integ: &str, key: &str, shared: bool) -> String {
    s.client
        .post(
            &format!(
                "/api/integrations/{}/auths/api_key/connect/fields",
                enc(integ)
            ),
            json!({"credentials": {"api_key": key}, "shared_with_org": shared}),
            200,
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn resolution(s: &Session, agent: &str) -> Value {
    let r = s
        .client
        .get(&format!("/api/agents/{agent}/connection-readiness"), 200)
        .await;
    r["integrations"][0]["resolution"].clone()
}

/// A request with the session's headers, past the contract-checking client (paths
/// with a literal slash in a package id are not contract templates).
fn raw(s: &Session, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    let c = &s.client;
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", c.base()));
    for h in ["cookie", "x-org-id", "x-app-id"] {
        if let Some(v) = c.header_value(h) {
            req = req.header(h, v);
        }
    }
    req
}

/// The connection the run froze for its one integration.
async fn run_connection(app: &TestApp, run_id: &str) -> String {
    let def: String = sqlx::query_scalar(&format!(
        "SELECT definition FROM runs WHERE id = '{run_id}'"
    ))
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    let def: Value = serde_json::from_str(&def).unwrap();
    def["integrations"][0]["connection_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no integration in {def}"))
        .to_owned()
}

async fn run(s: &Session, agent: &str, body: Value) -> String {
    let r = s
        .client
        .post(&format!("/api/agents/{agent}/run"), body, 201)
        .await;
    let id = r["id"].as_str().unwrap().to_owned();
    // Only the frozen definition matters here: stop the run (it may have ended).
    let r = s
        .client
        .send(
            reqwest::Method::POST,
            &format!("/api/runs/{id}/cancel"),
            Some(json!({})),
            &[],
        )
        .await;
    assert!([200, 409].contains(&r.status), "{}", r.text);
    id
}

async fn defaults_and_pins_choose_the_run_connection(b: Backend) {
    let mock = MockLlm::start(Vec::<corral_mockllm::Turn>::new())
        .await
        .unwrap();
    let app = app_with_model(b, &mock, |_| {}).await;
    let s = app.user_with_org("Gov").await;
    let (integ, agent) = setup(&s).await;
    let base = format!("/api/integrations/{}", enc(&integ));
    let c = &s.client;
    let a = connect(&s, &integ, KEY_A, true).await;
    let b_ = connect(&s, &integ, KEY_B, true).await;
    let own = connect(&s, &integ, "ek_live_private_only", false).await;

    // Nothing set: the newest usable connection, `auto`.
    let r = resolution(&s, &agent).await;
    assert_eq!(r["status"], "auto", "{r}");
    assert_eq!(r["resolved_connection_id"], own.as_str(), "{r}");
    let resp = c
        .send(reqwest::Method::GET, &format!("{base}/default"), None, &[])
        .await;
    assert_eq!(resp.status, 204, "{}", resp.text);

    // Bad defaults change nothing: an unshared connection, an unknown one.
    let e = c
        .put(
            &format!("{base}/default"),
            json!({"connection_id": own, "enforce": false}),
            400,
        )
        .await;
    assert_eq!(e["errors"][0]["code"], "not_shared", "{e}");
    let e = c
        .put(
            &format!("{base}/default"),
            json!({"connection_id": "nope", "enforce": false}),
            400,
        )
        .await;
    assert_eq!(e["errors"][0]["field"], "connection_id", "{e}");
    c.put(&format!("{base}/default"), json!({"connection_id": a}), 400)
        .await;

    // The application's default (not enforced) beats the fallback.
    let d = c
        .put(
            &format!("{base}/default"),
            json!({"connection_id": a, "enforce": false}),
            200,
        )
        .await;
    assert_eq!(d["integration_package_id"], integ.as_str());
    assert_eq!(d["auth_key"], "api_key");
    assert_eq!(
        c.get(&format!("{base}/default"), 200).await["connection_id"],
        a.as_str()
    );
    let r = resolution(&s, &agent).await;
    assert_eq!(r["resolved_connection_id"], a.as_str(), "{r}");
    assert_eq!(r["org_default_connection_id"], a.as_str(), "{r}");
    assert_eq!(
        run_connection(&app, &run(&s, &agent, json!({})).await).await,
        a
    );

    // A member pin beats the default.
    let e = c
        .put(
            "/api/me/integration-pins",
            json!({"agent_package_id": agent, "integration_package_id": integ, "connection_id": "nope"}),
            400,
        )
        .await;
    assert_eq!(e["errors"][0]["code"], "not_accessible", "{e}");
    let pin = c
        .put(
            "/api/me/integration-pins",
            json!({"agent_package_id": agent, "integration_package_id": integ, "connection_id": b_}),
            200,
        )
        .await;
    assert_eq!(pin["packageId"], agent.as_str());
    assert_eq!(pin["connection_id"], b_.as_str());
    let mine = c
        .get(
            &format!("/api/me/integration-pins?agent_package_id={}", enc(&agent)),
            200,
        )
        .await;
    assert_eq!(mine["data"][0]["connection_id"], b_.as_str(), "{mine}");
    let r = resolution(&s, &agent).await;
    assert_eq!(r["status"], "pinned", "{r}");
    assert_eq!(r["member_pinned_connection_id"], b_.as_str(), "{r}");
    assert_eq!(
        run_connection(&app, &run(&s, &agent, json!({})).await).await,
        b_
    );
    // A run's override beats the member pin.
    let id = run(
        &s,
        &agent,
        json!({"connection_overrides": {integ.clone(): own}}),
    )
    .await;
    assert_eq!(run_connection(&app, &id).await, own);

    // An admin pin (literal slashes in both package ids) beats the override.
    let put = raw(
        &s,
        reqwest::Method::PUT,
        &format!("/api/integrations/{integ}/pins/{agent}"),
    )
    .json(&json!({"connection_id": a}))
    .send()
    .await
    .unwrap();
    assert_eq!(put.status(), 200);
    let put: Value = put.json().await.unwrap();
    assert_eq!(put["integration_package_id"], integ.as_str(), "{put}");
    let pins = c.get(&format!("{base}/pins"), 200).await;
    assert_eq!(pins["data"].as_array().unwrap().len(), 1, "{pins}");
    assert_eq!(pins["data"][0]["packageId"], agent.as_str());
    let r = resolution(&s, &agent).await;
    assert_eq!(r["status"], "admin_locked", "{r}");
    assert_eq!(r["admin_pinned_connection_id"], a.as_str(), "{r}");
    let id = run(
        &s,
        &agent,
        json!({"connection_overrides": {integ.clone(): own}}),
    )
    .await;
    assert_eq!(run_connection(&app, &id).await, a);
    // An admin pin needs a shared connection.
    c.put(
        &format!("{base}/pins/{}", enc(&agent)),
        json!({"connection_id": own}),
        400,
    )
    .await;
    c.put(
        &format!("{base}/pins/{}", enc("@nobody/none")),
        json!({"connection_id": a}),
        404,
    )
    .await;

    // Removing the admin pin (idempotent) gives the member pin back; an enforced
    // default then beats the override and the member pin.
    c.delete(&format!("{base}/pins/{}", enc(&agent)), 204).await;
    c.delete(&format!("{base}/pins/{}", enc(&agent)), 204).await;
    assert_eq!(
        resolution(&s, &agent).await["resolved_connection_id"],
        b_.as_str()
    );
    c.put(
        &format!("{base}/default"),
        json!({"connection_id": a, "enforce": true}),
        200,
    )
    .await;
    let r = resolution(&s, &agent).await;
    assert_eq!(r["status"], "admin_locked", "{r}");
    assert_eq!(r["org_default_enforced"], true, "{r}");
    let id = run(
        &s,
        &agent,
        json!({"connection_overrides": {integ.clone(): own}}),
    )
    .await;
    assert_eq!(run_connection(&app, &id).await, a);

    // Clearing the member pin and the default: back to the fallback.
    c.delete(
        &format!(
            "/api/me/integration-pins?agent_package_id={}&integration_package_id={}",
            enc(&agent),
            enc(&integ)
        ),
        204,
    )
    .await;
    c.delete(&format!("{base}/default"), 204).await;
    c.delete(&format!("{base}/default"), 204).await;
    let r = resolution(&s, &agent).await;
    assert_eq!(r["status"], "auto", "{r}");
    assert_eq!(r["resolved_connection_id"], own.as_str(), "{r}");

    // Deleting a connection removes the default and pins naming it.
    c.put(
        &format!("{base}/default"),
        json!({"connection_id": b_, "enforce": false}),
        200,
    )
    .await;
    c.delete(&format!("/api/me/connections/{b_}"), 204).await;
    let resp = c
        .send(reqwest::Method::GET, &format!("{base}/default"), None, &[])
        .await;
    assert_eq!(resp.status, 204, "{}", resp.text);

    // The consuming agents.
    let used = c.get(&format!("{base}/consuming-agents"), 200).await;
    assert_eq!(used["data"][0]["packageId"], agent.as_str(), "{used}");
    assert_eq!(used["data"][0]["display_name"], "Caller");
}

async fn activation_and_blocked_user_connections(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Act").await;
    let (integ, agent) = setup(&s).await;
    let base = format!("/api/integrations/{}", enc(&integ));
    let c = &s.client;

    let d = c.post(&format!("{base}/activate"), json!({}), 201).await;
    assert_eq!(d["active"], true, "{d}");
    let listed = c.get("/api/integrations?fields=active", 200).await;
    let row = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == integ.as_str())
        .cloned()
        .unwrap();
    assert_eq!(row["active"], true, "{row}");
    c.delete(&format!("{base}/deactivate"), 204).await;
    assert_eq!(c.get(&base, 200).await["active"], false);
    // Literal slash form, twice (idempotent activation).
    for _ in 0..2 {
        let r = raw(
            &s,
            reqwest::Method::POST,
            &format!("/api/integrations/{integ}/activate"),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 201);
    }
    assert_eq!(c.get(&base, 200).await["active"], true);
    // An agent is not an integration: 409, nothing written.
    c.post(
        &format!("/api/integrations/{}/activate", enc(&agent)),
        json!({}),
        409,
    )
    .await;
    c.post(
        &format!("/api/integrations/{}/activate", enc("@nobody/none")),
        json!({}),
        404,
    )
    .await;

    // Blocking members' own connections: an API key without `applications:write`
    // (acting as a member) is refused; an admin still connects.
    let d = c
        .patch(
            &format!("{base}/settings"),
            json!({"block_user_connections": true}),
            200,
        )
        .await;
    assert_eq!(d["block_user_connections"], true, "{d}");
    c.patch(&format!("{base}/settings"), json!({}), 400).await;
    let (_, key) = s
        .api_key(Some(vec!["connections:read", "connections:write"]))
        .await;
    let member = app.client().bearer(&key);
    let e = member
        .post(
            &format!("{base}/auths/api_key/connect/fields"),
            json!({"credentials": {"api_key": KEY_A}}),
            403,
        )
        .await;
    assert!(e["detail"].as_str().unwrap().contains("blocked"), "{e}");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM integration_connections")
            .await,
        0
    );
    connect(&s, &integ, KEY_A, true).await;
    c.patch(
        &format!("{base}/settings"),
        json!({"block_user_connections": false}),
        200,
    )
    .await;
    member
        .post(
            &format!("{base}/auths/api_key/connect/fields"),
            json!({"credentials": {"api_key": KEY_B}}),
            200,
        )
        .await;
    // Settings are admin-only.
    member
        .patch(
            &format!("{base}/settings"),
            json!({"block_user_connections": true}),
            403,
        )
        .await;
}

both!(
    defaults_and_pins_choose_the_run_connection,
    activation_and_blocked_user_connections
);
