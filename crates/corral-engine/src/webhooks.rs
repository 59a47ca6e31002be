//! Webhook delivery (SPEC §11). The outbox rows are written by the run triggers in
//! the same transaction as the state change; this worker claims due rows (on
//! PostgreSQL with `FOR UPDATE SKIP LOCKED`, so replicas never take the same row),
//! freezes the body at the first attempt, signs it with the endpoint's secret(s),
//! sends it through the SSRF-guarded client, records the attempt and schedules the
//! next one. A claim is a lease: a server killed mid-attempt leaves a row that
//! another worker (or the same server after a restart) takes again when the lease
//! lapses, so a crash never loses a delivery; a 2xx is recorded before the claim is
//! released, so an answered event is never sent again.

use std::sync::Arc;
use std::time::Duration;

use corral_core::time::now_ms;
use corral_protocol::SigningSecret;
use corral_store::webhooks as store;
use corral_webhooks::envelope::{self, PayloadMode};
use corral_webhooks::{Deliverer, Outcome};
use rand::Rng as _;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use corral_core::{Problem, ProblemResult};

use crate::Engine;

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
    let slots = Arc::new(Semaphore::new(state.config.webhook_concurrency));
    let done = Arc::new(Notify::new());
    let mut signals = state.runs.bus.subscribe();
    let postgres = state.db.backend() == corral_store::Backend::Postgres;
    // A claim outlives the longest attempt by a margin.
    let lease_ms = (state.config.webhook_timeout_seconds as i64 + 5) * 1000;
    loop {
        let free = slots.available_permits();
        let mut claimed = Vec::new();
        if free > 0 {
            let now = now_ms();
            let got = async {
                let mut conn = state.db.conn().await?;
                store::claim(&mut conn, postgres, now, now + lease_ms, free as i64).await
            }
            .await;
            match got {
                Ok(c) => claimed = c,
                Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries failed"),
            }
        }
        let full = !claimed.is_empty() && claimed.len() == free;
        for c in claimed {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (state, deliverer, schedule, done) = (
                state.clone(),
                deliverer.clone(),
                schedule.clone(),
                done.clone(),
            );
            tokio::spawn(async move {
                attempt(&state, &deliverer, &schedule, c).await;
                drop(permit);
                done.notify_one();
            });
        }
        if full {
            // More may be due: look again as soon as a slot frees.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = done.notified() => {}
            }
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = signals.recv() => {}
            _ = done.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// The body of a run event: the envelope around the run as the REST API shows it.
async fn build_body(
    state: &Engine,
    c: &store::Claimed,
    mode: PayloadMode,
) -> anyhow::Result<String> {
    let mut conn = state.db.conn().await?;
    let run = match &c.run_id {
        Some(id) => corral_store::runs::get_internal(&mut conn, id).await?,
        None => None,
    };
    let object = match run {
        Some(r) => (state.run_object)(&r),
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

async fn attempt(state: &Engine, deliverer: &Deliverer, schedule: &[Duration], c: store::Claimed) {
    if let Err(e) = try_attempt(state, deliverer, schedule, &c).await {
        // The claim lapses and the delivery is tried again later.
        tracing::warn!(delivery = c.id, error = %e, "webhook attempt could not be made");
    }
}

async fn try_attempt(
    state: &Engine,
    deliverer: &Deliverer,
    schedule: &[Duration],
    c: &store::Claimed,
) -> anyhow::Result<()> {
    let hook = {
        let mut conn = state.db.conn().await?;
        store::by_id(&mut conn, &c.webhook_id).await?
    };
    let number = c.attempts + 1;
    let Some(hook) = hook.filter(|h| h.enabled) else {
        record(
            state,
            c,
            number,
            None,
            0,
            Some("the endpoint is disabled"),
            None,
            "failed",
            0,
        )
        .await?;
        return Ok(());
    };
    let body = match &c.payload {
        Some(b) => b.clone(),
        None => {
            let mode = PayloadMode::parse(&hook.payload_mode).unwrap_or(PayloadMode::Full);
            let built = build_body(state, c, mode).await?;
            let mut conn = state.db.conn().await?;
            store::freeze_payload(&mut conn, c.id, &built).await?
        }
    };
    let secrets = signing_secrets(state, &hook)?;
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
    match sent.outcome {
        Outcome::Success => {
            record(
                state,
                c,
                number,
                status,
                latency,
                None,
                sent.response_excerpt.as_deref(),
                "success",
                0,
            )
            .await?;
        }
        Outcome::Gone => {
            record(
                state,
                c,
                number,
                status,
                latency,
                Some("the receiver answered 410 Gone; the endpoint is disabled"),
                sent.response_excerpt.as_deref(),
                "failed",
                0,
            )
            .await?;
            let mut conn = state.db.conn().await?;
            store::disable(
                &mut conn,
                &hook.id,
                "the receiver answered 410 Gone",
                now_ms(),
            )
            .await?;
            tracing::warn!(webhook = %hook.id, "receiver answered 410: endpoint disabled");
        }
        Outcome::Permanent => {
            record(
                state,
                c,
                number,
                status,
                latency,
                sent.error
                    .as_deref()
                    .or(Some("the receiver refused the event")),
                sent.response_excerpt.as_deref(),
                "failed",
                0,
            )
            .await?;
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
            record(
                state,
                c,
                number,
                status,
                latency,
                Some(&err),
                sent.response_excerpt.as_deref(),
                outcome,
                at,
            )
            .await?;
        }
    }
    Ok(())
}

#[expect(clippy::too_many_arguments, reason = "one row's columns")]
async fn record(
    state: &Engine,
    c: &store::Claimed,
    number: i64,
    status: Option<i64>,
    latency_ms: i64,
    error: Option<&str>,
    response: Option<&str>,
    outcome: &str,
    next_attempt_at: i64,
) -> anyhow::Result<()> {
    let mut conn = state.db.conn().await?;
    let kept = store::record_attempt(
        &mut conn,
        &store::AttemptRecord {
            delivery_id: c.id,
            attempt: number,
            status_code: status,
            latency_ms,
            error,
            response,
            now: now_ms(),
            outcome,
            next_attempt_at,
            claimed_until: c.claimed_until,
        },
    )
    .await?;
    if !kept {
        tracing::warn!(
            delivery = c.id,
            "webhook claim lapsed before the attempt was recorded"
        );
    }
    Ok(())
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
