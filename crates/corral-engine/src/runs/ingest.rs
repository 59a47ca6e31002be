//! What sandboxes report (SPEC §9 "Events"), behind the API's
//! `POST /api/runs/{runId}/events`, `/events/heartbeat` and `/events/finalize`: each
//! report is authenticated by the run's sink secret (Standard Webhooks signature),
//! not by the user pipeline.
//!
//! Events are applied strictly in sequence order: the run's `last_sequence` moves by
//! compare-and-swap inside the transaction that stores the event, a duplicate is
//! acknowledged as a `replay`, and an event ahead of a gap is kept in
//! `run_event_buffer` until the gap fills (or finalize flushes it).

use corral_core::time::now_ms;
use corral_core::ErrorCode;
use corral_core::{Problem, ProblemResult, RunId};
use corral_protocol::events::{EventPayload, LogLevel};
use corral_protocol::{CloudEvent, RunResult, RunStatus, SigningSecret, WebhookHeaders};
use corral_store::run_logs;
use corral_store::runs as store;
use serde_json::{json, Value};

use super::{codes, Definition};
use crate::Engine;

/// Log entries stored per run; the rest of a flood is counted, not stored.
pub const MAX_LOGS_PER_RUN: u64 = 10_000;

/// What became of an event (`persisted` | `replay` | `buffered`), and its sequence.
pub type Outcome = (&'static str, i64);

/// Loads the run and checks the signature of `body` with its sink secret; `header`
/// looks up a request header by (lowercase) name.
pub async fn authenticate<'h>(
    state: &Engine,
    run_id: &RunId,
    header: impl FnMut(&str) -> Option<&'h str>,
    body: &[u8],
) -> ProblemResult<store::Run> {
    let mut conn = state.db.conn().await?;
    let run = store::get_internal(&mut conn, run_id)
        .await?
        .ok_or_else(|| Problem::not_found("run"))?;
    drop(conn);
    let wh = WebhookHeaders::from_lookup(header)
        .map_err(|e| Problem::new(ErrorCode::InvalidSignature, e.to_string()))?;
    let plain = super::open_sink_secret(state, &run).map_err(Problem::internal)?;
    let secret = SigningSecret::parse(&plain)
        .map_err(|e| Problem::internal(anyhow::anyhow!("stored sink secret: {e}")))?;
    secret
        .verify(&wh, body, now_ms() / 1000)
        .map_err(|e| Problem::new(ErrorCode::InvalidSignature, e.to_string()))?;
    Ok(run)
}

pub fn check_open(run: &store::Run) -> ProblemResult<()> {
    if run.status.is_terminal() {
        return Err(Problem::new(
            ErrorCode::RunSinkClosed,
            format!("the run is already {}", run.status),
        ));
    }
    if now_ms() > run.sink_expires_at {
        return Err(Problem::new(
            ErrorCode::RunSinkExpired,
            "the run's event sink has expired",
        ));
    }
    Ok(())
}

/// The first event of a run ends its start: record trigger → first event.
fn observe_start(state: &Engine, before: &store::Run) {
    if before.first_event_at.is_none() && before.status == store::RunStatus::Running {
        let secs = (now_ms() - before.created_at).max(0) as f64 / 1000.0;
        state.metrics.run_start.observe(secs);
    }
}

fn level_str(l: LogLevel) -> &'static str {
    match l {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

/// Stores one event's effects (inside the caller's transaction).
async fn apply(
    conn: &mut corral_store::Conn,
    run: &store::Run,
    ev: &CloudEvent,
) -> ProblemResult<()> {
    let run_id = &run.id;
    let payload = ev
        .payload()
        .map_err(|e| Problem::invalid_param("data", format!("data does not match type: {e}")))?;
    let now = now_ms();
    let seq = Some(ev.sequence as i64);
    let (log_type, level, message, data): (&str, &str, Option<String>, Option<Value>) =
        match &payload {
            EventPayload::Log(l) => ("log", level_str(l.level), Some(l.message.clone()), None),
            EventPayload::Progress(p) => (
                "progress",
                "info",
                Some(p.message.clone()),
                Some(json!({"step": p.step})),
            ),
            EventPayload::Error(e) => (
                "error",
                "error",
                Some(e.message.clone()),
                Some(json!({"code": e.code, "details": e.details})),
            ),
            EventPayload::Metric(m) => {
                let usage = json!({
                    "input_tokens": m.total.input_tokens,
                    "output_tokens": m.total.output_tokens,
                });
                store::set_usage(conn, run_id, &usage.to_string()).await?;
                ("metric", "debug", None, Some(ev.data.clone()))
            }
            EventPayload::Output(o) => {
                let result = json!({"output": o.output});
                store::set_result(conn, run_id, &result.to_string()).await?;
                ("output", "info", None, Some(json!({"output": o.output})))
            }
            EventPayload::Memory(m) => ("memory", "info", Some(m.content.clone()), None),
            EventPayload::Pinned(p) => (
                "pinned",
                "info",
                None,
                Some(json!({"key": p.key, "value": p.value})),
            ),
        };
    // A run that floods events fills only its own quota: past the limit, entries
    // are counted (the sequence moves on) but no longer stored, once marked.
    let seq_no = ev.sequence;
    if seq_no > MAX_LOGS_PER_RUN {
        if seq_no == MAX_LOGS_PER_RUN + 1 {
            run_logs::insert_log(
                conn,
                &run_logs::NewLog {
                    run_id,
                    sequence: seq,
                    log_type: "system",
                    level: "warn",
                    message: Some(&format!(
                        "log limit of {MAX_LOGS_PER_RUN} entries reached; later entries are not stored"
                    )),
                    data: None,
                    now,
                },
            )
            .await?;
        }
        return Ok(());
    }
    // What the agent notes and pins outlives the run (a refusal is logged with it).
    if let Some(warning) = crate::memory::record(conn, run, &payload).await? {
        run_logs::insert_log(
            conn,
            &run_logs::NewLog {
                run_id,
                sequence: None,
                log_type: "system",
                level: "warn",
                message: Some(&warning),
                data: None,
                now,
            },
        )
        .await?;
    }
    let data = data.map(|d| d.to_string());
    // An agent's text is data, not input to refuse: a NUL (which PostgreSQL cannot
    // store in text) becomes U+FFFD. `data` is serialized JSON, where NUL is escaped.
    let message = message.as_deref().map(corral_core::text::without_nul);
    run_logs::insert_log(
        conn,
        &run_logs::NewLog {
            run_id,
            sequence: seq,
            log_type,
            level,
            message: message.as_deref(),
            data: data.as_deref(),
            now,
        },
    )
    .await?;
    Ok(())
}

/// Applies buffered events that follow `last` contiguously (or all of them when
/// `flush`), returning the new last sequence.
async fn drain_buffer(
    conn: &mut corral_store::Conn,
    run: &store::Run,
    mut last: i64,
    flush: bool,
) -> ProblemResult<i64> {
    let run_id = &run.id;
    for (seq, body) in run_logs::buffered(conn, run_id).await? {
        if seq <= last {
            run_logs::unbuffer(conn, run_id, seq).await?;
            continue;
        }
        if seq != last + 1 && !flush {
            break;
        }
        let ev: CloudEvent = serde_json::from_str(&body).map_err(Problem::internal)?;
        apply(conn, run, &ev).await?;
        run_logs::unbuffer(conn, run_id, seq).await?;
        last = seq;
    }
    Ok(last)
}

/// Applies one signed CloudEvent of `run` (authenticated, open): in sequence order,
/// a duplicate acknowledged as a replay, an event ahead of a gap buffered.
pub async fn ingest(state: &Engine, run: &store::Run, body: &[u8]) -> ProblemResult<Outcome> {
    let run_id = &run.id;
    let ev: CloudEvent = serde_json::from_slice(body)
        .map_err(|e| Problem::invalid_param("body", format!("not a run event: {e}")))?;
    if ev.run_id() != Some(run_id.as_str()) {
        return Err(Problem::invalid_param(
            "source",
            "the event's source is not this run",
        ));
    }
    let seq = ev.sequence as i64;
    if seq < 1 {
        return Err(Problem::invalid_param("sequence", "sequence starts at 1"));
    }
    let mut tx = state.db.begin().await?;
    let (last, _) = store::lock_progress(&mut tx, run_id)
        .await?
        .ok_or_else(|| Problem::not_found("run"))?;
    let outcome = if seq <= last {
        "replay"
    } else if seq == last + 1 {
        apply(&mut tx, run, &ev).await?;
        let new_last = drain_buffer(&mut tx, run, seq, false).await?;
        if !store::advance_sequence(&mut tx, run_id, last, new_last).await? {
            // Another delivery of the same sequence won the race.
            return Ok(("replay", seq));
        }
        "persisted"
    } else {
        run_logs::buffer_event(
            &mut tx,
            run_id,
            seq,
            &String::from_utf8_lossy(body),
            now_ms(),
        )
        .await?;
        "buffered"
    };
    let started = start_remote(&mut tx, run).await?;
    store::touch(&mut tx, run_id, now_ms()).await?;
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    if started {
        state
            .runs
            .bus
            .publish(run_id, store::RunStatus::Running)
            .await;
    }
    state.runs.bus.events_written(&run.org_id);
    observe_start(state, run);
    Ok((outcome, seq))
}

/// A remote run's first report moves it from `pending` to `running` (a sandboxed
/// run is `running` once its sandbox is leased). True when this call did.
async fn start_remote(conn: &mut corral_store::Conn, run: &store::Run) -> ProblemResult<bool> {
    if run.origin != "remote" || run.status != store::RunStatus::Pending {
        return Ok(false);
    }
    let started = corral_store::remote_runs::mark_remote_running(conn, &run.id, now_ms()).await?;
    if started {
        tracing::info!(run_id = %run.id, "remote run started");
    }
    Ok(started)
}

/// Proof of life from the run's sidecar (authenticated, open).
pub async fn heartbeat(state: &Engine, run: &store::Run) -> ProblemResult<()> {
    let mut conn = state.db.conn().await?;
    let started = start_remote(&mut conn, run).await?;
    store::touch(&mut conn, &run.id, now_ms()).await?;
    drop(conn);
    if started {
        state
            .runs
            .bus
            .publish(&run.id, store::RunStatus::Running)
            .await;
    }
    observe_start(state, run);
    Ok(())
}

/// The run's result (authenticated): closes the sink, flushes buffered events,
/// validates the output against the agent's output schema and writes the terminal
/// state. Idempotent: a finalize retried after the run closed changes nothing.
pub async fn finalize(state: &Engine, run: &store::Run, body: &[u8]) -> ProblemResult<()> {
    if run.status.is_terminal() {
        return Ok(());
    }
    check_open(run)?;
    let run_id = &run.id;
    let result: RunResult = serde_json::from_slice(body)
        .map_err(|e| Problem::invalid_param("body", format!("not a run result: {e}")))?;
    let def: Definition = serde_json::from_str(&run.definition).map_err(Problem::internal)?;

    let mut tx = state.db.begin().await?;
    let (before, _) = store::lock_progress(&mut tx, run_id)
        .await?
        .ok_or_else(|| Problem::not_found("run"))?;
    let last = drain_buffer(&mut tx, run, before, true).await?;
    if last != before {
        store::advance_sequence(&mut tx, run_id, before, last).await?;
    }
    // The output an event emitted (a flushed one included), unless the result has one.
    let stored_output = store::progress(&mut tx, run_id)
        .await?
        .and_then(|(_, r)| r)
        .and_then(|r| serde_json::from_str::<Value>(&r).ok())
        .and_then(|r| r.get("output").cloned());
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    state.runs.bus.events_written(&run.org_id);
    let output = result.output.clone().or(stored_output);

    let mut status = match result.status {
        RunStatus::Success => store::RunStatus::Success,
        RunStatus::Failed => store::RunStatus::Failed,
        RunStatus::Timeout => store::RunStatus::Timeout,
        RunStatus::Cancelled => store::RunStatus::Cancelled,
    };
    let clean = |s: &str| corral_core::text::without_nul(s).into_owned();
    let mut error = result.error.as_ref().map(|e| clean(&e.message));
    let mut code = result.error.as_ref().map(|e| clean(&e.code));
    let mut details = result
        .error
        .as_ref()
        .and_then(|e| e.details.clone())
        .map(|d| d.to_string());
    if status == store::RunStatus::Success {
        if let (Some(schema), Some(out)) = (&def.output_schema, &output) {
            let errors: Vec<Value> = match jsonschema::validator_for(schema) {
                Ok(v) => v
                    .iter_errors(out)
                    .map(|e| json!({"path": e.instance_path().to_string(), "message": e.to_string()}))
                    .collect(),
                Err(e) => vec![json!({"path": "", "message": format!("invalid output schema: {e}")})],
            };
            if !errors.is_empty() {
                status = store::RunStatus::Failed;
                code = Some(codes::OUTPUT_SCHEMA_MISMATCH.to_owned());
                error = Some("the output does not match the agent's output schema".to_owned());
                details = Some(json!({ "errors": errors }).to_string());
            }
        }
    }
    let result_json = output.map(|o| json!({ "output": o }).to_string());
    let usage = json!({
        "input_tokens": result.usage.input_tokens,
        "output_tokens": result.usage.output_tokens,
    })
    .to_string();
    super::finish(
        state,
        run_id,
        &store::Finish {
            status,
            result: result_json.as_deref(),
            error: error.as_deref(),
            error_code: code.as_deref(),
            error_details: details.as_deref(),
            token_usage: Some(&usage),
            duration_ms: Some(result.duration_ms as i64),
            now: now_ms(),
        },
    )
    .await
    .map_err(Problem::internal)?;
    Ok(())
}
