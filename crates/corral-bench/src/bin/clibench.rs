//! `corral-clibench`: what the CLI adds to following a run. Against a release
//! `corral serve` with the process sandbox (warm pool) and the mock LLM, it times
//! `corral run @corral/hello-world --follow` — from spawning the command to its first
//! log line, and to its exit — and, interleaved with it, the same flow done by an
//! in-process client (trigger, open the run's SSE stream, read back the logs and the
//! run, wait for the first `run_log` and the terminal `run_update`, read the run). The
//! difference of the medians is the CLI's overhead (process start, config, TLS-less
//! HTTP setup, printing). It prints figures; it is not a test.
//!
//! Build first (one target dir: the process backend finds the runtime binaries next
//! to the server):
//!   cargo build --release -p corral -p corral-agent -p corral-sidecar -p corral-bench
//!   target/release/corral-clibench --runs 20

#[path = "runbench/api.rs"]
#[allow(
    dead_code,
    reason = "shared with corral-runbench; this harness uses setup only"
)]
mod api;
#[path = "runbench/server.rs"]
#[allow(dead_code, reason = "shared with corral-runbench")]
mod server;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use corral_bench::stats::Summary;
use corral_mockllm::{MockLlm, Turn};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// The overhead the CLI may add over the API's own latency.
const TARGET_OVERHEAD_MS: f64 = 20.0;
const LOG_LINE: &str = "hello from the agent";
const RUN_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Parser, Debug)]
#[command(
    name = "corral-clibench",
    about = "Time to first log line and to exit of `corral run --follow`, against the API's own"
)]
struct Args {
    /// Measured runs per client (CLI and in-process, interleaved).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Unmeasured runs of each client first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// The corral binary (default: `corral` next to this one).
    #[arg(long)]
    corral: Option<PathBuf>,
}

fn script() -> Vec<Turn> {
    vec![
        Turn::tool_call("log", json!({"message": LOG_LINE, "level": "info"})),
        Turn::tool_call("output", json!({"greeting": "hi", "length": 2})),
        Turn::text("done"),
    ]
}

/// (time to first log line, time to the end) of one followed run.
type Sample = (f64, f64);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The CLI: spawn, read stderr until the log line, wait for the exit.
async fn cli_once(bin: &PathBuf, base: &str, key: &str) -> Result<Sample> {
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(bin)
        .args([
            "run",
            "@corral/hello-world",
            "--input",
            r#"{"name":"Ada"}"#,
            "--follow",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env(
            "CORRAL_CONFIG_DIR",
            std::env::temp_dir().join("corral-clibench"),
        )
        .env("CORRAL_URL", base)
        .env("CORRAL_API_KEY", key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let mut first = None;
    let mut seen = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await? {
            if first.is_none() && line.contains(LOG_LINE) {
                first = Some(t0.elapsed());
            }
            seen.push(line);
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(RUN_DEADLINE, read)
        .await
        .context("the CLI did not finish")??;
    let status = child.wait().await?;
    let end = t0.elapsed();
    if !status.success() {
        bail!("corral run exited {status}:\n{}", seen.join("\n"));
    }
    let first = first.with_context(|| format!("no log line seen:\n{}", seen.join("\n")))?;
    Ok((ms(first), ms(end)))
}

/// The same flow in-process, as the CLI does it.
async fn api_once(http: &reqwest::Client, base: &str, key: &str) -> Result<Sample> {
    let t0 = Instant::now();
    let run: Value = http
        .post(format!("{base}/api/agents/@corral/hello-world/run"))
        .bearer_auth(key)
        .json(&json!({"input": {"name": "Ada"}}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = run["id"].as_str().context("run id")?.to_owned();
    let mut sse = http
        .get(format!("{base}/api/realtime/runs/{id}"))
        .bearer_auth(key)
        .send()
        .await?
        .error_for_status()?;
    let get = |path: String| {
        let rb = http.get(format!("{base}{path}")).bearer_auth(key);
        async move { anyhow::Ok(rb.send().await?.error_for_status()?.json::<Value>().await?) }
    };
    let (logs, state) = tokio::join!(
        get(format!("/api/runs/{id}/logs?since=0")),
        get(format!("/api/runs/{id}"))
    );
    let mut first = logs?["data"]
        .as_array()
        .is_some_and(|a| a.iter().any(|l| l["message"] == LOG_LINE))
        .then(|| t0.elapsed());
    let terminal = |s: &str| matches!(s, "success" | "failed" | "timeout" | "cancelled");
    if !terminal(state?["status"].as_str().unwrap_or("")) {
        let mut buf = String::new();
        let wait = async {
            'outer: while let Some(chunk) = sse.chunk().await? {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let frame: String = buf.drain(..end + 2).collect();
                    let data = frame
                        .lines()
                        .find_map(|l| l.strip_prefix("data: "))
                        .unwrap_or("");
                    if frame.contains("event: run_log")
                        && first.is_none()
                        && data.contains(LOG_LINE)
                    {
                        first = Some(t0.elapsed());
                    }
                    if frame.contains("event: run_update") {
                        let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                        if terminal(v["status"].as_str().unwrap_or("")) {
                            break 'outer;
                        }
                    }
                }
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(RUN_DEADLINE, wait)
            .await
            .context("the run did not end")??;
    }
    let done = get(format!("/api/runs/{id}")).await?;
    let end = t0.elapsed();
    if done["status"] != "success" {
        bail!("run {id} ended {}", done["status"]);
    }
    let first = match first {
        Some(f) => f,
        None => bail!("run {id}: the log line never arrived"),
    };
    Ok((ms(first), ms(end)))
}

fn row(name: &str, s: &[Sample]) -> (Option<Summary>, Option<Summary>) {
    let first = Summary::of(&s.iter().map(|x| x.0).collect::<Vec<_>>());
    let end = Summary::of(&s.iter().map(|x| x.1).collect::<Vec<_>>());
    let cell = |x: Option<Summary>| {
        x.map(|x| format!("{:>7.1} {:>7.1} {:>7.1}", x.p50, x.p95, x.max))
            .unwrap_or_else(|| "      -".into())
    };
    println!("{name:<12} {:>3}  {}  {}", s.len(), cell(first), cell(end));
    (first, end)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = match args.corral {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .context("no parent directory")?
            .join("corral"),
    };
    if !bin.is_file() {
        bail!(
            "{} not found: build it (see --help) or pass --corral",
            bin.display()
        );
    }
    let mock = MockLlm::start_per_conversation("127.0.0.1:0".parse()?, script()).await?;
    let env: Vec<(String, String)> = [
        ("CORRAL_SANDBOX", "process"),
        ("CORRAL_WARM_POOL_SIZE", "2"),
        ("CORRAL_MODEL_API", "openai"),
        ("CORRAL_MODEL_ID", "mock-model"),
        ("CORRAL_MODEL_BASE_URL", mock.openai_base_url().as_str()),
        ("CORRAL_MODEL_API_KEY", "sk-bench"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let server = server::Server::start(&bin, &env).await?;
    // Triggers are rate limited per API key: a fresh key every RUNS_PER_KEY runs.
    let triggers = 2 * (args.warmup + args.runs);
    let keys = api::Api::new(&server.base)?
        .setup(triggers / api::RUNS_PER_KEY + 1)
        .await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    eprintln!(
        "server {} (process sandbox, warm pool 2); {} warm-up + {} measured runs per client",
        server.base, args.warmup, args.runs
    );
    let (mut cli, mut inproc) = (Vec::new(), Vec::new());
    for i in 0..args.warmup + args.runs {
        let key = |n: usize| keys[(2 * i + n) / api::RUNS_PER_KEY].as_str();
        let c = cli_once(&bin, &server.base, key(0)).await?;
        let a = api_once(&http, &server.base, key(1)).await?;
        if i >= args.warmup {
            cli.push(c);
            inproc.push(a);
        }
    }
    println!("\nms from the command's start   first log line: p50, p95, max   exit: p50, p95, max");
    println!(
        "{:<12} {:>3}  {:>7} {:>7} {:>7}  {:>7} {:>7} {:>7}",
        "client", "n", "p50", "p95", "max", "p50", "p95", "max"
    );
    let (af, ae) = row("in-process", &inproc);
    let (cf, ce) = row("corral CLI", &cli);
    if let (Some(af), Some(ae), Some(cf), Some(ce)) = (af, ae, cf, ce) {
        let d_first = cf.p50 - af.p50;
        let d_end = ce.p50 - ae.p50;
        println!(
            "\nCLI overhead (p50): first log line {d_first:+.1} ms, exit {d_end:+.1} ms (target < {TARGET_OVERHEAD_MS} ms: {})",
            if d_first.max(d_end) < TARGET_OVERHEAD_MS { "met" } else { "NOT met" }
        );
    }
    Ok(())
}
