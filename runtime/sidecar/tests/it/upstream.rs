//! A run with an upstream proxy (`egress.upstream_proxy`): the forward proxy chains
//! allowed traffic through it (absolute-form HTTP and CONNECT, with the upstream's
//! `Proxy-Authorization`), still refuses forbidden destinations without contacting
//! it, answers 502 when the upstream refuses or is unreachable; integration API
//! calls go through it too.

use axum::response::IntoResponse as _;
use base64::Engine as _;
use corral_testkit::forward_proxy::ForwardProxy;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::{config, Mcp, Recorder, Sidecar, INTEGRATION_SECRET};

async fn head_of(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    String::from_utf8(buf).unwrap()
}

async fn send(proxy: std::net::SocketAddr, head: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let h = head_of(&mut s).await;
    (h, s)
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[tokio::test]
async fn the_forward_proxy_chains_through_the_upstream() {
    let svc = Recorder::start(|seen, _| format!("hello {}", seen.path).into_response()).await;
    let svc_addr = svc.url.trim_start_matches("http://").to_owned();
    let upstream = ForwardProxy::start(Some(("agent", "pw:1"))).await;
    let sink = Recorder::sink().await;
    let sidecar = Sidecar::start().await;
    let mut cfg = config("http://127.0.0.1:9/v1", "openai", &sink.url);
    cfg["egress"] = json!({
        "allowed_ranges": ["127.0.0.0/8"],
        "upstream_proxy": format!("http://agent:pw%3A1@{}", upstream.addr),
    });
    sidecar.configure(&cfg).await;

    // Plain HTTP: absolute form to the upstream, with its credentials.
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{}", sidecar.proxy)).unwrap())
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}/plain?q=1", svc.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello /plain");

    // A tunnel: CONNECT to the upstream, then the bytes flow end to end.
    let (head, mut tunnel) = send(
        sidecar.proxy,
        &format!("CONNECT {svc_addr} HTTP/1.1\r\nHost: {svc_addr}\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tunnel
        .write_all(
            format!("GET /tunnel HTTP/1.1\r\nHost: {svc_addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    tunnel.read_to_string(&mut answer).await.unwrap();
    assert!(answer.ends_with("hello /tunnel"), "{answer}");

    let passed = upstream.passed();
    assert_eq!(passed.len(), 2, "{passed:?}");
    assert_eq!(
        (passed[0].method.as_str(), passed[0].target.as_str()),
        ("GET", format!("{}/plain?q=1", svc.url).as_str())
    );
    assert_eq!(
        (passed[1].method.as_str(), passed[1].target.as_str()),
        ("CONNECT", svc_addr.as_str())
    );
    for p in &passed {
        assert_eq!(p.proxy_authorization, Some(basic("agent", "pw:1")));
    }
    // The service never sees the upstream's credentials.
    assert!(svc
        .seen()
        .iter()
        .all(|s| s.header("proxy-authorization").is_none()));

    // Forbidden destinations are refused here; the upstream hears nothing of them.
    for target in ["169.254.169.254:80", "10.0.0.1:80"] {
        let (head, _) = send(
            sidecar.proxy,
            &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 403"), "{head}");
        let (head, _) = send(
            sidecar.proxy,
            &format!("GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    }
    assert_eq!(upstream.passed().len(), 2);
}

#[tokio::test]
async fn a_refusing_or_unreachable_upstream_is_a_bad_gateway() {
    let svc = Recorder::start(|_, _| "unreachable".into_response()).await;
    let svc_addr = svc.url.trim_start_matches("http://").to_owned();
    let upstream = ForwardProxy::start(Some(("agent", "right"))).await;
    let sink = Recorder::sink().await;
    for proxy_url in [format!("http://agent:wrong@{}", upstream.addr), {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }] {
        let sidecar = Sidecar::start().await;
        let mut cfg = config("http://127.0.0.1:9/v1", "openai", &sink.url);
        cfg["egress"] = json!({"allowed_ranges": ["127.0.0.0/8"], "upstream_proxy": proxy_url});
        sidecar.configure(&cfg).await;
        let (head, _) = send(
            sidecar.proxy,
            &format!("CONNECT {svc_addr} HTTP/1.1\r\nHost: {svc_addr}\r\n\r\n"),
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 502"), "{proxy_url}: {head}");
        let (head, _) = send(
            sidecar.proxy,
            &format!("GET {}/x HTTP/1.1\r\nHost: {svc_addr}\r\n\r\n", svc.url),
        )
        .await;
        // The upstream's own refusal (407) or a gateway error: never the service.
        assert!(
            head.starts_with("HTTP/1.1 407") || head.starts_with("HTTP/1.1 502"),
            "{proxy_url}: {head}"
        );
    }
    assert!(svc.seen().is_empty());
    assert!(upstream.passed().iter().all(|p| p.status == 407));
}

#[tokio::test]
async fn integration_calls_go_through_the_upstream() {
    let svc = Recorder::start(|seen, _| format!("api {}", seen.path).into_response()).await;
    let upstream = ForwardProxy::start(Some(("agent", "pw"))).await;
    let sink = Recorder::sink().await;
    let sidecar = Sidecar::start().await;
    let mut cfg = config("http://127.0.0.1:9/v1", "openai", &sink.url);
    cfg["egress"] = json!({"upstream_proxy": format!("http://agent:pw@{}", upstream.addr)});
    cfg["integrations"] = json!([{
        "namespace": "gh",
        "delivery": {"type": "header", "name": "Authorization", "template": "Bearer {{token}}"},
        "authorized_uris": [format!("{}/api/*", svc.url)],
        "credentials": {"token": INTEGRATION_SECRET}
    }]);
    sidecar.configure(&cfg).await;
    let mut mcp = Mcp::connect(sidecar.mcp_url()).await;
    let (text, is_error) = mcp
        .call(
            "gh__api_call",
            json!({"method": "GET", "target": format!("{}/api/repos", svc.url)}),
        )
        .await;
    assert!(!is_error, "{text}");
    assert!(text.contains("api /api/repos"), "{text}");
    let passed = upstream.passed();
    assert_eq!(passed.len(), 1, "{passed:?}");
    assert_eq!(passed[0].target, format!("{}/api/repos", svc.url));
    assert_eq!(passed[0].proxy_authorization, Some(basic("agent", "pw")));
    assert_eq!(
        svc.seen()[0].header("authorization"),
        Some(format!("Bearer {INTEGRATION_SECRET}").as_str())
    );
}
