//! `corral-rtbench`: realtime fan-out and webhook delivery of the release `corral`
//! server, on loopback.
//!
//! * `sse-fanout-<N>`: N SSE subscribers on one run; the server's resident memory per
//!   idle subscriber, then the latency from a `run_logs` INSERT (written straight into
//!   the server's database; a trigger makes it a realtime event) to its frame at every
//!   subscriber, and how many receipts went missing.
//! * `webhook-throughput`: one webhook on `run.success`; M running runs inserted
//!   directly, then moved to `success` in one statement (a trigger writes one
//!   delivery per run); deliveries per second until a local receiver has seen all M,
//!   and duplicates. On SQLite, and also on PostgreSQL when
//!   `CORRAL_BENCH_DATABASE_URL` names a server where a database may be created.
//!
//! Build first: `cargo build --release -p corral -p corral-bench`. Every scenario
//! gets a fresh server and data dir; every wait has a deadline; the server is killed
//! (and its temp dir removed) on every exit path. It prints figures; it is not a test.

#[expect(
    dead_code,
    reason = "shared with corral-runbench, which also triggers and awaits runs"
)]
#[path = "runbench/api.rs"]
mod api;
#[path = "rtbench/db.rs"]
mod db;
#[path = "rtbench/hook.rs"]
mod hook;
#[path = "runbench/server.rs"]
mod server;
#[path = "rtbench/sse.rs"]
mod sse;
#[path = "rtbench/stats.rs"]
mod stats;
#[path = "rtbench/sys.rs"]
mod sys;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Parser;
use corral_bench::stats::{mib, Summary};
use serde_json::{json, Value};

use api::Api;
use db::Db;
use server::Server;
use stats::cells;

/// Targets the figures are compared with.
const TARGET_P99_MS: f64 = 100.0;
const TARGET_P99_AT: usize = 5000;
const TARGET_BYTES_PER_SUB: f64 = 2048.0;

/// Longest a whole scenario may take.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(175);
/// Longest one batch of subscribers may take to get their snapshots.
const BATCH_DEADLINE: Duration = Duration::from_secs(30);
/// After the last INSERT, longest the stragglers may take.
const RECEIPT_DEADLINE: Duration = Duration::from_secs(15);
/// After the UPDATE, longest the receiver may wait for every delivery.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(75);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Subscribers opened and closed before the baseline memory reading.
const WARMUP_SUBSCRIBERS: usize = 50;

const PG_ENV: &str = "CORRAL_BENCH_DATABASE_URL";
/// Subscribers per HTTP/2 connection in the `-h2` scenarios (below the server's
/// limit of concurrent streams per connection).
const H2_STREAMS_PER_CONNECTION: usize = 100;

#[derive(Parser, Debug)]
#[command(
    name = "corral-rtbench",
    about = "Realtime SSE fan-out and webhook delivery throughput of the release corral server"
)]
struct Args {
    /// Scenario to run (repeatable; default: all): sse-fanout-<N> (sse-fanout: one per
    /// --subscribers count), webhook-throughput.
    #[arg(long = "scenario", value_name = "NAME", value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Subscriber counts of the SSE fan-out scenarios.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    subscribers: Vec<usize>,
    /// Log rows inserted (one realtime event each) per SSE scenario.
    #[arg(long, default_value_t = 50)]
    events: usize,
    /// Pause between two log rows.
    #[arg(long, default_value_t = 100)]
    event_interval_ms: u64,
    /// Subscribers connecting at once.
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// Runs completed at once in the webhook scenario.
    #[arg(long, default_value_t = 2000)]
    webhook_runs: usize,
    /// CORRAL_WEBHOOK_CONCURRENCY for the server (default: the server's own, 16).
    #[arg(long)]
    webhook_concurrency: Option<usize>,
    /// The corral server binary.
    #[arg(long, default_value = "target/release/corral")]
    server: PathBuf,
    /// Wait before each memory reading: longer than the server's memory trim period
    /// (CORRAL_MEMORY_TRIM_SECONDS, 10 s), so that idle figures are settled ones, not
    /// a burst's freed memory still resident. The reading 1 s after the opens is
    /// printed as well.
    #[arg(long, default_value_t = 11)]
    settle_seconds: u64,
    /// Where each scenario's server log is copied.
    #[arg(long, default_value = "/tmp/corral-rtbench")]
    out_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Scenario {
    Sse(usize, Backend),
    /// N subscribers as streams of shared HTTP/2 connections (SQLite).
    SseH2(usize),
    Webhook(Backend),
}

impl Scenario {
    fn name(&self) -> String {
        match self {
            Scenario::Sse(n, Backend::Sqlite) => format!("sse-fanout-{n}"),
            Scenario::Sse(n, Backend::Postgres) => format!("sse-fanout-{n}-postgres"),
            Scenario::SseH2(n) => format!("sse-fanout-{n}-h2"),
            Scenario::Webhook(b) => format!("webhook-throughput ({})", b.name()),
        }
    }
}

struct SseResult {
    name: String,
    n: usize,
    subscribed: usize,
    connect_s: f64,
    rss_base: u64,
    rss_idle: u64,
    rss_peak: u64,
    fds_base: usize,
    fds_idle: usize,
    metrics: Vec<String>,
    events: usize,
    receipts: usize,
    duplicates: usize,
    foreign: usize,
    /// All receipt − insert latencies, ms.
    latency: Option<Summary>,
    /// Per event: the first subscriber's latency (the server's pick-up delay), ms.
    first: Option<Summary>,
    /// Per event: last − first receipt (the fan-out spread), ms.
    spread: Option<Summary>,
    /// INSERT durations, ms.
    insert: Option<Summary>,
    /// Receipt − commit (the INSERT's return), ms.
    from_commit: Option<Summary>,
    /// Bytes per idle keep-alive connection that is not a subscriber.
    http_floor: f64,
    /// Last INSERT → last receipt, ms.
    drain_ms: f64,
    server_cpu_s: f64,
    bench_cpu_s: f64,
    events_wall_s: f64,
    /// Client stream errors: message → count.
    errors: BTreeMap<String, usize>,
}

struct HookResult {
    backend: Backend,
    runs: usize,
    insert_ms: f64,
    update_ms: f64,
    distinct: usize,
    total: usize,
    duplicates: usize,
    bad_signature: usize,
    unexpected: usize,
    distinct_runs: usize,
    /// Commit → first / last delivery, ms.
    first_ms: f64,
    last_ms: f64,
    per_delivery: Option<Summary>,
    rate: f64,
    settled: bool,
    rows: Vec<(String, i64)>,
    max_attempts: i64,
    server_cpu_s: f64,
    rss_peak: u64,
    concurrency: String,
    metrics: Vec<String>,
}

#[expect(
    clippy::large_enum_variant,
    reason = "one per scenario, kept until the report; its size costs nothing"
)]
enum Outcome {
    Sse(SseResult),
    Hook(HookResult),
}

struct Ctx {
    args: Args,
    /// PostgreSQL databases created and not yet dropped.
    pg_dbs: Mutex<Vec<String>>,
    pg_admin: Option<String>,
}

impl Ctx {
    /// The wait before a memory reading (`--settle-seconds`).
    fn settle(&self) -> Duration {
        Duration::from_secs(self.args.settle_seconds)
    }
}

fn parse_scenarios(args: &Args, pg: bool) -> Result<Vec<Scenario>> {
    let names: Vec<String> = if args.scenarios.is_empty() {
        vec![
            "sse-fanout".into(),
            "sse-fanout-h2".into(),
            "webhook-throughput".into(),
        ]
    } else {
        args.scenarios.clone()
    };
    let need_pg = |name: &str| {
        if pg {
            Ok(())
        } else {
            Err(anyhow!("scenario {name} needs ${PG_ENV}"))
        }
    };
    let mut out = Vec::new();
    for name in names {
        match name.as_str() {
            "sse-fanout" => out.extend(
                args.subscribers
                    .iter()
                    .map(|n| Scenario::Sse(*n, Backend::Sqlite)),
            ),
            "sse-fanout-postgres" => {
                need_pg(&name)?;
                out.extend(
                    args.subscribers
                        .iter()
                        .map(|n| Scenario::Sse(*n, Backend::Postgres)),
                );
            }
            "sse-fanout-h2" => out.extend(args.subscribers.iter().map(|n| Scenario::SseH2(*n))),
            "webhook-throughput" => {
                out.push(Scenario::Webhook(Backend::Sqlite));
                if pg {
                    out.push(Scenario::Webhook(Backend::Postgres));
                }
            }
            other if other.starts_with("sse-fanout-") && other.ends_with("-h2") => {
                match other
                    .strip_prefix("sse-fanout-")
                    .and_then(|r| r.strip_suffix("-h2"))
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    Some(n) if n > 0 => out.push(Scenario::SseH2(n)),
                    _ => bail!("unknown scenario {other:?}"),
                }
            }
            other => {
                let (rest, backend) = match other.strip_suffix("-postgres") {
                    Some(r) => (r, Backend::Postgres),
                    None => (other, Backend::Sqlite),
                };
                match rest
                    .strip_prefix("sse-fanout-")
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    Some(n) if n > 0 => {
                        if backend == Backend::Postgres {
                            need_pg(other)?;
                        }
                        out.push(Scenario::Sse(n, backend));
                    }
                    _ => bail!(
                        "unknown scenario {other:?} (known: sse-fanout, sse-fanout-<N>, \
                         sse-fanout-postgres, sse-fanout-<N>-postgres, sse-fanout-h2, \
                         sse-fanout-<N>-h2, webhook-throughput)"
                    ),
                }
            }
        }
    }
    out.dedup();
    Ok(out)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.events == 0 || args.batch == 0 || args.webhook_runs == 0 {
        bail!("--events, --batch and --webhook-runs must be at least 1");
    }
    args.server = std::fs::canonicalize(&args.server)
        .with_context(|| format!("no server binary at {}", args.server.display()))?;
    std::fs::create_dir_all(&args.out_dir)?;
    let pg_admin = std::env::var(PG_ENV).ok().filter(|s| !s.is_empty());
    let scenarios = parse_scenarios(&args, pg_admin.is_some())?;
    // Client sockets here, server sockets in the child (which inherits the limit).
    let nofile = sys::raise_nofile(65536);

    let m = sys::machine();
    println!(
        "command: {}",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    println!(
        "machine: {} cores ({}), {} MiB RAM, kernel {}, RLIMIT_NOFILE {nofile}",
        m.cores, m.cpu, m.mem_total_mib, m.kernel
    );
    println!("load average at start: {}", sys::loadavg());
    println!(
        "server: {}{}",
        args.server.display(),
        binary_age(&args.server)
    );
    println!(
        "scenarios: {}  (PostgreSQL: {})",
        scenarios
            .iter()
            .map(Scenario::name)
            .collect::<Vec<_>>()
            .join(", "),
        if pg_admin.is_some() {
            "from $CORRAL_BENCH_DATABASE_URL"
        } else {
            "skipped, $CORRAL_BENCH_DATABASE_URL not set"
        }
    );
    let ctx = Ctx {
        args,
        pg_dbs: Mutex::new(Vec::new()),
        pg_admin,
    };

    let started = Instant::now();
    let mut outcomes: Vec<(String, Result<Outcome>)> = Vec::new();
    for sc in scenarios {
        let name = sc.name();
        println!("\n=== {name} ===");
        let t = Instant::now();
        let res = tokio::select! {
            r = tokio::time::timeout(SCENARIO_DEADLINE, run_scenario(&ctx, &sc)) => {
                r.unwrap_or_else(|_| Err(anyhow!("scenario took over {SCENARIO_DEADLINE:?}")))
            }
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        };
        // The scenario's server is gone (stopped, or killed on drop) by now.
        drop_leftover_databases(&ctx).await;
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
    report(&ctx, &outcomes, started.elapsed());
    if outcomes.iter().any(|(_, r)| r.is_err()) {
        std::process::exit(1);
    }
    Ok(())
}

fn binary_age(p: &std::path::Path) -> String {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or(String::new(), |age| {
            format!(" (built {:.0} min ago)", age.as_secs_f64() / 60.0)
        })
}

async fn drop_leftover_databases(ctx: &Ctx) {
    let Some(admin) = &ctx.pg_admin else {
        return;
    };
    let names = std::mem::take(&mut *ctx.pg_dbs.lock().unwrap_or_else(|e| e.into_inner()));
    for name in names {
        if let Err(e) = db::drop_database(admin, &name).await {
            println!("WARNING: cannot drop database {name}: {e:#}");
        }
    }
}

async fn run_scenario(ctx: &Ctx, sc: &Scenario) -> Result<Outcome> {
    match sc {
        Scenario::Sse(n, b) => sse_fanout(ctx, *n, *b, false).await.map(Outcome::Sse),
        Scenario::SseH2(n) => sse_fanout(ctx, *n, Backend::Sqlite, true)
            .await
            .map(Outcome::Sse),
        Scenario::Webhook(b) => webhook(ctx, *b).await.map(Outcome::Hook),
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn sqlite_url(server: &Server) -> String {
    format!("sqlite://{}?mode=rw", server.db_path().display())
}

fn socket_addr(server: &Server) -> Result<SocketAddr> {
    server
        .base
        .trim_start_matches("http://")
        .parse()
        .with_context(|| format!("server address {}", server.base))
}

/// Stops the server and keeps its log under `--out-dir`.
async fn finish(ctx: &Ctx, mut server: Server, name: &str) {
    let dest = ctx.args.out_dir.join(format!("{name}.server.log"));
    server.stop(SHUTDOWN_GRACE).await;
    match std::fs::copy(server.log_path(), &dest) {
        Ok(_) => println!("{name}: server log kept at {}", dest.display()),
        Err(e) => println!("{name}: cannot keep the server log: {e}"),
    }
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The `/metrics` samples whose name contains `word`, if the server exports any.
async fn metric_lines(http: &reqwest::Client, metrics: &str, word: &str) -> Vec<String> {
    let Ok(r) = http.get(format!("http://{metrics}/metrics")).send().await else {
        return vec!["(metrics endpoint unreachable)".into()];
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(word))
        .map(str::to_owned)
        .collect()
}

/// Spawned subscribers and the switch that ends them.
struct Clients {
    shared: Arc<sse::Shared>,
    stop: tokio::sync::watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<sse::Outcome>>,
}

/// Clients left behind by an error or a deadline are aborted (their sockets close).
impl Drop for Clients {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

impl Clients {
    fn new() -> Clients {
        Clients {
            shared: Arc::new(sse::Shared::default()),
            stop: tokio::sync::watch::channel(false).0,
            handles: Vec::new(),
        }
    }

    /// Opens `n` more clients, `batch` at a time, each batch waiting until all are
    /// subscribed (or failed). Returns how many are subscribed.
    async fn open<F, Fut>(&mut self, n: usize, batch: usize, spawn: F) -> Result<usize>
    where
        F: Fn(Arc<sse::Shared>, tokio::sync::watch::Receiver<bool>) -> Fut,
        Fut: std::future::Future<Output = sse::Outcome> + Send + 'static,
    {
        let mut opened = 0;
        while opened < n {
            let this = batch.min(n - opened);
            for _ in 0..this {
                self.handles.push(tokio::spawn(spawn(
                    self.shared.clone(),
                    self.stop.subscribe(),
                )));
            }
            opened += this;
            let want = self.handles.len();
            let shared = self.shared.clone();
            let settled = tokio::time::timeout(BATCH_DEADLINE, async {
                loop {
                    let changed = shared.changed.notified();
                    let done = shared.subscribed.load(Ordering::Relaxed)
                        + shared.failed.load(Ordering::Relaxed);
                    if done >= want {
                        return;
                    }
                    let _ = tokio::time::timeout(Duration::from_millis(100), changed).await;
                }
            })
            .await;
            if settled.is_err() {
                bail!(
                    "{} of {want} subscribers subscribed, {} failed, after {BATCH_DEADLINE:?} for the last batch",
                    self.shared.subscribed.load(Ordering::Relaxed),
                    self.shared.failed.load(Ordering::Relaxed)
                );
            }
        }
        Ok(self.shared.subscribed.load(Ordering::Relaxed))
    }

    /// Ends every subscriber and collects what each saw.
    async fn close(mut self) -> Vec<sse::Outcome> {
        let _ = self.stop.send(true);
        let handles = std::mem::take(&mut self.handles);
        let aborts: Vec<_> = handles.iter().map(|h| h.abort_handle()).collect();
        match tokio::time::timeout(Duration::from_secs(20), futures::future::join_all(handles))
            .await
        {
            Ok(all) => all.into_iter().filter_map(|r| r.ok()).collect(),
            Err(_) => {
                for a in aborts {
                    a.abort();
                }
                println!("WARNING: subscribers did not stop within 20 s; aborted");
                Vec::new()
            }
        }
    }
}

/// Bytes of server RSS per idle keep-alive HTTP/1.1 connection (one `GET /health`
/// answered, then nothing), on a server of its own: the floor under the SSE figure.
async fn idle_http_floor(ctx: &Ctx, n: usize) -> Result<f64> {
    let server = Server::start(
        &ctx.args.server,
        &env(&[
            ("CORRAL_SANDBOX", "process".into()),
            ("CORRAL_WARM_POOL_SIZE", "0".into()),
            ("RUST_LOG", "info".into()),
        ]),
    )
    .await?;
    let addr = socket_addr(&server)?;
    let result = async {
        let mut warm = Clients::new();
        warm.open(WARMUP_SUBSCRIBERS.min(n), ctx.args.batch, |sh, stop| {
            sse::idle_client(addr, "/health", sh, stop)
        })
        .await?;
        warm.close().await;
        tokio::time::sleep(ctx.settle()).await;
        let base = sys::rss_median(server.pid, 5, Duration::from_millis(100)).await;
        let mut clients = Clients::new();
        let opened = clients
            .open(n, ctx.args.batch, |sh, stop| {
                sse::idle_client(addr, "/health", sh, stop)
            })
            .await;
        tokio::time::sleep(ctx.settle()).await;
        let idle = sys::rss_median(server.pid, 5, Duration::from_millis(100)).await;
        clients.close().await;
        let opened = opened?;
        println!(
            "floor: {opened} idle keep-alive connections (GET /health answered): server RSS {:.1} → {:.1} MiB, {:.0} B per connection",
            mib(base),
            mib(idle),
            per_sub(base, idle, opened)
        );
        Ok(per_sub(base, idle, opened))
    }
    .await;
    let mut server = server;
    server.stop(SHUTDOWN_GRACE).await;
    result
}

/// A fresh PostgreSQL database for one scenario (dropped after it, or at the latest
/// after an interrupted one); its URL.
async fn scenario_database(ctx: &Ctx) -> Result<String> {
    let admin = ctx.pg_admin.as_deref().context("no PostgreSQL server")?;
    let (db_name, url) = db::create_database(admin).await?;
    ctx.pg_dbs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(db_name);
    Ok(url)
}

async fn sse_fanout(ctx: &Ctx, n: usize, backend: Backend, h2: bool) -> Result<SseResult> {
    let name = if h2 {
        Scenario::SseH2(n).name()
    } else {
        Scenario::Sse(n, backend).name()
    };
    // The floor is per HTTP/1.1 connection; HTTP/2 streams share theirs.
    let floor = if h2 {
        f64::NAN
    } else {
        idle_http_floor(ctx, n).await?
    };
    let metrics = format!("127.0.0.1:{}", free_port()?);
    let mut vars = vec![
        ("CORRAL_SANDBOX", "process".to_owned()),
        ("CORRAL_WARM_POOL_SIZE", "0".to_owned()),
        ("CORRAL_METRICS_LISTEN", metrics.clone()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let mut db_url = None;
    if backend == Backend::Postgres {
        let url = scenario_database(ctx).await?;
        vars.push(("DATABASE_URL", url.clone()));
        db_url = Some(url);
    }
    let server = Server::start(&ctx.args.server, &env(&vars)).await?;
    let db_url = db_url.unwrap_or_else(|| sqlite_url(&server));
    let result = sse_measure(ctx, &server, n, &db_url, &metrics, h2).await;
    finish(ctx, server, &name).await;
    result.map(|r| SseResult {
        name,
        http_floor: floor,
        ..r
    })
}

async fn sse_measure(
    ctx: &Ctx,
    server: &Server,
    n: usize,
    db_url: &str,
    metrics: &str,
    h2: bool,
) -> Result<SseResult> {
    let a = &ctx.args;
    let k = a.events;
    let key = Api::new(&server.base)?
        .setup(1)
        .await?
        .pop()
        .context("no API key")?;
    let mut db = Db::connect(db_url).await?;
    let tenant = db.tenant().await?;
    let run = db
        .insert_running_runs(&tenant, 1)
        .await?
        .pop()
        .context("no run")?;
    let path = Arc::new(format!(
        "/api/realtime/runs/{run}?token={key}&channels=run_log"
    ));
    let target = Arc::new(sse::Target::new(socket_addr(server)?, &path));
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?;

    // Warm-up: a few subscribers through the whole path, then gone.
    let mut warm = Clients::new();
    if h2 {
        let conn = sse::h2_connect(target.addr).await.map_err(|e| anyhow!(e))?;
        warm.open(WARMUP_SUBSCRIBERS.min(n), a.batch, |sh, stop| {
            sse::h2_client(conn.clone(), target.clone(), path.clone(), sh, stop, 0)
        })
        .await?;
    } else {
        warm.open(WARMUP_SUBSCRIBERS.min(n), a.batch, |sh, stop| {
            sse::client(target.clone(), sh, stop, 0)
        })
        .await?;
    }
    for i in 0..3 {
        db.insert_log(&run, &format!("rtb-warmup {i}")).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let warm_out = warm.close().await;
    let warm_frames: usize = warm_out.iter().map(|o| o.foreign).sum();
    tokio::time::sleep(ctx.settle()).await;
    let rss_base = sys::rss_median(server.pid, 5, Duration::from_millis(200)).await;
    let fds_base = fd_count(server.pid);
    println!(
        "warm-up: {} subscribers got {warm_frames} of {} frames; baseline server RSS {:.1} MiB, {fds_base} fds",
        warm_out.len(),
        warm_out.len() * 3,
        mib(rss_base)
    );

    let mut clients = Clients::new();
    let t = Instant::now();
    let connections = if h2 {
        n.div_ceil(H2_STREAMS_PER_CONNECTION)
    } else {
        n
    };
    let opened = if h2 {
        let mut conns = Vec::with_capacity(connections);
        for _ in 0..connections {
            conns.push(sse::h2_connect(target.addr).await.map_err(|e| anyhow!(e))?);
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        clients
            .open(n, a.batch, |sh, stop| {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let conn = conns[(i / H2_STREAMS_PER_CONNECTION) % conns.len()].clone();
                sse::h2_client(conn, target.clone(), path.clone(), sh, stop, k)
            })
            .await
    } else {
        clients
            .open(n, a.batch, |sh, stop| {
                sse::client(target.clone(), sh, stop, k)
            })
            .await
    };
    let connect_s = t.elapsed().as_secs_f64();
    let subscribed = match opened {
        Ok(s) => s,
        Err(e) => {
            clients.close().await;
            return Err(e);
        }
    };
    let failed = clients.shared.failed.load(Ordering::Relaxed);
    println!(
        "{subscribed}/{n} subscribed in {connect_s:.1} s ({failed} failed) over {connections} {} connection(s)",
        if h2 { "HTTP/2" } else { "HTTP/1.1" }
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rss_open = sys::rss_median(server.pid, 5, Duration::from_millis(200)).await;
    println!(
        "1 s after the opens: server RSS {:.1} MiB ({:.0} B per subscriber); settling {} s",
        mib(rss_open),
        per_sub(rss_base, rss_open, subscribed),
        ctx.args.settle_seconds
    );
    tokio::time::sleep(ctx.settle().saturating_sub(Duration::from_secs(1))).await;
    let rss_idle = sys::rss_median(server.pid, 5, Duration::from_millis(200)).await;
    let fds_idle = fd_count(server.pid);
    let metric_lines = metric_lines(&http, metrics, "realtime").await;
    println!(
        "idle: server RSS {:.1} MiB (+{:.1} MiB, {:.0} B per subscriber), {fds_idle} fds",
        mib(rss_idle),
        mib(rss_idle.saturating_sub(rss_base)),
        per_sub(rss_base, rss_idle, subscribed)
    );

    // The events.
    let peak = sys::PeakRss::start(server.pid);
    let cpu0 = (
        sys::cpu_secs(&server.pid.to_string()),
        sys::cpu_secs("self"),
    );
    let t_events = Instant::now();
    let mut inserts = Vec::with_capacity(k);
    let mut tick = tokio::time::interval(Duration::from_millis(a.event_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_insert = Instant::now();
    let mut insert_err = None;
    for i in 0..k {
        tick.tick().await;
        let ts = sse::unix_us_now();
        let t = Instant::now();
        if let Err(e) = db.insert_log(&run, &format!("rtb {i} {ts}")).await {
            insert_err = Some(e);
            break;
        }
        last_insert = Instant::now();
        inserts.push(last_insert.duration_since(t).as_secs_f64() * 1000.0);
    }
    let want = subscribed * inserts.len();
    let shared = clients.shared.clone();
    let _ = tokio::time::timeout(RECEIPT_DEADLINE, async {
        while shared.receipts.load(Ordering::Relaxed) < want {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let drain_ms = last_insert.elapsed().as_secs_f64() * 1000.0;
    let events_wall_s = t_events.elapsed().as_secs_f64();
    let server_cpu_s = sys::cpu_secs(&server.pid.to_string()) - cpu0.0;
    let bench_cpu_s = sys::cpu_secs("self") - cpu0.1;
    let rss_peak = peak.finish().await;
    let outs = clients.close().await;
    db.close().await;
    if let Some(e) = insert_err {
        return Err(e);
    }

    // Aggregate.
    let mut all = Vec::with_capacity(want);
    let mut per_event: Vec<(f64, f64)> = vec![(f64::INFINITY, f64::NEG_INFINITY); k];
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let (mut receipts, mut duplicates, mut foreign) = (0, 0, 0);
    let mut from_commit = Vec::with_capacity(want);
    for o in &outs {
        for (ev, us) in &o.receipts {
            let ms = *us as f64 / 1000.0;
            all.push(ms);
            from_commit.push(ms - inserts.get(*ev).copied().unwrap_or(0.0));
            let e = &mut per_event[*ev];
            *e = (e.0.min(ms), e.1.max(ms));
        }
        receipts += o.receipts.len();
        duplicates += o.duplicates;
        foreign += o.foreign;
        if let Some(e) = &o.error {
            // Group by the message without numbers (ports, sizes).
            let key: String = e.chars().filter(|c| !c.is_ascii_digit()).collect();
            *errors.entry(key).or_default() += 1;
        }
    }
    let seen: Vec<&(f64, f64)> = per_event.iter().filter(|e| e.0.is_finite()).collect();
    Ok(SseResult {
        name: String::new(),
        n,
        subscribed,
        connect_s,
        rss_base,
        rss_idle,
        rss_peak,
        fds_base,
        fds_idle,
        metrics: metric_lines,
        events: inserts.len(),
        receipts,
        duplicates,
        foreign,
        latency: Summary::of(&all),
        first: Summary::of(&seen.iter().map(|e| e.0).collect::<Vec<_>>()),
        spread: Summary::of(&seen.iter().map(|e| e.1 - e.0).collect::<Vec<_>>()),
        insert: Summary::of(&inserts),
        from_commit: Summary::of(&from_commit),
        http_floor: f64::NAN,
        drain_ms,
        server_cpu_s,
        bench_cpu_s,
        events_wall_s,
        errors,
    })
}

fn per_sub(base: u64, idle: u64, n: usize) -> f64 {
    if n == 0 {
        return f64::NAN;
    }
    idle as f64 / n as f64 - base as f64 / n as f64
}

async fn webhook(ctx: &Ctx, backend: Backend) -> Result<HookResult> {
    let name = format!("webhook-throughput-{}", backend.name());
    let metrics = format!("127.0.0.1:{}", free_port()?);
    let mut vars = vec![
        ("CORRAL_SANDBOX", "process".to_owned()),
        ("CORRAL_WARM_POOL_SIZE", "0".to_owned()),
        ("CORRAL_METRICS_LISTEN", metrics.clone()),
        ("RUST_LOG", "info".to_owned()),
    ];
    if let Some(c) = ctx.args.webhook_concurrency {
        vars.push(("CORRAL_WEBHOOK_CONCURRENCY", c.to_string()));
    }
    let mut db_url = None;
    if backend == Backend::Postgres {
        let url = scenario_database(ctx).await?;
        vars.push(("DATABASE_URL", url.clone()));
        db_url = Some(url);
    }
    let receiver = hook::Receiver::start().await?;
    let server = Server::start(&ctx.args.server, &env(&vars)).await?;
    let db_url = db_url.unwrap_or_else(|| sqlite_url(&server));
    let result = webhook_measure(ctx, &server, &receiver, backend, &db_url, &metrics).await;
    finish(ctx, server, &name).await;
    drop(receiver);
    result
}

async fn webhook_measure(
    ctx: &Ctx,
    server: &Server,
    receiver: &hook::Receiver,
    backend: Backend,
    db_url: &str,
    metrics: &str,
) -> Result<HookResult> {
    let m = ctx.args.webhook_runs;
    let key = Api::new(&server.base)?
        .setup(1)
        .await?
        .pop()
        .context("no API key")?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?;
    let r = http
        .post(format!("{}/api/webhooks", server.base))
        .bearer_auth(&key)
        .json(&json!({
            "url": format!("http://{}/hook", receiver.addr),
            "events": ["run.success"],
            "payloadMode": "full",
        }))
        .send()
        .await
        .context("POST /api/webhooks")?;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    if status != 201 {
        bail!("POST /api/webhooks answered {status} (wanted 201): {text}");
    }
    let hook: Value = serde_json::from_str(&text)?;
    let secret = hook["secret"]
        .as_str()
        .context("no secret in the webhook")?;
    let secret = corral_protocol::SigningSecret::parse(secret)
        .map_err(|e| anyhow!("webhook secret {secret:?}: {e}"))?;
    let _ = receiver.counts.secret.set(secret);
    println!(
        "webhook {} → http://{}/hook",
        hook["id"].as_str().unwrap_or("?"),
        receiver.addr
    );

    let mut db = Db::connect(db_url).await?;
    let tenant = db.tenant().await?;
    let t = Instant::now();
    db.insert_running_runs(&tenant, m).await?;
    let insert_ms = t.elapsed().as_secs_f64() * 1000.0;
    let (before, _) = db.delivery_counts().await?;
    if !before.is_empty() {
        bail!("deliveries exist before the runs complete: {before:?}");
    }
    println!("{m} running runs inserted in {insert_ms:.0} ms");

    let counts = receiver.counts.clone();
    let peak = sys::PeakRss::start(server.pid);
    let cpu0 = sys::cpu_secs(&server.pid.to_string());
    let t = Instant::now();
    let changed = db.complete_all(&tenant.org_id).await?;
    let committed = Instant::now();
    let update_ms = committed.duration_since(t).as_secs_f64() * 1000.0;
    if changed != m as u64 {
        bail!("the UPDATE changed {changed} runs, not {m}");
    }
    println!("UPDATE of {m} runs to success committed in {update_ms:.0} ms");
    let all_in = tokio::time::timeout(DELIVERY_DEADLINE, async {
        loop {
            let notified = counts.changed.notified();
            if counts.distinct() >= m {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
    })
    .await
    .is_ok();
    let server_cpu_s = sys::cpu_secs(&server.pid.to_string()) - cpu0;
    if !all_in {
        println!(
            "WARNING: only {} of {m} deliveries after {DELIVERY_DEADLINE:?}",
            counts.distinct()
        );
    }
    // Late duplicates (a retry of an answered delivery) would come now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settled = db.wait_deliveries_settled(Duration::from_secs(10)).await?;
    let (rows, max_attempts) = db.delivery_counts().await?;
    let rss_peak = peak.finish().await;
    db.close().await;
    let metrics = metric_lines(&http, metrics, "webhook").await;

    let mut arrivals = counts
        .arrivals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    arrivals.sort();
    let rel: Vec<f64> = arrivals
        .iter()
        .map(|a| a.saturating_duration_since(committed).as_secs_f64() * 1000.0)
        .collect();
    let first_ms = rel.first().copied().unwrap_or(f64::NAN);
    let last_ms = rel.last().copied().unwrap_or(f64::NAN);
    let distinct = rel.len();
    Ok(HookResult {
        backend,
        runs: m,
        insert_ms,
        update_ms,
        distinct,
        total: counts.total.load(Ordering::Relaxed),
        duplicates: counts.duplicates.load(Ordering::Relaxed),
        bad_signature: counts.bad_signature.load(Ordering::Relaxed),
        unexpected: counts.unexpected.load(Ordering::Relaxed),
        distinct_runs: counts.distinct_runs(),
        first_ms,
        last_ms,
        per_delivery: Summary::of(&rel),
        rate: if all_in && last_ms > 0.0 {
            distinct as f64 / (last_ms / 1000.0)
        } else {
            f64::NAN
        },
        settled,
        rows,
        max_attempts,
        server_cpu_s,
        rss_peak,
        concurrency: ctx
            .args
            .webhook_concurrency
            .map_or_else(|| "16 (default)".to_owned(), |c| c.to_string()),
        metrics,
    })
}

fn verdict(met: bool) -> &'static str {
    if met {
        "MET"
    } else {
        "MISSED"
    }
}

fn report(ctx: &Ctx, outcomes: &[(String, Result<Outcome>)], wall: Duration) {
    let a = &ctx.args;
    let sses: Vec<&SseResult> = outcomes
        .iter()
        .filter_map(|(_, o)| match o {
            Ok(Outcome::Sse(s)) => Some(s),
            _ => None,
        })
        .collect();
    let hooks: Vec<&HookResult> = outcomes
        .iter()
        .filter_map(|(_, o)| match o {
            Ok(Outcome::Hook(h)) => Some(h),
            _ => None,
        })
        .collect();
    println!("\n================ corral-rtbench results ================");
    if !sses.is_empty() {
        println!(
            "\nSSE fan-out: one run, N subscribers (raw HTTP/1.1 clients in this process), {} log rows \
             INSERTed {} ms apart into the server's database\n(SQLite file, or PostgreSQL for *-postgres);\nlatency = client receipt − wall clock just \
             before the INSERT (same host), ms",
            a.events, a.event_interval_ms
        );
        println!(
            "\n| {:<24} | {:>11} | {:>6} | {:>20} | {:>8} | {:>8} | {:>8} | {:>7} | {:>7} {:>7} {:>7} {:>7} |",
            "scenario",
            "subscribed",
            "conn s",
            "server RSS base→idle",
            "B/sub",
            "floor B",
            "receipts",
            "missing",
            "p50",
            "p95",
            "p99",
            "max"
        );
        println!(
            "|{:-<26}|{:-<13}|{:-<8}|{:-<22}|{:-<10}|{:-<10}|{:-<10}|{:-<9}|{:-<33}|",
            "", "", "", "", "", "", "", "", ""
        );
        for s in &sses {
            println!(
                "| {:<24} | {:>5}/{:<5} | {:>6.1} | {:>7.1} → {:>6.1} MiB | {:>8.0} | {:>8.0} | {:>8} | {:>7} | {} |",
                s.name,
                s.subscribed,
                s.n,
                s.connect_s,
                mib(s.rss_base),
                mib(s.rss_idle),
                per_sub(s.rss_base, s.rss_idle, s.subscribed),
                s.http_floor,
                s.receipts,
                (s.subscribed * s.events).saturating_sub(s.receipts),
                cells(s.latency),
            );
        }
        println!(
            "  B/sub = (idle RSS − baseline RSS) / subscribers; floor B = the same per idle keep-alive HTTP/1.1 \
             connection\n  that is not a subscriber (GET /health answered, then nothing; separate server): what \
             hyper + tokio cost before the realtime layer"
        );
        println!("\nwhere the latency goes (ms, p50 / p95 / p99 / max):");
        println!(
            "| {:<24} | {:>31} | {:>31} | {:>31} | {:>31} | {:>6} |",
            "scenario",
            "commit → receipt",
            "1st subscriber",
            "spread last − 1st",
            "INSERT",
            "drain"
        );
        println!(
            "|{:-<26}|{:-<33}|{:-<33}|{:-<33}|{:-<33}|{:-<8}|",
            "", "", "", "", "", ""
        );
        for s in &sses {
            println!(
                "| {:<24} | {} | {} | {} | {} | {:>6.0} |",
                s.name,
                cells(s.from_commit),
                cells(s.first),
                cells(s.spread),
                cells(s.insert),
                s.drain_ms
            );
        }
        println!(
            "  commit → receipt = latency minus that event's INSERT time; 1st subscriber = earliest receipt of each \
             event\n  (the server noticing the row: on SQLite it polls every 50 ms for other processes' writes;\n  PostgreSQL tells it at once through LISTEN/NOTIFY); \
             spread = last − first receipt\n  of one event (fan-out + socket writes + these clients' own scheduling \
             on the same cores); drain = last INSERT → its last receipt"
        );
        let cores = sys::machine().cores.max(1);
        for s in &sses {
            println!(
                "  {}: events phase {:.1} s wall, CPU server {:.1} s + bench {:.1} s ({:.0}% of {cores} cores); \
                 server RSS peak {:.1} MiB; server fds {} → {}; duplicates {}, foreign frames {}",
                s.name,
                s.events_wall_s,
                s.server_cpu_s,
                s.bench_cpu_s,
                100.0 * (s.server_cpu_s + s.bench_cpu_s) / s.events_wall_s / cores as f64,
                mib(s.rss_peak),
                s.fds_base,
                s.fds_idle,
                s.duplicates,
                s.foreign
            );
            if s.metrics.is_empty() {
                println!("    /metrics: no realtime subscriber gauge exported");
            } else {
                println!("    /metrics: {}", s.metrics.join("; "));
            }
            for (e, c) in &s.errors {
                println!("    {c} subscriber stream(s) ended early: {e}");
            }
        }
    }
    if !hooks.is_empty() {
        println!(
            "\nWebhook delivery: one webhook (run.success, payloadMode full) to a local receiver that answers \
             200 at once;\nM running runs INSERTed, then one UPDATE … SET status='success'; times from its commit"
        );
        println!(
            "\n| {:<29} | {:>5} | {:>11} | {:>9} | {:>9} | {:>10} | {:>4} | {:>7} {:>7} {:>7} {:>7} |",
            "scenario",
            "runs",
            "delivered",
            "first ms",
            "all ms",
            "deliv/s",
            "dups",
            "p50",
            "p95",
            "p99",
            "max"
        );
        println!(
            "|{:-<31}|{:-<7}|{:-<13}|{:-<11}|{:-<11}|{:-<12}|{:-<6}|{:-<33}|",
            "", "", "", "", "", "", "", ""
        );
        for h in &hooks {
            println!(
                "| {:<29} | {:>5} | {:>5}/{:<5} | {:>9.0} | {:>9.0} | {:>10.0} | {:>4} | {} |",
                format!("webhook-throughput ({})", h.backend.name()),
                h.runs,
                h.distinct,
                h.runs,
                h.first_ms,
                h.last_ms,
                h.rate,
                h.duplicates,
                cells(h.per_delivery),
            );
        }
        println!("  p50…max = commit → each delivery's arrival at the receiver, ms");
        for h in &hooks {
            println!(
                "  {}: concurrency {}; INSERT {} runs {:.0} ms, UPDATE {:.0} ms; requests {} (distinct runs {}), \
                 bad signatures {}, unexpected bodies {}; server CPU {:.1} s, RSS peak {:.1} MiB;\n    \
                 webhook_deliveries afterwards: {} (max attempts {}){}",
                h.backend.name(),
                h.concurrency,
                h.runs,
                h.insert_ms,
                h.update_ms,
                h.total,
                h.distinct_runs,
                h.bad_signature,
                h.unexpected,
                h.server_cpu_s,
                mib(h.rss_peak),
                h.rows
                    .iter()
                    .map(|(s, n)| format!("{s} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                h.max_attempts,
                if h.settled {
                    ""
                } else {
                    "; some still pending 10 s later"
                }
            );
            if !h.metrics.is_empty() {
                println!("    /metrics: {}", h.metrics.join("; "));
            }
        }
    }

    println!("\ntargets / checks:");
    for s in &sses {
        let missing = (s.subscribed * s.events).saturating_sub(s.receipts);
        let bps = per_sub(s.rss_base, s.rss_idle, s.subscribed);
        if s.n == TARGET_P99_AT {
            let p99 = s.latency.map_or(f64::NAN, |l| l.p99);
            println!(
                "  {:<24} p99 {p99:>7.1} ms < {TARGET_P99_MS:.0} ms at {TARGET_P99_AT} subscribers ? {}",
                s.name,
                verdict(p99 < TARGET_P99_MS)
            );
        }
        println!(
            "  {:<24} {bps:>7.0} B per idle subscriber < {TARGET_BYTES_PER_SUB:.0} B ? {}",
            s.name,
            verdict(bps < TARGET_BYTES_PER_SUB)
        );
        println!(
            "  {:<24} missing receipts {missing} (must be 0) ? {}; all {} subscribed ? {}",
            s.name,
            verdict(missing == 0),
            s.n,
            verdict(s.subscribed == s.n)
        );
    }
    for h in &hooks {
        println!(
            "  webhook-throughput ({}) all {} delivered ? {}; duplicates {} (must be 0) ? {}; bad signatures {} ? {}",
            h.backend.name(),
            h.runs,
            verdict(h.distinct == h.runs),
            h.duplicates,
            verdict(h.duplicates == 0),
            h.bad_signature,
            verdict(h.bad_signature == 0)
        );
    }
    for (name, o) in outcomes {
        if let Err(e) = o {
            println!("  {name}: FAILED: {e:#}");
        }
    }
    println!(
        "\ntotal wall time {:.1} s; load average at the end: {} (other work on these cores skews every figure)",
        wall.as_secs_f64(),
        sys::loadavg()
    );
}
