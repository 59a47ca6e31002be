//! Forwarding of the agent's events, heartbeats and result to the platform sink:
//! signed with the run's sink secret, retried with backoff on network errors and
//! 5xx, and delivered strictly in the order the agent posted them through a single
//! queue.

use std::time::Duration;

use bytes::Bytes;
use corral_protocol::SigningSecret;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("the platform refused the message with {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("the platform did not accept the message after {attempts} attempts: {last}")]
    Unavailable { attempts: u32, last: String },
    #[error("the forwarding queue has stopped")]
    Stopped,
}

struct Job {
    url: String,
    id: String,
    body: Bytes,
    reply: oneshot::Sender<Result<(), ForwardError>>,
}

/// Handle to the run's forwarding queue.
pub struct Forwarder {
    tx: mpsc::UnboundedSender<Job>,
}

impl Forwarder {
    pub fn start(http: reqwest::Client, signing: SigningSecret, attempts: u32) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(async move {
            // One job at a time: the next message leaves only once the previous one
            // was accepted or given up on, so the platform sees the agent's order.
            while let Some(job) = rx.recv().await {
                let result = deliver(&http, &signing, attempts, &job).await;
                let _ = job.reply.send(result);
            }
        });
        Self { tx }
    }

    /// Queues one message and waits for its fate.
    pub async fn send(&self, url: String, id: String, body: Bytes) -> Result<(), ForwardError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job {
                url,
                id,
                body,
                reply,
            })
            .map_err(|_| ForwardError::Stopped)?;
        answer.await.map_err(|_| ForwardError::Stopped)?
    }
}

async fn deliver(
    http: &reqwest::Client,
    signing: &SigningSecret,
    attempts: u32,
    job: &Job,
) -> Result<(), ForwardError> {
    let mut backoff = Duration::from_millis(100);
    let mut last = String::new();
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(3));
        }
        // Signed afresh per attempt so a late retry is not rejected as stale.
        let headers = signing.sign_headers(&job.id, chrono::Utc::now().timestamp(), &job.body);
        let mut req = http
            .post(&job.url)
            .timeout(Duration::from_secs(30))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(job.body.clone());
        for (name, value) in headers.pairs() {
            req = req.header(name, value);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) if resp.status().is_server_error() => {
                last = format!("status {}", resp.status());
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                return Err(ForwardError::Refused {
                    status,
                    body: body.chars().take(500).collect(),
                });
            }
            Err(e) => last = e.to_string(),
        }
        tracing::debug!(id = %job.id, attempt, error = %last, "event delivery failed, retrying");
    }
    Err(ForwardError::Unavailable { attempts, last })
}
