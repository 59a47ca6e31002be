//! Liveness of server instances, reconciliation of runs a dead server left behind,
//! and the reaper of leaked sandboxes (SPEC §7 "On boot, the server reconciles").
//!
//! Every instance heartbeats a row in `server_instances`. One instance at a time
//! (leader lease `reconciler`) reconciles: runs owned by a dead instance are claimed —
//! pending ones re-queued here, running ones re-attached when their sandbox is alive
//! and healthy, else failed with `server_restarted`. Every instance reaps: a
//! Corral-labelled sandbox is removed when no active run uses it and it is neither an
//! idle pool member nor a fresh lease of a live instance.

use std::collections::HashSet;
use std::time::Duration;

use corral_core::time::now_ms;
use corral_sandbox::{SandboxInfo, SandboxState};
use corral_store::cluster;
use corral_store::runs::{self as store, RunStatus};
use corral_store::Backend;
use tokio_util::sync::CancellationToken;

use super::executor::teardown;
use super::watchdog::{watch, Watch};
use super::{codes, fail, Sandboxes};
use crate::Engine;

const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// An instance silent for this long is dead (and not listed as live anywhere).
pub const INSTANCE_TTL_MS: i64 = 10_000;
const RECONCILE_EVERY: Duration = Duration::from_secs(5);
const LEADER_TTL_MS: i64 = 15_000;
const LEASE_NAME: &str = "reconciler";
/// Own sandboxes younger than this are never reaped (a lease in flight).
const REAP_MIN_AGE_SECS: i64 = 60;

/// Heartbeats this instance (with its role, capacity and load) until `stop`, then
/// hands back the runs it claimed and did not start, and removes its row.
pub async fn heartbeat(state: Engine, stop: CancellationToken) {
    let id = state.runs.instance_id.clone();
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Ok(mut conn) = state.db.conn().await {
            let info = super::cluster::instance_info(&state);
            if let Err(e) = corral_store::queue::heartbeat(&mut conn, &info).await {
                tracing::warn!(error = %e, "instance heartbeat failed");
            }
        }
    }
    super::cluster::hand_back(&state).await;
    if let Ok(mut conn) = state.db.conn().await {
        let _ = cluster::remove_instance(&mut conn, &id).await;
        let _ = cluster::release_lease(&mut conn, LEASE_NAME, &id).await;
    }
}

/// Reconciles and reaps at start and then periodically, until `stop`.
pub async fn run(state: Engine, stop: CancellationToken) {
    // Reconciling needs to know which sandboxes are alive: wait for the backend (or
    // the verdict that there is none) before the first pass.
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = state.runs.sandboxes() => {}
    }
    let mut tick = tokio::time::interval(RECONCILE_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = pass(&state, &stop).await {
            tracing::warn!(error = %format!("{e:#}"), "reconcile pass failed");
        }
    }
}

async fn live_instances(state: &Engine) -> anyhow::Result<HashSet<String>> {
    let me = state.runs.instance_id.clone();
    let mut conn = state.db.conn().await?;
    cluster::instance_heartbeat(&mut conn, &me, now_ms()).await?;
    let mut live: HashSet<String> = match state.db.backend() {
        // One server per SQLite file: every other instance is a previous life.
        Backend::Sqlite => HashSet::new(),
        Backend::Postgres => cluster::live_instances(&mut conn, now_ms() - INSTANCE_TTL_MS)
            .await?
            .into_iter()
            .collect(),
    };
    live.insert(me);
    Ok(live)
}

/// One reconcile + reap pass.
pub async fn pass(state: &Engine, stop: &CancellationToken) -> anyhow::Result<()> {
    let me = state.runs.instance_id.clone();
    let live = live_instances(state).await?;
    let mut conn = state.db.conn().await?;
    // A lease held by a dead instance is free at once, not only when it expires.
    if let Some(holder) = cluster::lease_holder(&mut conn, LEASE_NAME).await? {
        if !live.contains(&holder) {
            cluster::release_lease(&mut conn, LEASE_NAME, &holder).await?;
        }
    }
    let leader =
        cluster::acquire_lease(&mut conn, LEASE_NAME, &me, LEADER_TTL_MS, now_ms()).await?;
    let active = store::active(&mut conn).await?;
    drop(conn);
    let sbx = state.runs.sandboxes_now();

    if leader {
        let cluster = state.runs.executor.is_cluster();
        for run in &active {
            let owner = run.server_id.as_deref();
            if owner.is_some_and(|o| live.contains(o)) {
                continue;
            }
            let mut conn = state.db.conn().await?;
            if cluster && run.status == RunStatus::Pending {
                // Unclaimed: queued, any worker takes it. Claimed by a dead worker
                // that never started it: back in the queue.
                let Some(owner) = owner else { continue };
                if corral_store::queue::requeue(&mut conn, &run.id, owner).await? {
                    drop(conn);
                    tracing::info!(run_id = %run.id, previous = owner, "re-queueing a run a dead worker claimed");
                    state.runs.bus.publish(&run.id, RunStatus::Pending).await;
                }
                continue;
            }
            if !store::claim(&mut conn, &run.id, owner, &me).await? {
                continue;
            }
            drop(conn);
            if run.status == RunStatus::Pending {
                tracing::info!(run_id = %run.id, previous = ?owner, "re-queueing a pending run");
                state.runs.executor.enqueue(&run.org_id, &run.id);
                continue;
            }
            adopt_or_fail(state, run, sbx.as_ref(), stop).await?;
        }
    }

    if let Some(sbx) = sbx {
        reap(state, &sbx, &active, &live).await?;
    }
    Ok(())
}

async fn adopt_or_fail(
    state: &Engine,
    run: &store::Active,
    sbx: Option<&Sandboxes>,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let healthy = match (sbx, run.sandbox_id.as_deref()) {
        (Some(sbx), Some(id)) => matches!(sbx.backend.state(id).await, Ok(SandboxState::Running)),
        _ => false,
    };
    if let (true, Some(sbx), Some(sandbox_id)) = (healthy, sbx, run.sandbox_id.clone()) {
        tracing::info!(run_id = %run.id, sandbox_id, "re-attaching a run whose sandbox is alive");
        let mut conn = state.db.conn().await?;
        let Some(row) = store::get_internal(&mut conn, &run.id).await? else {
            return Ok(());
        };
        drop(conn);
        let st = state.clone();
        let sbx = sbx.clone();
        let stop = stop.clone();
        state.runs.executor.adopt(sandbox_id.clone());
        state.runs.executor.spawn(async move {
            match watch(&st, &row, &sbx, &sandbox_id, &stop).await {
                Ok(Watch::Detached) => {}
                Ok(Watch::Ended) => teardown(&sbx, &sandbox_id).await,
                Err(e) => {
                    tracing::warn!(run_id = %row.id, error = %format!("{e:#}"), "watching a re-attached run failed");
                    teardown(&sbx, &sandbox_id).await;
                }
            }
            st.runs.executor.release(&sandbox_id);
        });
        return Ok(());
    }
    tracing::warn!(run_id = %run.id, "failing a run left running by a server that stopped");
    fail(
        state,
        &run.id,
        codes::SERVER_RESTARTED,
        "the server running this run stopped; the run could not be resumed",
    )
    .await?;
    if let (Some(sbx), Some(id)) = (sbx, run.sandbox_id.as_deref()) {
        teardown(sbx, id).await;
    }
    Ok(())
}

async fn reap(
    state: &Engine,
    sbx: &Sandboxes,
    active: &[store::Active],
    live: &HashSet<String>,
) -> anyhow::Result<()> {
    let me = state.runs.instance_id.as_str();
    let mut keep: HashSet<String> = active.iter().filter_map(|r| r.sandbox_id.clone()).collect();
    keep.extend(sbx.backend.pool_members());
    keep.extend(state.runs.executor.leased_sandboxes());
    let now_s = now_ms() / 1000;
    let found = sbx.backend.list().await?;
    for s in found {
        if keep.contains(&s.id) {
            continue;
        }
        if !reapable(&s, me, live, now_s) {
            continue;
        }
        tracing::info!(sandbox_id = %s.id, owner = ?s.owner, "reaping a sandbox no run uses");
        if let Err(e) = sbx.backend.destroy(&s.id).await {
            tracing::warn!(sandbox_id = %s.id, error = %e, "reaping failed");
        }
    }
    Ok(())
}

/// Whether the reaper removes `s`, a sandbox no active run, pool member or lease of
/// this instance uses.
fn reapable(s: &SandboxInfo, me: &str, live: &HashSet<String>, now_s: i64) -> bool {
    let mine = s.owner.as_deref() == Some(me);
    // Another live instance's pool and leases are its own business.
    if s.owner.as_deref().is_some_and(|o| live.contains(o)) && !mine {
        return false;
    }
    // Young: being created, by this instance or by one whose ownership the sandbox
    // does not show yet (a process sandbox records its owner once its sidecar runs).
    let fresh = s.created_at.is_some_and(|c| now_s - c < REAP_MIN_AGE_SECS);
    !(fresh && (mine || s.owner.is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(owner: Option<&str>, created_at: Option<i64>) -> SandboxInfo {
        SandboxInfo {
            id: "sbx_01".into(),
            owner: owner.map(str::to_owned),
            run_id: None,
            created_at,
        }
    }

    #[test]
    fn sandboxes_being_created_are_not_reaped() {
        let live: HashSet<String> = ["me".to_owned(), "other".to_owned()].into();
        let now = 1_000_000;
        // Our own, young: a lease or pool member in flight.
        assert!(!reapable(
            &info(Some("me"), Some(now - 5)),
            "me",
            &live,
            now
        ));
        // Owner not recorded yet (seen at boot: "owner=None", then the pool failed).
        assert!(!reapable(&info(None, Some(now - 1)), "me", &live, now));
        // Another live instance's, whatever its age.
        assert!(!reapable(
            &info(Some("other"), Some(now - 9_999)),
            "me",
            &live,
            now
        ));
    }

    #[test]
    fn leaks_are_reaped() {
        let live: HashSet<String> = ["me".to_owned()].into();
        let now = 1_000_000;
        let old = Some(now - REAP_MIN_AGE_SECS - 1);
        assert!(reapable(&info(Some("me"), old), "me", &live, now));
        assert!(reapable(&info(None, old), "me", &live, now));
        assert!(reapable(&info(None, None), "me", &live, now));
        // A dead instance's, even young: nobody will ever lease it.
        assert!(reapable(
            &info(Some("dead"), Some(now - 1)),
            "me",
            &live,
            now
        ));
    }
}
