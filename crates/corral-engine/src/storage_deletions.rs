//! The worker of the storage-deletion outbox (`corral_store::storage_deletions`):
//! every blob Corral stops referencing (a deleted or expired document, an expired
//! upload, the documents of deleted runs, applications and organizations, an agent
//! output whose record could not be written) is a job written with the row's
//! deletion. Each replica runs this job: it claims due jobs (never the same as
//! another replica), deletes the objects, and completes each job or reschedules it
//! with backoff and the error. Past [`DEAD_AFTER_ATTEMPTS`] a job is reported `dead`
//! but keeps retrying.

use std::time::Duration;

use corral_store::storage_deletions as store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Engine;

/// Attempts after which a pending job is listed as `dead` (a visibility line: it
/// still retries, every [`MAX_BACKOFF_MS`] at most).
pub const DEAD_AFTER_ATTEMPTS: i64 = 8;
/// Delay before the second attempt; doubled for each further one.
const FIRST_BACKOFF_MS: i64 = 30_000;
const MAX_BACKOFF_MS: i64 = 6 * 3_600_000;
/// How long a claim holds: a worker that dies mid-way frees its jobs after this.
const LEASE_MS: i64 = 5 * 60_000;
const BATCH: i64 = 50;
/// How often a worker looks for due jobs when nothing wakes it.
const POLL: Duration = Duration::from_secs(10);

/// Wakes this server's worker when jobs were queued or retried here.
#[derive(Default)]
pub struct Outbox {
    wake: Notify,
}

impl Outbox {
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// When a job that has now failed `attempts` times is tried again, from `now`.
pub fn next_attempt_at(now: i64, attempts: i64) -> i64 {
    let exp = (attempts.max(1) - 1).min(20) as u32;
    now + FIRST_BACKOFF_MS
        .saturating_mul(2i64.saturating_pow(exp))
        .min(MAX_BACKOFF_MS)
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub completed: usize,
    pub failed: usize,
}

/// Processes every job due now, batch by batch.
pub async fn pass(engine: &Engine) -> anyhow::Result<Pass> {
    let mut done = Pass::default();
    loop {
        let now = corral_core::time::now_ms();
        let mut conn = engine.db.conn().await?;
        let jobs = store::claim_due(&mut conn, engine.db.backend(), now, LEASE_MS, BATCH).await?;
        drop(conn);
        let n = jobs.len() as i64;
        for job in jobs {
            let result = engine.blobs.delete(&job.object_key()).await;
            let now = corral_core::time::now_ms();
            let error = result.as_ref().err().map(|e| {
                let mut msg = e.to_string();
                msg.truncate(1000);
                msg
            });
            let outcome = match &error {
                None => Ok(()),
                Some(msg) => Err((msg.as_str(), next_attempt_at(now, job.attempts + 1))),
            };
            let mut conn = engine.db.conn().await?;
            let recorded = store::finish(&mut conn, &job, outcome, now).await?;
            match (&error, recorded) {
                (None, true) => done.completed += 1,
                (Some(msg), true) => {
                    done.failed += 1;
                    tracing::warn!(job = %job.id, key = %job.object_key(), attempts = job.attempts + 1,
                        error = %msg, "deleting a blob failed; it will be retried");
                }
                (_, false) => {
                    tracing::debug!(job = %job.id, "the claim lapsed before the outcome was recorded");
                }
            }
        }
        if n < BATCH {
            return Ok(done);
        }
    }
}

/// The worker: a pass whenever woken, and every [`POLL`].
pub async fn run(engine: Engine, stop: CancellationToken) {
    loop {
        match pass(&engine).await {
            Ok(p) if p.completed + p.failed > 0 => {
                tracing::debug!(
                    completed = p.completed,
                    failed = p.failed,
                    "storage deletions"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the storage-deletion pass failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = engine.storage_deletions.wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_ceiling() {
        assert_eq!(next_attempt_at(0, 1), 30_000);
        assert_eq!(next_attempt_at(0, 2), 60_000);
        assert_eq!(next_attempt_at(0, 4), 240_000);
        assert_eq!(next_attempt_at(0, 30), MAX_BACKOFF_MS);
        assert_eq!(next_attempt_at(0, i64::MAX), MAX_BACKOFF_MS);
    }
}
