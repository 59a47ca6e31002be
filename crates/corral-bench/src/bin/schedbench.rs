//! `corral-schedbench`: the scheduler's overhead (SPEC §13, issue targets: claim query
//! < 5 ms p99 with 10,000 enabled schedules, most not due; 1,000 schedules due at the
//! same second all fire, in order). A real server (in this process, on loopback) with
//! its scheduler switched off, so the bench drives `tick` itself:
//!
//! 1. 10,000 schedules are written (one through the API, the rest copied in SQL);
//! 2. the claim transaction with nothing due is timed N times;
//! 3. 1,000 of them are made due at one instant and ticked until all are claimed:
//!    the time to fire them all, and whether their runs were created in fire order.
//!
//! The runs' model points at a closed port, so they queue and then fail without an
//! LLM; the organization's queue cap is raised so none is refused.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use clap::Parser;
use corral_bench::stats::Summary;
use corral_core::time::now_ms;
use corral_testkit::{Backend, TestApp};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "corral-schedbench",
    about = "Scheduler overhead: claim latency and a 1,000-fire second"
)]
struct Args {
    /// `sqlite`, `postgres` or `both`.
    #[arg(long, default_value = "both")]
    backend: String,
    /// Enabled schedules in the table.
    #[arg(long, default_value_t = 10_000)]
    schedules: usize,
    /// Schedules due at the same instant.
    #[arg(long, default_value_t = 1_000)]
    due: usize,
    /// Timed claim transactions.
    #[arg(long, default_value_t = 2_000)]
    claims: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let backends: Vec<Backend> = match args.backend.as_str() {
        "sqlite" => vec![Backend::Sqlite],
        "postgres" => vec![Backend::Postgres],
        _ => vec![Backend::Sqlite, Backend::Postgres],
    };
    for b in backends {
        bench(b, &args).await?;
    }
    Ok(())
}

async fn bench(b: Backend, args: &Args) -> Result<()> {
    let app = TestApp::spawn_with(b, |c| {
        c.scheduler = false;
        c.org_max_queued_runs = 1_000_000;
        c.max_concurrent_runs = 1;
        c.model_api = Some("openai".into());
        c.model_id = Some("bench-model".into());
        c.model_base_url = Some("http://127.0.0.1:9/v1".into());
        c.model_api_key = Some(corral_api::config::Secret::new("sk-bench"));
    })
    .await;
    let s = app.user_with_org("Bench").await;
    let first = s
        .client
        .post(
            "/api/agents/@corral/hello-world/schedules",
            json!({"name": "s0", "cron_expression": "0 3 * * *", "input": {"name": "x"}}),
            201,
        )
        .await;
    let id = first["id"].as_str().unwrap_or_default().to_owned();
    // Copies of the first, in batches (ids ordered like the scheduler orders them).
    let t0 = Instant::now();
    for chunk in (1..args.schedules).collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| format!("('sched_bench_{i:06}')"))
            .collect();
        app.sql(&format!(
            "WITH v(id) AS (VALUES {}) \
             INSERT INTO schedules (id, org_id, application_id, package_id, name, enabled, \
               cron_expression, timezone, input, user_id, next_run_at, created_at, updated_at) \
             SELECT v.id, s.org_id, s.application_id, s.package_id, v.id, 1, s.cron_expression, \
               s.timezone, s.input, s.user_id, s.next_run_at, s.created_at, s.updated_at \
             FROM schedules s, v WHERE s.id = '{id}'",
            values.join(", ")
        ))
        .await;
    }
    let n = app
        .scalar("SELECT COUNT(*) FROM schedules WHERE enabled = 1")
        .await;
    ensure!(n as usize == args.schedules, "{n} schedules written");
    println!(
        "\n== {b:?}: {n} enabled schedules written in {:?}",
        t0.elapsed()
    );

    // 2. The claim transaction when nothing is due (the steady state).
    let now = now_ms();
    let mut claim_ms = Vec::with_capacity(args.claims);
    for _ in 0..args.claims {
        let t = Instant::now();
        let fired = corral_engine::schedules::tick(&app.state, now).await?;
        claim_ms.push(t.elapsed().as_secs_f64() * 1e3);
        ensure!(fired == 0, "nothing should be due");
    }
    let c = Summary::of(&claim_ms).expect("samples");
    println!(
        "claim with nothing due ({} tx): p50 {:.3} ms, p95 {:.3} ms, p99 {:.3} ms, max {:.3} ms   [target p99 < 5 ms: {}]",
        c.n,
        c.p50,
        c.p95,
        c.p99,
        c.max,
        if c.p99 < 5.0 { "met" } else { "NOT met" }
    );

    // 3. `due` schedules due at the same instant.
    let at = now - now.rem_euclid(1000) + 1000;
    app.sql(&format!(
        "UPDATE schedules SET next_run_at = {at} WHERE id IN \
           (SELECT id FROM schedules ORDER BY id LIMIT {})",
        args.due
    ))
    .await;
    let t = Instant::now();
    let mut fired = 0;
    let mut ticks = 0;
    while fired < args.due && t.elapsed() < Duration::from_secs(300) {
        fired += corral_engine::schedules::tick(&app.state, at).await?;
        ticks += 1;
    }
    let took = t.elapsed();
    let runs = app
        .scalar("SELECT COUNT(*) FROM runs WHERE schedule_id IS NOT NULL")
        .await;
    // Fire order is (fire time, id); the runs' creation must follow it.
    let order: Vec<(String, String)> = sqlx::query_as(
        "SELECT schedule_id, id FROM runs WHERE schedule_id IS NOT NULL ORDER BY created_at, id",
    )
    .fetch_all(app.state.db.pool())
    .await?;
    let mut sorted = order.clone();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let in_order = order.iter().map(|r| &r.0).eq(sorted.iter().map(|r| &r.0));
    println!(
        "{} due at one instant: {fired} fired in {} ticks, {:.0} ms ({:.2} ms a fire), {runs} runs created, in fire order: {in_order}",
        args.due,
        ticks,
        took.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e3 / fired.max(1) as f64,
    );
    ensure!(
        fired == args.due && runs as usize == args.due,
        "every due schedule fires once"
    );
    app.begin_shutdown();
    Ok(())
}
