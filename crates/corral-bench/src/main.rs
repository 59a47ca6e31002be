//! `corral-bench`: measures the release `corral` binary the way an operator meets it —
//! boot time to the first healthy answer, idle resident memory, and the latency of an
//! authenticated API read under concurrent keep-alive load — on SQLite and/or
//! PostgreSQL, and prints the figures next to the SPEC targets. It builds nothing:
//! run `cargo build --release -p corral` first. Everything stays on loopback and every
//! phase has a deadline, so a broken server fails the run instead of hanging it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use sqlx::Connection;
use tokio::process::{Child, Command};

mod report;

use report::*;

#[derive(Parser, Debug)]
#[command(
    name = "corral-bench",
    about = "Boot time, idle memory and API latency of the release corral binary"
)]
struct Args {
    /// Which database backend(s) to measure.
    #[arg(long, value_enum, default_value_t = Which::Both)]
    backend: Which,
    /// Seconds of measured load per backend.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent keep-alive connections during the load.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The corral binary to run.
    #[arg(long, default_value = "target/release/corral")]
    bin: PathBuf,
    /// How many cold starts to time (the median is reported).
    #[arg(long, default_value_t = 5)]
    boots: usize,
    /// Admin URL of the PostgreSQL server the fresh databases are created on.
    #[arg(
        long,
        env = "CORRAL_TEST_DATABASE_URL",
        default_value = "postgres://corral:corral@127.0.0.1:5432/postgres"
    )]
    pg_admin_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Sqlite,
    Postgres,
    Both,
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

/// Longest a boot may take before the run is declared broken.
const BOOT_DEADLINE: Duration = Duration::from_secs(30);
/// Longest a graceful shutdown may take before the server is killed.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(15);
/// Unmeasured requests per connection before the clock starts (connection set-up,
/// first-touch allocations, SQLite page cache).
const WARMUP_PER_CONNECTION: usize = 20;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    if !args.bin.is_file() {
        bail!(
            "{} not found: build it first with `cargo build --release -p corral` \
             (or pass --bin)",
            args.bin.display()
        );
    }
    // The server runs in its data dir, so a relative --bin must be resolved first.
    args.bin = args.bin.canonicalize()?;
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(args.boots > 0, "--boots must be at least 1");
    let backends: &[Backend] = match args.backend {
        Which::Sqlite => &[Backend::Sqlite],
        Which::Postgres => &[Backend::Postgres],
        Which::Both => &[Backend::Sqlite, Backend::Postgres],
    };
    println!(
        "corral-bench: bin={} duration={}s concurrency={} boots={} cores={}",
        args.bin.display(),
        args.duration,
        args.concurrency,
        args.boots,
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    let mut reports = Vec::new();
    for &backend in backends {
        println!("\n== {} ==", backend.name());
        reports.push(bench_backend(&args, backend).await?);
    }
    println!();
    for r in &reports {
        r.print();
    }
    println!(
        "targets: healthy < {TARGET_BOOT_MS_SQLITE:.0} ms (SQLite), idle RSS < {TARGET_IDLE_RSS_MB:.0} MB, \
         p99 < {TARGET_P99_MS:.0} ms"
    );
    println!(
        "note: client and server share this machine's cores; latencies include the client's own scheduling."
    );
    Ok(())
}

/// Where a server instance keeps its data, removed when dropped.
enum DataHome {
    Sqlite(tempfile::TempDir),
    Postgres {
        dir: tempfile::TempDir,
        admin: String,
        name: String,
        url: String,
    },
}

impl DataHome {
    async fn create(backend: Backend, admin: &str) -> Result<DataHome> {
        let dir = tempfile::tempdir().context("temp dir")?;
        Ok(match backend {
            Backend::Sqlite => DataHome::Sqlite(dir),
            Backend::Postgres => {
                let name = format!("corral_bench_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(admin)
                    .await
                    .with_context(|| format!("connect to PostgreSQL at {admin}"))?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .context("create database")?;
                conn.close().await.context("close admin connection")?;
                let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
                let url = format!("{base}/{name}");
                DataHome::Postgres {
                    dir,
                    admin: admin.to_owned(),
                    name,
                    url,
                }
            }
        })
    }

    fn dir(&self) -> &std::path::Path {
        match self {
            DataHome::Sqlite(dir) | DataHome::Postgres { dir, .. } => dir.path(),
        }
    }

    /// Drops the PostgreSQL database (the temp dir goes with `self`).
    async fn remove(self) -> Result<()> {
        if let DataHome::Postgres { admin, name, .. } = &self {
            let mut conn = sqlx::PgConnection::connect(admin).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                .execute(&mut conn)
                .await?;
        }
        Ok(())
    }
}

/// A running `corral serve`.
struct Server {
    child: Child,
    pid: u32,
    base: String,
    boot: Duration,
}

impl Server {
    /// Spawns the server on a free loopback port and waits for the first 200 from
    /// `/health`, polling every millisecond; the boot time is spawn → that 200.
    async fn start(bin: &PathBuf, home: &DataHome, probe: &reqwest::Client) -> Result<Server> {
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .env("CORRAL_LISTEN", format!("127.0.0.1:{port}"))
            .env("CORRAL_DATA_DIR", home.dir())
            .env("RUST_LOG", "warn")
            // A model whose server refuses connections: runs are accepted, then
            // fail at their first LLM call, so seeding them needs no provider.
            .env("CORRAL_MODEL_API", "openai")
            .env("CORRAL_MODEL_ID", "bench")
            .env("CORRAL_MODEL_BASE_URL", "http://127.0.0.1:9/v1")
            .env("CORRAL_MODEL_API_KEY", "sk-bench")
            .env("CORRAL_SANDBOX", "process")
            // The load must measure the limiter, not be refused by it.
            .env(
                "CORRAL_RATE_LIMITS",
                std::env::var("CORRAL_RATE_LIMITS")
                    .unwrap_or_else(|_| "end-users-read=100000000/60s".into()),
            )
            .env_remove("CORRAL_CONFIG")
            .current_dir(home.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        match home {
            DataHome::Postgres { url, .. } => cmd.env("DATABASE_URL", url),
            DataHome::Sqlite(_) => cmd.env_remove("DATABASE_URL"),
        };
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("server exited at once"))?;
        let health = format!("{base}/health");
        loop {
            if let Ok(r) = probe.get(&health).send().await {
                if r.status() == reqwest::StatusCode::OK {
                    break;
                }
            }
            if let Some(status) = child.try_wait()? {
                bail!("server exited during boot: {status}");
            }
            if started.elapsed() > BOOT_DEADLINE {
                bail!("server not healthy after {BOOT_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(Server {
            child,
            pid,
            base,
            boot: started.elapsed(),
        })
    }

    fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no VmRSS in /proc/{}/status", self.pid))
    }

    /// SIGTERM, then wait for the graceful exit (killed after a deadline).
    async fn stop(mut self) -> Result<Duration> {
        let started = Instant::now();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid)?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        match tokio::time::timeout(SHUTDOWN_DEADLINE, self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("server ignored SIGTERM for {SHUTDOWN_DEADLINE:?}; killed");
            }
        }
        Ok(started.elapsed())
    }
}

fn free_port() -> Result<u16> {
    // Bound and released at once; the tiny window before the server binds is fine
    // on a quiet loopback.
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

struct Load {
    requests: usize,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    /// Sorted latencies of successful and failed requests alike.
    latencies: Vec<Duration>,
}

struct Report {
    backend: Backend,
    boots: Vec<Duration>,
    idle_rss_kib: u64,
    load: Load,
    /// `GET /api/runs?limit=20` over a full page of runs.
    runs: Load,
    /// The same page, each request with a filter of its own that changes nothing
    /// (`end_date` far ahead): rendered every time, never a kept page.
    runs_rendered: Load,
    /// `GET /api/end-users?limit=20`: a rate-limited route (`end-users-read`), so
    /// with `REDIS_URL` set each request also goes through the shared window.
    limited: Load,
    loaded_rss_kib: u64,
    shutdown: Duration,
    concurrency: usize,
}

async fn bench_backend(args: &Args, backend: Backend) -> Result<Report> {
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    // Cold starts: a fresh database each time, so migrations are part of the figure.
    let mut boots = Vec::new();
    let mut kept = None;
    for i in 0..args.boots {
        let home = DataHome::create(backend, &args.pg_admin_url).await?;
        let server = Server::start(&args.bin, &home, &probe).await?;
        println!("boot {}: {:.1} ms", i + 1, ms(server.boot));
        boots.push(server.boot);
        if i + 1 == args.boots {
            kept = Some((server, home));
        } else {
            server.stop().await?;
            if let Err(e) = home.remove().await {
                // Cleanup only; a leftover corral_bench_* database does not spoil figures.
                eprintln!("warning: could not drop the benchmark database: {e:#}");
            }
        }
    }
    let (server, home) = kept.ok_or_else(|| anyhow!("no boot"))?;

    // Idle memory: give background start-up work a moment to settle first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss_kib = server.rss_kib()?;
    println!("idle RSS: {:.1} MB", mib(idle_rss_kib));

    let key = setup(&server.base).await.context("set-up over HTTP")?;
    let load = run_load(
        &server.base,
        &key,
        "/api/applications",
        args.concurrency,
        args.duration,
        false,
    )
    .await?;
    seed_runs(&server.base, &key, 25)
        .await
        .context("seeding runs")?;
    let runs = run_load(
        &server.base,
        &key,
        "/api/runs?limit=20",
        args.concurrency,
        args.duration,
        false,
    )
    .await?;
    // The same page under a new key every request: on SQLite rendered every time,
    // never served from the kept pages.
    let runs_rendered = run_load(
        &server.base,
        &key,
        "/api/runs?limit=20",
        args.concurrency,
        args.duration,
        true,
    )
    .await?;
    let limited = run_load(
        &server.base,
        &key,
        "/api/end-users?limit=20",
        args.concurrency,
        args.duration,
        false,
    )
    .await?;
    let loaded_rss_kib = server.rss_kib()?;
    let shutdown = server.stop().await?;
    if let Err(e) = home.remove().await {
        // Cleanup only; a leftover corral_bench_* database does not spoil figures.
        eprintln!("warning: could not drop the benchmark database: {e:#}");
    }
    Ok(Report {
        backend,
        boots,
        idle_rss_kib,
        load,
        runs,
        runs_rendered,
        limited,
        loaded_rss_kib,
        shutdown,
        concurrency: args.concurrency,
    })
}

/// Signs up, creates an org, finds its default application and creates an API key
/// for it; returns the key.
async fn setup(base: &str) -> Result<String> {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(10))
        .build()?;
    let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
    let r = http
        .post(format!("{base}/api/auth/sign-up/email"))
        .json(
            &serde_json::json!({"email": email, "password": "bench-password-123", "name": "Bench"}),
        )
        .send()
        .await?;
    expect_ok(r, "sign-up").await?;
    let org = expect_ok(
        http.post(format!("{base}/api/orgs"))
            .json(&serde_json::json!({"name": "Bench"}))
            .send()
            .await?,
        "create org",
    )
    .await?;
    let org_id = org["id"]
        .as_str()
        .ok_or_else(|| anyhow!("org without id: {org}"))?
        .to_owned();
    let apps = expect_ok(
        http.get(format!("{base}/api/applications"))
            .header("X-Org-Id", &org_id)
            .send()
            .await?,
        "list applications",
    )
    .await?;
    let app_id = apps["data"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|x| x["isDefault"] == serde_json::Value::Bool(true))
        })
        .and_then(|a| a["id"].as_str())
        .ok_or_else(|| anyhow!("no default application in {apps}"))?
        .to_owned();
    let key = expect_ok(
        http.post(format!("{base}/api/api-keys"))
            .header("X-Org-Id", &org_id)
            .header("X-App-Id", &app_id)
            .json(&serde_json::json!({"name": "bench"}))
            .send()
            .await?,
        "create API key",
    )
    .await?;
    key["key"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no key in {key}"))
}

async fn expect_ok(r: reqwest::Response, what: &str) -> Result<serde_json::Value> {
    let status = r.status();
    let text = r.text().await?;
    if !status.is_success() {
        bail!("{what}: {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("{what}: not JSON: {text}"))
}

/// `n` finished runs in the key's application: inline runs whose model server
/// refuses connections, so each ends `failed` as a full row; waits until all have.
async fn seed_runs(base: &str, key: &str, n: usize) -> Result<()> {
    let http = reqwest::Client::new();
    let manifest = serde_json::json!({
        "name": "@bench/hello", "version": "0.0.0", "type": "agent", "schema_version": "2.0",
        "author": "bench", "display_name": "Hello",
        "input": {"schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}
    });
    for i in 0..n {
        let r = http
            .post(format!("{base}/api/runs/inline"))
            .bearer_auth(key)
            .json(&serde_json::json!({
                "manifest": manifest,
                "prompt": format!("Run number {i}: say hello."),
                "input": {"n": i}
            }))
            .send()
            .await?;
        let status = r.status();
        let body = r.text().await?;
        anyhow::ensure!(status.is_success(), "inline run {i}: {status} {body}");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let page: serde_json::Value = http
            .get(format!("{base}/api/runs?limit=100"))
            .bearer_auth(key)
            .send()
            .await?
            .json()
            .await?;
        let active = page["data"]
            .as_array()
            .map(|runs| {
                runs.iter()
                    .filter(|r| matches!(r["status"].as_str(), Some("pending" | "running")))
                    .count()
            })
            .unwrap_or(0);
        if active == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{active} seeded runs never finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `concurrency` tasks, each with its own client (so its own keep-alive connection),
/// send `GET {path}` back to back until the deadline.
/// `concurrency` connections requesting `path` for `secs` seconds. With `distinct`,
/// each request adds `&end_date=` a time of its own after 2100 (no run is that late,
/// so the page is the same; the query differs).
async fn run_load(
    base: &str,
    key: &str,
    path: &str,
    concurrency: usize,
    secs: u64,
    distinct: bool,
) -> Result<Load> {
    let url = format!("{base}{path}");
    let mut clients = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let c = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(1)
            .build()?;
        for _ in 0..WARMUP_PER_CONNECTION {
            let r = c.get(&url).bearer_auth(key).send().await?;
            let status = r.status();
            r.bytes().await?;
            anyhow::ensure!(status.is_success(), "warm-up request failed: {status}");
        }
        clients.push(c);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for (task, c) in clients.into_iter().enumerate() {
        let url = url.clone();
        let key = key.to_owned();
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let mut errors = 0usize;
            let mut first_error = None;
            // A millisecond of its own on 1 January of a year of its own (2100 + task).
            let mut late = 0u64;
            while Instant::now() < deadline {
                let url = if distinct {
                    late += 1;
                    let (s, ms) = (late / 1000, late % 1000);
                    format!(
                        "{url}&end_date={}-01-01T{:02}:{:02}:{:02}.{ms:03}Z",
                        2100 + task,
                        s / 3600 % 24,
                        s / 60 % 60,
                        s % 60
                    )
                } else {
                    url.clone()
                };
                let t = Instant::now();
                let outcome = match c.get(&url).bearer_auth(&key).send().await {
                    Ok(r) => {
                        let status = r.status();
                        match r.bytes().await {
                            Ok(_) if status.is_success() => Ok(()),
                            Ok(_) => Err(format!("status {status}")),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                };
                lat.push(t.elapsed());
                if let Err(e) = outcome {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
            (lat, errors, first_error)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let (lat, e, fe) = joined?;
        latencies.extend(lat);
        errors += e;
        if first_error.is_none() {
            first_error = fe;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Ok(Load {
        requests: latencies.len(),
        errors,
        first_error,
        elapsed,
        latencies,
    })
}
