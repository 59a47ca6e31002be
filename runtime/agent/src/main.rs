//! Entry point of `corral-agent`: logging, configuration, then [`corral_agent::run_agent`].
#![forbid(unsafe_code)]

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = corral_agent::Config::parse();
    let code = corral_agent::run_agent(config).await;
    // Exit at once: dropping the runtime would wait for idle blocking threads.
    std::process::exit(i32::from(code))
}
