//! The tool loop of one run: prompt the model, execute the tools it calls, feed the
//! results back, until it gives a final answer or a budget runs out. The output is
//! validated against the output schema here, and the model is shown the errors.
//!
//! State that must survive the loop being dropped (SIGTERM, wall clock) lives in
//! [`Progress`], shared with the heartbeat and the finalizer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use corral_protocol::events::{
    LogLevel, LogWritten, MemoryAdded, Metric, OutputEmitted, PinnedSet, Progress as ProgressData,
};
use corral_protocol::{codes, AgentTask, EventPayload, RunError, RunStatus, Usage};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::llm::{LlmClient, LlmError, Message, ToolCall, ToolSpec};
use crate::mcp::McpClient;
use crate::sidecar::EventSink;
use crate::tools::{self, BuiltinLimits, ToolOutcome};

/// What the heartbeat and the finalizer need to know about a run in flight.
#[derive(Default)]
pub struct Progress {
    pub step: AtomicU32,
    pub usage: Mutex<Usage>,
    /// The last output that passed validation.
    pub output: Mutex<Option<Value>>,
}

/// How the loop ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: RunStatus,
    pub output: Option<Value>,
    pub error: Option<RunError>,
}

impl Outcome {
    pub fn failed(error: RunError) -> Self {
        Self {
            status: RunStatus::Failed,
            output: None,
            error: Some(error),
        }
    }
}

pub struct Ctx {
    pub task: AgentTask,
    pub llm: LlmClient,
    pub sink: Arc<EventSink>,
    pub http: reqwest::Client,
    pub mcp_url: String,
    pub workspace: PathBuf,
    pub limits: BuiltinLimits,
    pub progress: Arc<Progress>,
}

/// Largest `max_tokens` asked of the model per call (Anthropic requires one).
const MAX_OUTPUT_TOKENS_PER_CALL: u64 = 8192;

struct OutputCheck {
    validator: Option<jsonschema::Validator>,
    wrapped: bool,
    failures: u32,
}

enum OutputVerdict {
    Accepted(Value),
    Rejected { message: String, details: Value },
}

impl OutputCheck {
    fn check(&mut self, args: Value) -> OutputVerdict {
        let value = if self.wrapped {
            match args {
                Value::Object(mut m) if m.contains_key("value") => {
                    m.remove("value").unwrap_or(Value::Null)
                }
                _ => {
                    return OutputVerdict::Rejected {
                        message: "the output must be passed as {\"value\": …}".into(),
                        details: json!([{"path": "", "message": "missing property `value`"}]),
                    }
                }
            }
        } else {
            args
        };
        let Some(validator) = &self.validator else {
            return OutputVerdict::Accepted(value);
        };
        let errors: Vec<Value> = validator
            .iter_errors(&value)
            .map(|e| json!({"path": e.instance_path().to_string(), "message": e.to_string()}))
            .collect();
        if errors.is_empty() {
            return OutputVerdict::Accepted(value);
        }
        let list: Vec<String> = errors
            .iter()
            .map(|e| {
                let path = e["path"].as_str().unwrap_or_default();
                let path = if path.is_empty() { "(root)" } else { path };
                format!("- {path}: {}", e["message"].as_str().unwrap_or_default())
            })
            .collect();
        OutputVerdict::Rejected {
            message: format!(
                "The output does not match the output schema:\n{}\nFix these and call `output` again.",
                list.join("\n")
            ),
            details: Value::Array(errors),
        }
    }
}

fn system_prompt(task: &AgentTask, workspace: &std::path::Path) -> String {
    let mut s = format!(
        "You are an autonomous agent running inside a throw-away sandbox. Your working \
         directory is {}; use the tools to inspect and change it.\n\n",
        workspace.display()
    );
    match &task.output_schema {
        Some(schema) => s.push_str(&format!(
            "When you have the result, call the `output` tool with a value matching this JSON \
             Schema:\n```json\n{}\n```\nIf it reports validation errors, fix them and call \
             `output` again. Once the output is accepted, reply with a short final message and \
             no tool calls.\n",
            serde_json::to_string_pretty(schema).unwrap_or_else(|_| schema.to_string())
        )),
        None => s.push_str("When you are done, reply with your final answer and no tool calls.\n"),
    }
    s.push_str(
        "Use `log` for progress worth showing the user, `note` to remember a fact for future \
         runs, and `pin` to highlight a key value.\n",
    );
    if !task.pinned.is_empty() {
        s.push_str(
            "\n## Pinned memory\nValues you pinned in earlier runs (`pin` again to change one):\n",
        );
        for slot in &task.pinned {
            s.push_str(&format!("- {}: {}\n", slot.key, slot.value));
        }
    }
    if !task.skills.is_empty() {
        s.push_str("\n## Skills\n");
        for skill in &task.skills {
            s.push_str(&format!(
                "\n### {}\n{}\n\n{}\n",
                skill.name, skill.description, skill.content
            ));
        }
    }
    s
}

fn first_message(task: &AgentTask) -> String {
    let mut s = task.prompt.clone();
    if !task.input.is_null() {
        s.push_str(&format!(
            "\n\n## Input\n```json\n{}\n```",
            serde_json::to_string_pretty(&task.input).unwrap_or_else(|_| task.input.to_string())
        ));
    }
    s
}

#[derive(Deserialize)]
struct LogArgs {
    message: String,
    #[serde(default)]
    level: LogLevel,
}

#[derive(Deserialize)]
struct NoteArgs {
    content: String,
}

/// A memory or a pinned value over the platform's limit is refused here, so the
/// model learns it at once (the platform would not keep it).
fn within_memory_limit(tool: &str, len: usize) -> Result<(), ToolOutcome> {
    let max = corral_protocol::platform_api::MAX_MEMORY_BYTES;
    if len > max {
        return Err(ToolOutcome::err(format!(
            "{tool} refused: {len} bytes, over the limit of {max}; keep it shorter"
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
struct PinArgs {
    key: String,
    value: Value,
}

/// Connects to the sidecar's MCP server. A sandbox without MCP tools still works,
/// so failure is reported as a warning in the run's log rather than failing the run.
async fn connect_mcp(ctx: &Ctx) -> (Option<McpClient>, Vec<ToolSpec>) {
    let client = match McpClient::connect(ctx.http.clone(), ctx.mcp_url.clone()).await {
        Ok(c) => c,
        Err(e) => {
            warn(ctx, format!("MCP tools unavailable: {e}")).await;
            return (None, Vec::new());
        }
    };
    match client.list_tools().await {
        Ok(list) => {
            let mut specs = Vec::new();
            for t in list {
                if tools::RESERVED.contains(&t.name.as_str()) {
                    warn(
                        ctx,
                        format!("MCP tool `{}` shadows a built-in; ignored", t.name),
                    )
                    .await;
                    continue;
                }
                specs.push(ToolSpec {
                    name: t.name,
                    description: t.description,
                    parameters: t.input_schema,
                });
            }
            (Some(client), specs)
        }
        Err(e) => {
            warn(ctx, format!("MCP tools/list failed: {e}")).await;
            (None, Vec::new())
        }
    }
}

async fn warn(ctx: &Ctx, message: String) {
    tracing::warn!("{message}");
    ctx.sink
        .emit(EventPayload::Log(LogWritten {
            level: LogLevel::Warn,
            message,
        }))
        .await;
}

pub async fn execute(ctx: &Ctx) -> Outcome {
    let task = &ctx.task;
    let limits = task.limits;
    let mut output_check = OutputCheck {
        validator: None,
        wrapped: tools::output_parameters(task.output_schema.as_ref()).1,
        failures: 0,
    };
    if let Some(schema) = &task.output_schema {
        match jsonschema::validator_for(schema) {
            Ok(v) => output_check.validator = Some(v),
            Err(e) => {
                return Outcome::failed(RunError::new(
                    codes::AGENT_ERROR,
                    format!("the output schema is not a valid JSON Schema: {e}"),
                ))
            }
        }
    }
    let (mcp, mcp_specs) = connect_mcp(ctx).await;
    let mut specs = tools::specs(task.output_schema.as_ref());
    specs.extend(mcp_specs);
    let system = system_prompt(task, &ctx.workspace);
    let mut messages = vec![Message::User(first_message(task))];
    let mut nudged = false;

    for step in 1..=limits.max_steps {
        ctx.progress.step.store(step, Ordering::Relaxed);
        ctx.sink.queue(EventPayload::Progress(ProgressData {
            step,
            message: "calling the model".into(),
        }));
        let used = *ctx.progress.usage.lock();
        let room = limits.max_tokens.saturating_sub(used.total());
        let started = Instant::now();
        let turn = match ctx
            .llm
            .complete(
                &system,
                &messages,
                &specs,
                room.clamp(1, MAX_OUTPUT_TOKENS_PER_CALL),
            )
            .await
        {
            Ok(t) => t,
            Err(LlmError::BudgetExhausted(m)) => {
                return budget_failure(
                    ctx,
                    codes::TOKEN_BUDGET_EXCEEDED,
                    format!("the sidecar refused: {m}"),
                )
            }
            Err(e) => return Outcome::failed(RunError::new(codes::LLM_ERROR, e.to_string())),
        };
        let total = {
            let mut usage = ctx.progress.usage.lock();
            usage.add(turn.usage);
            *usage
        };
        ctx.sink.queue(EventPayload::Metric(Metric {
            step,
            usage: turn.usage,
            total,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }));
        if !turn.text.is_empty() {
            ctx.sink.queue(EventPayload::Log(LogWritten {
                level: LogLevel::Info,
                message: turn.text.clone(),
            }));
        }
        if total.total() > limits.max_tokens {
            return budget_failure(
                ctx,
                codes::TOKEN_BUDGET_EXCEEDED,
                format!(
                    "used {} tokens of a budget of {}",
                    total.total(),
                    limits.max_tokens
                ),
            );
        }
        messages.push(Message::Assistant {
            text: turn.text.clone(),
            tool_calls: turn.tool_calls.clone(),
        });

        if turn.tool_calls.is_empty() {
            let output = ctx.progress.output.lock().clone();
            if output_check.validator.is_some() && output.is_none() {
                if nudged {
                    return Outcome::failed(RunError::new(
                        codes::OUTPUT_MISSING,
                        "the model finished without calling `output`",
                    ));
                }
                nudged = true;
                messages.push(Message::User(
                    "You have not called the `output` tool yet. Call it with the result now."
                        .into(),
                ));
                continue;
            }
            return Outcome {
                status: RunStatus::Success,
                // Without an output block the final answer is the result.
                output: output.or(Some(Value::String(turn.text))),
                error: None,
            };
        }

        for call in &turn.tool_calls {
            ctx.sink.queue(EventPayload::Progress(ProgressData {
                step,
                message: format!("running tool {}", call.name),
            }));
            let outcome = match parse_call(call) {
                Err(e) => e,
                Ok(args) if call.name == tools::OUTPUT => {
                    match output_check.check(args) {
                        OutputVerdict::Accepted(value) => {
                            *ctx.progress.output.lock() = Some(value.clone());
                            ctx.sink
                                .emit(EventPayload::Output(OutputEmitted { output: value }))
                                .await;
                            ToolOutcome::ok("Output accepted. Reply with a short final message and no tool calls.")
                        }
                        OutputVerdict::Rejected { message, details } => {
                            output_check.failures += 1;
                            if output_check.failures > limits.max_output_retries {
                                return Outcome::failed(
                                RunError::new(
                                    codes::OUTPUT_SCHEMA_MISMATCH,
                                    format!(
                                        "the output did not match the output schema after {} attempts",
                                        output_check.failures
                                    ),
                                )
                                .with_details(details),
                            );
                            }
                            ToolOutcome::err(message)
                        }
                    }
                }
                Ok(args) => run_tool(ctx, mcp.as_ref(), &call.name, args).await,
            };
            messages.push(Message::ToolResult {
                call_id: call.id.clone(),
                content: outcome.content,
                is_error: outcome.is_error,
            });
        }
    }
    budget_failure(
        ctx,
        codes::STEP_BUDGET_EXCEEDED,
        format!("the model needed more than {} steps", limits.max_steps),
    )
}

/// A budget stop keeps any output already accepted, for the record.
fn budget_failure(ctx: &Ctx, code: &str, message: String) -> Outcome {
    Outcome {
        status: RunStatus::Failed,
        output: ctx.progress.output.lock().clone(),
        error: Some(RunError::new(code, message)),
    }
}

fn parse_call(call: &ToolCall) -> Result<Value, ToolOutcome> {
    let raw = call.arguments.trim();
    if raw.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(raw)
        .map_err(|e| ToolOutcome::err(format!("the arguments are not valid JSON: {e}")))
}

async fn run_tool(ctx: &Ctx, mcp: Option<&McpClient>, name: &str, args: Value) -> ToolOutcome {
    if let Some(outcome) = tools::run_builtin(name, &args, &ctx.workspace, ctx.limits).await {
        return outcome;
    }
    let payload = match name {
        tools::LOG => tools::parse_args::<LogArgs>(&args).map(|a| {
            EventPayload::Log(LogWritten {
                level: a.level,
                message: a.message,
            })
        }),
        tools::NOTE => tools::parse_args::<NoteArgs>(&args).and_then(|a| {
            within_memory_limit("note", a.content.len())?;
            Ok(EventPayload::Memory(MemoryAdded { content: a.content }))
        }),
        tools::PIN => tools::parse_args::<PinArgs>(&args).and_then(|a| {
            within_memory_limit("pin", a.value.to_string().len())?;
            Ok(EventPayload::Pinned(PinnedSet {
                key: a.key,
                value: a.value,
            }))
        }),
        _ => {
            return match mcp {
                Some(client) => match client.call_tool(name, args).await {
                    Ok((text, is_error)) => ToolOutcome {
                        content: text,
                        is_error,
                    },
                    Err(e) => ToolOutcome::err(format!("MCP call failed: {e}")),
                },
                None => ToolOutcome::err(format!("unknown tool `{name}`")),
            }
        }
    };
    match payload {
        Ok(p) => {
            ctx.sink.emit(p).await;
            ToolOutcome::ok("recorded")
        }
        Err(e) => e,
    }
}
