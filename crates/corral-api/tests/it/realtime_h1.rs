//! A connection that opens with a live stream is answered by the server's own
//! HTTP/1.1 writer, not hyper (so an idle viewer holds no hyper buffers): checked on
//! the wire with raw sockets. Its stream is chunked and says `Connection: close`
//! (hyper's would not), events arrive, a hang-up frees the subscription, a refusal
//! is a whole problem+json answer, and server shutdown ends the stream cleanly.
//! Every other connection (another first request, a head split over several
//! packets, pipelined requests) is still hyper's, keep-alive included.

use std::time::Duration;

use corral_testkit::{both, Backend, TestApp};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::run_events::running_run;

const WAIT: Duration = Duration::from_secs(10);

async fn dial(app: &TestApp) -> (TcpStream, String) {
    let addr = app.base.trim_start_matches("http://").to_owned();
    (TcpStream::connect(&addr).await.unwrap(), addr)
}

/// Reads until `buf` contains `needle` (after `from`); panics after `WAIT`.
async fn read_until(tcp: &mut TcpStream, buf: &mut Vec<u8>, from: usize, needle: &str) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(i) = find(&buf[from..], needle) {
            return from + i + needle.len();
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {needle:?} in {:?}",
                    String::from_utf8_lossy(&buf[from..])
                )
            })
            .unwrap();
        assert!(
            n > 0,
            "closed before {needle:?}: {}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &str) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w == needle.as_bytes())
}

async fn read_to_end(tcp: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8(out).unwrap()
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !ok() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn a_stream_opening_a_connection_is_served_without_hyper(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Raw").await;
    let (_, key) = s.api_key(None).await;
    let (mut tcp, addr) = dial(&app).await;
    tcp.write_all(
        format!("GET /api/realtime/runs?token={key} HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let end = read_until(&mut tcp, &mut buf, 0, "\r\n\r\n").await;
    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    for h in [
        "content-type: text/event-stream",
        "cache-control: no-cache",
        "transfer-encoding: chunked",
        "connection: close",
        "appstrate-version: ",
        "x-content-type-options: nosniff",
        "date: ",
    ] {
        assert!(head.contains(h), "{h} missing: {head}");
    }
    assert!(!head.contains("content-length"), "{head}");
    // The first frame is a ping, framed as one chunk.
    let ping = b"event: ping\ndata: \n\n";
    let at = read_until(&mut tcp, &mut buf, end, "event: ping").await;
    assert_eq!(
        &buf[end..at],
        format!("{:x}\r\nevent: ping", ping.len()).as_bytes()
    );
    until("subscribed", || app.state.realtime.subscribers() == 1).await;

    let run = running_run(&app, &s).await;
    let at = read_until(&mut tcp, &mut buf, at, &run).await;
    let frame = String::from_utf8_lossy(&buf[..at]);
    assert!(frame.contains("event: run_update"), "{frame}");

    // Hanging up frees the subscription at once.
    drop(tcp);
    until("subscription freed after the hang-up", || {
        app.state.realtime.subscribers() == 0
    })
    .await;

    // A refusal is a whole answer, and the connection closes after it.
    let (mut tcp, addr) = dial(&app).await;
    tcp.write_all(format!("GET /api/realtime/runs HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let text = read_to_end(&mut tcp).await;
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let head = head.to_lowercase();
    assert!(head.starts_with("http/1.1 401 unauthorized\r\n"), "{head}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(
        head.contains(&format!("content-length: {}\r\n", body.len())),
        "{head}"
    );
    assert!(head.contains("connection: close"), "{head}");
    let problem: serde_json::Value = serde_json::from_str(body).expect("problem+json");
    assert_eq!(problem["status"], 401);

    // Shutting the server down ends an open stream with the last chunk.
    let (mut tcp, addr) = dial(&app).await;
    tcp.write_all(
        format!("GET /api/realtime/runs?token={key} HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    read_until(&mut tcp, &mut buf, 0, "event: ping").await;
    until("subscribed", || app.state.realtime.subscribers() == 1).await;
    app.begin_shutdown();
    let rest = read_to_end(&mut tcp).await;
    assert!(rest.ends_with("0\r\n\r\n"), "{rest:?}");
}

async fn other_connections_stay_with_hyper(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Hyper").await;
    let (_, key) = s.api_key(None).await;

    // A head in two packets, then a second request on the same connection.
    let (mut tcp, addr) = dial(&app).await;
    tcp.write_all(b"GET /health HTTP/1.1\r\nho").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    tcp.write_all(format!("st: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let end = read_until(&mut tcp, &mut buf, 0, "\r\n\r\n").await;
    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    // A stream later on a kept-alive connection is hyper's: no `Connection: close`.
    tcp.write_all(
        format!("GET /api/realtime/runs?token={key} HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let at = read_until(&mut tcp, &mut buf, end, "text/event-stream").await;
    let end2 = read_until(&mut tcp, &mut buf, at, "\r\n\r\n").await;
    let head = String::from_utf8_lossy(&buf[end..end2]).to_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    read_until(&mut tcp, &mut buf, end2, "event: ping").await;

    // Pipelined requests are answered in order, by hyper.
    let (mut tcp, addr) = dial(&app).await;
    tcp.write_all(
        format!(
            "GET /health HTTP/1.1\r\nhost: {addr}\r\n\r\nGET /health HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let text = read_to_end(&mut tcp).await;
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
}

both!(
    a_stream_opening_a_connection_is_served_without_hyper,
    other_connections_stay_with_hyper,
);
