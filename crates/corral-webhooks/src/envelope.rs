//! The event envelope a webhook delivers (SPEC §11): its event types, the `full` and
//! `summary` payload modes, and the 256 KiB cap that drops the run's `result`, then
//! its `input`, from oversized payloads.

use serde_json::{json, Map, Value};

/// Largest serialized envelope delivered as is.
pub const MAX_PAYLOAD_BYTES: usize = 262_144;

pub const EVENT_TYPES: [&str; 6] = [
    "run.started",
    "run.success",
    "run.failed",
    "run.timeout",
    "run.cancelled",
    "run.connection_missing",
];

/// The run fields `summary` leaves out and truncation drops, in the order truncation
/// drops them: the output first, since the caller can fetch it from the API and it is
/// usually the larger.
const HEAVY_FIELDS: [&str; 2] = ["result", "input"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadMode {
    #[default]
    Full,
    /// The run object without `input` and `result`.
    Summary,
}

impl PayloadMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(Self::Full),
            "summary" => Some(Self::Summary),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Summary => "summary",
        }
    }
}

fn envelope(
    event_id: &str,
    event_type: &str,
    api_version: &str,
    created_unix: i64,
    data: Map<String, Value>,
) -> Value {
    json!({
        "id": event_id,
        "object": "event",
        "type": event_type,
        "apiVersion": api_version,
        "created": created_unix,
        "data": data,
    })
}

/// The serialized body of one event. `run` is the run's API representation; when it
/// is not a JSON object it is delivered unchanged (there are no fields to drop).
///
/// A body can still exceed [`MAX_PAYLOAD_BYTES`] after both fields are dropped if
/// the rest of the run is that large; it is then sent anyway, flagged `truncated`,
/// because withholding the event entirely would be worse.
pub fn build(
    event_id: &str,
    event_type: &str,
    api_version: &str,
    created_unix: i64,
    mut run: Value,
    mode: PayloadMode,
) -> Vec<u8> {
    if mode == PayloadMode::Summary {
        if let Some(obj) = run.as_object_mut() {
            for field in HEAVY_FIELDS {
                obj.remove(field);
            }
        }
    }
    let mut data = Map::new();
    data.insert("object".to_owned(), run);
    // `Value`'s Display cannot fail (keys are always strings), unlike `to_vec`'s
    // signature suggests.
    let mut body = envelope(
        event_id,
        event_type,
        api_version,
        created_unix,
        data.clone(),
    )
    .to_string()
    .into_bytes();
    let mut dropped = Vec::new();
    for field in HEAVY_FIELDS {
        if body.len() <= MAX_PAYLOAD_BYTES {
            break;
        }
        let removed = data
            .get_mut("object")
            .and_then(Value::as_object_mut)
            .and_then(|obj| obj.remove(field));
        if removed.is_none() {
            continue;
        }
        dropped.push(Value::from(field));
        let mut flagged = data.clone();
        flagged.insert("truncated".to_owned(), Value::Bool(true));
        flagged.insert("truncated_fields".to_owned(), Value::Array(dropped.clone()));
        body = envelope(event_id, event_type, api_version, created_unix, flagged)
            .to_string()
            .into_bytes();
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input_len: usize, result_len: usize) -> Value {
        json!({
            "id": "run_1",
            "object": "run",
            "status": "success",
            "input": {"prompt": "i".repeat(input_len)},
            "result": {"text": "r".repeat(result_len)},
        })
    }

    fn parse(body: &[u8]) -> Value {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn envelope_shape() {
        let body = build(
            "evt_1",
            "run.success",
            "2025-01-01",
            1_700_000_000,
            run(5, 5),
            PayloadMode::Full,
        );
        let v = parse(&body);
        assert_eq!(v["id"], "evt_1");
        assert_eq!(v["object"], "event");
        assert_eq!(v["type"], "run.success");
        assert_eq!(v["apiVersion"], "2025-01-01");
        assert_eq!(v["created"], 1_700_000_000);
        assert_eq!(v["data"]["object"], run(5, 5));
        // A small payload is untouched: no truncation markers.
        assert!(v["data"].get("truncated").is_none());
        assert!(v["data"].get("truncated_fields").is_none());
    }

    #[test]
    fn summary_drops_input_and_result() {
        let v = parse(&build(
            "evt_1",
            "run.failed",
            "v1",
            1,
            run(5, 5),
            PayloadMode::Summary,
        ));
        let obj = v["data"]["object"].as_object().unwrap();
        assert!(!obj.contains_key("input"));
        assert!(!obj.contains_key("result"));
        assert_eq!(obj["status"], "success");
        assert_eq!(obj["id"], "run_1");
        assert!(v["data"].get("truncated").is_none());
    }

    #[test]
    fn oversized_result_is_dropped_first() {
        let body = build(
            "evt_1",
            "run.success",
            "v1",
            1,
            run(1000, MAX_PAYLOAD_BYTES),
            PayloadMode::Full,
        );
        assert!(body.len() <= MAX_PAYLOAD_BYTES);
        let v = parse(&body);
        let obj = v["data"]["object"].as_object().unwrap();
        assert!(!obj.contains_key("result"));
        assert_eq!(obj["input"]["prompt"].as_str().unwrap().len(), 1000);
        assert_eq!(v["data"]["truncated"], true);
        assert_eq!(v["data"]["truncated_fields"], json!(["result"]));
    }

    #[test]
    fn input_is_dropped_when_result_alone_is_not_enough() {
        let body = build(
            "evt_1",
            "run.success",
            "v1",
            1,
            run(MAX_PAYLOAD_BYTES, 10),
            PayloadMode::Full,
        );
        assert!(body.len() <= MAX_PAYLOAD_BYTES);
        let v = parse(&body);
        let obj = v["data"]["object"].as_object().unwrap();
        assert!(!obj.contains_key("result"));
        assert!(!obj.contains_key("input"));
        assert_eq!(obj["status"], "success");
        assert_eq!(v["data"]["truncated"], true);
        assert_eq!(v["data"]["truncated_fields"], json!(["result", "input"]));
    }

    #[test]
    fn exactly_at_the_limit_is_not_truncated() {
        let base = build(
            "evt_1",
            "run.success",
            "v1",
            1,
            run(0, 0),
            PayloadMode::Full,
        );
        let pad = MAX_PAYLOAD_BYTES - base.len();
        let body = build(
            "evt_1",
            "run.success",
            "v1",
            1,
            run(0, pad),
            PayloadMode::Full,
        );
        assert_eq!(body.len(), MAX_PAYLOAD_BYTES);
        assert!(parse(&body)["data"].get("truncated").is_none());
        let over = build(
            "evt_1",
            "run.success",
            "v1",
            1,
            run(0, pad + 1),
            PayloadMode::Full,
        );
        assert_eq!(parse(&over)["data"]["truncated_fields"], json!(["result"]));
    }

    #[test]
    fn summary_of_a_huge_run_needs_no_truncation() {
        let v = parse(&build(
            "evt_1",
            "run.success",
            "v1",
            1,
            run(MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES),
            PayloadMode::Summary,
        ));
        assert!(v["data"].get("truncated").is_none());
    }

    #[test]
    fn payload_mode_round_trip() {
        for mode in [PayloadMode::Full, PayloadMode::Summary] {
            assert_eq!(PayloadMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(PayloadMode::parse("FULL"), None);
        assert_eq!(PayloadMode::parse(""), None);
    }

    #[test]
    fn event_types() {
        assert_eq!(EVENT_TYPES.len(), 6);
        assert!(EVENT_TYPES.contains(&"run.connection_missing"));
        assert!(EVENT_TYPES.iter().all(|t| t.starts_with("run.")));
    }
}
