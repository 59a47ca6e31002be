//! Following a run live: the realtime SSE stream of the run
//! (`GET /api/realtime/runs/{id}`), reconnecting with `Last-Event-ID`, plus a REST
//! catch-up of the logs (`GET /api/runs/{id}/logs?since=`) on every (re)connect, so a
//! client attaching mid-run sees every log line once, in order, whatever it missed.
//! Ends when the run is terminal; returns the final run object.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use reqwest::Method;
use serde_json::Value;

use crate::client::{error_chain, into_error, seg, Api};
use crate::output::{paint, short_time, Color, Stream};
use crate::sse::{Frame, Parser};
use corral_core::RunStatus;

/// How a log line is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `HH:MM:SS LEVEL message`, on the given stream.
    Human(Stream),
    /// One JSON object per line on stdout (the server's log entry shape).
    Json,
    /// Not printed.
    Quiet,
}

/// Prints log entries as they come, each once.
pub struct LogSink {
    pub format: LogFormat,
    /// The highest log id printed.
    pub last_id: i64,
    pub printed: usize,
    /// When the first line was printed (benchmarks).
    pub first_at: Option<Instant>,
    /// "Waiting…" on a terminal until the first line.
    spinner: Option<indicatif::ProgressBar>,
}

impl LogSink {
    pub fn new(format: LogFormat) -> LogSink {
        LogSink {
            format,
            last_id: 0,
            printed: 0,
            first_at: None,
            spinner: None,
        }
    }

    /// Shows a spinner with `msg` on stderr (a terminal only) until the first line.
    pub fn with_spinner(mut self, msg: &str) -> LogSink {
        if matches!(self.format, LogFormat::Human(_)) && crate::output::stderr_tty() {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.set_message(msg.to_owned());
            pb.enable_steady_tick(Duration::from_millis(100));
            self.spinner = Some(pb);
        }
        self
    }

    /// Removes the spinner (before printing anything else).
    pub fn clear_spinner(&mut self) {
        if let Some(pb) = self.spinner.take() {
            pb.finish_and_clear();
        }
    }

    /// Prints `entry` unless its id was printed already. Entries come from the REST
    /// list (`createdAt`, `level`, `message`, `type`) or SSE frames (same fields).
    pub fn log(&mut self, entry: &Value) {
        let id = entry.get("id").and_then(Value::as_i64).unwrap_or(0);
        if id != 0 && id <= self.last_id {
            return;
        }
        self.last_id = self.last_id.max(id);
        self.printed += 1;
        self.clear_spinner();
        self.first_at.get_or_insert_with(Instant::now);
        match self.format {
            LogFormat::Quiet => {}
            LogFormat::Json => println!("{}", serde_json::to_string(entry).unwrap_or_default()),
            LogFormat::Human(s) => {
                let line = format_log(entry, s);
                match s {
                    Stream::Out => println!("{line}"),
                    Stream::Err => eprintln!("{line}"),
                }
            }
        }
    }
}

pub fn format_log(entry: &Value, s: Stream) -> String {
    let str_of = |k: &str| entry.get(k).and_then(Value::as_str).unwrap_or("");
    let at = entry
        .get("createdAt")
        .or_else(|| entry.get("created_at"))
        .and_then(Value::as_str)
        .map(short_time)
        .map(|t| t.get(11..).unwrap_or(&t).to_owned())
        .unwrap_or_default();
    let level = str_of("level");
    let color = match level {
        "error" => Color::Red,
        "warn" => Color::Yellow,
        "debug" => Color::Dim,
        _ => Color::Blue,
    };
    let message = match entry.get("message") {
        Some(Value::String(m)) => m.clone(),
        Some(Value::Null) | None => str_of("type").to_owned(),
        Some(other) => other.to_string(),
    };
    format!(
        "{} {} {}",
        paint(s, Color::Dim, &at),
        paint(s, color, &format!("{level:<5}")),
        message
    )
}

/// Prints the logs after `sink.last_id` from the REST endpoint, every page.
pub async fn catch_up(api: &Api, run_id: &str, sink: &mut LogSink) -> Result<()> {
    for e in catch_up_into(api, &seg(run_id), sink.last_id).await? {
        sink.log(&e);
    }
    Ok(())
}

fn status_of(run: &Value) -> Option<RunStatus> {
    run.get("status")
        .and_then(Value::as_str)
        .and_then(RunStatus::parse)
}

/// Follows the run until it is terminal; returns the final run object. Connection
/// losses are retried (with `Last-Event-ID`) for up to `reconnect_for` in a row.
pub async fn follow(api: &Api, run_id: &str, sink: &mut LogSink) -> Result<Value> {
    let run_id = &seg(run_id);
    let reconnect_for = Duration::from_secs(60);
    let mut last_event_id: Option<String> = None;
    let mut failing_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(200);
    loop {
        match attach(api, run_id, sink, &mut last_event_id).await {
            Ok(Some(run)) => return Ok(run),
            Ok(None) => {
                // The stream ended (server restart, proxy timeout, a slow reader
                // dropped): reconnect with the last id after a short pause.
                failing_since = None;
                backoff = Duration::from_millis(200);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                // A refusal (404, 401, …) will not get better: stop. A gateway or a
                // restarting server (5xx) or a rate limit (429) is retried.
                if e.downcast_ref::<crate::client::ApiError>()
                    .is_some_and(|a| a.status < 500 && a.status != 429)
                {
                    return Err(e);
                }
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > reconnect_for {
                    return Err(e.context(format!(
                        "lost the live stream of {run_id} and could not reconnect for {}s",
                        reconnect_for.as_secs()
                    )));
                }
                if matches!(sink.format, LogFormat::Human(_)) {
                    sink.clear_spinner();
                    eprintln!(
                        "{}",
                        paint(
                            Stream::Err,
                            Color::Yellow,
                            &format!("connection lost ({e:#}); reconnecting…")
                        )
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One connection: `Ok(Some(run))` when the run ended, `Ok(None)` when the stream
/// closed first, `Err` when it could not connect or broke.
async fn attach(
    api: &Api,
    run_id: &str,
    sink: &mut LogSink,
    last_event_id: &mut Option<String>,
) -> Result<Option<Value>> {
    let mut rb = api
        .request(Method::GET, &format!("/api/realtime/runs/{run_id}"))
        .header(reqwest::header::ACCEPT, "text/event-stream");
    if let Some(id) = last_event_id.as_deref() {
        rb = rb.header("last-event-id", id);
    }
    let mut resp = rb.send().await.map_err(|e| api.net_error(e))?;
    if !resp.status().is_success() {
        return Err(into_error(resp).await.into());
    }
    // The subscription exists now: whatever happened before it is read back here, and
    // a run that ended between the snapshot and the subscription is seen as ended.
    let run_path = format!("/api/runs/{run_id}");
    let (logs, run) = tokio::join!(catch_up_into(api, run_id, sink.last_id), api.get(&run_path));
    for e in logs? {
        sink.log(&e);
    }
    let run = run?;
    if status_of(&run).is_some_and(RunStatus::is_terminal) {
        return Ok(Some(finish(api, run_id, sink).await?));
    }
    let mut parser = Parser::default();
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(None),
            Err(e) => anyhow::bail!("stream broke: {}", error_chain(&e)),
        };
        for frame in parser.push(&chunk) {
            if let Some(id) = &frame.id {
                *last_event_id = Some(id.clone());
            }
            if handle(&frame, sink)? {
                return Ok(Some(finish(api, run_id, sink).await?));
            }
        }
    }
}

/// The logs after `since`, every page.
async fn catch_up_into(api: &Api, run_id: &str, since: i64) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut since = since;
    loop {
        let page = api
            .get(&format!("/api/runs/{run_id}/logs?since={since}&limit=1000"))
            .await?;
        let data = page
            .get("data")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(last) = data
            .last()
            .and_then(|e| e.get("id"))
            .and_then(Value::as_i64)
        {
            since = last;
        }
        // `hasMore` (this server) or `has_more`.
        let more = (page.get("hasMore") == Some(&Value::Bool(true))
            || page.get("has_more") == Some(&Value::Bool(true)))
            && !data.is_empty();
        out.extend(data);
        if !more {
            return Ok(out);
        }
    }
}

/// Applies one frame; true when it says the run is terminal.
fn handle(frame: &Frame, sink: &mut LogSink) -> Result<bool> {
    match frame.event.as_str() {
        "run_log" => {
            let v: Value = serde_json::from_str(&frame.data).context("run_log frame")?;
            sink.log(&v);
            Ok(false)
        }
        "run_update" => {
            let v: Value = serde_json::from_str(&frame.data).context("run_update frame")?;
            Ok(status_of(&v).is_some_and(RunStatus::is_terminal))
        }
        _ => Ok(false),
    }
}

/// The run is over: the last logs, then the final run object.
async fn finish(api: &Api, run_id: &str, sink: &mut LogSink) -> Result<Value> {
    let run_path = format!("/api/runs/{run_id}");
    let (logs, run) = tokio::join!(catch_up_into(api, run_id, sink.last_id), api.get(&run_path));
    for e in logs? {
        sink.log(&e);
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn logs_print_once_and_frames_end_on_terminal_updates() {
        let mut sink = LogSink::new(LogFormat::Quiet);
        sink.log(&json!({"id": 3, "message": "a"}));
        sink.log(&json!({"id": 3, "message": "a"}));
        sink.log(&json!({"id": 2, "message": "old"}));
        sink.log(&json!({"id": 5, "message": "b"}));
        assert_eq!((sink.printed, sink.last_id), (2, 5));
        let f = |event: &str, data: Value| Frame {
            id: Some("9".into()),
            event: event.into(),
            data: data.to_string(),
        };
        assert!(!handle(&f("run_update", json!({"status": "running"})), &mut sink).unwrap());
        assert!(handle(&f("run_update", json!({"status": "failed"})), &mut sink).unwrap());
        assert!(!handle(&f("run_log", json!({"id": 6, "message": "c"})), &mut sink).unwrap());
        assert_eq!(sink.printed, 3);
        assert!(!handle(&f("ping", json!(null)), &mut sink).unwrap());
    }

    #[test]
    fn log_lines_are_formatted() {
        let line = format_log(
            &json!({"createdAt": "2026-12-04T17:09:00.123Z", "level": "warn", "message": "hot"}),
            Stream::Out,
        );
        // Not a terminal under test: no colour codes.
        assert_eq!(line, "17:09:00 warn  hot");
    }
}
