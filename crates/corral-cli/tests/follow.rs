//! `follow` against a scripted server: the first SSE connection drops after one log
//! line; the client reconnects with `Last-Event-ID`, gets the rest, prints each line
//! once (the REST catch-up and the stream overlap), and ends on the terminal update.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use corral_cli::client::{Api, Context};
use corral_cli::follow::{follow, LogFormat, LogSink};
use futures::StreamExt as _;
use serde_json::{json, Value};

#[derive(Default)]
struct Seen {
    connections: usize,
    last_event_ids: Vec<Option<String>>,
    run_reads: usize,
    log_sinces: Vec<String>,
}

type Shared = Arc<Mutex<Seen>>;

fn frame(id: Option<i64>, event: &str, data: Value) -> String {
    let id = id.map(|i| format!("id: {i}\n")).unwrap_or_default();
    format!("{id}event: {event}\ndata: {data}\n\n")
}

fn log(id: i64, msg: &str) -> Value {
    json!({"id": id, "runId": "run_1", "level": "info", "type": "progress", "message": msg, "createdAt": "2026-12-04T17:00:00Z"})
}

async fn stream(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let n = {
        let mut s = s.lock().unwrap();
        s.connections += 1;
        s.last_event_ids.push(
            headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        );
        s.connections
    };
    let chunks: Vec<String> = if n == 1 {
        vec![
            "event: ping\ndata: \n\n".into(),
            frame(
                None,
                "run_update",
                json!({"id": "run_1", "status": "running"}),
            ),
            frame(Some(5), "run_log", log(1, "one")),
        ]
    } else {
        vec![
            frame(Some(6), "run_log", log(2, "two")),
            frame(
                Some(7),
                "run_update",
                json!({"id": "run_1", "status": "success"}),
            ),
        ]
    };
    let body = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    // The first connection ends after its frames; the second stays open, so the
    // client must stop on the terminal update, not on the end of the stream.
    let body = if n == 1 {
        Body::from_stream(body)
    } else {
        Body::from_stream(body.chain(futures::stream::pending()))
    };
    ([("content-type", "text/event-stream")], body).into_response()
}

async fn logs(
    State(s): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Json<Value> {
    let since = q.get("since").cloned().unwrap_or_default();
    s.lock().unwrap().log_sinces.push(since.clone());
    // The REST side knows line 1 (which the stream sends too).
    let data = if since.parse::<i64>().unwrap_or(0) < 1 {
        vec![log(1, "one")]
    } else {
        vec![]
    };
    Json(json!({"object": "list", "data": data, "hasMore": false}))
}

async fn run(State(s): State<Shared>) -> Json<Value> {
    let n = {
        let mut s = s.lock().unwrap();
        s.run_reads += 1;
        s.run_reads
    };
    let status = if n <= 2 { "running" } else { "success" };
    Json(json!({"id": "run_1", "status": status, "result": {"output": {"ok": true}}}))
}

#[tokio::test]
async fn follow_reconnects_with_last_event_id_and_prints_each_line_once() {
    let seen: Shared = Arc::default();
    let app = Router::new()
        .route("/api/realtime/runs/run_1", get(stream))
        .route("/api/runs/run_1/logs", get(logs))
        .route("/api/runs/run_1", get(run))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let api = Api::new(Context {
        url: format!("http://{addr}"),
        credential: None,
        org_id: None,
        app_id: None,
        profile: None,
    })
    .unwrap();
    let mut sink = LogSink::new(LogFormat::Quiet);
    let done = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        follow(&api, "run_1", &mut sink),
    )
    .await
    .expect("follow ended")
    .unwrap();
    assert_eq!(done["status"], "success");
    assert_eq!(done["result"]["output"]["ok"], true);
    assert_eq!((sink.printed, sink.last_id), (2, 2), "each line once");
    let s = seen.lock().unwrap();
    assert_eq!(s.connections, 2);
    assert_eq!(
        s.last_event_ids,
        vec![None, Some("5".to_owned())],
        "the reconnection resumes after the last frame seen"
    );
    // Each catch-up asks only for what was not printed yet: at the first connection,
    // at the reconnection, and at the end.
    assert_eq!(s.log_sinces, vec!["0", "1", "2"]);
}
