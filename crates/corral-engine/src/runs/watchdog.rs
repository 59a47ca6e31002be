//! Watching a running run until it is terminal: the boot deadline, the heartbeat
//! stall limit, the wall clock, a crashed agent, a cancel from any replica.

use std::time::Duration;

use corral_core::time::now_ms;
use corral_sandbox::SandboxState;
use corral_store::runs::{self as store, RunStatus};
use tokio_util::sync::CancellationToken;

use super::{codes, fail, Sandboxes};
use crate::Engine;

/// How long after the agent's exit its finalize may still arrive.
const EXIT_GRACE: Duration = Duration::from_secs(3);
/// The agent's own wall clock fires first and reports partial results; the platform
/// enforces the timeout this much later for an agent that cannot.
pub(crate) const TIMEOUT_GRACE_MS: i64 = 10_000;

/// How a supervisor's watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    /// The run is terminal (or gone): its sandbox goes.
    Ended,
    /// The server stopped while the run was still going: the run stays `running`
    /// and its sandbox alive, for the next boot (or another replica) to re-attach,
    /// exactly as after a crash but without waiting for this instance to look dead.
    Detached,
}

/// Watches a running run until it is terminal, enforcing the boot deadline, the
/// heartbeat stall limit and the wall clock, and noticing a crashed agent.
pub(crate) async fn watch(
    state: &Engine,
    run: &store::Run,
    sbx: &Sandboxes,
    sandbox_id: &str,
    stop: &CancellationToken,
) -> anyhow::Result<Watch> {
    let run_id = &run.id;
    let mut signals = state.runs.bus.subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let boot_ms = state.config.run_boot_deadline_seconds as i64 * 1000;
    let stall_ms = state.config.run_stall_seconds as i64 * 1000;
    let mut exited_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                tracing::info!(%run_id, sandbox_id, "server stopping: leaving the run to be re-attached");
                return Ok(Watch::Detached);
            }
            sig = signals.recv() => {
                match sig {
                    Ok(s) if s.run_id == *run_id && s.status.is_terminal() => return Ok(Watch::Ended),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => {}
                }
            }
            _ = tick.tick() => {}
        }
        let mut conn = state.db.conn().await?;
        let Some(row) = store::liveness(&mut conn, run_id).await? else {
            return Ok(Watch::Ended);
        };
        drop(conn);
        if row.status.is_terminal() {
            return Ok(Watch::Ended);
        }
        let now = now_ms();
        let started = row.started_at.unwrap_or(row.created_at);
        if now > started + row.timeout_secs * 1000 + TIMEOUT_GRACE_MS {
            super::finish(
                state,
                run_id,
                &store::Finish {
                    error: Some(&format!(
                        "the run exceeded its {} s timeout",
                        row.timeout_secs
                    )),
                    error_code: Some(codes::TIMEOUT),
                    ..store::Finish::new(RunStatus::Timeout, now)
                },
            )
            .await?;
            return Ok(Watch::Ended);
        }
        if row.first_event_at.is_none() && now > started + boot_ms {
            fail(
                state,
                run_id,
                codes::BOOT_TIMEOUT,
                &format!(
                    "the sandbox sent no event within {} s of starting",
                    boot_ms / 1000
                ),
            )
            .await?;
            return Ok(Watch::Ended);
        }
        if row.first_event_at.is_some() && row.last_heartbeat_at.is_some_and(|h| now > h + stall_ms)
        {
            fail(
                state,
                run_id,
                codes::STALLED,
                &format!("no heartbeat for {} s", stall_ms / 1000),
            )
            .await?;
            return Ok(Watch::Ended);
        }
        match sbx.backend.state(sandbox_id).await {
            Ok(SandboxState::Running) => exited_at = None,
            Ok(SandboxState::AgentExited { .. }) | Ok(SandboxState::Gone) => {
                let since = *exited_at.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= EXIT_GRACE {
                    let logs = sbx.backend.agent_logs(sandbox_id, 4096).await;
                    let details = serde_json::json!({ "agent_output_tail": logs }).to_string();
                    super::finish(
                        state,
                        run_id,
                        &store::Finish {
                            error: Some("the agent exited without reporting a result"),
                            error_code: Some(codes::AGENT_CRASHED),
                            error_details: Some(&details),
                            ..store::Finish::new(RunStatus::Failed, now_ms())
                        },
                    )
                    .await?;
                    return Ok(Watch::Ended);
                }
            }
            // The engine may be briefly unreachable; deadlines still apply.
            Err(e) => tracing::debug!(%run_id, error = %e, "sandbox state unknown"),
        }
    }
}
