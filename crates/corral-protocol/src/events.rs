//! Run events in CloudEvents 1.0 JSON form, their typed payloads, and the two
//! out-of-band messages that complete the protocol: the heartbeat and the finalize
//! payload (the run result).
//!
//! The agent numbers its events (`sequence`, from 1, contiguous) so that a retried
//! delivery is recognisable as a duplicate by the platform's compare-and-swap.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The CloudEvents spec version this crate speaks.
pub const SPEC_VERSION: &str = "1.0";

/// Error codes the runtime reports in [`RunError::code`].
pub mod codes {
    /// The `output` value never satisfied the output schema within the retry limit.
    pub const OUTPUT_SCHEMA_MISMATCH: &str = "output_schema_mismatch";
    /// The model needed more LLM calls than `max_steps`.
    pub const STEP_BUDGET_EXCEEDED: &str = "step_budget_exceeded";
    /// Input + output tokens went over `max_tokens`.
    pub const TOKEN_BUDGET_EXCEEDED: &str = "token_budget_exceeded";
    /// The wall clock went over `timeout_secs`.
    pub const TIMEOUT: &str = "timeout";
    /// The agent was asked to stop (SIGTERM).
    pub const CANCELLED: &str = "cancelled";
    /// The LLM provider (through the sidecar) failed in a way retries did not fix.
    pub const LLM_ERROR: &str = "llm_error";
    /// The model finished without calling `output` although an output is required.
    pub const OUTPUT_MISSING: &str = "output_missing";
    /// Any other failure inside the agent.
    pub const AGENT_ERROR: &str = "agent_error";
}

/// The event types of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "log.written")]
    LogWritten,
    #[serde(rename = "output.emitted")]
    OutputEmitted,
    #[serde(rename = "memory.added")]
    MemoryAdded,
    #[serde(rename = "pinned.set")]
    PinnedSet,
    #[serde(rename = "appstrate.progress")]
    Progress,
    #[serde(rename = "appstrate.error")]
    Error,
    #[serde(rename = "appstrate.metric")]
    Metric,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::LogWritten => "log.written",
            EventType::OutputEmitted => "output.emitted",
            EventType::MemoryAdded => "memory.added",
            EventType::PinnedSet => "pinned.set",
            EventType::Progress => "appstrate.progress",
            EventType::Error => "appstrate.error",
            EventType::Metric => "appstrate.metric",
        }
    }
}

/// A run event as CloudEvents 1.0 JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// `/afps/runs/{runId}`.
    pub source: String,
    /// Unique per event; also the `webhook-id` when the sidecar forwards it.
    pub id: String,
    pub time: DateTime<Utc>,
    #[serde(default = "json_content_type")]
    pub datacontenttype: String,
    pub data: Value,
    pub sequence: u64,
}

fn json_content_type() -> String {
    "application/json".to_owned()
}

/// The CloudEvents `source` of a run's events.
pub fn run_source(run_id: &str) -> String {
    format!("/afps/runs/{run_id}")
}

impl CloudEvent {
    /// A new event for `run_id` with a fresh time-ordered id.
    pub fn new(run_id: &str, sequence: u64, payload: &EventPayload) -> Self {
        Self {
            specversion: SPEC_VERSION.to_owned(),
            event_type: payload.event_type(),
            source: run_source(run_id),
            id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
            time: Utc::now(),
            datacontenttype: json_content_type(),
            data: payload.data(),
            sequence,
        }
    }

    /// The run id from `source`, if it has the expected shape.
    pub fn run_id(&self) -> Option<&str> {
        self.source
            .strip_prefix("/afps/runs/")
            .filter(|id| !id.is_empty() && !id.contains('/'))
    }

    /// The typed payload; fails when `data` does not match `type`.
    pub fn payload(&self) -> Result<EventPayload, serde_json::Error> {
        let data = self.data.clone();
        Ok(match self.event_type {
            EventType::LogWritten => EventPayload::Log(serde_json::from_value(data)?),
            EventType::OutputEmitted => EventPayload::Output(serde_json::from_value(data)?),
            EventType::MemoryAdded => EventPayload::Memory(serde_json::from_value(data)?),
            EventType::PinnedSet => EventPayload::Pinned(serde_json::from_value(data)?),
            EventType::Progress => EventPayload::Progress(serde_json::from_value(data)?),
            EventType::Error => EventPayload::Error(serde_json::from_value(data)?),
            EventType::Metric => EventPayload::Metric(serde_json::from_value(data)?),
        })
    }
}

/// Typed `data` of each event type.
#[derive(Debug, Clone, PartialEq)]
pub enum EventPayload {
    Log(LogWritten),
    Output(OutputEmitted),
    Memory(MemoryAdded),
    Pinned(PinnedSet),
    Progress(Progress),
    Error(RunError),
    Metric(Metric),
}

impl EventPayload {
    pub fn event_type(&self) -> EventType {
        match self {
            EventPayload::Log(_) => EventType::LogWritten,
            EventPayload::Output(_) => EventType::OutputEmitted,
            EventPayload::Memory(_) => EventType::MemoryAdded,
            EventPayload::Pinned(_) => EventType::PinnedSet,
            EventPayload::Progress(_) => EventType::Progress,
            EventPayload::Error(_) => EventType::Error,
            EventPayload::Metric(_) => EventType::Metric,
        }
    }

    pub fn data(&self) -> Value {
        // These structs contain only strings, numbers and JSON values, for which
        // serialization cannot fail; Null keeps this infallible without a panic path.
        let value = match self {
            EventPayload::Log(d) => serde_json::to_value(d),
            EventPayload::Output(d) => serde_json::to_value(d),
            EventPayload::Memory(d) => serde_json::to_value(d),
            EventPayload::Pinned(d) => serde_json::to_value(d),
            EventPayload::Progress(d) => serde_json::to_value(d),
            EventPayload::Error(d) => serde_json::to_value(d),
            EventPayload::Metric(d) => serde_json::to_value(d),
        };
        value.unwrap_or(Value::Null)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

/// `log.written`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogWritten {
    #[serde(default)]
    pub level: LogLevel,
    pub message: String,
}

/// `output.emitted`: a value that passed the output schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputEmitted {
    pub output: Value,
}

/// `memory.added`: a note the agent wants remembered across runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryAdded {
    pub content: String,
}

/// `pinned.set`: a keyed value pinned on the run (shown prominently, latest wins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinnedSet {
    pub key: String,
    pub value: Value,
}

/// `appstrate.progress`: the agent moved on (a step began, a tool ran).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub step: u32,
    pub message: String,
}

/// `appstrate.metric`: usage of one LLM call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metric {
    pub step: u32,
    /// Tokens of this call.
    pub usage: Usage,
    /// Tokens of the run so far.
    pub total: Usage,
    pub duration_ms: u64,
}

/// Token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    pub fn add(&mut self, other: Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
    }
}

/// An error code and message; `appstrate.error` data and [`RunResult::error`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunError {
    pub code: String,
    pub message: String,
    /// Structured detail, e.g. the schema validation errors of
    /// `output_schema_mismatch` as `[{"path": "/x", "message": "…"}]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl RunError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
}

/// Liveness signal, sent at start and then periodically (`/events/heartbeat`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub run_id: String,
    pub time: DateTime<Utc>,
    /// The LLM call in progress (0 before the first).
    pub step: u32,
    pub usage: Usage,
}

/// Terminal state of a run as the runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Success,
    Failed,
    Timeout,
    Cancelled,
}

/// The finalize payload (`/events/finalize`): the run's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub run_id: String,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    pub usage: Usage,
    pub duration_ms: u64,
    /// Sequence of the last event the agent sent before finalizing, so the platform
    /// can tell whether it is still missing some (0 when none was sent).
    #[serde(default)]
    pub last_sequence: u64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cloud_event_has_the_required_attributes() {
        let payload = EventPayload::Log(LogWritten {
            level: LogLevel::Warn,
            message: "disk almost full".into(),
        });
        let ev = CloudEvent::new("run_42", 3, &payload);
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "log.written");
        assert_eq!(v["source"], "/afps/runs/run_42");
        assert_eq!(v["sequence"], 3);
        assert_eq!(
            v["data"],
            json!({"level": "warn", "message": "disk almost full"})
        );
        assert!(v["id"].as_str().unwrap().starts_with("evt_"));
        // RFC 3339 time, as CloudEvents requires.
        DateTime::parse_from_rfc3339(v["time"].as_str().unwrap()).unwrap();
        assert_eq!(ev.run_id(), Some("run_42"));
        assert_eq!(ev.payload().unwrap(), payload);
    }

    #[test]
    fn every_type_round_trips_through_json() {
        let payloads = [
            EventPayload::Output(OutputEmitted {
                output: json!({"a": 1}),
            }),
            EventPayload::Memory(MemoryAdded {
                content: "likes tea".into(),
            }),
            EventPayload::Pinned(PinnedSet {
                key: "status".into(),
                value: json!("green"),
            }),
            EventPayload::Progress(Progress {
                step: 2,
                message: "calling bash".into(),
            }),
            EventPayload::Error(RunError::new(codes::LLM_ERROR, "boom")),
            EventPayload::Metric(Metric {
                step: 1,
                usage: Usage {
                    input_tokens: 10,
                    output_tokens: 2,
                },
                total: Usage {
                    input_tokens: 10,
                    output_tokens: 2,
                },
                duration_ms: 5,
            }),
        ];
        let names = [
            "output.emitted",
            "memory.added",
            "pinned.set",
            "appstrate.progress",
            "appstrate.error",
            "appstrate.metric",
        ];
        for (p, name) in payloads.iter().zip(names) {
            let ev = CloudEvent::new("r", 1, p);
            let text = serde_json::to_string(&ev).unwrap();
            let back: CloudEvent = serde_json::from_str(&text).unwrap();
            assert_eq!(back.event_type.as_str(), name);
            assert_eq!(serde_json::to_value(back.event_type).unwrap(), name);
            assert_eq!(&back.payload().unwrap(), p);
        }
    }

    #[test]
    fn mismatched_data_is_rejected() {
        let mut ev = CloudEvent::new(
            "r",
            1,
            &EventPayload::Memory(MemoryAdded {
                content: "x".into(),
            }),
        );
        ev.event_type = EventType::Metric;
        assert!(ev.payload().is_err());
        let bad: Result<CloudEvent, _> = serde_json::from_value(json!({
            "specversion": "1.0", "type": "no.such", "source": "/afps/runs/r",
            "id": "1", "time": "2026-01-01T00:00:00Z", "data": {}, "sequence": 1
        }));
        assert!(bad.is_err());
    }

    #[test]
    fn run_id_requires_the_source_shape() {
        let mut ev = CloudEvent::new(
            "r1",
            1,
            &EventPayload::Memory(MemoryAdded {
                content: "x".into(),
            }),
        );
        ev.source = "/other/r1".into();
        assert_eq!(ev.run_id(), None);
        ev.source = "/afps/runs/a/b".into();
        assert_eq!(ev.run_id(), None);
    }

    #[test]
    fn run_result_shape() {
        let r = RunResult {
            run_id: "r".into(),
            status: RunStatus::Failed,
            output: None,
            error: Some(
                RunError::new(codes::OUTPUT_SCHEMA_MISMATCH, "bad")
                    .with_details(json!([{"path": "/n", "message": "not a number"}])),
            ),
            usage: Usage {
                input_tokens: 3,
                output_tokens: 4,
            },
            duration_ms: 12,
            last_sequence: 9,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["status"], "failed");
        assert_eq!(v["error"]["code"], "output_schema_mismatch");
        assert_eq!(v["usage"], json!({"input_tokens": 3, "output_tokens": 4}));
        assert!(v.get("output").is_none());
        assert_eq!(serde_json::from_value::<RunResult>(v).unwrap(), r);
        assert_eq!(r.usage.total(), 7);
    }
}
