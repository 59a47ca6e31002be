//! OpenAI chat-completions wire format: request body and streamed-response assembly.

use std::collections::BTreeMap;

use corral_protocol::Usage;
use serde_json::{json, Value};

use super::sse::Event;
use super::{AssistantTurn, LlmError, Message, ToolCall, ToolSpec};

pub fn request(model: &str, system: &str, messages: &[Message], tools: &[ToolSpec]) -> Value {
    let mut wire = vec![json!({"role": "system", "content": system})];
    for m in messages {
        wire.push(match m {
            Message::User(text) => json!({"role": "user", "content": text}),
            Message::Assistant { text, tool_calls } => {
                let mut msg = json!({
                    "role": "assistant",
                    "content": if text.is_empty() { Value::Null } else { json!(text) },
                });
                if !tool_calls.is_empty() {
                    msg["tool_calls"] = tool_calls
                        .iter()
                        .map(|c| {
                            json!({
                                "id": c.id,
                                "type": "function",
                                "function": {"name": c.name, "arguments": c.arguments},
                            })
                        })
                        .collect();
                }
                msg
            }
            // OpenAI has no error flag on tool results; the content says so instead.
            Message::ToolResult {
                call_id, content, ..
            } => json!({"role": "tool", "tool_call_id": call_id, "content": content}),
        });
    }
    let mut body = json!({
        "model": model,
        "messages": wire,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if !tools.is_empty() {
        body["tools"] = tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.parameters,
                }})
            })
            .collect();
    }
    body
}

#[derive(Default)]
pub struct StreamState {
    text: String,
    /// By `index`: id, name, argument fragments.
    calls: BTreeMap<u64, (String, String, String)>,
    usage: Option<Usage>,
}

impl StreamState {
    /// Returns `true` on `[DONE]`.
    pub fn feed(&mut self, event: &Event) -> Result<bool, LlmError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| LlmError::Protocol(format!("bad chunk {data:?}: {e}")))?;
        if let Some(err) = v.get("error") {
            return Err(LlmError::Protocol(format!("error in stream: {err}")));
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(Usage {
                input_tokens: u["prompt_tokens"].as_u64().unwrap_or(0),
                output_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
            });
        }
        let Some(delta) = v.pointer("/choices/0/delta") else {
            return Ok(false);
        };
        if let Some(t) = delta.get("content").and_then(Value::as_str) {
            self.text.push_str(t);
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for c in calls {
                let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                let entry = self.calls.entry(index).or_default();
                if let Some(id) = c.get("id").and_then(Value::as_str) {
                    entry.0 = id.to_owned();
                }
                if let Some(name) = c.pointer("/function/name").and_then(Value::as_str) {
                    entry.1.push_str(name);
                }
                if let Some(args) = c.pointer("/function/arguments").and_then(Value::as_str) {
                    entry.2.push_str(args);
                }
            }
        }
        Ok(false)
    }

    pub fn finish(self) -> Result<AssistantTurn, LlmError> {
        let tool_calls = self
            .calls
            .into_iter()
            .map(|(index, (id, name, arguments))| {
                if name.is_empty() {
                    return Err(LlmError::Protocol(format!("tool call {index} has no name")));
                }
                Ok(ToolCall {
                    id: if id.is_empty() {
                        format!("call_{index}")
                    } else {
                        id
                    },
                    name,
                    arguments,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(AssistantTurn {
            text: self.text,
            tool_calls,
            // Providers that ignore `include_usage` report nothing; count zero rather
            // than guess, the sidecar enforces the budget on its own counts anyway.
            usage: self.usage.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_shapes_tool_round_trip() {
        let msgs = vec![
            Message::User("hi".into()),
            Message::Assistant {
                text: String::new(),
                tool_calls: vec![ToolCall {
                    id: "c1".into(),
                    name: "bash".into(),
                    arguments: "{\"command\":\"ls\"}".into(),
                }],
            },
            Message::ToolResult {
                call_id: "c1".into(),
                content: "a.txt".into(),
                is_error: false,
            },
        ];
        let tools = [ToolSpec {
            name: "bash".into(),
            description: "run".into(),
            parameters: json!({"type": "object"}),
        }];
        let body = request("gpt", "sys", &msgs, &tools);
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "sys"})
        );
        assert_eq!(body["messages"][2]["content"], Value::Null);
        assert_eq!(
            body["messages"][2]["tool_calls"][0]["function"]["name"],
            "bash"
        );
        assert_eq!(
            body["messages"][3],
            json!({"role": "tool", "tool_call_id": "c1", "content": "a.txt"})
        );
        assert_eq!(
            body["tools"][0]["function"]["parameters"],
            json!({"type": "object"})
        );
        assert_eq!(body["stream"], true);
    }

    #[test]
    fn parallel_tool_call_fragments_assemble_by_index() {
        let mut s = StreamState::default();
        for data in [
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"b","function":{"name":"y","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"x","arguments":"{\"k\""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#,
        ] {
            assert!(!s
                .feed(&Event {
                    event: String::new(),
                    data: data.into()
                })
                .unwrap());
        }
        assert!(s
            .feed(&Event {
                event: String::new(),
                data: "[DONE]".into()
            })
            .unwrap());
        let turn = s.finish().unwrap();
        assert_eq!(turn.tool_calls[0].name, "x");
        assert_eq!(turn.tool_calls[0].arguments, "{\"k\":1}");
        assert_eq!(turn.tool_calls[1].id, "b");
        assert_eq!(
            turn.usage,
            Usage {
                input_tokens: 5,
                output_tokens: 2
            }
        );
    }
}
