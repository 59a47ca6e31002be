//! Remote runs (`POST /api/runs/remote`): the agent runs on the caller's host (a
//! CLI, a CI job) and reports through the signed-event routes like a sidecar would.
//!
//! The trigger is a classic run's ([`super::trigger::check`]: input, dependencies,
//! connections, model, org gates); the row is written `pending` with
//! `origin = 'remote'` and no owner, so neither the executor nor the cluster's queue
//! nor the reconciler ever takes it. The caller gets the sink secret once. The first
//! signed event or heartbeat moves the run to `running` ([`super::ingest`]); finalize
//! ends it. [`watchdog`] ends the remote runs that fall silent: no first event
//! within the boot deadline (`boot_timeout`), no heartbeat within the stall limit
//! (`stalled`), or past the wall clock (`timeout`).

use std::time::Duration;

use corral_core::time::now_ms;
use corral_core::ProblemResult;
use corral_store::runs::{self as store, RunStatus};
use tokio_util::sync::CancellationToken;

use super::trigger::{insert_run, Caller, Checked, Placement, Request};
use super::{codes, fail};
use crate::Engine;

/// How often the remote watchdog looks.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// What a remote run records beyond a classic one.
#[derive(Debug, Default)]
pub struct Remote<'a> {
    /// The sink lifetime the caller asked for (clamped to
    /// `CORRAL_REMOTE_RUN_SINK_MAX_TTL_SECONDS`); default: the run's timeout plus the
    /// grace a sandboxed run's sink gets.
    pub sink_ttl_secs: Option<u64>,
    /// JSON object about the runner's environment.
    pub context_snapshot: Option<&'a str>,
    pub runner_name: Option<&'a str>,
    pub runner_kind: Option<&'a str>,
}

impl Remote<'_> {
    pub(crate) fn sink_expires_at(&self, state: &Engine, default: i64) -> i64 {
        let now = now_ms();
        let max = now + state.config.remote_run_sink_max_ttl_seconds as i64 * 1000;
        match self.sink_ttl_secs {
            Some(ttl) => now + ttl as i64 * 1000,
            None => default,
        }
        .min(max)
    }
}

/// A created remote run and its sink secret (returned to the caller once, stored
/// sealed).
pub struct Created {
    pub run: store::Run,
    /// 32 random bytes, base64url without padding. Events are signed with it as the
    /// HMAC key (its bytes as text, as any non-`whsec_` secret).
    pub secret: String,
}

/// A new sink secret.
fn mint_secret() -> String {
    corral_core::token::random_urlsafe(32)
}

/// Writes a checked trigger as a `pending` remote run (never queued).
pub async fn create(
    state: &Engine,
    caller: &Caller,
    req: &Request<'_>,
    checked: Checked,
    remote: &Remote<'_>,
) -> ProblemResult<Created> {
    let secret = mint_secret();
    let run = insert_run(
        state,
        caller,
        req,
        checked,
        &Placement::Remote(remote),
        &secret,
    )
    .await?;
    Ok(Created { run, secret })
}

/// Ends the remote runs that fell silent, until `stop`. Every replica may run it:
/// a terminal state is written once, whoever gets there first.
pub async fn watchdog(state: Engine, stop: CancellationToken) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = sweep(&state).await {
            tracing::warn!(error = %format!("{e:#}"), "remote run watchdog pass failed");
        }
    }
}

/// One pass over the active remote runs.
pub async fn sweep(state: &Engine) -> anyhow::Result<()> {
    let runs = {
        let mut conn = state.db.conn().await?;
        corral_store::remote_runs::active_remote(&mut conn).await?
    };
    let boot_ms = state.config.run_boot_deadline_seconds as i64 * 1000;
    let stall_ms = state.config.run_stall_seconds as i64 * 1000;
    for run in runs {
        let now = now_ms();
        let started = run.started_at.unwrap_or(run.created_at);
        if now > started + run.timeout_secs * 1000 + super::watchdog::TIMEOUT_GRACE_MS {
            super::finish(
                state,
                &run.id,
                &store::Finish {
                    error: Some(&format!(
                        "the run exceeded its {} s timeout",
                        run.timeout_secs
                    )),
                    error_code: Some(codes::TIMEOUT),
                    ..store::Finish::new(RunStatus::Timeout, now)
                },
            )
            .await?;
        } else if run.status == RunStatus::Pending && now > run.created_at + boot_ms {
            tracing::warn!(run_id = %run.id, "remote run never reported");
            fail(
                state,
                &run.id,
                codes::BOOT_TIMEOUT,
                &format!(
                    "the remote runner sent no event within {} s of the run's creation",
                    boot_ms / 1000
                ),
            )
            .await?;
        } else if run.status == RunStatus::Running
            && run.last_heartbeat_at.unwrap_or(started) + stall_ms < now
        {
            tracing::warn!(run_id = %run.id, "remote run stalled");
            fail(
                state,
                &run.id,
                codes::STALLED,
                &format!(
                    "no event or heartbeat from the remote runner for {} s",
                    stall_ms / 1000
                ),
            )
            .await?;
        }
    }
    Ok(())
}
