//! The worker side of the cluster's run queue (PostgreSQL): claim queued runs under
//! this worker's free capacity and the per-org cap across the cluster
//! ([`corral_store::queue::claim_next`]), start each like a local run, and say what
//! this instance is and carries in its liveness row.
//!
//! A worker wakes on the run bus — a run queued or finished anywhere in the cluster
//! is a `pg_notify` every replica receives — and on its own slots freeing. A slow
//! poll is only the safety net for a lost notification.

use std::time::Duration;

use corral_core::time::now_ms;
use corral_core::RunStatus;
use corral_store::queue::{self, Claim, InstanceInfo};
use tokio_util::sync::CancellationToken;

use crate::Engine;

/// The safety net: a claim attempt at least this often while below capacity.
const SAFETY_POLL: Duration = Duration::from_secs(5);
/// The pause before claiming again when another worker held the org's claim lock.
const BUSY_RETRY: Duration = Duration::from_millis(5);

/// Claims and starts queued runs while this worker has capacity, until `stop`.
pub async fn dispatch(state: Engine, stop: CancellationToken) {
    let capacity = state.config.worker_capacity();
    let org_cap = state.config.org_max_concurrent_runs as i64;
    let ex = &state.runs.executor;
    let mut signals = state.runs.bus.subscribe();
    tracing::info!(
        capacity,
        org_cap,
        worker = %state.runs.worker_name,
        "worker: claiming runs from the cluster's queue"
    );
    loop {
        while !ex.is_draining() && ex.stats().running < capacity {
            match claim(&state, org_cap).await {
                Ok(Claim::Got(c)) => super::executor::start(&state, c.org_id, c.run_id, &stop),
                Ok(Claim::Empty) => break,
                // Another worker holds the org's claim lock for a few milliseconds.
                Ok(Claim::Busy) => tokio::time::sleep(BUSY_RETRY).await,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "claiming a run failed");
                    break;
                }
            }
        }
        let relevant = async {
            loop {
                match signals.recv().await {
                    // A run queued, or a slot freed somewhere (an org below its cap).
                    Ok(s) if s.status == RunStatus::Pending || s.status.is_terminal() => return,
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await
                    }
                }
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ex.woken() => {}
            _ = relevant => {}
            _ = tokio::time::sleep(SAFETY_POLL) => {}
        }
    }
}

async fn claim(state: &Engine, org_cap: i64) -> anyhow::Result<Claim> {
    let mut conn = state.db.conn().await?;
    let now = now_ms();
    let claimed = queue::claim_next(&mut conn, &state.runs.instance_id, org_cap, now).await?;
    if let Claim::Got(c) = &claimed {
        state.runs.executor.begin(&c.org_id);
        let waited = (now - c.created_at).max(0) as f64 / 1000.0;
        state.metrics.run_claim.observe(waited);
        tracing::debug!(run_id = %c.run_id, waited_s = waited, "claimed a queued run");
    }
    Ok(claimed)
}

/// What this instance says about itself in its liveness row.
pub fn instance_info(state: &Engine) -> InstanceInfo {
    let runs = &state.runs;
    let executes = runs.role.executes();
    InstanceInfo {
        id: runs.instance_id.clone(),
        role: runs.role.as_str().to_owned(),
        name: Some(runs.worker_name.clone()),
        capacity: if executes {
            state.config.worker_capacity() as i64
        } else {
            0
        },
        in_use: runs.executor.stats().running as i64,
        sandbox_kind: runs
            .sandboxes_now()
            .map(|s| s.backend.kind().as_str().to_owned()),
        draining: runs.executor.is_draining(),
        started_at: runs.started_at,
        heartbeat_at: now_ms(),
    }
}

/// A stopping worker hands back the runs it claimed and did not start.
pub async fn hand_back(state: &Engine) {
    if !state.runs.executor.is_cluster() {
        return;
    }
    let Ok(mut conn) = state.db.conn().await else {
        return;
    };
    match queue::requeue_all(&mut conn, &state.runs.instance_id).await {
        Ok(ids) if ids.is_empty() => {}
        Ok(ids) => {
            tracing::info!(runs = ids.len(), "handed claimed runs back to the queue");
            drop(conn);
            // The other workers wake: the runs are claimable again.
            for id in &ids {
                state.runs.bus.publish(id, RunStatus::Pending).await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "handing claimed runs back failed"),
    }
}
