//! Metrics in the Prometheus text format (SPEC §18; served by the API on its own
//! listener, `CORRAL_METRICS_LISTEN`): runs by state, the executor's queue, the run
//! start latency histogram, realtime subscribers, webhook attempts, the warm pool,
//! and database pool usage.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Engine;

/// Upper bounds (seconds) of the run start latency buckets.
const START_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

/// A fixed-bucket histogram with lock-free observation.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; START_BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        for (i, le) in START_BUCKETS.iter().enumerate() {
            if seconds <= *le {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((seconds.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, le) in START_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{le}\"}} {}",
                self.counts[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Metrics recorded as things happen (the rest is read when scraped).
#[derive(Default)]
pub struct Metrics {
    /// Trigger → first event from the sandbox.
    pub run_start: Histogram,
    /// Trigger → claimed by a worker (cluster queue).
    pub run_claim: Histogram,
    /// Webhook attempts by outcome: success, gone, retry, permanent.
    webhook_attempts: [AtomicU64; 4],
    /// Schedule fires that created a run.
    pub schedule_fires: Counter,
    /// Schedule fires the run pipeline refused (recorded on the schedule).
    pub schedule_refusals: Counter,
    /// Memories and pinned slots refused for a size or count limit.
    pub memory_refusals: Counter,
}

/// A monotonic counter.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

const WEBHOOK_OUTCOMES: [&str; 4] = ["success", "gone", "retry", "permanent"];

impl Metrics {
    pub fn webhook_attempt(&self, outcome: &str) {
        if let Some(i) = WEBHOOK_OUTCOMES.iter().position(|o| *o == outcome) {
            self.webhook_attempts[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn gauge(out: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// The exposition text.
pub async fn render(state: &Engine) -> String {
    let mut out = String::new();
    if let Ok(mut conn) = state.db.conn().await {
        if let Ok(rows) = corral_store::runs::count_by_status(&mut conn).await {
            let _ = writeln!(
                out,
                "# HELP corral_runs Runs by state.\n# TYPE corral_runs gauge"
            );
            for (status, n) in rows {
                let _ = writeln!(out, "corral_runs{{state=\"{status}\"}} {n}");
            }
        }
    }
    let ex = state.runs.executor.stats();
    gauge(
        &mut out,
        "corral_executor_queued",
        "Runs waiting for a slot on this server.",
        "gauge",
        ex.queued,
    );
    gauge(
        &mut out,
        "corral_executor_running",
        "Runs supervised by this server.",
        "gauge",
        ex.running,
    );
    gauge(
        &mut out,
        "corral_realtime_subscribers",
        "SSE subscribers connected to this server.",
        "gauge",
        state.realtime.subscribers(),
    );
    gauge(
        &mut out,
        "corral_realtime_dropped_slow_total",
        "SSE subscribers dropped for a full queue.",
        "counter",
        state.realtime.dropped_slow(),
    );
    let _ = writeln!(
        out,
        "# HELP corral_webhook_attempts_total Webhook delivery attempts by outcome.\n# TYPE corral_webhook_attempts_total counter"
    );
    for (i, o) in WEBHOOK_OUTCOMES.iter().enumerate() {
        let _ = writeln!(
            out,
            "corral_webhook_attempts_total{{outcome=\"{o}\"}} {}",
            state.metrics.webhook_attempts[i].load(Ordering::Relaxed)
        );
    }
    for (name, help, c) in [
        (
            "corral_schedule_fires_total",
            "Schedule fires that created a run.",
            &state.metrics.schedule_fires,
        ),
        (
            "corral_schedule_refusals_total",
            "Schedule fires refused by the run pipeline.",
            &state.metrics.schedule_refusals,
        ),
        (
            "corral_memory_refusals_total",
            "Agent memories refused for a size or count limit.",
            &state.metrics.memory_refusals,
        ),
    ] {
        gauge(&mut out, name, help, "counter", c.get());
    }
    render_cluster(state, &mut out).await;
    state.metrics.run_start.render(
        "corral_run_start_seconds",
        "Time from the trigger to the first event from the run's sandbox.",
        &mut out,
    );
    if let Some(sbx) = state.runs.sandboxes_now() {
        let p = sbx.backend.stats();
        gauge(
            &mut out,
            "corral_warm_pool_target",
            "Warm sandboxes to keep ready.",
            "gauge",
            p.target,
        );
        gauge(
            &mut out,
            "corral_warm_pool_ready",
            "Warm sandboxes ready now.",
            "gauge",
            p.ready,
        );
        gauge(
            &mut out,
            "corral_warm_pool_warming",
            "Sandboxes being created for the pool.",
            "gauge",
            p.warming,
        );
        gauge(
            &mut out,
            "corral_warm_pool_hits_total",
            "Leases served from the pool.",
            "counter",
            p.hits,
        );
        gauge(
            &mut out,
            "corral_warm_pool_misses_total",
            "Leases that created a sandbox on demand.",
            "counter",
            p.misses,
        );
        gauge(
            &mut out,
            "corral_warm_pool_recycled_total",
            "Pool members destroyed for age.",
            "counter",
            p.recycled,
        );
        gauge(
            &mut out,
            "corral_prepared_pool_target",
            "Sandboxes to keep half-started (Docker).",
            "gauge",
            p.prepared_target,
        );
        gauge(
            &mut out,
            "corral_prepared_pool_ready",
            "Half-started sandboxes ready now.",
            "gauge",
            p.prepared,
        );
        gauge(
            &mut out,
            "corral_prepared_pool_hits_total",
            "Warm-pool misses served by starting a prepared sandbox.",
            "counter",
            p.prepared_hits,
        );
    }
    let (open, idle) = state.db.pool_usage();
    gauge(
        &mut out,
        "corral_db_pool_connections",
        "Open database connections.",
        "gauge",
        open,
    );
    gauge(
        &mut out,
        "corral_db_pool_idle",
        "Idle database connections.",
        "gauge",
        idle,
    );
    out
}

/// The cluster's view: live instances by role, this worker's capacity and load, the
/// queue depth by org and the claim latency (PostgreSQL's run queue).
async fn render_cluster(state: &Engine, out: &mut String) {
    let runs = &state.runs;
    if runs.role.executes() {
        gauge(
            out,
            "corral_worker_capacity",
            "Runs this worker executes at once.",
            "gauge",
            state.config.worker_capacity(),
        );
        gauge(
            out,
            "corral_worker_in_use",
            "Runs this worker holds (claimed or running).",
            "gauge",
            runs.executor.stats().running,
        );
    }
    if !runs.executor.is_cluster() {
        return;
    }
    let Ok(mut conn) = state.db.conn().await else {
        return;
    };
    let since = corral_core::time::now_ms() - crate::runs::reconcile::INSTANCE_TTL_MS;
    if let Ok(instances) = corral_store::queue::instances(&mut conn, since).await {
        let _ = writeln!(
            out,
            "# HELP corral_cluster_instances Live server instances by role.\n# TYPE corral_cluster_instances gauge"
        );
        for role in ["all", "api", "worker"] {
            let n = instances.iter().filter(|i| i.role == role).count();
            let _ = writeln!(out, "corral_cluster_instances{{role=\"{role}\"}} {n}");
        }
        let capacity: i64 = instances.iter().map(|i| i.capacity).sum();
        let in_use: i64 = instances.iter().map(|i| i.in_use).sum();
        gauge(
            out,
            "corral_cluster_capacity",
            "Runs the live workers execute at once.",
            "gauge",
            capacity,
        );
        gauge(
            out,
            "corral_cluster_in_use",
            "Runs the live workers hold.",
            "gauge",
            in_use,
        );
    }
    if let Ok(depth) = corral_store::queue::depth_by_org(&mut conn).await {
        let _ = writeln!(
            out,
            "# HELP corral_queue_depth Queued (unclaimed) runs by organization.\n# TYPE corral_queue_depth gauge"
        );
        for (org, n) in depth {
            let _ = writeln!(out, "corral_queue_depth{{org=\"{org}\"}} {n}");
        }
    }
    drop(conn);
    state.metrics.run_claim.render(
        "corral_run_claim_seconds",
        "Time from the trigger to a worker's claim.",
        out,
    );
}
