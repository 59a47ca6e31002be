//! `run_history` and `recall_memory`: read-only calls into the platform's internal
//! API on the run's behalf, authenticated with the run token the agent never sees.

use std::time::Duration;

use corral_protocol::platform_api::{
    platform_endpoint, MemoriesQuery, RunHistoryQuery, MAX_LIMIT, MEMORIES_PATH, RUN_HISTORY_PATH,
};
use rmcp::model::{CallToolResult, JsonObject};
use serde_json::{json, Value};

use super::{error_result, text_result};
use crate::state::{AppState, Run};

pub const RUN_HISTORY: &str = "run_history";
pub const RECALL_MEMORY: &str = "recall_memory";

pub fn tools() -> [(&'static str, &'static str, Value); 2] {
    [
        (
            RUN_HISTORY,
            "Past runs of this agent, newest first, with their checkpoint and/or result.",
            json!({"type": "object", "properties": {
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                "fields": {"type": "string", "description": "Comma-separated: checkpoint, result (default checkpoint)"}
            }}),
        ),
        (
            RECALL_MEMORY,
            "Search this agent's archived memories (case-insensitive substring match); without a query, the most recent ones.",
            json!({"type": "object", "properties": {
                "q": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}
            }}),
        ),
    ]
}

fn limit(args: &JsonObject) -> Option<u32> {
    args.get("limit")
        .and_then(Value::as_u64)
        .map(|n| n.clamp(1, u64::from(MAX_LIMIT)) as u32)
}

/// `None` when `name` is not one of these tools.
pub async fn call(
    state: &AppState,
    run: &Run,
    platform_url: &str,
    name: &str,
    args: &JsonObject,
) -> Option<CallToolResult> {
    let (path, query) = match name {
        RUN_HISTORY => (
            RUN_HISTORY_PATH,
            serde_json::to_value(RunHistoryQuery {
                limit: limit(args),
                fields: args
                    .get("fields")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            }),
        ),
        RECALL_MEMORY => (
            MEMORIES_PATH,
            serde_json::to_value(MemoriesQuery {
                q: args.get("q").and_then(Value::as_str).map(str::to_owned),
                limit: limit(args),
            }),
        ),
        _ => return None,
    };
    let query = match query {
        Ok(q) => q,
        Err(e) => return Some(error_result(format!("bad arguments: {e}"))),
    };
    let resp = state
        .http
        .get(platform_endpoint(platform_url, path))
        .query(&query)
        .bearer_auth(run.config.run_token.expose())
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    Some(match resp {
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            // The platform has no reason to echo the token, but the model must never
            // see it even if it did.
            let body = super::redact(body, [run.config.run_token.expose()]);
            if status.is_success() {
                text_result(body)
            } else {
                error_result(format!("the platform answered {status}: {body}"))
            }
        }
        Err(e) => error_result(format!("the platform is unreachable: {}", e.without_url())),
    })
}
