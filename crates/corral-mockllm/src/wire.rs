//! Rendering a scripted reply in each provider's wire format, complete or as SSE.
//!
//! Text and tool arguments are split into several deltas on purpose: clients must
//! reassemble fragments, and a mock that sends everything in one chunk would hide
//! bugs there.

use serde_json::{json, Value};

use crate::script::{Reply as ScriptReply, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    OpenAi,
    Anthropic,
}

pub(crate) struct Reply {
    pub id: u64,
    pub model: String,
    pub turn: ScriptReply,
    pub usage: Usage,
}

const CREATED: u64 = 1_700_000_000;

/// Splits `s` into pieces of at most `n` characters (at char boundaries).
fn pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

fn openai_call_id(reply: &Reply, i: usize) -> String {
    format!("call_{}_{i}", reply.id)
}

fn anthropic_call_id(reply: &Reply, i: usize) -> String {
    format!("toolu_{}_{i}", reply.id)
}

pub(crate) fn error_body(format: Format, message: &str) -> Value {
    match format {
        Format::OpenAi => {
            json!({"error": {"message": message, "type": "server_error", "code": null}})
        }
        Format::Anthropic => {
            json!({"type": "error", "error": {"type": "api_error", "message": message}})
        }
    }
}

pub(crate) fn complete_body(format: Format, reply: &Reply) -> Value {
    let turn = &reply.turn;
    match format {
        Format::OpenAi => {
            let tool_calls: Vec<Value> = turn
                .tool_calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    json!({
                        "id": openai_call_id(reply, i),
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments.to_string()},
                    })
                })
                .collect();
            let mut message = json!({"role": "assistant", "content": turn.text});
            if !tool_calls.is_empty() {
                message["tool_calls"] = Value::Array(tool_calls);
            }
            json!({
                "id": format!("chatcmpl-{}", reply.id),
                "object": "chat.completion",
                "created": CREATED,
                "model": reply.model,
                "choices": [{
                    "index": 0,
                    "message": message,
                    "finish_reason": if turn.tool_calls.is_empty() { "stop" } else { "tool_calls" },
                }],
                "usage": openai_usage(reply.usage),
            })
        }
        Format::Anthropic => {
            let mut content = Vec::new();
            if let Some(text) = &turn.text {
                content.push(json!({"type": "text", "text": text}));
            }
            for (i, c) in turn.tool_calls.iter().enumerate() {
                content.push(json!({
                    "type": "tool_use",
                    "id": anthropic_call_id(reply, i),
                    "name": c.name,
                    "input": c.arguments,
                }));
            }
            json!({
                "id": format!("msg_{}", reply.id),
                "type": "message",
                "role": "assistant",
                "model": reply.model,
                "content": content,
                "stop_reason": anthropic_stop(turn),
                "stop_sequence": null,
                "usage": {"input_tokens": reply.usage.input_tokens, "output_tokens": reply.usage.output_tokens},
            })
        }
    }
}

fn openai_usage(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

fn anthropic_stop(turn: &ScriptReply) -> &'static str {
    if turn.tool_calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    }
}

/// The SSE frames of a streamed reply, each a complete `…\n\n` frame.
pub(crate) fn stream_frames(format: Format, reply: &Reply, include_usage: bool) -> Vec<String> {
    match format {
        Format::OpenAi => openai_frames(reply, include_usage),
        Format::Anthropic => anthropic_frames(reply),
    }
}

fn openai_frames(reply: &Reply, include_usage: bool) -> Vec<String> {
    let id = format!("chatcmpl-{}", reply.id);
    let chunk = |choices: Value| {
        let v = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": reply.model,
            "choices": choices,
        });
        format!("data: {v}\n\n")
    };
    let delta = |delta: Value, finish: Value| {
        chunk(json!([{"index": 0, "delta": delta, "finish_reason": finish}]))
    };
    let turn = &reply.turn;
    let mut frames = vec![delta(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    if let Some(text) = &turn.text {
        for piece in pieces(text, 7) {
            frames.push(delta(json!({"content": piece}), Value::Null));
        }
    }
    for (i, call) in turn.tool_calls.iter().enumerate() {
        frames.push(delta(
            json!({"tool_calls": [{
                "index": i,
                "id": openai_call_id(reply, i),
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }]}),
            Value::Null,
        ));
        for piece in pieces(&call.arguments.to_string(), 9) {
            frames.push(delta(
                json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                Value::Null,
            ));
        }
    }
    let finish = if turn.tool_calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    frames.push(delta(json!({}), json!(finish)));
    if include_usage {
        let v = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": reply.model,
            "choices": [],
            "usage": openai_usage(reply.usage),
        });
        frames.push(format!("data: {v}\n\n"));
    }
    frames.push("data: [DONE]\n\n".to_owned());
    frames
}

fn anthropic_frames(reply: &Reply) -> Vec<String> {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let turn = &reply.turn;
    let mut frames = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": format!("msg_{}", reply.id),
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {"input_tokens": reply.usage.input_tokens, "output_tokens": 1},
        }}),
    )];
    frames.push(event("ping", json!({"type": "ping"})));
    let mut index = 0usize;
    if let Some(text) = &turn.text {
        frames.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        ));
        for piece in pieces(text, 7) {
            frames.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        frames.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    for (i, call) in turn.tool_calls.iter().enumerate() {
        frames.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": {
                "type": "tool_use", "id": anthropic_call_id(reply, i), "name": call.name, "input": {},
            }}),
        ));
        for piece in pieces(&call.arguments.to_string(), 9) {
            frames.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}}),
            ));
        }
        frames.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    frames.push(event(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": anthropic_stop(turn), "stop_sequence": null},
               "usage": {"output_tokens": reply.usage.output_tokens}}),
    ));
    frames.push(event("message_stop", json!({"type": "message_stop"})));
    frames
}
