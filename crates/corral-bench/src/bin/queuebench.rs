//! `corral-queuebench`: the cluster's run queue on PostgreSQL (scale-out). A real
//! server (in this process, role `api`: it queues and executes nothing) holds the
//! queue; simulated workers claim from it with the production claim
//! (`corral_store::queue::claim_next`: per-org advisory lock, `FOR UPDATE SKIP
//! LOCKED`), each on its own connection, and "run" each claim for a fixed time
//! instead of a sandbox. So the figures are the queue's, not the sandboxes':
//!
//! 1. 1,000 runs queued over 4 organizations: runs started per second by one worker
//!    and by two (the scaling ratio), with runs of `--run-ms` and with instant runs
//!    (the claim path's own ceiling);
//! 2. claim latency from the trigger to the claim: runs queued one by one at a
//!    steady rate, announced with `pg_notify` exactly as the trigger does, while two
//!    idle workers wait on the run bus.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use clap::Parser;
use corral_bench::stats::Summary;
use corral_core::time::now_ms;
use corral_core::{RunId, RunStatus};
use corral_store::queue::{claim_next, Claim};
use corral_testkit::{Backend, TestApp};
use serde_json::json;
use tokio::sync::Notify;

#[derive(Parser, Debug)]
#[command(
    name = "corral-queuebench",
    about = "Run queue: claims per second and claim latency"
)]
struct Args {
    /// Runs queued for the throughput phase.
    #[arg(long, default_value_t = 1_000)]
    runs: usize,
    /// Runs each simulated worker holds at once.
    #[arg(long, default_value_t = 16)]
    capacity: usize,
    /// How long a simulated run lasts.
    #[arg(long, default_value_t = 100)]
    run_ms: u64,
    /// Runs queued one by one for the latency phase, and their rate per second.
    #[arg(long, default_value_t = 500)]
    latency_runs: usize,
    #[arg(long, default_value_t = 50)]
    rate: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let app = TestApp::spawn_with(Backend::Postgres, |c| {
        c.role = corral_api::config::Role::Api;
        c.scheduler = false;
        c.org_max_queued_runs = 1_000_000;
        c.model_api = Some("openai".into());
        c.model_id = Some("bench-model".into());
        c.model_base_url = Some("http://127.0.0.1:9/v1".into());
        c.model_api_key = Some(corral_api::config::Secret::new("sk-bench"));
    })
    .await;
    // One real run per org, through the API: the template the copies are made of.
    let mut templates = Vec::new();
    for i in 0..4 {
        let s = app.user_with_org(&format!("Bench{i}")).await;
        let run = s
            .client
            .post(
                "/api/agents/@corral/hello-world/run",
                json!({"input": {"name": "x"}}),
                201,
            )
            .await;
        templates.push(run["id"].as_str().unwrap_or_default().to_owned());
    }
    // The templates leave the queue (finished); their copies are what is claimed.
    app.sql("UPDATE runs SET status = 'failed' WHERE status = 'pending'")
        .await;
    println!(
        "== run queue on PostgreSQL (simulated workers, capacity {} each)",
        args.capacity
    );
    for run_ms in [args.run_ms, 0] {
        let mut rates = Vec::new();
        for workers in [1usize, 2] {
            queue_copies(&app, &templates, args.runs).await?;
            let (took, per_s) = drain(&app, workers, args.capacity, run_ms, args.runs).await?;
            println!(
                "runs of {run_ms:>3} ms, {workers} worker(s): {} runs started in {:.2} s = {per_s:.0} runs/s",
                args.runs,
                took.as_secs_f64()
            );
            rates.push(per_s);
        }
        println!(
            "  scaling ratio (2 workers / 1): {:.2}x{}",
            rates[1] / rates[0],
            if run_ms > 0 {
                format!(
                    "   [ideal {:.0} vs {:.0} runs/s]",
                    1000.0 * args.capacity as f64 / run_ms as f64,
                    2000.0 * args.capacity as f64 / run_ms as f64
                )
            } else {
                "   [claim path ceiling]".into()
            }
        );
    }
    latency(&app, &templates, &args).await
}

/// Copies of the template runs, queued (pending, unclaimed), spread over the orgs.
async fn queue_copies(app: &TestApp, templates: &[String], n: usize) -> Result<()> {
    app.sql("DELETE FROM runs WHERE id LIKE 'run_qb%'").await;
    app.sql(&format!(
        "INSERT INTO runs (id, org_id, application_id, kind, run_number, status, input, version_ref, \
           definition, timeout_secs, sink_secret, sink_expires_at, run_token_hash, created_at) \
         SELECT 'run_qb' || lpad(g::text, 6, '0'), t.org_id, t.application_id, t.kind, 100000 + g, \
           'pending', t.input, t.version_ref, t.definition, t.timeout_secs, t.sink_secret, \
           t.sink_expires_at, t.run_token_hash, {now} + g \
         FROM generate_series(1, {n}) g \
         JOIN (SELECT *, row_number() OVER (ORDER BY id) - 1 AS k FROM runs WHERE id IN ({ids})) t \
           ON t.k = g % {orgs}",
        now = now_ms(),
        ids = templates.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(","),
        orgs = templates.len(),
    ))
    .await;
    let queued = app
        .scalar("SELECT COUNT(*) FROM runs WHERE status = 'pending' AND server_id IS NULL")
        .await;
    ensure!(queued as usize == n, "{queued} runs queued, expected {n}");
    Ok(())
}

/// `workers` simulated workers claim until `n` runs started; the time that took.
async fn drain(
    app: &TestApp,
    workers: usize,
    capacity: usize,
    run_ms: u64,
    n: usize,
) -> Result<(Duration, f64)> {
    let started = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (db, started) = (app.state.db.clone(), started.clone());
        tasks.push(tokio::spawn(async move {
            let me = format!("srv_qb_{w}");
            let in_flight = Arc::new(AtomicUsize::new(0));
            let freed = Arc::new(Notify::new());
            while started.load(Ordering::SeqCst) < n {
                if in_flight.load(Ordering::SeqCst) >= capacity {
                    freed.notified().await;
                    continue;
                }
                let mut conn = db.conn().await?;
                match claim_next(&mut conn, &me, 1_000_000, now_ms()).await? {
                    Claim::Got(c) => {
                        started.fetch_add(1, Ordering::SeqCst);
                        in_flight.fetch_add(1, Ordering::SeqCst);
                        let (db, in_flight, freed) = (db.clone(), in_flight.clone(), freed.clone());
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(run_ms)).await;
                            if let Ok(mut conn) = db.conn().await {
                                let _ = sqlx::query(
                                    "UPDATE runs SET status = 'success', completed_at = $2 WHERE id = $1",
                                )
                                .bind(c.run_id.as_str())
                                .bind(now_ms())
                                .execute(&mut *conn)
                                .await;
                            }
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            freed.notify_one();
                        });
                    }
                    Claim::Busy => tokio::time::sleep(Duration::from_millis(5)).await,
                    Claim::Empty => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let took = t0.elapsed();
    // Let the last simulated runs finish before the next phase.
    tokio::time::sleep(Duration::from_millis(run_ms + 200)).await;
    Ok((took, n as f64 / took.as_secs_f64()))
}

/// Trigger → claim with two idle workers woken by the run bus.
async fn latency(app: &TestApp, templates: &[String], args: &Args) -> Result<()> {
    app.sql("DELETE FROM runs WHERE id LIKE 'run_qb%'").await;
    let claimed = Arc::new(AtomicUsize::new(0));
    let n = args.latency_runs;
    let mut tasks = Vec::new();
    for w in 0..2 {
        let (state, claimed) = (app.state.clone(), claimed.clone());
        tasks.push(tokio::spawn(async move {
            let me = format!("srv_ql_{w}");
            let mut signals = state.runs.bus.subscribe();
            while claimed.load(Ordering::SeqCst) < n {
                let mut conn = state.db.conn().await?;
                match claim_next(&mut conn, &me, 1_000_000, now_ms()).await? {
                    Claim::Got(_) => {
                        claimed.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    Claim::Busy => continue,
                    Claim::Empty => {}
                }
                drop(conn);
                let _ = tokio::time::timeout(Duration::from_millis(500), signals.recv()).await;
            }
            anyhow::Ok(())
        }));
    }
    let gap = Duration::from_micros(1_000_000 / args.rate.max(1));
    for g in 0..n {
        let id = format!("run_qb{g:06}");
        app.sql(&format!(
            "INSERT INTO runs (id, org_id, application_id, kind, run_number, status, input, version_ref, \
               definition, timeout_secs, sink_secret, sink_expires_at, run_token_hash, created_at) \
             SELECT '{id}', org_id, application_id, kind, 200000 + {g}, 'pending', input, version_ref, \
               definition, timeout_secs, sink_secret, sink_expires_at, run_token_hash, {now} \
             FROM runs WHERE id = '{t}'",
            now = now_ms(),
            t = templates[g % templates.len()],
        ))
        .await;
        app.state
            .runs
            .bus
            .publish(&RunId::from(id), RunStatus::Pending)
            .await;
        tokio::time::sleep(gap).await;
    }
    for t in tasks {
        t.await??;
    }
    let rows: Vec<i64> = {
        let mut conn = app.state.db.conn().await?;
        sqlx::query_scalar(
            "SELECT claimed_at - created_at FROM runs WHERE id LIKE 'run_qb%' AND claimed_at IS NOT NULL",
        )
        .fetch_all(&mut *conn)
        .await?
    };
    ensure!(rows.len() == n, "{} of {n} runs claimed", rows.len());
    let ms: Vec<f64> = rows.iter().map(|v| *v as f64).collect();
    let s = Summary::of(&ms).expect("samples");
    println!(
        "trigger → claim, {n} runs at {}/s, 2 idle workers on the run bus: p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        args.rate, s.p50, s.p95, s.p99, s.max
    );
    Ok(())
}
