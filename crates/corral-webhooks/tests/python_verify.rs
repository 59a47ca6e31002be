//! Cross-checks the signatures `Deliverer` sends against the PyPI `standardwebhooks`
//! package, an implementation written by someone else from the same spec. The Python
//! comes from `eval "$(scripts/python-test-deps.sh)"` (`CORRAL_TEST_PYTHON`).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use corral_protocol::signing::{SigningSecret, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use corral_webhooks::envelope::{self, PayloadMode};
use corral_webhooks::{Deliverer, Outcome, Policy};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;

type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

async fn record(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> &'static str {
    seen.lock().unwrap().push((headers, body.to_vec()));
    "ok"
}

fn python() -> Option<String> {
    match std::env::var("CORRAL_TEST_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ if std::env::var_os("CI").is_some() => panic!(
            "CORRAL_TEST_PYTHON is not set; in CI this check is required: \
             run `eval \"$(scripts/python-test-deps.sh)\"` first"
        ),
        _ => {
            eprintln!(
                "SKIPPED python_verify: CORRAL_TEST_PYTHON is not set \
                 (run `eval \"$(scripts/python-test-deps.sh)\"` to enable this check)"
            );
            None
        }
    }
}

#[tokio::test]
async fn standardwebhooks_python_verifies_our_deliveries() {
    let Some(python) = python() else { return };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/webhook-verify.py");

    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/hook", post(record))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // A rotation in progress: both secrets sign, the receiver only knows the new one.
    let new = SigningSecret::generate();
    let old = SigningSecret::generate();
    let deliverer = Deliverer::new(Policy::AllowLoopback, Duration::from_secs(15)).unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let runs = [
        json!({"id": "run_1", "status": "success", "result": {"text": "done"}}),
        // Non-ASCII bytes must be signed exactly as sent.
        json!({"id": "run_2", "status": "failed", "error": "héllo ✓ — 失败"}),
        json!({"id": "run_3", "status": "timeout", "input": {"prompt": "x\n\"y\""}}),
    ];
    for (i, run) in runs.into_iter().enumerate() {
        let id = format!("evt_{i}");
        let body = envelope::build(
            &id,
            "run.success",
            "2025-01-01",
            now,
            run,
            PayloadMode::Full,
        );
        let attempt = deliverer
            .send(&url, &id, now, &body, &[new.clone(), old.clone()])
            .await;
        assert_eq!(attempt.outcome, Outcome::Success, "{attempt:?}");
    }

    let mut deliveries: Vec<Value> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(headers, body)| {
            let header = |name: &str| headers[name].to_str().unwrap().to_owned();
            json!({
                "headers": {
                    HEADER_ID: header(HEADER_ID),
                    HEADER_TIMESTAMP: header(HEADER_TIMESTAMP),
                    HEADER_SIGNATURE: header(HEADER_SIGNATURE),
                },
                "body": String::from_utf8(body.clone()).unwrap(),
            })
        })
        .collect();
    assert_eq!(deliveries.len(), 3);
    let mut tampered = deliveries[0].clone();
    let body = tampered["body"].as_str().unwrap().replace("done", "dome");
    tampered["body"] = Value::String(body);
    deliveries.push(tampered);

    let request = json!({"secret": new.to_whsec(), "deliveries": deliveries});
    let mut child = tokio::process::Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(request.to_string().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer, json!({"results": [true, true, true, false]}));
}
