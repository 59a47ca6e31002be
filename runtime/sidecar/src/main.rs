//! Entry point of `corral-sidecar`: logging and command line, then [`corral_sidecar::serve`].
#![forbid(unsafe_code)]

use clap::Parser as _;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = corral_sidecar::Options::parse();
    let shutdown = CancellationToken::new();
    if let Err(e) = corral_sidecar::watch_signals(shutdown.clone()) {
        tracing::error!(error = %e, "cannot install signal handlers");
        return std::process::ExitCode::FAILURE;
    }
    let code = match corral_sidecar::run(options, shutdown).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "sidecar failed");
            1
        }
    };
    // Exit now rather than when the runtime drops: that waits for idle blocking
    // threads (about 1.5 s), and a sandbox teardown should not.
    std::process::exit(code)
}
