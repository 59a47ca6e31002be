//! Webhook delivery (SPEC §11). The outbox rows are written by the run triggers in
//! the same transaction as the state change; this worker claims due rows (on
//! PostgreSQL with `FOR UPDATE SKIP LOCKED`, so replicas never take the same row),
//! freezes the body at the first attempt, signs it with the endpoint's secret(s),
//! sends it through the SSRF-guarded client, records the attempt and schedules the
//! next one. A claim is a lease: a server killed mid-attempt leaves a row that
//! another worker (or the same server after a restart) takes again when the lease
//! lapses, so a crash never loses a delivery; a 2xx is recorded before the claim is
//! released, so an answered event is never sent again.
//!
//! The database work is batched ([`batch`]): a claim reads each endpoint once and
//! freezes every body it needs at once, and the attempts' records are written by one
//! recorder task, a burst of them at a time; an attempt keeps its slot until its record
//! is committed. The worker claims ahead (up to one prepared delivery per slot), so a
//! freed slot starts the next attempt without waiting for the database.

mod batch;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use corral_core::time::now_ms;
use corral_protocol::SigningSecret;
use corral_store::webhooks as store;
use corral_webhooks::envelope::{self, PayloadMode};
use corral_webhooks::{Deliverer, Outcome};
use rand::Rng as _;
use tokio::sync::{Notify, Semaphore, TryAcquireError};
use tokio_util::sync::CancellationToken;

use corral_core::{Problem, ProblemResult};

use crate::Engine;
use batch::{Job, Recorder};

/// How often the worker looks for due deliveries without being woken.
const POLL: Duration = Duration::from_millis(500);

/// Associated data binding a sealed secret to its endpoint.
pub fn secret_aad(webhook_id: &str) -> String {
    format!("webhook:{webhook_id}:secret")
}

fn deliverer(state: &Engine) -> anyhow::Result<Deliverer> {
    Ok(Deliverer::new(
        state.connect.policy(),
        Duration::from_secs(state.config.webhook_timeout_seconds),
    )?)
}

/// The secrets that sign now: the primary, and the previous one during its overlap.
fn signing_secrets(state: &Engine, w: &store::Webhook) -> anyhow::Result<Vec<SigningSecret>> {
    let aad = secret_aad(&w.id);
    let mut out = vec![SigningSecret::parse(
        &state.keyring.open_str(&w.secret, &aad)?,
    )?];
    if let (Some(prev), Some(until)) = (&w.previous_secret, w.previous_secret_expires_at) {
        if until > now_ms() {
            out.push(SigningSecret::parse(&state.keyring.open_str(prev, &aad)?)?);
        }
    }
    Ok(out)
}

/// The delivery loop of one server, until `stop`.
pub async fn run(state: Engine, stop: CancellationToken) {
    let deliverer = match deliverer(&state) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "webhook delivery disabled: cannot build the HTTP client");
            return;
        }
    };
    let schedule = state
        .config
        .webhook_schedule()
        .unwrap_or_else(|_| corral_webhooks::schedule::default_schedule());
    let schedule = Arc::new(schedule);
    let concurrency = state.config.webhook_concurrency;
    let slots = Arc::new(Semaphore::new(concurrency));
    let done = Arc::new(Notify::new());
    let recorder = Recorder::start(state.clone());
    let mut signals = state.runs.bus.subscribe();
    let written = state.runs.bus.webhooks.clone();
    let postgres = state.db.backend() == corral_store::Backend::Postgres;
    let timeout_ms = state.config.webhook_timeout_seconds as i64 * 1000;
    // A claim covers the wait for a slot (at most one attempt in flight ahead of it)
    // and its own attempt, with a margin.
    let lease_ms = 2 * timeout_ms + 5000;
    // Claimed and prepared, waiting for a slot: a freed slot takes the next one at
    // once instead of waiting for a claim's round trips.
    let mut ready: VecDeque<Job> = VecDeque::new();
    loop {
        // 1. Every free slot takes a ready job.
        while !ready.is_empty() {
            let permit = match slots.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(TryAcquireError::NoPermits) => break,
                Err(TryAcquireError::Closed) => return,
            };
            let job = ready.pop_front().expect("not empty");
            if job.claimed.claimed_until < now_ms() + timeout_ms + 1000 {
                // Its claim would lapse during the attempt: another worker may take
                // it then, so this one leaves it (it is claimed again later).
                tracing::debug!(
                    delivery = job.claimed.id,
                    "webhook claim too old to attempt; left to lapse"
                );
                continue;
            }
            let (state, deliverer, schedule, done, recorder) = (
                state.clone(),
                deliverer.clone(),
                schedule.clone(),
                done.clone(),
                recorder.clone(),
            );
            tokio::spawn(async move {
                attempt(&state, &deliverer, &schedule, &recorder, job).await;
                drop(permit);
                done.notify_one();
            });
        }
        // 2. Claim ahead, up to a slot's worth of ready jobs per slot, in batches of at
        //    least half the slots (fewer, larger claims).
        let in_flight = concurrency - slots.available_permits();
        let want = (2 * concurrency).saturating_sub(in_flight + ready.len());
        let mut full = false;
        if want > 0 && (want >= (concurrency / 2).max(1) || ready.is_empty()) {
            let now = now_ms();
            let got = async {
                let mut conn = state.db.conn().await?;
                store::claim(&mut conn, postgres, now, now + lease_ms, want as i64).await
            }
            .await;
            let claimed = match got {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming webhook deliveries failed");
                    Vec::new()
                }
            };
            full = !claimed.is_empty() && claimed.len() == want;
            match batch::prepare(&state, claimed).await {
                Ok(jobs) => ready.extend(jobs),
                // The claims lapse and the deliveries are tried again later.
                Err(e) => tracing::warn!(error = %e, "preparing webhook deliveries failed"),
            }
            if !ready.is_empty() && slots.available_permits() > 0 {
                continue;
            }
        }
        if full || !ready.is_empty() {
            // More is due or waiting: go on as soon as a slot frees.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = done.notified() => {}
            }
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = signals.recv() => {}
            _ = written.notified() => {}
            _ = done.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// The body of a run event: the envelope around the run as the REST API shows it.
fn build_body(
    state: &Engine,
    c: &store::Claimed,
    run: Option<&corral_store::runs::Run>,
    mode: PayloadMode,
) -> anyhow::Result<String> {
    let object = match run {
        Some(r) => (state.run_object)(r),
        None => serde_json::json!({"id": c.run_id, "deleted": true}),
    };
    let body = envelope::build(
        &c.event_id,
        &c.event_type,
        corral_core::CURRENT_API_VERSION,
        c.event_created_at / 1000,
        object,
        mode,
    );
    Ok(String::from_utf8(body)?)
}

async fn attempt(
    state: &Engine,
    deliverer: &Deliverer,
    schedule: &[Duration],
    recorder: &Recorder,
    job: Job,
) {
    let c = &job.claimed;
    let number = c.attempts + 1;
    let (hook, secrets, body) = match job.ready {
        batch::Ready::Disabled => {
            recorder
                .record(
                    c,
                    number,
                    None,
                    0,
                    Some("the endpoint is disabled"),
                    None,
                    "failed",
                    0,
                )
                .await;
            return;
        }
        batch::Ready::Send {
            hook,
            secrets,
            body,
        } => (hook, secrets, body),
    };
    let sent = deliverer
        .send(
            &hook.url,
            &c.event_id,
            now_ms() / 1000,
            body.as_bytes(),
            &secrets,
        )
        .await;
    let latency = sent.latency.as_millis() as i64;
    let status = sent.status.map(i64::from);
    state.metrics.webhook_attempt(match sent.outcome {
        Outcome::Success => "success",
        Outcome::Gone => "gone",
        Outcome::Retry => "retry",
        Outcome::Permanent => "permanent",
    });
    let excerpt = sent.response_excerpt.as_deref();
    match sent.outcome {
        Outcome::Success => {
            recorder
                .record(c, number, status, latency, None, excerpt, "success", 0)
                .await;
        }
        Outcome::Gone => {
            recorder
                .record(
                    c,
                    number,
                    status,
                    latency,
                    Some("the receiver answered 410 Gone; the endpoint is disabled"),
                    excerpt,
                    "failed",
                    0,
                )
                .await;
            let disabled = async {
                let mut conn = state.db.conn().await?;
                store::disable(
                    &mut conn,
                    &hook.id,
                    "the receiver answered 410 Gone",
                    now_ms(),
                )
                .await
            }
            .await;
            match disabled {
                Ok(()) => {
                    tracing::warn!(webhook = %hook.id, "receiver answered 410: endpoint disabled")
                }
                Err(e) => {
                    tracing::warn!(webhook = %hook.id, error = %e, "could not disable the endpoint after a 410")
                }
            }
        }
        Outcome::Permanent => {
            recorder
                .record(
                    c,
                    number,
                    status,
                    latency,
                    sent.error
                        .as_deref()
                        .or(Some("the receiver refused the event")),
                    excerpt,
                    "failed",
                    0,
                )
                .await;
        }
        Outcome::Retry => {
            let jitter: f64 = rand::thread_rng().gen();
            let next = corral_webhooks::schedule::next_delay(
                schedule,
                number as u32,
                sent.retry_after,
                jitter,
            );
            let (outcome, at) = match next {
                Some(d) => ("pending", now_ms() + d.as_millis() as i64),
                None => ("failed", 0),
            };
            let err = sent
                .error
                .clone()
                .unwrap_or_else(|| format!("the receiver answered {}", sent.status.unwrap_or(0)));
            recorder
                .record(c, number, status, latency, Some(&err), excerpt, outcome, at)
                .await;
        }
    }
}

/// One signed `webhook.test` event, sent now (one attempt, recorded, never retried).
/// What a test delivery did.
#[derive(Debug, Clone)]
pub struct TestResult {
    /// `whd_…`
    pub delivery_id: String,
    /// True when the receiver answered 2xx.
    pub success: bool,
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

pub async fn send_test(state: &Engine, w: &store::Webhook) -> ProblemResult<TestResult> {
    let deliverer = deliverer(state).map_err(Problem::internal)?;
    let event_id = format!("evt_{}", uuid::Uuid::now_v7().simple());
    let now = now_ms();
    let body = String::from_utf8(envelope::build(
        &event_id,
        "webhook.test",
        corral_core::CURRENT_API_VERSION,
        now / 1000,
        serde_json::json!({"id": w.id, "object": "webhook", "test": true}),
        PayloadMode::Full,
    ))
    .map_err(Problem::internal)?;
    let secrets = signing_secrets(state, w).map_err(Problem::internal)?;
    let sent = deliverer
        .send(&w.url, &event_id, now / 1000, body.as_bytes(), &secrets)
        .await;
    let success = sent.outcome == Outcome::Success;
    let latency_ms = sent.latency.as_millis() as i64;
    let mut conn = state.db.conn().await?;
    let id = store::insert_test_delivery(
        &mut conn,
        w,
        &event_id,
        &body,
        &store::AttemptRecord {
            delivery_id: 0,
            attempt: 1,
            status_code: sent.status.map(i64::from),
            latency_ms,
            error: sent.error.as_deref(),
            response: sent.response_excerpt.as_deref(),
            now: now_ms(),
            outcome: if success { "success" } else { "failed" },
            next_attempt_at: now,
            claimed_until: 0,
        },
    )
    .await?;
    Ok(TestResult {
        delivery_id: format!("whd_{id}"),
        success,
        status_code: sent.status,
        latency_ms,
        error: sent.error,
    })
}
