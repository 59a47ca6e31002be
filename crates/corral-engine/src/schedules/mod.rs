//! Schedules (SPEC §13): the timetable ([`cron`]) and the scheduler that fires due
//! schedules as normal runs through the run trigger.
//!
//! Exactly once: a replica claims due rows in a transaction (`FOR UPDATE SKIP LOCKED`
//! on PostgreSQL, so replicas split the due rows), inserts one `schedule_fires` row
//! per (schedule, fire time) — a second claim of the same fire cannot insert — and
//! moves the schedule to its next fire time after *now*, so fires missed while
//! every server was down collapse into one catch-up run. Only then, outside the
//! transaction, does it trigger the runs, in fire-time order, and record each
//! outcome (the run, or the pipeline's refusal) on the fire and the schedule.

pub mod cron;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use corral_connect::Actor;
use corral_core::time::now_ms;
use corral_core::{ErrorCode, Problem, RunId};
use corral_store::schedules::{self as store, FireOutcome, Schedule};
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::runs::trigger;
use crate::Engine;

pub use cron::Timetable;

/// Due schedules claimed per transaction.
const BATCH: i64 = 200;
/// The longest the scheduler sleeps without looking (other replicas' changes).
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// A claim older than this whose run was never recorded is reported lost.
const CLAIM_EXPIRY_MS: i64 = 120_000;

/// The scheduler's shared part: wakes it when a schedule changes here.
#[derive(Default, Clone)]
pub struct Schedules {
    wake: Arc<Notify>,
}

impl Schedules {
    /// A schedule was created or changed: look again now.
    pub fn changed(&self) {
        self.wake.notify_one();
    }
}

/// The scheduler job: fires due schedules until `stop`.
pub async fn run(engine: Engine, stop: CancellationToken) {
    let mut last_expiry = 0;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let fired = match tick(&engine, now_ms()).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "scheduler tick failed; retrying");
                0
            }
        };
        if now_ms() - last_expiry > 30_000 {
            last_expiry = now_ms();
            expire_claims(&engine).await;
        }
        if fired as i64 >= BATCH {
            continue;
        }
        let wait = match next_due(&engine).await {
            Some(at) => Duration::from_millis((at - now_ms()).clamp(0, 1000) as u64),
            None => MAX_SLEEP,
        };
        if wait.is_zero() {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = engine.schedules.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn next_due(engine: &Engine) -> Option<i64> {
    let mut conn = engine.db.conn().await.ok()?;
    store::next_due(&mut conn).await.ok().flatten()
}

async fn expire_claims(engine: &Engine) {
    let Ok(mut conn) = engine.db.conn().await else {
        return;
    };
    let now = now_ms();
    match store::expire_claims(&mut conn, now - CLAIM_EXPIRY_MS, now).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(fires = n, "schedule fires lost by a stopped server"),
        Err(e) => tracing::warn!(error = %e, "expiring schedule claims failed"),
    }
}

/// Claims every schedule due at `now` and fires the claimed ones; returns how many
/// were claimed.
pub async fn tick(engine: &Engine, now: i64) -> anyhow::Result<usize> {
    let postgres = engine.db.backend() == corral_store::Backend::Postgres;
    let mut tx = engine.db.begin().await?;
    let due = store::lock_due(&mut tx, postgres, now, BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let mut claimed = Vec::with_capacity(due.len());
    for s in due {
        let fire_at = s.next_run_at;
        let next = Timetable::parse(&s.cron_expression, &s.timezone)
            .ok()
            .and_then(|t| t.next_after(now.max(fire_at)))
            .unwrap_or(i64::MAX);
        let won = store::claim_fire(&mut tx, &s.id, fire_at, &engine.runs.instance_id, now).await?;
        store::advance(&mut tx, &s.id, next, now).await?;
        if won {
            claimed.push((s, fire_at));
        }
    }
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    let n = claimed.len();
    for (s, fire_at) in claimed {
        fire(engine, &s, fire_at).await;
    }
    Ok(n)
}

/// Triggers the run of one claimed fire and records what became of it.
async fn fire(engine: &Engine, s: &Schedule, fire_at: i64) {
    let outcome = trigger_for(engine, s).await;
    // A missing connection is what a user must act on: the fire leaves a failed run
    // (`connection_missing`), so webhooks (`run.connection_missing`), realtime and
    // the schedule's runs show it like any other run's failure.
    if let Err(e) = &outcome {
        if matches!(
            e.code,
            ErrorCode::ConnectionMissing | ErrorCode::NeedsReconnection
        ) {
            match failed_run(engine, s, e).await {
                Ok(run_id) => {
                    tracing::info!(schedule = %s.id, %run_id, "fire recorded as a failed run")
                }
                Err(err) => {
                    tracing::warn!(schedule = %s.id, error = %err, "recording the refused fire's run failed")
                }
            }
        }
    }
    let now = now_ms();
    let recorded = async {
        let mut conn = engine.db.conn().await?;
        match &outcome {
            Ok(run_id) => {
                store::finish_fire(
                    &mut conn,
                    &s.id,
                    fire_at,
                    &FireOutcome::Fired { run_id },
                    now,
                )
                .await
            }
            Err(e) => {
                store::finish_fire(
                    &mut conn,
                    &s.id,
                    fire_at,
                    &FireOutcome::Refused {
                        code: e.code.code(),
                        message: &e.detail,
                    },
                    now,
                )
                .await
            }
        }
    }
    .await;
    match (&outcome, recorded) {
        (_, Err(e)) => tracing::error!(schedule = %s.id, error = %e, "recording a fire failed"),
        (Ok(run_id), Ok(())) => {
            engine.metrics.schedule_fires.inc();
            tracing::info!(schedule = %s.id, %run_id, "schedule fired")
        }
        (Err(e), Ok(())) => {
            engine.metrics.schedule_refusals.inc();
            tracing::warn!(schedule = %s.id, code = e.code.code(), detail = %e.detail,
                "schedule fire refused by the run pipeline")
        }
    }
}

/// A run that failed before it started, for a fire the pipeline refused for a
/// missing connection: inserted and failed in one transaction, then announced.
async fn failed_run(engine: &Engine, s: &Schedule, e: &Problem) -> anyhow::Result<RunId> {
    use corral_store::runs as runs_store;
    let run_id = RunId::generate();
    let now = now_ms();
    let (scope, name) = s
        .package_id
        .split_once('/')
        .unwrap_or((s.package_id.as_str(), ""));
    let sink = engine.keyring.seal(
        corral_protocol::SigningSecret::generate()
            .to_whsec()
            .as_bytes(),
        &crate::runs::sink_aad(run_id.as_str()),
    );
    let token_hash =
        crate::runs::executor::run_token_hash(&crate::runs::executor::run_token(engine, &run_id));
    let details = serde_json::to_string(&e.errors)?;
    let mut tx = engine.db.begin().await?;
    runs_store::insert(
        &mut tx,
        &runs_store::NewRun {
            id: &run_id,
            org_id: &s.org_id,
            application_id: &s.application_id,
            package_id: Some(&s.package_id),
            agent_scope: Some(scope),
            agent_name: Some(name),
            kind: "package",
            input: s.input.as_deref(),
            version_label: None,
            version_ref: s.version_override.as_deref().unwrap_or("published"),
            definition: "{}",
            model_label: None,
            model_source: None,
            proxy_label: None,
            generation: None,
            user_id: s.user_id.as_deref(),
            end_user_id: s.end_user_id.as_deref(),
            api_key_id: None,
            schedule_id: Some(&s.id),
            schedule_name: s.name.as_deref(),
            timeout_secs: 0,
            runner_kind: None,
            runner_name: None,
            server_id: engine.runs.queue_owner(),
            sink_secret: &sink,
            sink_expires_at: now,
            run_token_hash: &token_hash,
            origin: "platform",
            context_snapshot: None,
            now,
        },
    )
    .await?;
    runs_store::finish(
        &mut tx,
        &run_id,
        &runs_store::Finish {
            error: Some(&e.detail),
            error_code: Some("connection_missing"),
            error_details: Some(&details),
            duration_ms: Some(0),
            ..runs_store::Finish::new(runs_store::RunStatus::Failed, now)
        },
    )
    .await?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    engine
        .runs
        .bus
        .publish(&run_id, runs_store::RunStatus::Failed)
        .await;
    Ok(run_id)
}

fn json_map(raw: Option<&str>) -> Map<String, Value> {
    match raw.and_then(|r| serde_json::from_str(r).ok()) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn string_map(raw: Option<&str>) -> Option<BTreeMap<String, String>> {
    raw.and_then(|r| serde_json::from_str(r).ok())
}

/// The caller a schedule's runs have: its application, and its actor (a member, or
/// an end-user of the application).
pub fn caller_of(s: &Schedule) -> trigger::Caller {
    let actor = match (&s.end_user_id, &s.user_id) {
        (Some(eu), _) => Actor {
            owner_type: "end_user",
            owner_id: eu.clone(),
            include_shared: false,
        },
        (None, Some(u)) => Actor {
            owner_type: "user",
            owner_id: u.clone(),
            include_shared: true,
        },
        (None, None) => Actor {
            owner_type: "user",
            owner_id: format!("schedule:{}", s.id),
            include_shared: true,
        },
    };
    trigger::Caller {
        org_id: s.org_id.clone(),
        app_id: s.application_id.clone(),
        user_id: s.user_id.clone(),
        api_key_id: None,
        end_user_id: s.end_user_id.clone(),
        actor,
    }
}

async fn trigger_for(engine: &Engine, s: &Schedule) -> Result<String, Problem> {
    let agent = trigger::resolve_agent(
        engine,
        &s.org_id,
        &s.package_id,
        s.version_override.as_deref(),
    )
    .await?;
    let generation: Option<Value> = s
        .generation_config_override
        .as_deref()
        .and_then(|g| serde_json::from_str(g).ok());
    let deps = string_map(s.dependency_overrides.as_deref());
    let conns = string_map(s.connection_overrides.as_deref());
    let req = trigger::Request {
        agent: &agent,
        kind: "package",
        generation: generation.as_ref(),
        model_id: s.model_id_override.as_deref(),
        dependency_overrides: deps.as_ref(),
        connection_overrides: conns.as_ref(),
        schedule: Some((&s.id, s.name.as_deref())),
        proxy_id: None,
        schedule_proxy_id: s.proxy_id_override.as_deref(),
    };
    let run = trigger::trigger(engine, &caller_of(s), &req, json_map(s.input.as_deref())).await?;
    Ok(run.id.to_string())
}
