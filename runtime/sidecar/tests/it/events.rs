//! Event forwarding: signed with the sink secret, in order, retried on 5xx, `502`
//! to the agent only once the platform finally fails; heartbeats and finalize go to
//! their own sink URLs.

use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use corral_protocol::events::{LogLevel, LogWritten, Progress};
use corral_protocol::signing::WebhookHeaders;
use corral_protocol::{CloudEvent, EventPayload, SigningSecret, VerifyError};
use serde_json::json;

use crate::{config, signing, Recorder, Seen, Sidecar, RUN_ID};

fn log_event(seq: u64) -> CloudEvent {
    CloudEvent::new(
        RUN_ID,
        seq,
        &EventPayload::Log(LogWritten {
            level: LogLevel::Info,
            message: format!("line {seq}"),
        }),
    )
}

fn headers_of(seen: &Seen) -> WebhookHeaders {
    WebhookHeaders::from_lookup(|name| seen.header(name)).unwrap()
}

pub fn verify(seen: &Seen) -> Result<(), VerifyError> {
    signing().verify(
        &headers_of(seen),
        &seen.body,
        chrono::Utc::now().timestamp(),
    )
}

#[tokio::test]
async fn events_are_signed_ordered_and_retried() {
    // The sink fails the 2nd request once with 503: the sidecar retries it.
    let sink = Recorder::start(|_, index| {
        if index == 1 {
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        } else {
            StatusCode::NO_CONTENT.into_response()
        }
    })
    .await;
    let sidecar = Sidecar::start().await;
    sidecar
        .configure(&config("http://127.0.0.1:9/v1", "openai", &sink.url))
        .await;
    let url = format!("{}/events", sidecar.url);
    let mut sent = Vec::new();
    for seq in 1..=6 {
        let event = if seq == 3 {
            CloudEvent::new(
                RUN_ID,
                seq,
                &EventPayload::Progress(Progress {
                    step: 1,
                    message: "half".into(),
                }),
            )
        } else {
            log_event(seq)
        };
        let body = serde_json::to_vec(&event).unwrap();
        let resp = sidecar
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        sent.push((event, body));
    }
    let seen = sink.seen();
    assert_eq!(seen.len(), 7, "six events plus one retry");
    // The failed attempt and its retry carry the same event.
    assert_eq!(seen[1].body, seen[2].body);
    let accepted: Vec<&Seen> = seen
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, s)| s)
        .collect();
    for (seen, (event, body)) in accepted.iter().zip(&sent) {
        assert_eq!(seen.path, format!("/api/runs/{RUN_ID}/events"));
        assert_eq!(
            seen.body.as_ref(),
            body.as_slice(),
            "body forwarded unchanged"
        );
        assert_eq!(seen.header("webhook-id"), Some(event.id.as_str()));
        assert_eq!(verify(seen), Ok(()));
    }
    let seqs: Vec<u64> = accepted
        .iter()
        .map(|s| {
            serde_json::from_slice::<CloudEvent>(&s.body)
                .unwrap()
                .sequence
        })
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);

    // A forged signature, a tampered body or another key fail the shared verifier.
    let genuine = accepted[0];
    let mut forged = genuine.clone();
    let other = SigningSecret::generate();
    let h = headers_of(genuine);
    let sig = other.sign(&h.id, h.timestamp.parse().unwrap(), &genuine.body);
    forged
        .headers
        .insert("webhook-signature", sig.parse().unwrap());
    assert_eq!(verify(&forged), Err(VerifyError::NoMatchingSignature));
    let mut tampered = genuine.clone();
    tampered.body = genuine.body.slice(..genuine.body.len() - 1);
    assert_eq!(verify(&tampered), Err(VerifyError::NoMatchingSignature));

    // A foreign source is refused before reaching the platform.
    let foreign = CloudEvent::new(
        "run_other",
        7,
        &EventPayload::Log(LogWritten {
            level: LogLevel::Info,
            message: "x".into(),
        }),
    );
    let resp = sidecar.http.post(&url).json(&foreign).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // Heartbeat and finalize go to their URLs, signed.
    let hb = json!({"run_id": RUN_ID, "step": 1});
    let resp = sidecar
        .http
        .post(format!("{}/events/heartbeat", sidecar.url))
        .json(&hb)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let fin = json!({"status": "success"});
    let resp = sidecar
        .http
        .post(format!("{}/events/finalize", sidecar.url))
        .json(&fin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let seen = sink.seen();
    assert_eq!(seen.len(), 9);
    assert_eq!(seen[7].path, format!("/api/runs/{RUN_ID}/events/heartbeat"));
    assert_eq!(seen[8].path, format!("/api/runs/{RUN_ID}/events/finalize"));
    assert_eq!(verify(&seen[7]), Ok(()));
    assert_eq!(verify(&seen[8]), Ok(()));
}

#[tokio::test]
async fn platform_failure_gives_502_and_refusal_is_not_retried() {
    let sink = Recorder::start(|seen, _| {
        if seen.path.ends_with("/finalize") {
            (StatusCode::UNPROCESSABLE_ENTITY, "bad result").into_response()
        } else {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    })
    .await;
    let sidecar = Sidecar::start_with(&[("CORRAL_EVENT_ATTEMPTS", "3")]).await;
    sidecar
        .configure(&config("http://127.0.0.1:9/v1", "openai", &sink.url))
        .await;
    let resp = sidecar
        .http
        .post(format!("{}/events", sidecar.url))
        .json(&log_event(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(sink.seen().len(), 3, "retried up to the attempt limit");
    let resp = sidecar
        .http
        .post(format!("{}/events/finalize", sidecar.url))
        .json(&json!({"status": "success"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(sink.seen().len(), 4, "a 4xx refusal is not retried");
}

#[tokio::test]
async fn events_before_configuration_are_refused() {
    let sidecar = Sidecar::start().await;
    let resp = sidecar
        .http
        .post(format!("{}/events", sidecar.url))
        .json(&log_event(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
}
