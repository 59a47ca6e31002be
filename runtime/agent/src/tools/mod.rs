//! The tools the agent offers the model: built-ins that act on the workspace
//! (`bash`, `read_file`, `write_file`, `edit_file`, `list_files`), runtime tools
//! that report to the platform (`output`, `log`, `note`, `pin`; executed by the run
//! loop because they change the run's state), and the sidecar's MCP tools.

pub mod bash;
pub mod fs;

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::llm::ToolSpec;

pub const OUTPUT: &str = "output";
pub const LOG: &str = "log";
pub const NOTE: &str = "note";
pub const PIN: &str = "pin";

/// Names the MCP server may not take over.
pub const RESERVED: &[&str] = &[
    "bash",
    "read_file",
    "write_file",
    "edit_file",
    "list_files",
    OUTPUT,
    LOG,
    NOTE,
    PIN,
];

/// The result of one tool call as shown to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    pub content: String,
    pub is_error: bool,
}

impl ToolOutcome {
    pub fn ok(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: false,
        }
    }

    pub fn err(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: true,
        }
    }
}

/// Parses tool arguments; an error is returned as a message for the model.
pub fn parse_args<T: DeserializeOwned>(arguments: &Value) -> Result<T, ToolOutcome> {
    serde_json::from_value(arguments.clone())
        .map_err(|e| ToolOutcome::err(format!("invalid arguments: {e}")))
}

/// `output`'s parameters: the output schema itself when it describes an object
/// (function parameters must be objects), otherwise the value wrapped in `value`.
/// Returns the parameters and whether the value is wrapped.
pub fn output_parameters(schema: Option<&Value>) -> (Value, bool) {
    match schema {
        None => (
            json!({"type": "object", "description": "The run's result."}),
            false,
        ),
        Some(s) if s.get("type").and_then(Value::as_str) == Some("object") => {
            let mut s = s.clone();
            // Providers reject a `$schema` keyword inside function parameters.
            if let Some(obj) = s.as_object_mut() {
                obj.remove("$schema");
            }
            (s, false)
        }
        Some(s) => (
            json!({"type": "object", "properties": {"value": s}, "required": ["value"]}),
            true,
        ),
    }
}

pub fn specs(output_schema: Option<&Value>) -> Vec<ToolSpec> {
    let spec = |name: &str, description: &str, parameters: Value| ToolSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        parameters,
    };
    let path = json!({"type": "string", "description": "Path relative to the workspace."});
    vec![
        spec(
            "bash",
            "Run a bash command in the workspace directory. Returns the exit code, stdout and stderr (capped). Commands are killed after the timeout.",
            json!({"type": "object", "properties": {
                "command": {"type": "string"},
                "timeout_secs": {"type": "integer", "minimum": 1, "description": "Lower than the run's per-call ceiling."}
            }, "required": ["command"]}),
        ),
        spec(
            "read_file",
            "Read a text file from the workspace, optionally a range of lines.",
            json!({"type": "object", "properties": {
                "path": path,
                "offset": {"type": "integer", "minimum": 1, "description": "First line, 1-based."},
                "limit": {"type": "integer", "minimum": 1, "description": "Number of lines."}
            }, "required": ["path"]}),
        ),
        spec(
            "write_file",
            "Create or overwrite a file in the workspace (parent directories are created).",
            json!({"type": "object", "properties": {"path": path, "content": {"type": "string"}}, "required": ["path", "content"]}),
        ),
        spec(
            "edit_file",
            "Replace an exact string in a file. old_string must occur exactly once unless replace_all is true.",
            json!({"type": "object", "properties": {
                "path": path, "old_string": {"type": "string"}, "new_string": {"type": "string"},
                "replace_all": {"type": "boolean"}
            }, "required": ["path", "old_string", "new_string"]}),
        ),
        spec(
            "list_files",
            "List a directory of the workspace (directories end with /).",
            json!({"type": "object", "properties": {"path": path, "recursive": {"type": "boolean"}}}),
        ),
        spec(
            OUTPUT,
            "Submit the run's structured result. It is validated against the output schema; on errors, fix them and call output again.",
            output_parameters(output_schema).0,
        ),
        spec(
            LOG,
            "Write a progress message to the run's log, visible to the user.",
            json!({"type": "object", "properties": {
                "message": {"type": "string"},
                "level": {"type": "string", "enum": ["debug", "info", "warn", "error"]}
            }, "required": ["message"]}),
        ),
        spec(
            NOTE,
            "Remember a fact for future runs of this agent.",
            json!({"type": "object", "properties": {"content": {"type": "string"}}, "required": ["content"]}),
        ),
        spec(
            PIN,
            "Pin a key/value on the run, shown prominently to the user (latest value per key wins).",
            json!({"type": "object", "properties": {"key": {"type": "string"}, "value": {}}, "required": ["key", "value"]}),
        ),
    ]
}

#[derive(Deserialize)]
struct BashArgs {
    command: String,
    timeout_secs: Option<u64>,
}

/// Limits of the built-in tools.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinLimits {
    pub bash_timeout: Duration,
    pub output_limit: usize,
}

/// Runs a built-in tool, or returns `None` if `name` is not one.
pub async fn run_builtin(
    name: &str,
    arguments: &Value,
    ws: &Path,
    limits: BuiltinLimits,
) -> Option<ToolOutcome> {
    let fs_result = |r: Result<String, fs::FsError>| match r {
        Ok(s) => ToolOutcome::ok(s),
        Err(e) => ToolOutcome::err(e.to_string()),
    };
    let outcome = match name {
        "bash" => match parse_args::<BashArgs>(arguments) {
            Ok(a) => {
                let timeout = a
                    .timeout_secs
                    .map(Duration::from_secs)
                    .map_or(limits.bash_timeout, |t| t.min(limits.bash_timeout));
                let r = bash::run(&a.command, ws, timeout, limits.output_limit).await;
                ToolOutcome {
                    content: r.text,
                    is_error: r.is_error,
                }
            }
            Err(e) => e,
        },
        "read_file" => match parse_args(arguments) {
            Ok(a) => fs_result(fs::read_file(ws, a, limits.output_limit).await),
            Err(e) => e,
        },
        "write_file" => match parse_args(arguments) {
            Ok(a) => fs_result(fs::write_file(ws, a).await),
            Err(e) => e,
        },
        "edit_file" => match parse_args(arguments) {
            Ok(a) => fs_result(fs::edit_file(ws, a).await),
            Err(e) => e,
        },
        "list_files" => match parse_args(arguments) {
            Ok(a) => fs_result(fs::list_files(ws, a).await),
            Err(e) => e,
        },
        _ => return None,
    };
    Some(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_parameters_wrap_non_objects() {
        let (p, wrapped) = output_parameters(Some(
            &json!({"$schema": "x", "type": "object", "required": ["a"]}),
        ));
        assert!(!wrapped);
        assert_eq!(p, json!({"type": "object", "required": ["a"]}));
        let (p, wrapped) = output_parameters(Some(&json!({"type": "array"})));
        assert!(wrapped);
        assert_eq!(p["properties"]["value"], json!({"type": "array"}));
        let names: Vec<String> = specs(None).into_iter().map(|s| s.name).collect();
        assert_eq!(names, RESERVED);
    }
}
