//! HTTP/2 on the main listener: cleartext HTTP/2 with prior knowledge (h2c), so that
//! many SSE streams share one connection, ordinary requests beside them, and events
//! reaching every stream; a closed stream leaves its connection and the others open.

use std::time::Duration;

use axum::http::Version;
use corral_testkit::sse::H2;
use corral_testkit::{both, Backend, TestApp};

use crate::run_events::{log_event, post_signed, running_run, SINK};

const WAIT: Duration = Duration::from_secs(10);
const STREAMS: usize = 5;

async fn sse_streams_share_one_http2_connection(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("H2").await;
    let (_, key) = s.api_key(None).await;
    let run = running_run(&app, &s).await;
    let h2 = H2::connect(&app.base).await;

    let path = format!("/api/realtime/runs/{run}?token={key}");
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let (status, version, stream) = h2.sse(&path, &[]).await;
        assert_eq!(status, 200, "{:?}", stream.err());
        assert_eq!(version, Version::HTTP_2);
        let mut stream = stream.expect("stream");
        let snap = stream.next(WAIT).await.expect("snapshot");
        assert_eq!(snap.event, "run_update");
        assert_eq!(snap.json()["id"], run.as_str());
        streams.push(stream);
    }

    // An ordinary request is one more stream of the same connection.
    let bearer = format!("Bearer {key}");
    let (status, version, body) = h2.get("/api/runs", &[("authorization", &bearer)]).await;
    assert_eq!((status, version), (200, Version::HTTP_2), "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(list["data"][0]["id"], run.as_str());
    // Errors keep their problem+json shape over HTTP/2 too.
    let (status, _, body) = h2.get("/api/runs", &[]).await;
    assert_eq!(status, 401, "{body}");

    let events = format!("/api/runs/{run}/events");
    let (st, _) = post_signed(&app, &events, &log_event(&run, 1, "over h2"), SINK, "h2-1").await;
    assert_eq!(st, 200);
    for s in &mut streams {
        let f = s.next(WAIT).await.expect("run_log on every stream");
        assert_eq!(f.event, "run_log");
        assert_eq!(f.json()["message"], "over h2");
    }

    // Closing one stream (RST_STREAM) leaves the connection and the other streams.
    drop(streams.pop());
    let (st, _) = post_signed(
        &app,
        &events,
        &log_event(&run, 2, "still here"),
        SINK,
        "h2-2",
    )
    .await;
    assert_eq!(st, 200);
    for s in &mut streams {
        let f = s.next(WAIT).await.expect("the next run_log");
        assert_eq!(f.json()["message"], "still here");
    }
    assert!(h2.is_open());
    let (status, _, _) = h2.get("/health", &[]).await;
    assert_eq!(status, 200);
}

both!(sse_streams_share_one_http2_connection);
