//! The delivery worker's database work, batched: what one claim needs before its
//! attempts go out (each endpoint read and its secrets opened once, the runs read
//! together, every missing body frozen at once), and the recorder that writes the
//! attempts' records a burst at a time. On SQLite, where every write takes the one
//! write lock, a batch is one transaction; on PostgreSQL one statement (see
//! [`corral_store::webhook_batches`]): a handful of round trips per burst instead of
//! seven per delivery.

use std::collections::HashMap;
use std::sync::Arc;

use corral_core::time::now_ms;
use corral_core::RunId;
use corral_protocol::SigningSecret;
use corral_store::runs::Run;
use corral_store::webhook_batches as batches;
use corral_store::webhooks as store;
use corral_webhooks::envelope::PayloadMode;
use tokio::sync::{mpsc, oneshot};

use crate::Engine;

/// Records written per transaction at most.
const MAX_RECORDS_PER_TX: usize = 256;

/// A claimed delivery, ready to attempt.
pub(super) struct Job {
    pub claimed: store::Claimed,
    pub ready: Ready,
}

pub(super) enum Ready {
    /// The endpoint is gone or disabled: the delivery fails without a request.
    Disabled,
    Send {
        hook: Arc<store::Webhook>,
        secrets: Arc<Vec<SigningSecret>>,
        /// The frozen body: every attempt of the event sends these bytes.
        body: String,
    },
}

/// Reads what `claimed` needs: each endpoint once (with its secrets opened), then the
/// bodies of first attempts, built and frozen together. A delivery whose endpoint's
/// secrets cannot be opened is left out (its claim lapses and it is tried again, as
/// an attempt that could not be made); a database error leaves them all out.
pub(super) async fn prepare(
    state: &Engine,
    claimed: Vec<store::Claimed>,
) -> anyhow::Result<Vec<Job>> {
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = state.db.conn().await?;
    type Hook = Option<(Arc<store::Webhook>, Arc<Vec<SigningSecret>>)>;
    let mut hooks: HashMap<String, Result<Hook, ()>> = HashMap::new();
    for c in &claimed {
        if hooks.contains_key(&c.webhook_id) {
            continue;
        }
        let hook = store::by_id(&mut conn, &c.webhook_id)
            .await?
            .filter(|h| h.enabled);
        let entry = match hook {
            None => Ok(None),
            Some(h) => match super::signing_secrets(state, &h) {
                Ok(secrets) => Ok(Some((Arc::new(h), Arc::new(secrets)))),
                Err(e) => {
                    tracing::warn!(webhook = %h.id, error = %e, "webhook attempts could not be made: its secret does not open");
                    Err(())
                }
            },
        };
        hooks.insert(c.webhook_id.clone(), entry);
    }
    let first_attempts: Vec<(&store::Claimed, PayloadMode)> = claimed
        .iter()
        .filter_map(|c| match (hooks.get(&c.webhook_id), &c.payload) {
            (Some(Ok(Some((hook, _)))), None) => Some((
                c,
                PayloadMode::parse(&hook.payload_mode).unwrap_or(PayloadMode::Full),
            )),
            _ => None,
        })
        .collect();
    // The runs of the first attempts, read together; then their bodies, frozen together.
    let run_ids: Vec<&RunId> = first_attempts
        .iter()
        .filter_map(|(c, _)| c.run_id.as_ref())
        .collect();
    let runs: HashMap<RunId, Run> = corral_store::runs::get_internal_many(&mut conn, &run_ids)
        .await?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    let bodies = first_attempts
        .iter()
        .map(|(c, mode)| {
            let run = c.run_id.as_ref().and_then(|id| runs.get(id));
            Ok((c.id, super::build_body(state, c, run, *mode)?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let postgres = state.db.backend() == corral_store::Backend::Postgres;
    let mut frozen = batches::freeze_payloads(&mut conn, postgres, &bodies).await?;
    let mut jobs = Vec::with_capacity(claimed.len());
    for mut c in claimed {
        let ready = match hooks.get(&c.webhook_id) {
            Some(Ok(None)) => Ready::Disabled,
            Some(Ok(Some((hook, secrets)))) => {
                let body = match c.payload.take() {
                    Some(b) => b,
                    None => match frozen.remove(&c.id) {
                        Some(b) => b,
                        None => {
                            tracing::warn!(
                                delivery = c.id,
                                "webhook delivery vanished before its body was stored"
                            );
                            continue;
                        }
                    },
                };
                Ready::Send {
                    hook: hook.clone(),
                    secrets: secrets.clone(),
                    body,
                }
            }
            Some(Err(())) | None => continue,
        };
        jobs.push(Job { claimed: c, ready });
    }
    Ok(jobs)
}

/// One attempt's record, owned, on its way to the recorder.
struct Record {
    delivery_id: i64,
    attempt: i64,
    status_code: Option<i64>,
    latency_ms: i64,
    error: Option<String>,
    response: Option<String>,
    now: i64,
    outcome: &'static str,
    next_attempt_at: i64,
    claimed_until: i64,
    /// Told once the record is committed (or could not be).
    done: oneshot::Sender<()>,
}

impl Record {
    fn as_store(&self) -> store::AttemptRecord<'_> {
        store::AttemptRecord {
            delivery_id: self.delivery_id,
            attempt: self.attempt,
            status_code: self.status_code,
            latency_ms: self.latency_ms,
            error: self.error.as_deref(),
            response: self.response.as_deref(),
            now: self.now,
            outcome: self.outcome,
            next_attempt_at: self.next_attempt_at,
            claimed_until: self.claimed_until,
        }
    }
}

/// Writes attempt records: whatever has arrived while the previous transaction ran
/// goes into the next one.
#[derive(Clone)]
pub(super) struct Recorder {
    tx: mpsc::UnboundedSender<Record>,
}

impl Recorder {
    pub fn start(state: Engine) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(state, rx));
        Recorder { tx }
    }

    /// Records one attempt and waits until it is committed: the caller keeps its
    /// delivery slot until then. A record that cannot be written is logged; the claim
    /// then lapses and the delivery is attempted again.
    #[expect(clippy::too_many_arguments, reason = "one row's columns")]
    pub async fn record(
        &self,
        c: &store::Claimed,
        number: i64,
        status: Option<i64>,
        latency_ms: i64,
        error: Option<&str>,
        response: Option<&str>,
        outcome: &'static str,
        next_attempt_at: i64,
    ) {
        let (done, committed) = oneshot::channel();
        let record = Record {
            delivery_id: c.id,
            attempt: number,
            status_code: status,
            latency_ms,
            error: error.map(str::to_owned),
            response: response.map(str::to_owned),
            now: now_ms(),
            outcome,
            next_attempt_at,
            claimed_until: c.claimed_until,
            done,
        };
        if self.tx.send(record).is_err() {
            tracing::warn!(
                delivery = c.id,
                "webhook attempt not recorded: the worker is stopping"
            );
            return;
        }
        let _ = committed.await;
    }
}

/// Ends when every sender is gone: the worker loop and the attempts still in flight
/// (so those get their records written after a stop too).
async fn write_loop(state: Engine, mut rx: mpsc::UnboundedReceiver<Record>) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_RECORDS_PER_TX {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        write(&state, &batch).await;
        for r in batch.drain(..) {
            let _ = r.done.send(());
        }
    }
}

async fn write(state: &Engine, batch: &[Record]) {
    let records: Vec<store::AttemptRecord<'_>> = batch.iter().map(Record::as_store).collect();
    let postgres = state.db.backend() == corral_store::Backend::Postgres;
    let written = async {
        let mut conn = state.db.conn().await?;
        batches::record_attempts(&mut conn, postgres, &records).await
    }
    .await;
    let kept: Vec<Option<bool>> = match written {
        Ok(kept) => kept.into_iter().map(Some).collect(),
        Err(e) if records.len() > 1 => {
            // One bad record must not cost the others theirs: one transaction each.
            tracing::debug!(error = %e, "batched webhook records failed; writing them one by one");
            let mut kept = Vec::with_capacity(records.len());
            for r in &records {
                let one = async {
                    let mut conn = state.db.conn().await?;
                    store::record_attempt(&mut conn, r).await
                }
                .await;
                kept.push(match one {
                    Ok(k) => Some(k),
                    Err(e) => {
                        tracing::warn!(delivery = r.delivery_id, error = %e, "webhook attempt could not be recorded");
                        None
                    }
                });
            }
            kept
        }
        Err(e) => {
            tracing::warn!(delivery = records[0].delivery_id, error = %e, "webhook attempt could not be recorded");
            return;
        }
    };
    report_lapsed(&records, kept);
}

fn report_lapsed(records: &[store::AttemptRecord<'_>], kept: Vec<Option<bool>>) {
    for (r, kept) in records.iter().zip(kept) {
        if kept == Some(false) {
            tracing::warn!(
                delivery = r.delivery_id,
                "webhook claim lapsed before the attempt was recorded"
            );
        }
    }
}
