//! The forward proxy on the sidecar's second port: SSRF refusals (checked after
//! DNS resolution, never connecting) and allowed loopback traffic, both as plain
//! absolute-form HTTP and through CONNECT tunnels.

use std::net::SocketAddr;

use axum::response::IntoResponse as _;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::{config, Recorder, Sidecar};

/// Sends a raw request head through the proxy and returns everything it answered
/// up to the end of the head, plus the still-open stream.
async fn raw(proxy: SocketAddr, head: &str) -> (String, TcpStream) {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.unwrap();
        assert!(n > 0, "proxy closed: {}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    (String::from_utf8(buf).unwrap(), stream)
}

async fn status_of(proxy: SocketAddr, head: &str) -> u16 {
    let (text, _) = raw(proxy, head).await;
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

const REFUSED: &[&str] = &[
    "127.0.0.1:9",
    "169.254.169.254:80",
    "10.0.0.1:80",
    "localhost:9",
    "[::1]:9",
    "[fd00:ec2::254]:80",
    "192.168.1.1:80",
    "100.64.0.1:80",
    "0.0.0.0:80",
];

async fn assert_all_refused(proxy: SocketAddr) {
    for target in REFUSED {
        let get =
            format!("GET http://{target}/latest/meta-data HTTP/1.1\r\nHost: {target}\r\n\r\n");
        assert_eq!(status_of(proxy, &get).await, 403, "GET {target}");
        let connect = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        assert_eq!(status_of(proxy, &connect).await, 403, "CONNECT {target}");
    }
}

#[tokio::test]
async fn private_loopback_and_metadata_destinations_are_refused() {
    let sidecar = Sidecar::start().await;
    // Before configuration the strict default policy applies.
    assert_all_refused(sidecar.proxy).await;
    // And after a configuration that allows nothing special.
    let sink = Recorder::sink().await;
    sidecar
        .configure(&config("http://127.0.0.1:9/v1", "openai", &sink.url))
        .await;
    assert_all_refused(sidecar.proxy).await;
    assert!(sink.seen().is_empty());
}

#[tokio::test]
async fn allow_listed_loopback_works_over_http_and_connect() {
    let svc = Recorder::start(|seen, _| format!("hello {}", seen.path).into_response()).await;
    let svc_addr = svc.url.trim_start_matches("http://").to_owned();
    let sink = Recorder::sink().await;
    let sidecar = Sidecar::start().await;
    let mut cfg = config("http://127.0.0.1:9/v1", "openai", &sink.url);
    cfg["egress"] = json!({"allowed_hosts": ["127.0.0.1"], "allowed_ranges": ["127.0.0.0/8"]});
    sidecar.configure(&cfg).await;

    // Through reqwest's proxy support, absolute-form HTTP.
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{}", sidecar.proxy)).unwrap())
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}/via-proxy?q=1", svc.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello /via-proxy");
    assert_eq!(svc.seen()[0].query.as_deref(), Some("q=1"));
    assert_eq!(svc.seen()[0].header("proxy-connection"), None);

    // A CONNECT tunnel carries arbitrary bytes (here, plain HTTP).
    let (head, mut tunnel) = raw(
        sidecar.proxy,
        &format!("CONNECT {svc_addr} HTTP/1.1\r\nHost: {svc_addr}\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tunnel
        .write_all(
            format!("GET /tunnelled HTTP/1.1\r\nHost: {svc_addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    tunnel.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello /tunnelled"), "{answer}");

    // The host allow-list still applies: `localhost` is loopback but not listed,
    // and metadata stays refused since its range is not allowed.
    let port = svc_addr.rsplit(':').next().unwrap();
    let get = format!("GET http://localhost:{port}/ HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status_of(sidecar.proxy, &get).await, 403);
    assert_eq!(
        status_of(
            sidecar.proxy,
            "CONNECT 169.254.169.254:80 HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .await,
        403
    );
    assert_eq!(svc.seen().len(), 2);
}
