//! `corral-agent`: the process inside the agent container. It waits for its task
//! from the sidecar, runs the tool loop against the sidecar's LLM proxy, reports
//! events and heartbeats, and always ends with one finalize message — also on
//! SIGTERM and on the wall-clock timeout. It never holds a credential: the sidecar
//! swaps the placeholder key, and commands run with a scrubbed environment.
#![forbid(unsafe_code)]

pub mod llm;
pub mod mcp;
pub mod run;
pub mod sidecar;
pub mod tools;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use corral_protocol::events::{LogLevel, LogWritten};
use corral_protocol::sidecar_api::{self, DEFAULT_SIDECAR_URL};
use corral_protocol::{codes, EventPayload, Heartbeat, RunError, RunResult, RunStatus};
use tokio_util::sync::CancellationToken;

use crate::run::{Ctx, Outcome, Progress};
use crate::sidecar::{EventSink, SidecarClient};

/// Command line and environment of the agent.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "corral-agent",
    version,
    about = "Corral's in-sandbox agent runtime"
)]
pub struct Config {
    /// Base URL of the sidecar.
    #[arg(long, env = "CORRAL_SIDECAR_URL", default_value = DEFAULT_SIDECAR_URL)]
    pub sidecar_url: String,
    /// Directory the tools work in.
    #[arg(long, env = "CORRAL_WORKSPACE", default_value = "/workspace")]
    pub workspace: PathBuf,
    /// Seconds between heartbeats.
    #[arg(long, env = "CORRAL_HEARTBEAT_SECS", default_value_t = sidecar_api::HEARTBEAT_INTERVAL_SECS)]
    pub heartbeat_secs: u64,
    /// Long-poll duration of each `GET /task`.
    #[arg(long, env = "CORRAL_TASK_WAIT_SECS", default_value_t = sidecar_api::DEFAULT_TASK_WAIT_SECS)]
    pub task_wait_secs: u64,
    /// Bytes of a tool's output shown to the model (per stream for bash).
    #[arg(long, env = "CORRAL_TOOL_OUTPUT_LIMIT", default_value_t = 32 * 1024)]
    pub tool_output_limit: usize,
}

/// Process exit codes.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    /// The run ended failed, timed out or cancelled (the result was delivered).
    pub const RUN_FAILED: u8 = 1;
    /// The agent could not start (no task, bad configuration).
    pub const STARTUP: u8 = 2;
    /// The result could not be delivered to the sidecar.
    pub const FINALIZE_FAILED: u8 = 3;
}

/// Cancels `token` on SIGTERM or SIGINT.
fn watch_signals(token: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        token.cancel();
    });
    Ok(())
}

/// The whole life of the agent process; returns the exit code.
pub async fn run_agent(config: Config) -> u8 {
    let cancel = CancellationToken::new();
    if let Err(e) = watch_signals(cancel.clone()) {
        tracing::error!(error = %e, "cannot install signal handlers");
        return exit::STARTUP;
    }
    let http = match reqwest::Client::builder().build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client");
            return exit::STARTUP;
        }
    };
    let client = SidecarClient::new(http.clone(), &config.sidecar_url);
    tracing::info!(sidecar = client.base(), "waiting for the task");
    let task = tokio::select! {
        t = client.wait_for_task(config.task_wait_secs) => match t {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the task");
                return exit::STARTUP;
            }
        },
        _ = cancel.cancelled() => {
            // No run has started, so there is nothing to finalize.
            tracing::info!("stopped before a task arrived");
            return exit::SUCCESS;
        }
    };
    let started = Instant::now();
    let run_id = task.run_id.clone();
    tracing::info!(run_id, model = task.model.model, "task received");

    let sink = Arc::new(EventSink::new(client.clone(), run_id.clone()));
    let progress = Arc::new(Progress::default());
    let heartbeat = tokio::spawn(heartbeats(
        client.clone(),
        run_id.clone(),
        progress.clone(),
        Duration::from_secs(config.heartbeat_secs.max(1)),
    ));
    let limits = task.limits;
    let ctx = Ctx {
        llm: llm::LlmClient::new(
            http.clone(),
            &config.sidecar_url,
            task.model.api,
            task.model.model.clone(),
        ),
        task,
        sink: sink.clone(),
        http,
        mcp_url: format!("{}{}", client.base(), sidecar_api::MCP_PATH),
        workspace: config.workspace.clone(),
        limits: tools::BuiltinLimits {
            bash_timeout: Duration::from_secs(limits.bash_timeout_secs.max(1)),
            output_limit: config.tool_output_limit,
        },
        progress: progress.clone(),
    };
    // Dropping the loop future on cancel or timeout also kills a running command
    // (its process group guard), so nothing outlives the run.
    let outcome = tokio::select! {
        _ = cancel.cancelled() => Outcome {
            status: RunStatus::Cancelled,
            output: None,
            error: Some(RunError::new(codes::CANCELLED, "the agent was stopped (SIGTERM)")),
        },
        r = tokio::time::timeout(Duration::from_secs(limits.timeout_secs), run::execute(&ctx)) => {
            r.unwrap_or_else(|_| Outcome {
                status: RunStatus::Timeout,
                output: None,
                error: Some(RunError::new(
                    codes::TIMEOUT,
                    format!("the run exceeded its {}s wall clock", limits.timeout_secs),
                )),
            })
        }
    };
    heartbeat.abort();

    if let Some(err) = &outcome.error {
        let payload = if outcome.status == RunStatus::Cancelled {
            EventPayload::Log(LogWritten {
                level: LogLevel::Warn,
                message: err.message.clone(),
            })
        } else {
            EventPayload::Error(err.clone())
        };
        sink.emit(payload).await;
    }
    let last_sequence = sink.last_sequence().await;
    let usage = *progress.usage.lock();
    let output = outcome.output.or_else(|| progress.output.lock().clone());
    let result = RunResult {
        run_id,
        status: outcome.status,
        output,
        error: outcome.error,
        usage,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        last_sequence,
    };
    tracing::info!(status = ?result.status, "run finished");
    if let Err(e) = client.finalize(&result).await {
        tracing::error!(error = %e, "cannot deliver the result");
        return exit::FINALIZE_FAILED;
    }
    if result.status == RunStatus::Success {
        exit::SUCCESS
    } else {
        exit::RUN_FAILED
    }
}

async fn heartbeats(
    client: SidecarClient,
    run_id: String,
    progress: Arc<Progress>,
    every: Duration,
) {
    let mut ticker = tokio::time::interval(every);
    loop {
        // The first tick fires at once: the platform's boot deadline waits for it.
        ticker.tick().await;
        let hb = Heartbeat {
            run_id: run_id.clone(),
            time: chrono::Utc::now(),
            step: progress.step.load(Ordering::Relaxed),
            usage: *progress.usage.lock(),
        };
        if let Err(e) = client.heartbeat(&hb).await {
            tracing::warn!(error = %e, "heartbeat not delivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn command_line_is_consistent() {
        super::Config::command().debug_assert();
    }
}
