//! `corral-runbench`: run-start latency of the release `corral` server — from the
//! moment a client sends `POST /api/agents/@corral/hello-world/run` to the first
//! event the platform receives from the agent (`runs.first_event_at`) — with the
//! Docker and the process sandbox backends, warm pool, empty pool and (Docker) the
//! second tier of prepared sandboxes, next to the
//! floor of a bare `docker run`, plus 20 concurrent runs with their wall time and
//! peak memory. It prints figures; it is not a test.
//!
//! Build first (one target dir for all three binaries, which the process backend
//! finds next to the server):
//!   cargo build --release -p corral -p corral-agent -p corral-sidecar -p corral-bench
//!
//! Every scenario gets a fresh server and data dir; every wait has a deadline; the
//! server is killed and leftover managed containers removed even on error.

#[path = "runbench/api.rs"]
mod api;
#[path = "runbench/engine.rs"]
mod engine;
#[path = "runbench/mem.rs"]
mod mem;
#[path = "runbench/server.rs"]
mod server;
#[path = "runbench/stats.rs"]
mod stats;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Parser;
use corral_bench::stats::{mib, Summary};
use corral_mockllm::{MockLlm, Turn};
use serde_json::{json, Value};
use sqlx::Connection as _;

use api::{Api, Triggered, RUNS_PER_KEY};
use engine::Engine;
use mem::{Peaks, Sampler};
use server::Server;
use stats::cells;

const ALL_SCENARIOS: &[&str] = &[
    "floor",
    "docker-warm",
    "docker-cold",
    "docker-prepared",
    "process-warm",
    "process-cold",
    "docker-concurrent",
    "process-concurrent",
];

/// Targets the figures are compared with.
const TARGET_WARM_P50_MS: f64 = 50.0;
const TARGET_COLD_OVER_FLOOR: f64 = 1.3;

/// Longest one run may take to become terminal.
const RUN_DEADLINE: Duration = Duration::from_secs(90);
/// Longest the pool may take to (re)fill, or the last sandboxes to go.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);
/// Longest a whole scenario may take.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(20 * 60);
/// Longest a graceful server shutdown may take.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

#[derive(Parser, Debug)]
#[command(
    name = "corral-runbench",
    about = "Run-start latency (trigger → first agent event) of the release corral server"
)]
struct Args {
    /// Measured runs per sequential scenario (and bare `docker run`s for the floor).
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Unmeasured runs after boot, before the measured ones.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Comma-separated scenarios (default: all): floor, docker-warm, docker-cold,
    /// docker-prepared (warm pool empty, 2 half-started sandboxes), process-warm,
    /// process-cold, docker-concurrent, process-concurrent.
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// The corral server binary (corral-agent and corral-sidecar next to it).
    #[arg(long, default_value = "target/release/corral")]
    server: PathBuf,
    /// Agent image; default: built with scripts/build-images.sh (tag `bench`).
    #[arg(long)]
    agent_image: Option<String>,
    /// Sidecar image; default: built with scripts/build-images.sh (tag `bench`).
    #[arg(long)]
    sidecar_image: Option<String>,
    /// Workspace root (for scripts/build-images.sh).
    #[arg(long, default_value = ".")]
    repo_root: PathBuf,
    /// Runs started at once in the concurrency scenarios.
    #[arg(long, default_value_t = 20)]
    concurrency: usize,
    /// Pause after each run (lets the pool refill and the old sandbox go).
    #[arg(long, default_value_t = 300)]
    settle_ms: u64,
    /// Where each scenario's server log is copied.
    #[arg(long, default_value = "/tmp/corral-runbench")]
    out_dir: PathBuf,
    /// Remove managed containers that exist before the benchmark starts (otherwise
    /// their presence is an error: they would skew the counts).
    #[arg(long)]
    remove_stale: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Docker,
    Process,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Docker => "docker",
            Backend::Process => "process",
        }
    }
}

/// One measured run: client clocks plus the server's timestamps.
#[derive(Debug, Clone, Default)]
struct RunRecord {
    id: String,
    status: String,
    sent_unix_ms: f64,
    /// sent → 201 received (client).
    accept_ms: f64,
    /// sent → terminal status seen by the long-poll (client).
    terminal_client_ms: f64,
    created_at: Option<i64>,
    started_at: Option<i64>,
    first_event_at: Option<i64>,
    completed_at: Option<i64>,
    warm: Option<bool>,
    sandbox: Option<String>,
    /// When the mock LLM received the run's first request (Unix ms, same host).
    first_llm_unix_ms: Option<f64>,
}

impl RunRecord {
    fn rel(&self, t: Option<i64>) -> Option<f64> {
        t.map(|t| t as f64 - self.sent_unix_ms)
    }
    /// The metric: trigger sent → first event received.
    fn start_ms(&self) -> Option<f64> {
        self.rel(self.first_event_at)
    }
    /// Trigger sent → the model's first request reached the mock LLM.
    fn first_llm_ms(&self) -> Option<f64> {
        self.first_llm_unix_ms.map(|t| t - self.sent_unix_ms)
    }
    fn terminal_db_ms(&self) -> Option<f64> {
        self.rel(self.completed_at)
    }
    fn api_ms(&self) -> Option<f64> {
        self.rel(self.created_at)
    }
    fn lease_ms(&self) -> Option<f64> {
        Some((self.started_at? - self.created_at?) as f64)
    }
    fn boot_ms(&self) -> Option<f64> {
        Some((self.first_event_at? - self.started_at?) as f64)
    }
}

/// `docker sandbox ready` debug line: phases of building one Docker sandbox.
#[derive(Debug, Clone, Copy)]
struct BuildPhases {
    create: f64,
    connect_start: f64,
    ready: f64,
}

struct SeqResult {
    name: String,
    backend: Backend,
    pool: usize,
    runs: Vec<RunRecord>,
    warmups: Vec<RunRecord>,
    /// Sandbox build phases of the measured runs' own sandboxes (cold leases).
    builds: Vec<BuildPhases>,
    /// Extra wait beyond `settle_ms` until the pool was full again, per run.
    settle_extra_ms: Vec<f64>,
}

struct ConcResult {
    name: String,
    runs: Vec<RunRecord>,
    wall_client_ms: f64,
    wall_db_ms: Option<f64>,
    peaks: Peaks,
}

enum Outcome {
    Floor(Vec<f64>),
    Seq(SeqResult),
    Conc(ConcResult),
}

struct Ctx {
    args: Args,
    engine: Option<Engine>,
    images: Option<(String, String)>,
    /// Mock LLM reachable from containers (bound on the bridge gateway).
    mock_docker: Option<MockLlm>,
    /// Mock LLM on loopback for the process backend.
    mock_local: Option<MockLlm>,
}

fn script() -> Vec<Turn> {
    vec![
        Turn::tool_call("output", json!({"greeting": "hi", "length": 2})),
        Turn::text("done"),
    ]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.scenarios.is_empty() {
        args.scenarios = ALL_SCENARIOS.iter().map(|s| (*s).to_owned()).collect();
    }
    for s in &args.scenarios {
        if !ALL_SCENARIOS.contains(&s.as_str()) {
            bail!(
                "unknown scenario {s:?} (known: {})",
                ALL_SCENARIOS.join(", ")
            );
        }
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    args.server = std::fs::canonicalize(&args.server)
        .with_context(|| format!("no server binary at {}", args.server.display()))?;
    std::fs::create_dir_all(&args.out_dir)?;
    let needs_docker = args
        .scenarios
        .iter()
        .any(|s| s == "floor" || s.starts_with("docker"));
    let needs_process = args.scenarios.iter().any(|s| s.starts_with("process"));

    let mut ctx = Ctx {
        engine: None,
        images: None,
        mock_docker: None,
        mock_local: None,
        args,
    };
    println!(
        "corral-runbench: server {}  runs/scenario {} (+{} warm-up)  scenarios {}",
        ctx.args.server.display(),
        ctx.args.runs,
        ctx.args.warmup,
        ctx.args.scenarios.join(",")
    );
    if needs_docker {
        let engine = Engine::connect().await?;
        let (_, stale) = engine.count_managed().await?;
        if stale > 0 {
            if !ctx.args.remove_stale {
                bail!(
                    "{stale} container(s) labelled {} exist already; remove them or pass --remove-stale",
                    engine::MANAGED
                );
            }
            let (c, n) = engine.remove_leftovers().await?;
            println!("removed {c} stale managed container(s) and {n} network(s)");
        }
        ctx.images = Some(resolve_images(&ctx.args).await?);
        let gw = engine.bridge_gateway().await?;
        let mock = MockLlm::start_per_conversation(format!("{gw}:0").parse()?, script()).await?;
        println!(
            "images: agent {}  sidecar {}\nmock LLM for containers: {}",
            ctx.images.as_ref().unwrap().0,
            ctx.images.as_ref().unwrap().1,
            mock.openai_base_url()
        );
        ctx.mock_docker = Some(mock);
        ctx.engine = Some(engine);
    }
    if needs_process {
        let mock = MockLlm::start_per_conversation("127.0.0.1:0".parse()?, script()).await?;
        ctx.mock_local = Some(mock);
    }

    let mut outcomes: Vec<(String, Result<Outcome>)> = Vec::new();
    let scenarios = ctx.args.scenarios.clone();
    for name in scenarios {
        println!("\n=== {name} ===");
        let t = Instant::now();
        let res = tokio::select! {
            r = tokio::time::timeout(SCENARIO_DEADLINE, run_scenario(&ctx, &name)) => {
                r.unwrap_or_else(|_| Err(anyhow!("scenario took over {SCENARIO_DEADLINE:?}")))
            }
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        };
        // The scenario's server is gone (stopped, or killed on drop): nothing managed
        // may be left.
        if let Some(engine) = &ctx.engine {
            verify_clean(engine).await;
        }
        match &res {
            Ok(_) => println!("{name}: done in {:.1} s", t.elapsed().as_secs_f64()),
            Err(e) => println!(
                "{name}: FAILED after {:.1} s: {e:#}",
                t.elapsed().as_secs_f64()
            ),
        }
        let interrupted = matches!(&res, Err(e) if e.to_string() == "interrupted");
        outcomes.push((name, res));
        if interrupted {
            break;
        }
    }
    report(&ctx, &outcomes);
    if outcomes.iter().any(|(_, r)| r.is_err()) {
        std::process::exit(1);
    }
    Ok(())
}

async fn resolve_images(args: &Args) -> Result<(String, String)> {
    if let (Some(a), Some(s)) = (&args.agent_image, &args.sidecar_image) {
        return Ok((a.clone(), s.clone()));
    }
    let root = std::fs::canonicalize(&args.repo_root)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    println!(
        "building/locating images with scripts/build-images.sh (target dir {})",
        target.display()
    );
    let (agent, sidecar) = tokio::task::spawn_blocking(move || {
        corral_sandbox::images::build_images(&root, "release", "bench", Some(&target))
    })
    .await??;
    Ok((
        args.agent_image.clone().unwrap_or(agent),
        args.sidecar_image.clone().unwrap_or(sidecar),
    ))
}

/// After a scenario: the managed containers must be gone; removes any left.
async fn verify_clean(engine: &Engine) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match engine.count_managed().await {
            Ok((_, 0)) => return,
            Ok((_, n)) if Instant::now() > deadline => {
                println!("WARNING: {n} managed container(s) left behind; removing them");
                match engine.remove_leftovers().await {
                    Ok((c, nets)) => println!("removed {c} container(s), {nets} network(s)"),
                    Err(e) => println!("WARNING: cleanup failed: {e:#}"),
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                println!("WARNING: cannot list containers: {e:#}");
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run_scenario(ctx: &Ctx, name: &str) -> Result<Outcome> {
    match name {
        "floor" => {
            let image = &ctx.images.as_ref().context("no images")?.0;
            let v = engine::bare_docker_runs(image, ctx.args.runs).await?;
            let s = Summary::of(&v).unwrap();
            println!(
                "docker run --rm {image} --version ×{}: p50 {:.1} ms  p95 {:.1} ms",
                v.len(),
                s.p50,
                s.p95
            );
            Ok(Outcome::Floor(v))
        }
        "docker-warm" => sequential(ctx, name, Backend::Docker, Pools::warm(2))
            .await
            .map(Outcome::Seq),
        "docker-cold" => sequential(ctx, name, Backend::Docker, Pools::warm(0))
            .await
            .map(Outcome::Seq),
        "docker-prepared" => sequential(
            ctx,
            name,
            Backend::Docker,
            Pools {
                warm: 0,
                prepared: 2,
            },
        )
        .await
        .map(Outcome::Seq),
        "process-warm" => sequential(ctx, name, Backend::Process, Pools::warm(2))
            .await
            .map(Outcome::Seq),
        "process-cold" => sequential(ctx, name, Backend::Process, Pools::warm(0))
            .await
            .map(Outcome::Seq),
        "docker-concurrent" => concurrent(ctx, name, Backend::Docker, Pools::warm(2))
            .await
            .map(Outcome::Conc),
        "process-concurrent" => concurrent(ctx, name, Backend::Process, Pools::warm(2))
            .await
            .map(Outcome::Conc),
        _ => unreachable!("checked in main"),
    }
}

/// The server's pool tiers in one scenario.
#[derive(Debug, Clone, Copy)]
struct Pools {
    /// Started sandboxes waiting for a run.
    warm: usize,
    /// Docker sandboxes half-started (sidecar running, agent created).
    prepared: usize,
}

impl Pools {
    fn warm(warm: usize) -> Pools {
        Pools { warm, prepared: 0 }
    }
}

fn server_env(ctx: &Ctx, backend: Backend, pool: Pools) -> Result<Vec<(String, String)>> {
    let mock = match backend {
        Backend::Docker => ctx.mock_docker.as_ref(),
        Backend::Process => ctx.mock_local.as_ref(),
    }
    .context("no mock LLM")?;
    let limit = ctx.args.concurrency.max(20).to_string();
    let mut env: Vec<(String, String)> = [
        ("CORRAL_SANDBOX", backend.name()),
        ("CORRAL_WARM_POOL_SIZE", &pool.warm.to_string()),
        ("CORRAL_PREPARED_POOL_SIZE", &pool.prepared.to_string()),
        ("CORRAL_MODEL_API", "openai"),
        ("CORRAL_MODEL_ID", "mock-model"),
        ("CORRAL_MODEL_BASE_URL", &mock.openai_base_url()),
        ("CORRAL_MODEL_API_KEY", "sk-bench"),
        ("CORRAL_MAX_CONCURRENT_RUNS", &limit),
        ("CORRAL_ORG_MAX_CONCURRENT_RUNS", &limit),
        ("CORRAL_ORG_MAX_QUEUED_RUNS", "200"),
        // `docker sandbox ready` (build phases) and pool hits/misses are debug lines.
        ("RUST_LOG", "info,corral_sandbox=debug"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    // More detail for one investigation (the sandboxes inherit it), e.g. `debug`.
    if let Ok(filter) = std::env::var("RUNBENCH_RUST_LOG") {
        env.push(("RUST_LOG".into(), filter));
    }
    if backend == Backend::Docker {
        let (agent, sidecar) = ctx.images.as_ref().context("no images")?;
        env.push(("CORRAL_AGENT_IMAGE".into(), agent.clone()));
        env.push(("CORRAL_SIDECAR_IMAGE".into(), sidecar.clone()));
    }
    Ok(env)
}

/// Waits until exactly the pool's members exist: `pool.warm` ready sandboxes (and
/// `pool.prepared` with only their sidecar started), nothing being created or torn
/// down. Returns how long that took.
async fn settle(ctx: &Ctx, server: &Server, backend: Backend, pool: Pools) -> Result<Duration> {
    let t = Instant::now();
    let deadline = t + SETTLE_DEADLINE;
    loop {
        let settled = match backend {
            Backend::Docker => {
                let engine = ctx.engine.as_ref().context("no engine")?;
                let (running, all) = engine.count_managed().await?;
                // A prepared sandbox's sidecar runs, its agent is only created.
                running == 2 * pool.warm + pool.prepared && all == 2 * (pool.warm + pool.prepared)
            }
            Backend::Process => {
                let d = engine::descendants(server.pid);
                let count = |n: &str| d.iter().filter(|(_, c)| c == n).count();
                count("corral-sidecar") == pool.warm && count("corral-agent") == pool.warm
            }
        };
        if settled {
            return Ok(t.elapsed());
        }
        if Instant::now() > deadline {
            bail!("the sandboxes never settled to a pool of {pool:?} within {SETTLE_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn boot(
    ctx: &Ctx,
    name: &str,
    backend: Backend,
    pool: Pools,
    keys: usize,
) -> Result<(Server, Api, Vec<String>)> {
    let env = server_env(ctx, backend, pool)?;
    let t = Instant::now();
    let server = Server::start(&ctx.args.server, &env).await?;
    let api = Api::new(&server.base)?;
    let keys = api.setup(keys).await?;
    settle(ctx, &server, backend, pool).await?;
    // Let the engine and the freshly started members go quiet.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    println!(
        "{name}: server {} (pid {}) up, pool {} warm + {} prepared after {:.1} s",
        server.base,
        server.pid,
        pool.warm,
        pool.prepared,
        t.elapsed().as_secs_f64()
    );
    Ok((server, api, keys))
}

/// One run at a time: trigger, wait for the terminal status, pause, settle.
async fn sequential(ctx: &Ctx, name: &str, backend: Backend, pool: Pools) -> Result<SeqResult> {
    let total = ctx.args.warmup + ctx.args.runs;
    let (server, api, keys) = boot(ctx, name, backend, pool, total.div_ceil(RUNS_PER_KEY)).await?;
    let mock = match backend {
        Backend::Docker => ctx.mock_docker.as_ref(),
        Backend::Process => ctx.mock_local.as_ref(),
    };
    let result = async {
        let mut triggered = Vec::with_capacity(total);
        let mut settle_extra = Vec::new();
        let mut first_llm = HashMap::new();
        for i in 0..total {
            // One run at a time: the first request after the trigger is this run's.
            let seen_before = mock.map_or(0, |m| m.requests().len());
            let t = api.trigger(&keys[i / RUNS_PER_KEY]).await?;
            let (status, seen) = api.wait_terminal(&t, RUN_DEADLINE).await?;
            if let Some(r) = mock.and_then(|m| m.requests().get(seen_before).cloned()) {
                first_llm.insert(t.id.clone(), r.received_unix_ms);
            }
            if status != "success" {
                println!("{name}: run {} ended {status}", t.id);
            }
            triggered.push((t.clone(), status, seen));
            tokio::time::sleep(Duration::from_millis(ctx.args.settle_ms)).await;
            let extra = settle(ctx, &server, backend, pool).await?;
            if i >= ctx.args.warmup {
                settle_extra.push(extra.as_secs_f64() * 1000.0);
            }
        }
        let mut records = collect(&server, &triggered).await?;
        for r in &mut records {
            r.first_llm_unix_ms = first_llm.get(&r.id).copied();
        }
        let warmups: Vec<RunRecord> = records
            .drain(..ctx.args.warmup.min(records.len()))
            .collect();
        let log = parse_log(&server.log_path());
        let builds = records
            .iter()
            .filter(|r| r.warm == Some(false))
            .filter_map(|r| log.builds.get(r.sandbox.as_ref()?).copied())
            .collect();
        Ok::<_, anyhow::Error>(SeqResult {
            name: name.to_owned(),
            backend,
            pool: pool.warm,
            runs: records,
            warmups,
            builds,
            settle_extra_ms: settle_extra,
        })
    }
    .await;
    finish(ctx, server, name).await;
    let r = result?;
    print_seq_progress(&r);
    Ok(r)
}

/// `concurrency` runs at once on a warm pool: wall time and peak memory.
async fn concurrent(ctx: &Ctx, name: &str, backend: Backend, pool: Pools) -> Result<ConcResult> {
    let n = ctx.args.concurrency;
    let per_key = n.div_ceil(n.div_ceil(RUNS_PER_KEY));
    let (server, api, keys) = boot(ctx, name, backend, pool, n.div_ceil(per_key)).await?;
    let result = async {
        let engine = match backend {
            Backend::Docker => ctx.engine.clone(),
            Backend::Process => None,
        };
        let sampler = Sampler::start(server.pid, engine);
        // One idle sample first.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let first_sent = Instant::now();
        let outs = futures::future::join_all((0..n).map(|i| {
            let api = api.clone();
            let key = keys[i / per_key].clone();
            async move {
                let t = api.trigger(&key).await?;
                let (status, seen) = api.wait_terminal(&t, RUN_DEADLINE * 2).await?;
                Ok::<_, anyhow::Error>((t, status, seen))
            }
        }))
        .await;
        let last_seen = Instant::now();
        let peaks = sampler.finish().await;
        let triggered: Vec<(Triggered, String, Instant)> =
            outs.into_iter().collect::<Result<_>>()?;
        let wall_client_ms = triggered
            .iter()
            .map(|(_, _, seen)| *seen)
            .max()
            .unwrap_or(last_seen)
            .duration_since(first_sent)
            .as_secs_f64()
            * 1000.0;
        let records = collect(&server, &triggered).await?;
        let first_sent_unix = records
            .iter()
            .map(|r| r.sent_unix_ms)
            .fold(f64::INFINITY, f64::min);
        let wall_db_ms = records
            .iter()
            .map(|r| r.completed_at)
            .collect::<Option<Vec<_>>>()
            .and_then(|v| v.into_iter().max())
            .map(|m| m as f64 - first_sent_unix);
        Ok::<_, anyhow::Error>(ConcResult {
            name: name.to_owned(),
            runs: records,
            wall_client_ms,
            wall_db_ms,
            peaks,
        })
    }
    .await;
    finish(ctx, server, name).await;
    let r = result?;
    println!(
        "{name}: {} runs, {} success, wall {:.0} ms, peak memory {:.0} MiB (server {:.0} + sandboxes {:.0}, {} units)",
        r.runs.len(),
        r.runs.iter().filter(|x| x.status == "success").count(),
        r.wall_client_ms,
        mib(r.peaks.total),
        mib(r.peaks.server),
        mib(r.peaks.sandboxes),
        r.peaks.units
    );
    Ok(r)
}

/// Stops the server and keeps its log under `--out-dir`.
async fn finish(ctx: &Ctx, mut server: Server, name: &str) {
    let dest = ctx.args.out_dir.join(format!("{name}.server.log"));
    server.stop(SHUTDOWN_GRACE).await;
    // Before `server` (and its temp dir) is dropped.
    match std::fs::copy(server.log_path(), &dest) {
        Ok(_) => println!("{name}: server log kept at {}", dest.display()),
        Err(e) => println!("{name}: cannot keep the server log: {e}"),
    }
}

/// `id, status, created_at, started_at, first_event_at, completed_at` of `runs`.
type RunRow = (String, String, i64, Option<i64>, Option<i64>, Option<i64>);

/// Joins the client's view of each run with the DB row and the server log.
async fn collect(
    server: &Server,
    triggered: &[(Triggered, String, Instant)],
) -> Result<Vec<RunRecord>> {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(server.db_path())
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts)
        .await
        .with_context(|| format!("opening {}", server.db_path().display()))?;
    let rows: Vec<RunRow> = sqlx::query_as(
        "SELECT id, status, created_at, started_at, first_event_at, completed_at FROM runs",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    let rows: HashMap<String, _> = rows.into_iter().map(|r| (r.0.clone(), r)).collect();
    let log = parse_log(&server.log_path());
    let mut out = Vec::with_capacity(triggered.len());
    for (t, status, seen) in triggered {
        let row = rows
            .get(&t.id)
            .with_context(|| format!("run {} not in the database", t.id))?;
        let started = log.started.get(&t.id);
        out.push(RunRecord {
            id: t.id.clone(),
            status: if row.1.is_empty() {
                status.clone()
            } else {
                row.1.clone()
            },
            sent_unix_ms: t.sent_unix_ms,
            accept_ms: t.accepted.duration_since(t.sent).as_secs_f64() * 1000.0,
            terminal_client_ms: seen.duration_since(t.sent).as_secs_f64() * 1000.0,
            created_at: Some(row.2),
            started_at: row.3,
            first_event_at: row.4,
            completed_at: row.5,
            warm: started.map(|s| s.0),
            sandbox: started.map(|s| s.1.clone()),
            first_llm_unix_ms: None,
        });
    }
    Ok(out)
}

#[derive(Default)]
struct LogFacts {
    /// run id → (warm, sandbox id) from `run started`.
    started: HashMap<String, (bool, String)>,
    /// sandbox id → build phases from `docker sandbox ready`.
    builds: HashMap<String, BuildPhases>,
}

fn parse_log(path: &Path) -> LogFacts {
    let mut facts = LogFacts::default();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let f = &v["fields"];
        match f["message"].as_str() {
            Some("run started") => {
                if let (Some(run), Some(sbx)) = (f["run_id"].as_str(), f["sandbox"].as_str()) {
                    let warm = f["warm"]
                        .as_bool()
                        .or_else(|| f["warm"].as_str().map(|s| s == "true"))
                        .unwrap_or(false);
                    facts.started.insert(run.to_owned(), (warm, sbx.to_owned()));
                }
            }
            Some("docker sandbox ready") => {
                let d = |k: &str| f[k].as_str().and_then(parse_debug_duration_ms);
                if let (Some(sbx), Some(create), Some(connect_start), Some(ready)) = (
                    f["sandbox"].as_str(),
                    d("create"),
                    d("connect_start"),
                    d("ready"),
                ) {
                    facts.builds.insert(
                        sbx.to_owned(),
                        BuildPhases {
                            create,
                            connect_start,
                            ready,
                        },
                    );
                }
            }
            _ => {}
        }
    }
    facts
}

/// `Duration`'s Debug form (`1.5s`, `12.3ms`, `4µs`, `7ns`) in milliseconds.
fn parse_debug_duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("µs").or_else(|| s.strip_suffix("us")) {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("ns") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e3)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * scale)
}

fn series(runs: &[RunRecord], f: impl Fn(&RunRecord) -> Option<f64>) -> Option<Summary> {
    Summary::of(&runs.iter().filter_map(f).collect::<Vec<_>>())
}

fn warm_cold(runs: &[RunRecord]) -> String {
    let w = runs.iter().filter(|r| r.warm == Some(true)).count();
    let c = runs.iter().filter(|r| r.warm == Some(false)).count();
    format!("{w}/{c}")
}

fn print_seq_progress(r: &SeqResult) {
    let s = series(&r.runs, RunRecord::start_ms);
    println!(
        "{}: {} runs ({} warm/cold), start p50 {:.1} ms, p95 {:.1} ms; warm-up run(s) start: {}",
        r.name,
        r.runs.len(),
        warm_cold(&r.runs),
        s.map_or(f64::NAN, |s| s.p50),
        s.map_or(f64::NAN, |s| s.p95),
        r.warmups
            .iter()
            .map(|w| w.start_ms().map_or("-".into(), |m| format!("{m:.0} ms")))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn report(ctx: &Ctx, outcomes: &[(String, Result<Outcome>)]) {
    let mut floor: Option<Summary> = None;
    let mut seqs: Vec<&SeqResult> = Vec::new();
    let mut concs: Vec<&ConcResult> = Vec::new();
    for (_, o) in outcomes {
        match o {
            Ok(Outcome::Floor(v)) => floor = Summary::of(v),
            Ok(Outcome::Seq(s)) => seqs.push(s),
            Ok(Outcome::Conc(c)) => concs.push(c),
            Err(_) => {}
        }
    }
    let hdr = format!("{:>8} {:>8} {:>8} {:>8}", "p50", "p95", "min", "max");
    println!("\n================ corral-runbench results (ms) ================");
    println!(
        "run start = client sends the trigger → runs.first_event_at (server clock, same host; \
         first_event_at has 1 ms resolution)"
    );
    println!(
        "\n{:<14} {:>4} {:>5} {:>6} | {hdr} | trigger→terminal (db) p50/p95 | ok",
        "scenario", "n", "pool", "w/c"
    );
    for s in &seqs {
        let term = series(&s.runs, RunRecord::terminal_db_ms);
        println!(
            "{:<14} {:>4} {:>5} {:>6} | {} | {:>8.1} / {:>8.1}        | {}/{}",
            s.name,
            s.runs.len(),
            s.pool,
            warm_cold(&s.runs),
            cells(series(&s.runs, RunRecord::start_ms)),
            term.map_or(f64::NAN, |t| t.p50),
            term.map_or(f64::NAN, |t| t.p95),
            s.runs.iter().filter(|r| r.status == "success").count(),
            s.runs.len()
        );
    }
    if let Some(f) = floor {
        println!(
            "{:<14} {:>4} {:>5} {:>6} | {} |  (docker run --rm <agent image> --version)",
            "floor",
            f.n,
            "-",
            "-",
            cells(Some(f))
        );
    }

    println!("\nwhere the run-start time goes (p50 / p95 of each leg):");
    println!(
        "{:<14} | {:>17} | {:>17} | {:>17} | {:>17} | {:>17} | {:>9}",
        "scenario",
        "sent→201 (client)",
        "sent→created_at",
        "created→started",
        "started→1st event",
        "terminal (client)",
        "settle+"
    );
    let pp = |s: Option<Summary>| match s {
        Some(s) => format!("{:>8.1}/{:<8.1}", s.p50, s.p95),
        None => format!("{:>17}", "-"),
    };
    for s in &seqs {
        println!(
            "{:<14} | {} | {} | {} | {} | {} | {:>9.0}",
            s.name,
            pp(series(&s.runs, |r| Some(r.accept_ms))),
            pp(series(&s.runs, RunRecord::api_ms)),
            pp(series(&s.runs, RunRecord::lease_ms)),
            pp(series(&s.runs, RunRecord::boot_ms)),
            pp(series(&s.runs, |r| Some(r.terminal_client_ms))),
            Summary::of(&s.settle_extra_ms).map_or(f64::NAN, |x| x.p50),
        );
    }
    println!(
        "  created→started = queue + sandbox lease (pool hit, or the whole sandbox build);\n  \
         started→1st event = configure the sidecar + agent gets its task + first event delivered;\n  \
         settle+ = p50 extra wait after the {} ms pause until the pool was full/idle again",
        ctx.args.settle_ms
    );
    println!(
        "\ntrigger → the model's first request at the mock LLM (p50 / p95, goal p50 < 30 ms warm):"
    );
    for s in &seqs {
        println!(
            "{:<14} | {}",
            s.name,
            pp(series(&s.runs, RunRecord::first_llm_ms))
        );
    }
    for s in &seqs {
        if s.backend != Backend::Docker || s.builds.is_empty() {
            continue;
        }
        let b = &s.builds;
        let create = Summary::of(&b.iter().map(|x| x.create).collect::<Vec<_>>());
        let connect = Summary::of(
            &b.iter()
                .map(|x| x.connect_start - x.create)
                .collect::<Vec<_>>(),
        );
        let ready = Summary::of(
            &b.iter()
                .map(|x| x.ready - x.connect_start)
                .collect::<Vec<_>>(),
        );
        let total = Summary::of(&b.iter().map(|x| x.ready).collect::<Vec<_>>());
        println!(
            "\n{}: docker sandbox build phases of the {} cold leases (server log), ms:\n  \
             {:<52} {hdr}\n  {:<52} {}\n  {:<52} {}\n  {:<52} {}\n  {:<52} {}",
            s.name,
            b.len(),
            "",
            "1 create run network + sidecar container",
            cells(create),
            "2 connect sidecar, start it | create agent",
            cells(connect),
            "3 start agent + inspect | sidecar /health",
            cells(ready),
            "total build",
            cells(total),
        );
    }

    if !concs.is_empty() {
        println!(
            "\n{:<20} {:>3} {:>4} | {:>10} {:>10} | {:>8} {:>8} | {:>9} {:>9} {:>9} {:>9} {:>5}",
            "concurrent",
            "n",
            "ok",
            "wall(cli)",
            "wall(db)",
            "start50",
            "start95",
            "idle MiB",
            "peak MiB",
            "server",
            "sandbox",
            "units"
        );
        for c in &concs {
            let s = series(&c.runs, RunRecord::start_ms);
            println!(
                "{:<20} {:>3} {:>4} | {:>10.0} {:>10.0} | {:>8.0} {:>8.0} | {:>9.0} {:>9.0} {:>9.1} {:>9.0} {:>5}",
                c.name,
                c.runs.len(),
                c.runs.iter().filter(|r| r.status == "success").count(),
                c.wall_client_ms,
                c.wall_db_ms.unwrap_or(f64::NAN),
                s.map_or(f64::NAN, |s| s.p50),
                s.map_or(f64::NAN, |s| s.p95),
                mib(c.peaks.idle_total),
                mib(c.peaks.total),
                mib(c.peaks.server),
                mib(c.peaks.sandboxes),
                c.peaks.units,
            );
        }
        println!(
            "  peak MiB = highest simultaneous server RSS + sandboxes; server / sandbox = each part's own peak;\n  \
             docker sandboxes = Σ memory_stats.usage of running corral.managed containers\n    (= cgroup v1 memory.usage_in_bytes, read from /sys/fs/cgroup, incl. page cache; `docker stats` shows usage − cache);\n  \
             process sandboxes = Σ VmRSS of the server's descendants; units = most containers/processes in one sample"
        );
        for c in &concs {
            println!(
                "  {}: {} samples every 100 ms, slowest sample {:.0} ms",
                c.name, c.peaks.samples, c.peaks.slowest_sample_ms
            );
        }
    }

    println!("\ntargets:");
    let p50_of = |name: &str| {
        seqs.iter()
            .find(|s| s.name == name)
            .and_then(|s| series(&s.runs, RunRecord::start_ms))
            .map(|s| s.p50)
    };
    for name in ["docker-warm", "process-warm"] {
        if let Some(p) = p50_of(name) {
            println!(
                "  {name:<13} p50 {p:>7.1} ms  < {TARGET_WARM_P50_MS:.0} ms ? {}",
                verdict(
                    p < TARGET_WARM_P50_MS,
                    p - TARGET_WARM_P50_MS,
                    p / TARGET_WARM_P50_MS
                )
            );
        }
    }
    match floor {
        Some(f) => {
            for name in ["docker-cold", "docker-prepared", "process-cold"] {
                if let Some(p) = p50_of(name) {
                    let limit = TARGET_COLD_OVER_FLOOR * f.p50;
                    println!(
                        "  {name:<13} p50 {p:>7.1} ms  / floor p50 {:.1} ms = {:.2}×  < {TARGET_COLD_OVER_FLOOR}× ({limit:.0} ms) ? {}",
                        f.p50,
                        p / f.p50,
                        verdict(p < limit, p - limit, p / limit)
                    );
                }
            }
        }
        None => println!("  (no floor measured: cold targets not evaluated)"),
    }
    for s in &seqs {
        for r in s.runs.iter().filter(|r| r.status != "success") {
            println!("  {}: run {} ended {}", s.name, r.id, r.status);
        }
    }
    for c in &concs {
        for r in c.runs.iter().filter(|r| r.status != "success") {
            println!("  {}: run {} ended {}", c.name, r.id, r.status);
        }
    }
    for (name, o) in outcomes {
        if let Err(e) = o {
            println!("  {name}: FAILED: {e:#}");
        }
    }
}

fn verdict(met: bool, over_ms: f64, ratio: f64) -> String {
    if met {
        "MET".to_owned()
    } else {
        format!("MISSED by {over_ms:.0} ms ({ratio:.2}× the limit)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_durations() {
        assert_eq!(parse_debug_duration_ms("1.5s"), Some(1500.0));
        assert_eq!(parse_debug_duration_ms("12.25ms"), Some(12.25));
        assert_eq!(parse_debug_duration_ms("250µs"), Some(0.25));
        assert_eq!(parse_debug_duration_ms("x"), None);
    }
}
