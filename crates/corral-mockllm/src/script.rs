//! The script a mock LLM plays: an ordered list of turns, one per model request.

use serde_json::Value;

/// Token counts reported in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A tool call the scripted model makes.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedToolCall {
    pub name: String,
    pub arguments: Value,
}

/// What the model says in one reply.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reply {
    pub text: Option<String>,
    pub tool_calls: Vec<ScriptedToolCall>,
    /// Reported usage; when `None` it is estimated from the sizes (bytes / 4).
    pub usage: Option<Usage>,
}

impl Reply {
    pub(crate) fn output_len(&self) -> usize {
        self.text.as_ref().map_or(0, String::len)
            + self
                .tool_calls
                .iter()
                .map(|c| c.name.len() + c.arguments.to_string().len())
                .sum::<usize>()
    }
}

/// One model turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    /// A reply: text, tool calls, or both. A reply without tool calls is a final answer.
    Reply(Reply),
    /// An HTTP error: `status`, `body` (a JSON value, or a string sent verbatim),
    /// and an optional `Retry-After` in seconds.
    Error {
        status: u16,
        body: Value,
        retry_after: Option<u64>,
    },
}

impl Turn {
    /// A final answer.
    pub fn text(text: impl Into<String>) -> Self {
        Turn::Reply(Reply {
            text: Some(text.into()),
            ..Reply::default()
        })
    }

    /// One tool call with JSON arguments.
    pub fn tool_call(name: impl Into<String>, arguments: Value) -> Self {
        Self::tool_calls([(name, arguments)])
    }

    /// Several tool calls in one reply (parallel tool calls).
    pub fn tool_calls<N: Into<String>>(calls: impl IntoIterator<Item = (N, Value)>) -> Self {
        Turn::Reply(Reply {
            tool_calls: calls
                .into_iter()
                .map(|(name, arguments)| ScriptedToolCall {
                    name: name.into(),
                    arguments,
                })
                .collect(),
            ..Reply::default()
        })
    }

    /// An error response.
    pub fn error(status: u16, body: Value) -> Self {
        Turn::Error {
            status,
            body,
            retry_after: None,
        }
    }

    /// Adds text alongside tool calls (the "thinking out loud" before a call).
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        if let Turn::Reply(r) = &mut self {
            r.text = Some(text.into());
        }
        self
    }

    /// Fixes the usage this turn reports.
    pub fn with_usage(mut self, input_tokens: u64, output_tokens: u64) -> Self {
        if let Turn::Reply(r) = &mut self {
            r.usage = Some(Usage {
                input_tokens,
                output_tokens,
            });
        }
        self
    }

    /// Sets `Retry-After` on an error turn.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        if let Turn::Error { retry_after, .. } = &mut self {
            *retry_after = Some(secs);
        }
        self
    }
}

/// An ordered list of turns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Script {
    pub turns: Vec<Turn>,
}

impl Script {
    pub fn new(turns: impl IntoIterator<Item = Turn>) -> Self {
        Self {
            turns: turns.into_iter().collect(),
        }
    }
}

impl From<Vec<Turn>> for Script {
    fn from(turns: Vec<Turn>) -> Self {
        Self { turns }
    }
}

impl<const N: usize> From<[Turn; N]> for Script {
    fn from(turns: [Turn; N]) -> Self {
        Self {
            turns: turns.into(),
        }
    }
}
