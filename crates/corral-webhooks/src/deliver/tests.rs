//! Delivery against a real HTTP receiver on 127.0.0.1, through the real client,
//! resolver and URL check.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use corral_protocol::signing::WebhookHeaders;

use super::*;

struct Captured {
    path: String,
    peer: SocketAddr,
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Captured>>>);

impl Seen {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn take(&self) -> Vec<Captured> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

async fn handle(
    State(seen): State<Seen>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    seen.0.lock().unwrap().push(Captured {
        path: kind.clone(),
        peer,
        headers,
        body: body.to_vec(),
    });
    match kind.as_str() {
        "ok" => (StatusCode::OK, "thanks").into_response(),
        "gone" => StatusCode::GONE.into_response(),
        "missing" => (StatusCode::NOT_FOUND, "no such hook").into_response(),
        "busy" => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "7")],
            "busy",
        )
            .into_response(),
        "redirect" => (StatusCode::FOUND, [("location", "/ok")]).into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            StatusCode::OK.into_response()
        }
        "big" => (StatusCode::OK, "é".repeat(100 * 1024)).into_response(),
        _ => StatusCode::IM_A_TEAPOT.into_response(),
    }
}

/// A receiver on an ephemeral loopback port; returns its base URL.
async fn receiver() -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/{kind}", post(handle))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (format!("http://{addr}"), seen)
}

fn dev() -> Deliverer {
    Deliverer::new(Policy::AllowLoopback, DEFAULT_TIMEOUT).unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

const BODY: &[u8] = br#"{"id":"evt_1","object":"event","type":"run.success"}"#;

fn headers_of(c: &Captured) -> WebhookHeaders {
    WebhookHeaders::from_lookup(|name| c.headers.get(name).and_then(|v| v.to_str().ok())).unwrap()
}

#[tokio::test]
async fn success_is_signed_and_classified() {
    let (base, seen) = receiver().await;
    let secret = SigningSecret::generate();
    let ts = now();
    let attempt = dev()
        .send(
            &format!("{base}/ok"),
            "evt_1",
            ts,
            BODY,
            std::slice::from_ref(&secret),
        )
        .await;
    assert_eq!(attempt.outcome, Outcome::Success, "{attempt:?}");
    assert_eq!(attempt.status, Some(200));
    assert_eq!(attempt.error, None);
    assert_eq!(attempt.response_excerpt.as_deref(), Some("thanks"));
    assert_eq!(attempt.retry_after, None);
    assert!(attempt.latency > Duration::ZERO);

    let captured = seen.take();
    assert_eq!(captured.len(), 1);
    let c = &captured[0];
    assert_eq!(c.body, BODY);
    assert_eq!(c.headers["content-type"], "application/json");
    assert!(c.headers["user-agent"]
        .to_str()
        .unwrap()
        .starts_with("Corral-Webhooks/"));
    let h = headers_of(c);
    assert_eq!(h.id, "evt_1");
    assert_eq!(h.timestamp, ts.to_string());
    assert_eq!(secret.verify(&h, &c.body, now()), Ok(()));
    assert!(SigningSecret::generate()
        .verify(&h, &c.body, now())
        .is_err());
}

#[tokio::test]
async fn rotation_sends_one_signature_per_secret() {
    let (base, seen) = receiver().await;
    let old = SigningSecret::generate();
    let new = SigningSecret::generate();
    let ts = now();
    let attempt = dev()
        .send(
            &format!("{base}/ok"),
            "evt_2",
            ts,
            BODY,
            &[new.clone(), old.clone()],
        )
        .await;
    assert_eq!(attempt.outcome, Outcome::Success);
    let captured = seen.take();
    let h = headers_of(&captured[0]);
    let sigs: Vec<&str> = h.signature.split(' ').collect();
    assert_eq!(sigs.len(), 2, "{}", h.signature);
    for (sig, secret) in sigs.iter().zip([&new, &old]) {
        assert!(sig.starts_with("v1,"));
        let single = WebhookHeaders {
            signature: (*sig).to_owned(),
            ..h.clone()
        };
        assert_eq!(secret.verify(&single, BODY, now()), Ok(()));
    }
    assert_eq!(old.verify(&h, BODY, now()), Ok(()));
    assert_eq!(new.verify(&h, BODY, now()), Ok(()));
}

#[tokio::test]
async fn status_classification_against_a_receiver() {
    let (base, seen) = receiver().await;
    let d = dev();
    let secrets = [SigningSecret::generate()];
    let send = |path: &'static str| {
        let url = format!("{base}/{path}");
        let d = d.clone();
        let secrets = secrets.clone();
        async move { d.send(&url, "evt_3", now(), BODY, &secrets).await }
    };

    let gone = send("gone").await;
    assert_eq!((gone.outcome, gone.status), (Outcome::Gone, Some(410)));

    let missing = send("missing").await;
    assert_eq!(
        (missing.outcome, missing.status),
        (Outcome::Permanent, Some(404))
    );
    assert_eq!(missing.response_excerpt.as_deref(), Some("no such hook"));

    let busy = send("busy").await;
    assert_eq!((busy.outcome, busy.status), (Outcome::Retry, Some(503)));
    assert_eq!(busy.retry_after, Some(Duration::from_secs(7)));

    seen.take();
    let redirect = send("redirect").await;
    assert_eq!(
        (redirect.outcome, redirect.status),
        (Outcome::Permanent, Some(302))
    );
    // The redirect was not followed: /ok never saw a request.
    let after = seen.take();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].path, "redirect");
}

#[tokio::test]
async fn response_body_is_capped_to_an_excerpt() {
    let (base, _seen) = receiver().await;
    let attempt = dev()
        .send(
            &format!("{base}/big"),
            "evt_4",
            now(),
            BODY,
            &[SigningSecret::generate()],
        )
        .await;
    assert_eq!(attempt.outcome, Outcome::Success);
    let excerpt = attempt.response_excerpt.unwrap();
    // 1 KiB of two-byte characters: 512 of them, cut on a boundary.
    assert_eq!(excerpt, "é".repeat(512));
}

#[tokio::test]
async fn connections_are_reused() {
    let (base, seen) = receiver().await;
    let d = dev();
    let secrets = [SigningSecret::generate()];
    for _ in 0..3 {
        let a = d
            .send(&format!("{base}/ok"), "evt_5", now(), BODY, &secrets)
            .await;
        assert_eq!(a.outcome, Outcome::Success);
    }
    let peers: Vec<SocketAddr> = seen.take().iter().map(|c| c.peer).collect();
    assert_eq!(peers.len(), 3);
    assert!(peers.iter().all(|p| *p == peers[0]), "{peers:?}");
}

#[tokio::test]
async fn closed_port_is_retried() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let attempt = dev()
        .send(
            &format!("http://{addr}/ok"),
            "evt_6",
            now(),
            BODY,
            &[SigningSecret::generate()],
        )
        .await;
    assert_eq!(attempt.outcome, Outcome::Retry, "{attempt:?}");
    assert_eq!(attempt.status, None);
    let error = attempt.error.unwrap();
    assert!(error.contains("refused"), "{error}");
}

#[tokio::test]
async fn slow_receiver_times_out_and_is_retried() {
    let (base, seen) = receiver().await;
    let d = Deliverer::new(Policy::AllowLoopback, Duration::from_millis(300)).unwrap();
    let started = Instant::now();
    let attempt = d
        .send(
            &format!("{base}/slow"),
            "evt_7",
            now(),
            BODY,
            &[SigningSecret::generate()],
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(attempt.outcome, Outcome::Retry, "{attempt:?}");
    assert_eq!(attempt.status, None);
    assert_eq!(attempt.error.as_deref(), Some("timed out after 300ms"));
    assert_eq!(seen.len(), 1);
}

#[tokio::test]
async fn strict_policy_refuses_the_loopback_receiver_without_a_request() {
    let (base, seen) = receiver().await;
    let strict = Deliverer::new(Policy::Strict, DEFAULT_TIMEOUT).unwrap();
    let secrets = [SigningSecret::generate()];

    let plain = strict
        .send(&format!("{base}/ok"), "evt_8", now(), BODY, &secrets)
        .await;
    assert_eq!(plain.outcome, Outcome::Permanent);
    assert_eq!(plain.status, None);
    let error = plain.error.unwrap();
    assert!(error.starts_with("target refused: "), "{error}");

    let https = base.replace("http://", "https://");
    let tls = strict
        .send(&format!("{https}/ok"), "evt_8", now(), BODY, &secrets)
        .await;
    assert_eq!(tls.outcome, Outcome::Permanent);
    assert_eq!(
        tls.error.as_deref(),
        Some("target refused: 127.0.0.1 is a loopback address")
    );

    let port = base.rsplit(':').next().unwrap();
    let named = strict
        .send(
            &format!("https://localhost:{port}/ok"),
            "evt_8",
            now(),
            BODY,
            &secrets,
        )
        .await;
    assert_eq!(named.outcome, Outcome::Permanent);
    assert_eq!(
        named.error.as_deref(),
        Some("target refused: localhost is a loopback host name")
    );

    assert_eq!(seen.len(), 0);
}

#[tokio::test]
async fn resolver_refusal_is_permanent_and_explained() {
    let (base, seen) = receiver().await;
    let port = base.rsplit(':').next().unwrap();
    // Let the URL check pass so the refusal has to come from the resolver, at
    // connection time, as it would for a public name re-pointed at loopback.
    let d = Deliverer::build(Policy::AllowLoopback, Policy::Strict, DEFAULT_TIMEOUT).unwrap();
    let attempt = d
        .send(
            &format!("http://localhost:{port}/ok"),
            "evt_9",
            now(),
            BODY,
            &[SigningSecret::generate()],
        )
        .await;
    assert_eq!(attempt.outcome, Outcome::Permanent, "{attempt:?}");
    let error = attempt.error.unwrap();
    assert!(
        error.starts_with("target refused: localhost resolves to ")
            && error.ends_with(", a loopback address"),
        "{error}"
    );
    assert_eq!(seen.len(), 0);
}

#[tokio::test]
async fn localhost_is_resolved_and_allowed_in_dev_mode() {
    let (base, seen) = receiver().await;
    let port = base.rsplit(':').next().unwrap();
    let attempt = dev()
        .send(
            &format!("http://localhost:{port}/ok"),
            "evt_10",
            now(),
            BODY,
            &[SigningSecret::generate()],
        )
        .await;
    assert_eq!(attempt.outcome, Outcome::Success, "{attempt:?}");
    assert_eq!(seen.len(), 1);
}

#[tokio::test]
async fn unresolvable_host_is_retried() {
    let d = Deliverer::new(Policy::Strict, Duration::from_secs(5)).unwrap();
    let attempt = d
        .send(
            "https://no-such-host.invalid/hook",
            "evt_11",
            now(),
            BODY,
            &[SigningSecret::generate()],
        )
        .await;
    assert_eq!(attempt.outcome, Outcome::Retry, "{attempt:?}");
    let error = attempt.error.unwrap();
    assert!(
        error.starts_with("could not resolve no-such-host.invalid")
            || error.starts_with("timed out"),
        "{error}"
    );
}

#[tokio::test]
async fn no_secret_is_a_permanent_failure() {
    let (base, seen) = receiver().await;
    let attempt = dev()
        .send(&format!("{base}/ok"), "evt_12", now(), BODY, &[])
        .await;
    assert_eq!(attempt.outcome, Outcome::Permanent);
    assert!(attempt.error.is_some());
    assert_eq!(seen.len(), 0);
}

#[test]
fn status_table() {
    for (status, outcome) in [
        (100, Outcome::Permanent),
        (200, Outcome::Success),
        (201, Outcome::Success),
        (204, Outcome::Success),
        (299, Outcome::Success),
        (301, Outcome::Permanent),
        (302, Outcome::Permanent),
        (304, Outcome::Permanent),
        (400, Outcome::Permanent),
        (401, Outcome::Permanent),
        (404, Outcome::Permanent),
        (408, Outcome::Retry),
        (409, Outcome::Permanent),
        (410, Outcome::Gone),
        (413, Outcome::Permanent),
        (429, Outcome::Retry),
        (500, Outcome::Retry),
        (502, Outcome::Retry),
        (503, Outcome::Retry),
        (599, Outcome::Retry),
    ] {
        assert_eq!(classify_status(status), outcome, "{status}");
    }
}

#[test]
fn signature_header_joins_with_spaces() {
    let a = SigningSecret::generate();
    let b = SigningSecret::generate();
    let header = signature_header(&[a.clone(), b.clone()], "evt", 1, b"x");
    assert_eq!(
        header,
        format!("{} {}", a.sign("evt", 1, b"x"), b.sign("evt", 1, b"x"))
    );
    assert_eq!(signature_header(&[], "evt", 1, b"x"), "");
}
