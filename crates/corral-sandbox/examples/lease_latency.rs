//! Run-start latency of the sandbox backends: how long `lease` takes from a warm
//! pool, cold (created on demand), with the process backend, against the floor of a
//! bare `docker run --rm <agent image> --version`.
//!
//! ```text
//! cargo run --release -p corral-sandbox --example lease_latency -- \
//!     [--iterations N] [--agent-image IMG] [--sidecar-image IMG] [--skip-docker] [--skip-process]
//! ```
//! Binaries for the process backend come from `CORRAL_AGENT_BIN` /
//! `CORRAL_SIDECAR_BIN`, next to this executable, or `PATH`.

use std::time::{Duration, Instant};

use corral_sandbox::{
    DockerBackend, DockerOptions, ProcessBackend, ProcessOptions, Resources, SandboxBackend,
};

struct Args {
    iterations: usize,
    agent_image: String,
    sidecar_image: String,
    docker: bool,
    process: bool,
}

fn args() -> Args {
    let mut a = Args {
        iterations: 10,
        agent_image: "corral-agent:latest".into(),
        sidecar_image: "corral-sidecar:latest".into(),
        docker: true,
        process: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--iterations" => a.iterations = it.next().and_then(|v| v.parse().ok()).expect("N"),
            "--agent-image" => a.agent_image = it.next().expect("image"),
            "--sidecar-image" => a.sidecar_image = it.next().expect("image"),
            "--skip-docker" => a.docker = false,
            "--skip-process" => a.process = false,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn report(name: &str, mut samples: Vec<Duration>) {
    if samples.is_empty() {
        return;
    }
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<28} n={:<3} p50={:>9.1?} p95={:>9.1?} min={:>9.1?} max={:>9.1?}",
        samples.len(),
        pick(0.5),
        pick(0.95),
        samples[0],
        samples[samples.len() - 1]
    );
}

async fn cold(backend: &dyn SandboxBackend, n: usize) -> Vec<Duration> {
    let mut out = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let lease = backend
            .lease(&format!("run_bench_cold_{i}"), Resources::default())
            .await
            .expect("lease");
        out.push(t.elapsed());
        backend.destroy(&lease.id).await.expect("destroy");
    }
    out
}

async fn warm(backend: &dyn SandboxBackend, n: usize) -> Vec<Duration> {
    let mut out = Vec::new();
    for i in 0..n {
        let deadline = Instant::now() + Duration::from_secs(120);
        while backend.stats().ready < backend.stats().target {
            assert!(Instant::now() < deadline, "the pool does not fill");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let t = Instant::now();
        let lease = backend
            .lease(&format!("run_bench_warm_{i}"), Resources::default())
            .await
            .expect("lease");
        out.push(t.elapsed());
        assert!(lease.warm, "not served from the pool");
        backend.destroy(&lease.id).await.expect("destroy");
    }
    out
}

fn docker_run_floor(image: &str, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let out = std::process::Command::new("docker")
                .args(["run", "--rm", "--network", "none", image, "--version"])
                .output()
                .expect("docker run");
            assert!(out.status.success(), "docker run failed");
            t.elapsed()
        })
        .collect()
}

#[tokio::main]
async fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let a = args();
    let owner = format!("bench-{}", std::process::id());
    if a.docker {
        let opts = DockerOptions {
            agent_image: a.agent_image.clone(),
            sidecar_image: a.sidecar_image.clone(),
            owner: owner.clone(),
            pool_size: 0,
            ..DockerOptions::default()
        };
        let cold_backend = DockerBackend::connect(opts.clone()).await.expect("docker");
        cold_backend.check_images().await.expect("images");
        report("docker cold lease", cold(&cold_backend, a.iterations).await);
        let warm_backend = DockerBackend::connect(DockerOptions {
            pool_size: 1,
            ..opts
        })
        .await
        .expect("docker");
        report("docker warm lease", warm(&warm_backend, a.iterations).await);
        warm_backend.shutdown().await;
        let image = a.agent_image.clone();
        let n = a.iterations;
        let floor = tokio::task::spawn_blocking(move || docker_run_floor(&image, n))
            .await
            .unwrap();
        report("docker run --rm (floor)", floor);
    }
    if a.process {
        let root = std::env::temp_dir().join(format!("corral-bench-{}", std::process::id()));
        let opts = ProcessOptions {
            root_dir: root.clone(),
            owner,
            pool_size: 0,
            ..ProcessOptions::default()
        };
        let cold_backend = ProcessBackend::new(opts.clone()).expect("process backend");
        report(
            "process cold lease",
            cold(&cold_backend, a.iterations).await,
        );
        let warm_backend = ProcessBackend::new(ProcessOptions {
            pool_size: 1,
            ..opts
        })
        .expect("process backend");
        report(
            "process warm lease",
            warm(&warm_backend, a.iterations).await,
        );
        warm_backend.shutdown().await;
        let _ = std::fs::remove_dir_all(root);
    }
}
