//! Agent memory end to end (SPEC §13): a run notes and pins through the real agent
//! and sidecar (process sandbox, scripted mock LLM); the next run of the same
//! end-user starts with the pinned slot in its context and recalls the note and its
//! history through the sidecar's `recall_memory` and `run_history`; another
//! end-user recalls nothing; the persistence endpoints list and delete.

use std::time::Duration;

use corral_mockllm::{MockLlm, Turn};
use corral_testkit::{both, Backend};
use serde_json::{json, Value};

use crate::runs::{app_with_model, wait_terminal};

const HELLO: &str = "/api/agents/@corral/hello-world/run";
const PERSISTENCE: &str = "/api/agents/@corral/hello-world/persistence";

fn output() -> Turn {
    Turn::tool_call("output", json!({"greeting": "Hi", "length": 2}))
}

async fn note_pin_recall_and_isolation(b: Backend) {
    let mock = MockLlm::start(vec![
        // Run 1, end-user A: note and pin.
        Turn::tool_calls([
            (
                "note",
                json!({"content": "Ada prefers Python over JavaScript"}),
            ),
            ("pin", json!({"key": "checkpoint", "value": {"n": 42}})),
        ]),
        output(),
        Turn::text("Done."),
        // Run 2, end-user A: recall and read the history.
        Turn::tool_call("recall_memory", json!({"q": "python"})),
        Turn::tool_call(
            "run_history",
            json!({"limit": 5, "fields": "checkpoint,result"}),
        ),
        output(),
        Turn::text("Done."),
        // Run 3, end-user B: recall finds nothing of A's.
        Turn::tool_call("recall_memory", json!({"q": "python"})),
        output(),
        Turn::text("Done."),
    ])
    .await
    .unwrap();
    let app = app_with_model(b, &mock, |_| {}).await;
    let s = app.user_with_org("Memo").await;
    let (_, key) = s.api_key(None).await;
    let eu = |name: &'static str| {
        let c = s.client.clone();
        async move {
            c.post("/api/end-users", json!({"name": name}), 201).await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (a, bb) = (eu("A").await, eu("B").await);
    let as_a = app.client().bearer(&key).with_header("appstrate-user", &a);
    let as_b = app.client().bearer(&key).with_header("appstrate-user", &bb);

    let run = |c: corral_testkit::client::Client| {
        let s = &s;
        async move {
            let r = c.post(HELLO, json!({"input": {"name": "x"}}), 201).await;
            let id = r["id"].as_str().unwrap().to_owned();
            let done = wait_terminal(s, &id, Duration::from_secs(60)).await;
            assert_eq!(done["status"], "success", "{done}");
            id
        }
    };
    let run1 = run(as_a.clone()).await;

    let p = as_a.get(PERSISTENCE, 200).await;
    let mem = &p["memories"][0];
    assert_eq!(mem["content"], "Ada prefers Python over JavaScript", "{p}");
    assert_eq!(mem["runId"], run1.as_str());
    assert_eq!(mem["actor_type"], "end_user");
    assert_eq!(mem["actor_id"], a.as_str());
    assert_eq!(p["pinned"][0]["key"], "checkpoint");
    assert_eq!(p["pinned"][0]["content"], json!({"n": 42}));
    assert_eq!(
        as_b.get(PERSISTENCE, 200).await,
        json!({"pinned": [], "memories": []})
    );

    let run2 = run(as_a.clone()).await;
    let bodies: Vec<String> = mock.requests().iter().map(|r| r.body_text()).collect();
    // Run 2's first request (the fourth in all) carries the pinned slot.
    assert!(!bodies[..3].iter().any(|b| b.contains("Pinned memory")));
    assert!(
        bodies[3].contains("Pinned memory") && bodies[3].contains("checkpoint"),
        "{}",
        bodies[3]
    );
    // The recall answer (in the request after the tool call) holds A's note.
    assert!(bodies[4].contains("Ada prefers Python"), "{}", bodies[4]);
    // The history holds run 1 with its checkpoint and result.
    assert!(
        bodies[5].contains(&run1) && bodies[5].contains("42"),
        "{}",
        bodies[5]
    );
    assert!(!bodies[5].contains(&run2), "the run itself is not history");

    run(as_b.clone()).await;
    let bodies: Vec<String> = mock.requests().iter().map(|r| r.body_text()).collect();
    let recall_b = &bodies[bodies.len() - 2];
    assert!(!recall_b.contains("Ada prefers Python"), "{recall_b}");
    assert!(!recall_b.contains("Pinned memory"), "{recall_b}");

    // The runId filter, then deletes: one memory, then the pinned slots.
    let p = as_a
        .get(&format!("{PERSISTENCE}?kind=memory&runId={run2}"), 200)
        .await;
    assert_eq!(p["memories"], json!([]));
    let mem_id = as_a.get(PERSISTENCE, 200).await["memories"][0]["id"]
        .as_i64()
        .unwrap();
    as_b.delete(&format!("{PERSISTENCE}/memories/{mem_id}"), 404)
        .await;
    as_a.delete(&format!("{PERSISTENCE}/memories/{mem_id}"), 204)
        .await;
    as_a.delete(&format!("{PERSISTENCE}/memories/{mem_id}"), 404)
        .await;
    let d = as_a
        .delete(&format!("{PERSISTENCE}?kind=pinned"), 200)
        .await;
    assert_eq!(d["checkpoint_deleted"], true, "{d}");
    assert_eq!(d["memories_deleted"], 0);
    assert_eq!(
        as_a.get(PERSISTENCE, 200).await,
        json!({"pinned": [], "memories": []})
    );

    // Another actor's rows: an admin may name them, bad combinations are 400.
    let e = s
        .client
        .get(&format!("{PERSISTENCE}?actor_type=end_user"), 400)
        .await;
    assert_eq!(e["param"], "actor_id");
    let listed = s
        .client
        .get(
            &format!("{PERSISTENCE}?actor_type=end_user&actor_id={a}"),
            200,
        )
        .await;
    assert_eq!(listed["memories"], Value::Array(vec![]));
    s.client
        .get("/api/agents/@corral/nope/persistence", 404)
        .await;
}

both!(note_pin_recall_and_isolation);
