//! The model client: a provider-neutral conversation, translated to the OpenAI
//! chat-completions or Anthropic Messages wire format, always streamed, sent to the
//! sidecar's `/llm/*` proxy with a placeholder key.

mod anthropic;
mod openai;
mod sse;

use std::time::Duration;

use corral_protocol::sidecar_api::{self, PLACEHOLDER_API_KEY};
use corral_protocol::{ModelApi, Usage};
use futures::StreamExt as _;
use serde_json::Value;

pub use sse::SseParser;

/// One message of the conversation, independent of the wire format.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    User(String),
    Assistant {
        text: String,
        tool_calls: Vec<ToolCall>,
    },
    ToolResult {
        call_id: String,
        content: String,
        is_error: bool,
    },
}

/// A tool call as the model made it. `arguments` is the raw JSON text; parsing it is
/// the tool executor's job so that malformed arguments become a tool error the model
/// can see, not a failed run.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments (an object schema).
    pub parameters: Value,
}

/// What the model answered in one call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssistantTurn {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The sidecar refused because the run's token budget is spent.
    #[error("token budget exhausted at the proxy: {0}")]
    BudgetExhausted(String),
    #[error("model request failed with HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("model request failed: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("malformed model response: {0}")]
    Protocol(String),
}

impl LlmError {
    fn retryable(&self) -> bool {
        match self {
            LlmError::Status { status, .. } => {
                *status == 408 || *status == 429 || (*status >= 500 && *status != 501)
            }
            LlmError::Transport(e) => e.is_connect() || e.is_timeout(),
            LlmError::BudgetExhausted(_) | LlmError::Protocol(_) => false,
        }
    }
}

/// How many times a retryable failure is retried, and the longest `Retry-After` we
/// honour (a provider asking for minutes would eat the run's wall clock anyway).
const MAX_RETRIES: u32 = 3;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

pub struct LlmClient {
    http: reqwest::Client,
    url: String,
    api: ModelApi,
    model: String,
}

impl LlmClient {
    pub fn new(http: reqwest::Client, sidecar_url: &str, api: ModelApi, model: String) -> Self {
        Self {
            http,
            url: sidecar_api::llm_url(sidecar_url, api),
            api,
            model,
        }
    }

    /// One model call, with retries on rate limits and transient failures.
    pub async fn complete(
        &self,
        system: &str,
        messages: &[Message],
        tools: &[ToolSpec],
        max_output_tokens: u64,
    ) -> Result<AssistantTurn, LlmError> {
        let body = match self.api {
            ModelApi::Openai => openai::request(&self.model, system, messages, tools),
            ModelApi::Anthropic => {
                anthropic::request(&self.model, system, messages, tools, max_output_tokens)
            }
        };
        let mut attempt = 0;
        loop {
            match self.attempt(&body).await {
                Ok(turn) => return Ok(turn),
                Err((err, retry_after)) if err.retryable() && attempt < MAX_RETRIES => {
                    attempt += 1;
                    let backoff = Duration::from_millis(500 * 2u64.pow(attempt - 1));
                    let wait = retry_after.unwrap_or(backoff).min(MAX_RETRY_AFTER);
                    tracing::warn!(%err, attempt, ?wait, "retrying model call");
                    tokio::time::sleep(wait).await;
                }
                Err((err, _)) => return Err(err),
            }
        }
    }

    async fn attempt(&self, body: &Value) -> Result<AssistantTurn, (LlmError, Option<Duration>)> {
        let mut req = self.http.post(&self.url).json(body);
        req = match self.api {
            ModelApi::Openai => req.bearer_auth(PLACEHOLDER_API_KEY),
            ModelApi::Anthropic => req
                .header("x-api-key", PLACEHOLDER_API_KEY)
                .header("anthropic-version", sidecar_api::ANTHROPIC_VERSION),
        };
        let resp = req.send().await.map_err(|e| (LlmError::from(e), None))?;
        let status = resp.status();
        if !status.is_success() {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = resp.text().await.unwrap_or_default();
            let err = if body.contains("token_budget_exceeded") {
                LlmError::BudgetExhausted(body)
            } else {
                LlmError::Status {
                    status: status.as_u16(),
                    body,
                }
            };
            return Err((err, retry_after));
        }
        let mut parser = SseParser::default();
        let mut acc = match self.api {
            ModelApi::Openai => Accumulator::OpenAi(openai::StreamState::default()),
            ModelApi::Anthropic => Accumulator::Anthropic(anthropic::StreamState::default()),
        };
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| (LlmError::from(e), None))?;
            for event in parser.push(&chunk) {
                let done = acc.feed(&event).map_err(|e| (e, None))?;
                if done {
                    return acc.finish().map_err(|e| (e, None));
                }
            }
        }
        acc.finish().map_err(|e| (e, None))
    }
}

enum Accumulator {
    OpenAi(openai::StreamState),
    Anthropic(anthropic::StreamState),
}

impl Accumulator {
    fn feed(&mut self, event: &sse::Event) -> Result<bool, LlmError> {
        match self {
            Accumulator::OpenAi(s) => s.feed(event),
            Accumulator::Anthropic(s) => s.feed(event),
        }
    }

    fn finish(self) -> Result<AssistantTurn, LlmError> {
        match self {
            Accumulator::OpenAi(s) => s.finish(),
            Accumulator::Anthropic(s) => s.finish(),
        }
    }
}
