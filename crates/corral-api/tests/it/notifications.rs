//! Notifications: a run reaching a terminal state notifies whoever started it (the
//! user, or the creator of the API key), per application; the list pages with a
//! keyset cursor; marking read by id, by run and all at once; nobody else sees them.

use std::time::Duration;

use corral_mockllm::{MockLlm, Turn};
use corral_testkit::{both, Backend, TestApp};
use reqwest::Method;
use serde_json::json;

use crate::runs::{app_with_model, wait_terminal};

const HELLO: &str = "/api/agents/@corral/hello-world/run";

fn one_run() -> Vec<Turn> {
    vec![
        Turn::tool_call("output", json!({"greeting": "Hello!", "length": 6})),
        Turn::text("Done."),
    ]
}

async fn finished_runs_notify_their_caller(b: Backend) {
    let mock = MockLlm::start([one_run(), one_run(), one_run()].concat())
        .await
        .unwrap();
    let app: TestApp = app_with_model(b, &mock, |_| {}).await;
    let alice = app.user_with_org("Alice").await;
    let bob = app.user_with_org("Bob").await;
    let c = &alice.client;

    // Nothing yet; bad parameters are refused.
    let empty = c.get("/api/notifications", 200).await;
    assert_eq!(empty, json!({"data": [], "has_more": false}));
    assert_eq!(
        c.get("/api/notifications/unread-count", 200).await["count"],
        0
    );
    for q in ["limit=0", "limit=101", "startingAfter=nope"] {
        let r = c
            .send(Method::GET, &format!("/api/notifications?{q}"), None, &[])
            .await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
    }

    // A run started by Alice's session, then one by her API key.
    let run1 = c.post(HELLO, json!({"input": {"name": "Ada"}}), 201).await;
    let run1 = run1["id"].as_str().unwrap().to_owned();
    let done = wait_terminal(&alice, &run1, Duration::from_secs(60)).await;
    let (_, key) = alice.api_key(None).await;
    let kc = app.client().bearer(&key);
    let run2 = kc.post(HELLO, json!({"input": {"name": "Bo"}}), 201).await;
    let run2 = run2["id"].as_str().unwrap().to_owned();
    wait_terminal(&alice, &run2, Duration::from_secs(60)).await;

    let list = c.get("/api/notifications", 200).await;
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{list}");
    // Newest first.
    assert_eq!(data[0]["run_id"], run2.as_str());
    assert_eq!(data[1]["run_id"], run1.as_str());
    assert_eq!(data[1]["type"], "run_completed");
    assert_eq!(data[1]["payload"]["agent_id"], "@corral/hello-world");
    assert_eq!(data[1]["payload"]["status"], done["status"]);
    assert!(data[1]["read_at"].is_null());
    // The API key reads the same recipient's notifications (its creator's).
    assert_eq!(
        kc.get("/api/notifications/unread-count", 200).await["count"],
        2
    );
    assert_eq!(
        c.get("/api/notifications/unread-counts-by-agent", 200)
            .await,
        json!({"counts": {"@corral/hello-world": 2}})
    );

    // Keyset pages: one at a time, the Link header carries the cursor.
    let r = c
        .send(Method::GET, "/api/notifications?limit=1", None, &[])
        .await;
    assert_eq!(r.body["has_more"], true);
    let link = r.header("link").expect("Link header").to_owned();
    let first = r.body["data"][0]["id"].as_str().unwrap().to_owned();
    assert!(link.contains(&format!("startingAfter={first}")), "{link}");
    let page2 = c
        .get(
            &format!("/api/notifications?limit=1&startingAfter={first}"),
            200,
        )
        .await;
    assert_eq!(page2["has_more"], false);
    assert_eq!(page2["data"][0]["run_id"], run1.as_str());

    // Bob (another org) sees none of them and cannot mark them.
    assert_eq!(
        bob.client.get("/api/notifications/unread-count", 200).await["count"],
        0
    );
    let r = bob
        .client
        .send(
            Method::PUT,
            &format!("/api/notifications/{first}/read"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    // Marking by run is idempotent, also for a run that is not his.
    let r = bob
        .client
        .send(
            Method::PUT,
            &format!("/api/notifications/read/{run1}"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        c.get("/api/notifications/unread-count", 200).await["count"],
        2
    );

    // Alice marks by run, then by id (twice: idempotent).
    for _ in 0..2 {
        let r = c
            .send(
                Method::PUT,
                &format!("/api/notifications/read/{run1}"),
                None,
                &[],
            )
            .await;
        assert_eq!(r.status, 204);
    }
    assert_eq!(
        c.get("/api/notifications/unread-count", 200).await["count"],
        1
    );
    let unread = c.get("/api/notifications?unread=true", 200).await;
    assert_eq!(unread["data"].as_array().unwrap().len(), 1);
    assert_eq!(unread["data"][0]["run_id"], run2.as_str());
    for _ in 0..2 {
        let r = c
            .send(
                Method::PUT,
                &format!("/api/notifications/{first}/read"),
                None,
                &[],
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
    assert_eq!(
        c.get("/api/notifications/unread-count", 200).await["count"],
        0
    );
    let all = c.get("/api/notifications", 200).await;
    assert!(all["data"][0]["read_at"].is_string());

    // A third run, then read-all counts what it changed.
    let run3 = c.post(HELLO, json!({"input": {"name": "Cy"}}), 201).await;
    wait_terminal(
        &alice,
        run3["id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        c.get("/api/notifications/unread-counts-by-agent", 200)
            .await,
        json!({"counts": {"@corral/hello-world": 1}})
    );
    let r = c
        .send(Method::PUT, "/api/notifications/read-all", None, &[])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"updated_count": 1}));
    let r = c
        .send(Method::PUT, "/api/notifications/read-all", None, &[])
        .await;
    assert_eq!(r.body, json!({"updated_count": 0}));
    assert_eq!(
        c.get("/api/notifications/unread-counts-by-agent", 200)
            .await,
        json!({"counts": {}})
    );
    // Written once per terminal transition.
    assert_eq!(app.scalar("SELECT COUNT(*) FROM notifications").await, 3);
}

/// A run cancelled while pending notifies too, with its status.
async fn a_cancelled_run_notifies(b: Backend) {
    // A model that never answers in time keeps the run going until cancelled.
    let mock = MockLlm::start(vec![Turn::text("never used")])
        .await
        .unwrap();
    let app = app_with_model(b, &mock, |_| {}).await;
    let s = app.user_with_org("Carol").await;
    let run = s
        .client
        .post(HELLO, json!({"input": {"name": "Ada"}}), 201)
        .await;
    let id = run["id"].as_str().unwrap();
    let r = s
        .client
        .send(Method::POST, &format!("/api/runs/{id}/cancel"), None, &[])
        .await;
    let done = wait_terminal(&s, id, Duration::from_secs(60)).await;
    if r.status == 200 {
        assert_eq!(done["status"], "cancelled");
    }
    let list = s.client.get("/api/notifications", 200).await;
    assert_eq!(list["data"][0]["run_id"], id);
    assert_eq!(list["data"][0]["payload"]["status"], done["status"]);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

both!(finished_runs_notify_their_caller, a_cancelled_run_notifies);
