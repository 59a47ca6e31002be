//! The engine's background jobs, each named, started and stopped here and nowhere
//! else: the run dispatcher, this instance's heartbeat, the reconciler (and reaper),
//! the realtime hub, webhook delivery, the PostgreSQL bus listener, the
//! storage-deletion worker, maintenance and the memory trim.
//! A front end adds its own (the API serves the sandbox-facing and metrics
//! listeners) with [`Jobs::spawn`], so that one stop ends them all.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Engine;

/// How long [`Jobs::stop`] waits for run supervisors to finish.
const SUPERVISORS_GRACE: Duration = Duration::from_secs(30);
/// How often maintenance runs.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(600);

/// The running jobs of one engine.
pub struct Jobs {
    stop: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Jobs {
    /// Starts every engine job. The sandbox backend is chosen by the caller (it may
    /// need to serve a listener for it); jobs that need the backend wait for it.
    pub fn start(engine: &Engine) -> Jobs {
        let mut jobs = Jobs {
            stop: CancellationToken::new(),
            tasks: Vec::new(),
        };
        let stop = jobs.stop.clone();
        // An api replica queues runs and leaves them to the workers (and their
        // reconcilers, which can see the sandboxes).
        if engine.runs.role.executes() {
            jobs.spawn(
                "run-dispatcher",
                crate::runs::executor::dispatch(engine.clone(), stop.clone()),
            );
            jobs.spawn(
                "reconciler",
                crate::runs::reconcile::run(engine.clone(), stop.clone()),
            );
        }
        // Remote runs have no supervisor: this ends the ones that fall silent.
        jobs.spawn(
            "remote-run-watchdog",
            crate::runs::remote::watchdog(engine.clone(), stop.clone()),
        );
        jobs.spawn(
            "instance-heartbeat",
            crate::runs::reconcile::heartbeat(engine.clone(), stop.clone()),
        );
        jobs.spawn("realtime-hub", engine.realtime.clone().run(stop.clone()));
        jobs.spawn(
            "webhook-delivery",
            crate::webhooks::run(engine.clone(), stop.clone()),
        );
        if engine.db.backend() == corral_store::Backend::Postgres {
            let url = engine.config.effective_database_url();
            jobs.spawn(
                "run-bus-listener",
                engine.runs.bus.clone().listen(url, stop.clone()),
            );
        }
        if engine.config.scheduler {
            jobs.spawn(
                "scheduler",
                crate::schedules::run(engine.clone(), stop.clone()),
            );
        }
        jobs.spawn(
            "storage-deletions",
            crate::storage_deletions::run(engine.clone(), stop.clone()),
        );
        jobs.spawn("maintenance", maintenance(engine.clone(), stop.clone()));
        if engine.config.memory_trim_seconds > 0 {
            let every = Duration::from_secs(engine.config.memory_trim_seconds);
            jobs.spawn("memory-trim", memory_trim(every, stop));
        }
        jobs
    }

    /// The token every job stops on.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Adds a job that must end with the others (it should watch [`Self::stop_token`]).
    pub fn spawn(&mut self, name: &'static str, job: impl Future<Output = ()> + Send + 'static) {
        tracing::debug!(job = name, "starting job");
        self.tasks.push((name, tokio::spawn(job)));
    }

    /// Stops every job: supervisors of runs still going detach from them (the runs
    /// stay `running`, their sandboxes alive, for the next boot to re-attach; queued
    /// runs stay `pending`), the warm pool is emptied, the rest ends.
    pub async fn stop(self, engine: &Engine) {
        self.stop.cancel();
        if tokio::time::timeout(SUPERVISORS_GRACE, engine.runs.executor.drain())
            .await
            .is_err()
        {
            tracing::warn!("run supervisors did not stop in time");
        }
        crate::runs::cluster::hand_back(engine).await;
        if let Some(sbx) = engine.runs.sandboxes_now() {
            sbx.backend.shutdown().await;
        }
        for (name, task) in self.tasks {
            if !task.is_finished() {
                tracing::debug!(job = name, "aborting job");
                task.abort();
            }
        }
    }
}

/// Hands the heap's free pages back to the system now (boot's transient memory) and
/// then every `every`. glibc keeps memory freed inside its arenas resident, so a
/// burst (a thousand live viewers connecting at once, each request's set-up freed
/// once its stream runs) would otherwise stay in the server's RSS for good.
async fn memory_trim(every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // It walks every arena under its lock: a few ms at most, off the workers.
        let t = std::time::Instant::now();
        if let Ok(released) = tokio::task::spawn_blocking(corral_malloc::trim).await {
            tracing::trace!(
                released,
                elapsed_us = t.elapsed().as_micros() as u64,
                "memory trimmed"
            );
        }
    }
}

/// Periodic clean-up: expired sessions, idempotency keys and OAuth authorizations,
/// uploads and documents past their retention (their blobs queued for the
/// storage-deletion worker), and realtime events past the replay window (in bounded
/// batches).
async fn maintenance(engine: Engine, stop: CancellationToken) {
    let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = corral_core::time::now_ms();
        let Ok(mut conn) = engine.db.conn().await else {
            continue;
        };
        match corral_store::sessions::purge_expired(&mut conn, now).await {
            Ok(n) if n > 0 => tracing::debug!(removed = n, "purged expired sessions"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purging sessions failed"),
        }
        if let Err(e) = corral_store::idempotency::purge_expired(&mut conn, now).await {
            tracing::warn!(error = %e, "purging idempotency keys failed");
        }
        if let Err(e) = corral_store::integrations::prune_states(&mut conn, now).await {
            tracing::warn!(error = %e, "purging expired OAuth authorizations failed");
        }
        // Expired pairing tokens stay readable (`expired`) for an hour.
        if let Err(e) = corral_store::model_oauth::purge_pairings(&mut conn, now - 3_600_000).await
        {
            tracing::warn!(error = %e, "purging expired pairing tokens failed");
        }
        match crate::documents::sweep(&engine, now).await {
            Ok((0, 0)) => {}
            Ok((u, d)) => tracing::debug!(
                uploads = u,
                documents = d,
                "deleted expired uploads and documents; their blobs are queued"
            ),
            Err(e) => tracing::warn!(error = %e, "deleting expired uploads failed"),
        }
        let before = now - (engine.config.realtime_retention_hours as i64) * 3_600_000;
        loop {
            match corral_store::realtime::prune(&mut conn, before, 5_000).await {
                Ok(5_000) => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "pruning realtime events failed");
                    break;
                }
            }
        }
    }
}
