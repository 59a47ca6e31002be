//! Anthropic Messages wire format: request body and streamed-response assembly.

use std::collections::BTreeMap;

use corral_protocol::Usage;
use serde_json::{json, Value};

use super::sse::Event;
use super::{AssistantTurn, LlmError, Message, ToolCall, ToolSpec};

pub fn request(
    model: &str,
    system: &str,
    messages: &[Message],
    tools: &[ToolSpec],
    max_tokens: u64,
) -> Value {
    // Anthropic wants strictly alternating roles, with tool results inside a user
    // message; consecutive user-side messages are therefore merged into one.
    let mut wire: Vec<Value> = Vec::new();
    for m in messages {
        let (role, blocks) = match m {
            Message::User(text) => ("user", vec![json!({"type": "text", "text": text})]),
            Message::ToolResult {
                call_id,
                content,
                is_error,
            } => (
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": call_id,
                    "content": content,
                    "is_error": is_error,
                })],
            ),
            Message::Assistant { text, tool_calls } => {
                let mut blocks = Vec::new();
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for c in tool_calls {
                    let input: Value = serde_json::from_str(&c.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    blocks.push(
                        json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}),
                    );
                }
                ("assistant", blocks)
            }
        };
        match wire.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(content) = last["content"].as_array_mut() {
                    content.extend(blocks);
                }
            }
            _ => wire.push(json!({"role": role, "content": blocks})),
        }
    }
    let mut body = json!({
        "model": model,
        "system": system,
        "messages": wire,
        "max_tokens": max_tokens,
        "stream": true,
    });
    if !tools.is_empty() {
        body["tools"] = tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
    }
    body
}

enum Block {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        json: String,
    },
}

#[derive(Default)]
pub struct StreamState {
    blocks: BTreeMap<u64, Block>,
    usage: Usage,
    stopped: bool,
}

impl StreamState {
    /// Returns `true` on `message_stop`.
    pub fn feed(&mut self, event: &Event) -> Result<bool, LlmError> {
        if event.data.trim().is_empty() {
            return Ok(false);
        }
        let v: Value = serde_json::from_str(&event.data)
            .map_err(|e| LlmError::Protocol(format!("bad event {:?}: {e}", event.data)))?;
        let kind = v["type"].as_str().unwrap_or(event.event.as_str());
        let index = v["index"].as_u64().unwrap_or(0);
        match kind {
            "message_start" => {
                let u = &v["message"]["usage"];
                self.usage.input_tokens = u["input_tokens"].as_u64().unwrap_or(0)
                    + u["cache_creation_input_tokens"].as_u64().unwrap_or(0)
                    + u["cache_read_input_tokens"].as_u64().unwrap_or(0);
                self.usage.output_tokens = u["output_tokens"].as_u64().unwrap_or(0);
            }
            "content_block_start" => {
                let b = &v["content_block"];
                let block = match b["type"].as_str() {
                    Some("tool_use") => Block::ToolUse {
                        id: b["id"].as_str().unwrap_or_default().to_owned(),
                        name: b["name"].as_str().unwrap_or_default().to_owned(),
                        json: String::new(),
                    },
                    _ => Block::Text(b["text"].as_str().unwrap_or_default().to_owned()),
                };
                self.blocks.insert(index, block);
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match (self.blocks.get_mut(&index), d["type"].as_str()) {
                    (Some(Block::Text(t)), Some("text_delta")) => {
                        t.push_str(d["text"].as_str().unwrap_or_default());
                    }
                    (Some(Block::ToolUse { json, .. }), Some("input_json_delta")) => {
                        json.push_str(d["partial_json"].as_str().unwrap_or_default());
                    }
                    // Thinking and signature deltas carry nothing the loop uses.
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(out) = v["usage"]["output_tokens"].as_u64() {
                    self.usage.output_tokens = out;
                }
            }
            "message_stop" => {
                self.stopped = true;
                return Ok(true);
            }
            "error" => {
                return Err(LlmError::Protocol(format!(
                    "error in stream: {}",
                    v["error"]
                )))
            }
            _ => {}
        }
        Ok(false)
    }

    pub fn finish(self) -> Result<AssistantTurn, LlmError> {
        if !self.stopped {
            return Err(LlmError::Protocol(
                "stream ended before message_stop".into(),
            ));
        }
        let mut turn = AssistantTurn {
            usage: self.usage,
            ..AssistantTurn::default()
        };
        for block in self.blocks.into_values() {
            match block {
                Block::Text(t) => turn.text.push_str(&t),
                Block::ToolUse { id, name, json } => turn.tool_calls.push(ToolCall {
                    id,
                    name,
                    // An empty input streams no delta at all.
                    arguments: if json.is_empty() { "{}".into() } else { json },
                }),
            }
        }
        Ok(turn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_results_merge_into_one_user_message() {
        let msgs = vec![
            Message::User("go".into()),
            Message::Assistant {
                text: "ok".into(),
                tool_calls: vec![
                    ToolCall {
                        id: "t1".into(),
                        name: "a".into(),
                        arguments: "{\"x\":1}".into(),
                    },
                    ToolCall {
                        id: "t2".into(),
                        name: "b".into(),
                        arguments: "not json".into(),
                    },
                ],
            },
            Message::ToolResult {
                call_id: "t1".into(),
                content: "r1".into(),
                is_error: false,
            },
            Message::ToolResult {
                call_id: "t2".into(),
                content: "bad args".into(),
                is_error: true,
            },
            Message::User("please call output".into()),
        ];
        let body = request("claude", "sys", &msgs, &[], 1000);
        let wire = body["messages"].as_array().unwrap();
        assert_eq!(wire.len(), 3);
        assert_eq!(wire[1]["content"][1]["input"], json!({"x": 1}));
        assert_eq!(wire[1]["content"][2]["input"], json!({}));
        let user = wire[2]["content"].as_array().unwrap();
        assert_eq!(user.len(), 3);
        assert_eq!(user[1]["is_error"], true);
        assert_eq!(user[2]["type"], "text");
        assert_eq!(body["system"], "sys");
        assert_eq!(body["max_tokens"], 1000);
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let mut s = StreamState::default();
        s.feed(&Event {
            event: "message_start".into(),
            data: r#"{"type":"message_start","message":{"usage":{"input_tokens":3}}}"#.into(),
        })
        .unwrap();
        assert!(matches!(s.finish(), Err(LlmError::Protocol(_))));
    }
}
