//! Run scenarios end to end, in both wire formats.

use std::time::{Duration, Instant};

use corral_mockllm::Turn;
use corral_protocol::{codes, EventType, Limits, ModelApi, RunStatus};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::fake_sidecar::{MCP_TOOL, REAL_KEY};
use crate::{events_of, Harness, CANARY};

fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "greeting": {"type": "string"},
            "count": {"type": "integer", "minimum": 1}
        },
        "required": ["greeting", "count"],
        "additionalProperties": false
    })
}

fn limits() -> Limits {
    Limits {
        max_steps: 10,
        max_tokens: 1_000_000,
        timeout_secs: 60,
        bash_timeout_secs: 20,
        max_output_retries: 2,
    }
}

/// bash + write_file + MCP + runtime tools + a schema-valid output.
async fn scripted_success(api: ModelApi) {
    let mut h = Harness::start(
        api,
        vec![
            Turn::tool_call(
                "bash",
                json!({"command": "printf hello > greeting.txt && env && cat greeting.txt"}),
            )
            .with_text("Let me write the greeting."),
            Turn::tool_calls([
                (
                    "write_file",
                    json!({"path": "out/report.md", "content": "# Report\nhello\n"}),
                ),
                (
                    MCP_TOOL,
                    json!({"method": "GET", "target": "https://api.example.com/repo"}),
                ),
            ]),
            Turn::tool_calls([
                ("log", json!({"message": "almost done", "level": "info"})),
                ("note", json!({"content": "the world likes hello"})),
                ("pin", json!({"key": "status", "value": "green"})),
                ("output", json!({"greeting": "hello", "count": 2})),
            ]),
            Turn::text("Done: greeted the world."),
        ],
    )
    .await;
    h.configure(h.task(Some(schema()), limits())).await;
    let (result, code) = h.finish().await;

    assert_eq!(result.status, RunStatus::Success, "{result:?}");
    assert_eq!(code, 0);
    assert_eq!(
        result.output,
        Some(json!({"greeting": "hello", "count": 2}))
    );
    assert!(result.error.is_none());
    let served = h.mock.served_usage();
    assert_eq!(result.usage.input_tokens, served.input_tokens);
    assert_eq!(result.usage.output_tokens, served.output_tokens);

    // The tools really acted on the workspace.
    let ws = h.workspace.path();
    assert_eq!(
        std::fs::read_to_string(ws.join("greeting.txt")).unwrap(),
        "hello"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("out/report.md")).unwrap(),
        "# Report\nhello\n"
    );

    // What the model was shown, and with which credential.
    let reqs = h.mock.requests();
    assert_eq!(reqs.len(), 4);
    for r in &reqs {
        assert!(r.is_streaming());
        assert_eq!(r.body["model"], "mock-model-1");
        match api {
            ModelApi::Openai => assert_eq!(
                r.header("authorization"),
                Some(format!("Bearer {REAL_KEY}").as_str())
            ),
            ModelApi::Anthropic => {
                assert_eq!(r.header("x-api-key"), Some(REAL_KEY));
                assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
            }
        }
    }
    let tool_names: Vec<String> = reqs[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t.pointer("/function/name")
                .or_else(|| t.get("name"))
                .and_then(Value::as_str)
                .unwrap()
                .to_owned()
        })
        .collect();
    for name in [
        "bash",
        "read_file",
        "write_file",
        "edit_file",
        "list_files",
        "output",
        "log",
        "note",
        "pin",
        MCP_TOOL,
    ] {
        assert!(
            tool_names.iter().any(|n| n == name),
            "{name} missing from {tool_names:?}"
        );
    }
    let first = reqs[0].body_text();
    assert!(first.contains("Greet the world"), "prompt shown");
    assert!(first.contains("Always say hello"), "skill shown");
    assert!(
        first.contains("\\\"who\\\": \\\"world\\\"") || first.contains("who"),
        "input shown"
    );
    let second = reqs[1].body_text();
    assert!(second.contains("exit code 0"), "{second}");
    assert!(second.contains("hello"));
    // `env` ran in the sandbox: the agent's own environment was not passed through.
    assert!(!second.contains(CANARY), "the canary leaked to the model");
    assert!(!second.contains("CORRAL_SIDECAR_URL"));
    assert!(reqs[2]
        .body_text()
        .contains("200 OK from https://api.example.com/repo"));
    assert!(reqs[3].body_text().contains("Output accepted"));

    let rec = h.sidecar.recorded();
    assert!(rec
        .agent_llm_keys
        .iter()
        .all(|k| k == corral_protocol::sidecar_api::PLACEHOLDER_API_KEY));
    assert_eq!(rec.mcp_calls.len(), 1);
    assert_eq!(rec.mcp_calls[0]["name"], MCP_TOOL);
    assert!(!rec.heartbeats.is_empty(), "heartbeat sent");
    assert_eq!(rec.heartbeats[0].run_id, "run_test_1");
    let ev = &rec.events;
    assert_eq!(
        events_of(ev, EventType::OutputEmitted),
        vec![json!({"output": {"greeting": "hello", "count": 2}})]
    );
    assert_eq!(
        events_of(ev, EventType::MemoryAdded),
        vec![json!({"content": "the world likes hello"})]
    );
    assert_eq!(
        events_of(ev, EventType::PinnedSet),
        vec![json!({"key": "status", "value": "green"})]
    );
    assert!(events_of(ev, EventType::LogWritten)
        .contains(&json!({"level": "info", "message": "almost done"})));
    assert_eq!(events_of(ev, EventType::Metric).len(), 4);
    assert!(events_of(ev, EventType::Error).is_empty());
}

#[tokio::test]
async fn openai_streaming_run_succeeds() {
    scripted_success(ModelApi::Openai).await;
}

#[tokio::test]
async fn anthropic_streaming_run_succeeds() {
    scripted_success(ModelApi::Anthropic).await;
}

#[tokio::test]
async fn output_mismatch_is_shown_and_corrected() {
    let mut h = Harness::start(
        ModelApi::Anthropic,
        vec![
            Turn::tool_call("output", json!({"greeting": "hi", "count": "three"})),
            Turn::tool_call("output", json!({"greeting": "hi", "count": 3})),
            Turn::text("Fixed."),
        ],
    )
    .await;
    h.configure(h.task(Some(schema()), limits())).await;
    let (result, code) = h.finish().await;
    assert_eq!(result.status, RunStatus::Success, "{result:?}");
    assert_eq!(code, 0);
    assert_eq!(result.output, Some(json!({"greeting": "hi", "count": 3})));
    // The model saw the validation error, flagged as a tool error, naming the field.
    let retry = &h.mock.requests()[1].body;
    let results: Vec<&Value> = retry["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["content"].as_array().into_iter().flatten())
        .filter(|b| b["type"] == "tool_result")
        .collect();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["is_error"], true);
    let text = results[0]["content"].as_str().unwrap();
    assert!(text.contains("does not match the output schema"), "{text}");
    assert!(text.contains("/count"), "{text}");
    // Only the valid output was emitted.
    let rec = h.sidecar.recorded();
    assert_eq!(events_of(&rec.events, EventType::OutputEmitted).len(), 1);
}

#[tokio::test]
async fn output_still_wrong_fails_with_output_schema_mismatch() {
    let mut h = Harness::start(
        ModelApi::Openai,
        vec![
            Turn::tool_call("output", json!({"greeting": 1, "count": 1})),
            Turn::tool_call(
                "output",
                json!({"greeting": "x", "count": 0, "extra": true}),
            ),
            Turn::text("never reached"),
        ],
    )
    .await;
    let mut l = limits();
    l.max_output_retries = 1;
    h.configure(h.task(Some(schema()), l)).await;
    let (result, code) = h.finish().await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(code, 1);
    let err = result.error.unwrap();
    assert_eq!(err.code, codes::OUTPUT_SCHEMA_MISMATCH);
    let details = err.details.unwrap();
    let paths: Vec<&str> = details
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/count"), "{details}");
    assert!(
        paths.contains(&""),
        "additionalProperties is reported at the root: {details}"
    );
    assert_eq!(result.output, None);
    assert_eq!(
        h.mock.requests().len(),
        2,
        "stopped at the second bad output"
    );
    assert_eq!(h.mock.remaining(), 1);
    let errors = events_of(&h.sidecar.recorded().events, EventType::Error);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["code"], codes::OUTPUT_SCHEMA_MISMATCH);
}

#[tokio::test]
async fn step_budget_is_enforced() {
    let bash = || Turn::tool_call("bash", json!({"command": "true"}));
    let mut h = Harness::start(
        ModelApi::Anthropic,
        vec![bash(), bash(), bash(), Turn::text("x")],
    )
    .await;
    let mut l = limits();
    l.max_steps = 2;
    h.configure(h.task(None, l)).await;
    let (result, code) = h.finish().await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(code, 1);
    assert_eq!(result.error.unwrap().code, codes::STEP_BUDGET_EXCEEDED);
    assert_eq!(h.mock.requests().len(), 2);
}

#[tokio::test]
async fn token_budget_is_enforced() {
    let mut h = Harness::start(
        ModelApi::Openai,
        vec![
            Turn::tool_call("bash", json!({"command": "true"})).with_usage(60, 10),
            Turn::tool_call("bash", json!({"command": "true"})).with_usage(40, 5),
            Turn::text("unreachable"),
        ],
    )
    .await;
    let mut l = limits();
    l.max_tokens = 100;
    h.configure(h.task(None, l)).await;
    let (result, _) = h.finish().await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.error.unwrap().code, codes::TOKEN_BUDGET_EXCEEDED);
    assert_eq!(result.usage.input_tokens, 100);
    assert_eq!(result.usage.output_tokens, 15);
    assert_eq!(h.mock.requests().len(), 2);
    let metrics = events_of(&h.sidecar.recorded().events, EventType::Metric);
    assert_eq!(
        metrics[1]["total"],
        json!({"input_tokens": 100, "output_tokens": 15})
    );
}

#[tokio::test]
async fn bash_timeout_is_reported_to_the_model() {
    let mut h = Harness::start(
        ModelApi::Anthropic,
        vec![
            Turn::tool_call("bash", json!({"command": "sleep 30; echo nev''er"})),
            Turn::text("The command timed out."),
        ],
    )
    .await;
    let mut l = limits();
    l.bash_timeout_secs = 1;
    h.configure(h.task(None, l)).await;
    let started = Instant::now();
    let (result, code) = h.finish().await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    // Without an output schema the final answer is the result.
    assert_eq!(result.status, RunStatus::Success);
    assert_eq!(code, 0);
    assert_eq!(result.output, Some(json!("The command timed out.")));
    let shown = h.mock.requests()[1].body_text();
    assert!(shown.contains("timed out after 1s"), "{shown}");
    // The command was killed before it could print (its text spells it `nev''er`).
    assert!(!shown.contains("never"));
}

#[tokio::test]
async fn sigterm_mid_run_sends_a_final_event() {
    let mut h = Harness::start(
        ModelApi::Openai,
        vec![
            // `sleep 61.25` names the process uniquely so the test can look for it.
            Turn::tool_call("bash", json!({"command": "sleep 61.25; true"})),
            Turn::text("unreachable"),
        ],
    )
    .await;
    h.configure(h.task(Some(schema()), limits())).await;
    // Wait until the command is running.
    h.sidecar
        .wait_for(Duration::from_secs(20), |r| {
            r.events
                .iter()
                .any(|e| e.data["message"] == "running tool bash")
                .then_some(())
        })
        .await;
    // Bounded polling: the process table has no event to await.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process_running("sleep\x0061.25") {
        assert!(Instant::now() < deadline, "the command never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = Pid::from_raw(i32::try_from(h.agent.id().unwrap()).unwrap());
    let sent = Instant::now();
    kill(pid, Signal::SIGTERM).unwrap();
    let (result, code) = h.finish().await;
    assert!(sent.elapsed() < Duration::from_secs(10));
    assert_eq!(result.status, RunStatus::Cancelled);
    assert_eq!(result.error.unwrap().code, codes::CANCELLED);
    assert_eq!(code, 1);
    assert_eq!(h.mock.requests().len(), 1);
    // The running command died with the agent (process-group kill), no orphan left.
    assert!(
        !process_running("sleep\x0061.25"),
        "the bash child outlived the agent"
    );
}

/// Whether any process has exactly this NUL-separated command line.
fn process_running(cmdline: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).trim_end_matches('\0') == cmdline)
            .unwrap_or(false)
    })
}

#[tokio::test]
async fn wall_clock_timeout_ends_the_run() {
    let mut h = Harness::start(
        ModelApi::Anthropic,
        vec![Turn::tool_call("bash", json!({"command": "sleep 30"}))],
    )
    .await;
    let mut l = limits();
    l.timeout_secs = 1;
    h.configure(h.task(None, l)).await;
    let (result, code) = h.finish().await;
    assert_eq!(result.status, RunStatus::Timeout);
    assert_eq!(result.error.unwrap().code, codes::TIMEOUT);
    assert_eq!(code, 1);
    assert!(result.duration_ms < 10_000);
}

#[tokio::test]
async fn rate_limit_is_retried_after_retry_after() {
    let mut h = Harness::start(
        ModelApi::Openai,
        vec![
            Turn::error(
                429,
                json!({"error": {"message": "slow down", "type": "rate_limit_exceeded"}}),
            )
            .with_retry_after(0),
            Turn::text("Hello after waiting."),
        ],
    )
    .await;
    h.configure(h.task(None, limits())).await;
    let (result, code) = h.finish().await;
    assert_eq!(result.status, RunStatus::Success, "{result:?}");
    assert_eq!(code, 0);
    assert_eq!(result.output, Some(json!("Hello after waiting.")));
    assert_eq!(h.mock.requests().len(), 2);
}

#[tokio::test]
async fn missing_output_is_nudged_then_fails() {
    let mut h = Harness::start(
        ModelApi::Openai,
        vec![Turn::text("I am done."), Turn::text("Really done.")],
    )
    .await;
    h.configure(h.task(Some(schema()), limits())).await;
    let (result, _) = h.finish().await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.error.unwrap().code, codes::OUTPUT_MISSING);
    assert!(h.mock.requests()[1]
        .body_text()
        .contains("You have not called the `output` tool"));
}
