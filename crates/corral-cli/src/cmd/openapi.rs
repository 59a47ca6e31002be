//! `openapi list [--tag]`, `openapi show <operationId>`: the server's contract
//! (`GET /api/openapi.json`). Bare `corral openapi` (printing the contract generated
//! from this binary's code) stays a server command.

use anyhow::{anyhow, Result};
use clap::Subcommand;
use serde_json::{json, Value};

use crate::output::{field, paint, print_json, Color, Stream, Table};
use crate::{exit, Global};

const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

#[derive(Subcommand, Debug)]
pub enum OpenapiCmd {
    /// The server's operations: method, path, operationId, summary.
    #[command(
        after_help = "Examples:\n  corral openapi list\n  corral openapi list --tag Runs\n  corral openapi list --json | jq -r '.[].operationId'"
    )]
    List {
        /// Only operations with this tag (case-insensitive).
        #[arg(long)]
        tag: Option<String>,
    },
    /// One operation: parameters, request body and responses.
    #[command(
        after_help = "Examples:\n  corral openapi show runAgent\n  corral openapi show getRun --json"
    )]
    Show {
        /// The operation's id, e.g. `runAgent`.
        operation_id: String,
    },
}

/// Every operation of a contract as `{method, path, operationId, tags, summary}`.
pub fn operations(spec: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(paths) = spec.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            for m in METHODS {
                if let Some(op) = item.get(m) {
                    out.push(json!({
                        "method": m.to_uppercase(),
                        "path": path,
                        "operationId": op.get("operationId"),
                        "tags": op.get("tags").cloned().unwrap_or(json!([])),
                        "summary": op.get("summary").or_else(|| op.get("description")),
                    }));
                }
            }
        }
    }
    out
}

/// The operation object, with `method` and `path` added.
pub fn find(spec: &Value, operation_id: &str) -> Option<Value> {
    let paths = spec.get("paths")?.as_object()?;
    for (path, item) in paths {
        for m in METHODS {
            if let Some(op) = item.get(m).filter(|op| op["operationId"] == operation_id) {
                let mut op = op.clone();
                op["method"] = json!(m.to_uppercase());
                op["path"] = json!(path);
                return Some(op);
            }
        }
    }
    None
}

pub async fn run(global: &Global, c: OpenapiCmd) -> Result<u8> {
    let api = super::api(global)?;
    let spec = api.get("/api/openapi.json").await?;
    match c {
        OpenapiCmd::List { tag } => {
            let ops: Vec<Value> = operations(&spec)
                .into_iter()
                .filter(|o| {
                    tag.as_deref().is_none_or(|t| {
                        o["tags"].as_array().is_some_and(|a| {
                            a.iter()
                                .any(|x| x.as_str().is_some_and(|x| x.eq_ignore_ascii_case(t)))
                        })
                    })
                })
                .collect();
            if global.json {
                print_json(&Value::Array(ops));
                return Ok(exit::OK);
            }
            let mut t = Table::new(&["METHOD", "PATH", "OPERATION", "SUMMARY"]);
            for o in &ops {
                t.row(vec![
                    field(o, "method"),
                    field(o, "path"),
                    field(o, "operationId"),
                    field(o, "summary")
                        .lines()
                        .next()
                        .unwrap_or("")
                        .chars()
                        .take(70)
                        .collect(),
                ]);
            }
            t.print("no operations");
        }
        OpenapiCmd::Show { operation_id } => {
            let op = find(&spec, &operation_id).ok_or_else(|| {
                anyhow!("no operation {operation_id:?}: see `corral openapi list`")
            })?;
            if global.json {
                print_json(&op);
                return Ok(exit::OK);
            }
            let s = Stream::Out;
            println!(
                "{} {}  ({})",
                paint(s, Color::Bold, &field(&op, "method")),
                field(&op, "path"),
                operation_id
            );
            if let Some(d) = op
                .get("summary")
                .or_else(|| op.get("description"))
                .and_then(Value::as_str)
            {
                println!("{d}");
            }
            if let Some(params) = op.get("parameters").and_then(Value::as_array) {
                println!("\nparameters:");
                for p in params {
                    println!(
                        "  {:<20} {:<7} {}{}",
                        field(p, "name"),
                        field(p, "in"),
                        if p["required"] == true {
                            "required "
                        } else {
                            ""
                        },
                        p.get("description").and_then(Value::as_str).unwrap_or("")
                    );
                }
            }
            if let Some(body) = op.get("requestBody") {
                println!("\nrequest body:");
                if let Some(content) = body.get("content").and_then(Value::as_object) {
                    for (ct, media) in content {
                        println!("  {ct}: {}", schema_name(&media["schema"]));
                    }
                }
            }
            if let Some(responses) = op.get("responses").and_then(Value::as_object) {
                println!("\nresponses:");
                for (code, r) in responses {
                    let schema = r
                        .get("content")
                        .and_then(Value::as_object)
                        .and_then(|c| c.values().next())
                        .map(|m| schema_name(&m["schema"]))
                        .unwrap_or_default();
                    println!(
                        "  {code}  {}{}",
                        r.get("description").and_then(Value::as_str).unwrap_or(""),
                        if schema.is_empty() {
                            String::new()
                        } else {
                            format!(" → {schema}")
                        }
                    );
                }
            }
        }
    }
    Ok(exit::OK)
}

/// `Foo` for `{"$ref": "#/components/schemas/Foo"}`, else the schema's type.
fn schema_name(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next().unwrap_or(r).to_owned();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => format!("[{}]", schema_name(&schema["items"])),
        Some(t) => t.to_owned(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_listed_and_found() {
        let spec = json!({"paths": {
            "/api/runs/{id}": {"get": {"operationId": "getRun", "tags": ["Runs"], "summary": "A run",
                "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RunView"}}}}}}},
            "/health": {"get": {"operationId": "getHealth", "tags": ["Health"]}, "parameters": []}
        }});
        let ops = operations(&spec);
        assert_eq!(ops.len(), 2);
        let op = find(&spec, "getRun").unwrap();
        assert_eq!(op["method"], "GET");
        assert_eq!(op["path"], "/api/runs/{id}");
        assert_eq!(
            schema_name(&op["responses"]["200"]["content"]["application/json"]["schema"]),
            "RunView"
        );
        assert!(find(&spec, "nope").is_none());
    }
}
