//! The agent's side of the sidecar contract (see `corral_protocol::sidecar_api`):
//! waiting for the task, numbering and delivering events, heartbeats and the final
//! result.

use std::time::Duration;

use corral_protocol::events::EventPayload;
use corral_protocol::sidecar_api::{EVENTS_PATH, FINALIZE_PATH, HEARTBEAT_PATH, TASK_PATH};
use corral_protocol::{AgentTask, CloudEvent, Heartbeat, RunResult};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

#[derive(Clone)]
pub struct SidecarClient {
    http: reqwest::Client,
    base: String,
}

impl SidecarClient {
    pub fn new(http: reqwest::Client, base: &str) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Long-polls `GET /task` until the sidecar is configured. Connection errors are
    /// expected (a warm-pool agent may start before its sidecar listens) and retried
    /// with a capped backoff; the caller bounds the wait by dropping the future.
    pub async fn wait_for_task(&self, wait_secs: u64) -> anyhow::Result<AgentTask> {
        let url = format!("{}{TASK_PATH}?wait={wait_secs}", self.base);
        // The sidecar is on the same host bridge: a connect that takes longer than
        // this hit a peer whose interface was not up yet, and the kernel would only
        // retry its SYN after a second. Give up early and try again instead.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(150))
            .build()
            .unwrap_or_else(|_| self.http.clone());
        // Short first retries: on a cold start the agent and its sidecar boot together.
        let mut backoff = Duration::from_millis(20);
        loop {
            let resp = http
                .get(&url)
                .timeout(Duration::from_secs(wait_secs + 10))
                .send()
                .await;
            match resp {
                Ok(r) if r.status() == reqwest::StatusCode::OK => {
                    return Ok(r.json::<AgentTask>().await?);
                }
                Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT => {
                    backoff = Duration::from_millis(20);
                    continue;
                }
                Ok(r) => {
                    tracing::warn!(status = %r.status(), "unexpected answer to GET /task");
                }
                Err(e) => tracing::debug!(error = %e, "sidecar not reachable yet"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }

    /// POSTs JSON, retrying transport errors and 5xx a few times. The bodies are
    /// idempotent at the platform (events by sequence, heartbeat and finalize by run).
    async fn post<T: Serialize>(&self, path: &str, body: &T, attempts: u32) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base);
        let mut last_err = anyhow::anyhow!("no attempt made");
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt - 1))).await;
            }
            match self
                .http
                .post(&url)
                .timeout(Duration::from_secs(30))
                .json(body)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status().is_client_error() => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    anyhow::bail!("{path} refused with {status}: {text}");
                }
                Ok(r) => last_err = anyhow::anyhow!("{path} answered {}", r.status()),
                Err(e) => last_err = e.into(),
            }
        }
        Err(last_err)
    }

    pub async fn heartbeat(&self, hb: &Heartbeat) -> anyhow::Result<()> {
        self.post(HEARTBEAT_PATH, hb, 1).await
    }

    pub async fn finalize(&self, result: &RunResult) -> anyhow::Result<()> {
        self.post(FINALIZE_PATH, result, 6).await
    }
}

/// Numbers and delivers the run's events in order.
///
/// Delivery runs on its own task: a caller's future may be dropped (SIGTERM, wall
/// clock) while a POST is in flight, and the sequence must still reflect what the
/// sidecar may have received, or the next event would reuse a number.
pub struct EventSink {
    tx: mpsc::UnboundedSender<Command>,
}

enum Command {
    /// An event, and who waits for its delivery (none when queued).
    Emit(EventPayload, Option<oneshot::Sender<()>>),
    /// Answers with the last delivered sequence once everything queued before it is done.
    Flush(oneshot::Sender<u64>),
}

impl EventSink {
    pub fn new(client: SidecarClient, run_id: String) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
        tokio::spawn(async move {
            let mut last = 0u64;
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    Command::Emit(payload, ack) => {
                        let event = CloudEvent::new(&run_id, last + 1, &payload);
                        // The sequence only advances on success so the platform never
                        // waits for a gap that will not be filled; a lost log line is
                        // not worth failing the run for.
                        match client.post(EVENTS_PATH, &event, 4).await {
                            Ok(()) => last += 1,
                            Err(e) => tracing::error!(
                                error = %e,
                                kind = event.event_type.as_str(),
                                "event not delivered"
                            ),
                        }
                        if let Some(ack) = ack {
                            let _ = ack.send(());
                        }
                    }
                    Command::Flush(reply) => {
                        let _ = reply.send(last);
                    }
                }
            }
        });
        Self { tx }
    }

    /// Queues one event behind those already queued and returns at once: for
    /// progress, metrics and logs, which must not hold the tool loop for a round trip
    /// to the platform (a run's every step emitted two or three). Order is kept (one
    /// delivery task), and the finalizer's [`Self::last_sequence`] still waits for them.
    pub fn queue(&self, payload: EventPayload) {
        let _ = self.tx.send(Command::Emit(payload, None));
    }

    /// Sends one event and waits until it was delivered (or given up on): for what the
    /// run's state depends on (its output, memory).
    pub async fn emit(&self, payload: EventPayload) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Command::Emit(payload, Some(ack))).is_ok() {
            let _ = done.await;
        }
    }

    /// Waits for every queued event, then returns the last delivered sequence.
    pub async fn last_sequence(&self) -> u64 {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Command::Flush(reply)).is_err() {
            return 0;
        }
        answer.await.unwrap_or(0)
    }
}
