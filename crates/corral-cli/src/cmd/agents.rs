//! `agents list|show`.

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

use crate::client::{agent_path, seg};
use crate::output::{field, paint, print_json, Color, Stream, Table};
use crate::{exit, Global};

#[derive(Subcommand, Debug)]
pub enum AgentsCmd {
    /// Agents the application can run (the org's own and the system ones).
    #[command(
        after_help = "Examples:\n  corral agents list\n  corral agents list --json | jq -r '.[].id'"
    )]
    List,
    /// An agent's details: version, input and output schemas, dependencies.
    #[command(
        after_help = "Examples:\n  corral agents show @corral/hello-world\n  corral agents show @acme/triage --json"
    )]
    Show {
        /// `@scope/name`
        agent: String,
    },
}

pub async fn run(global: &Global, c: AgentsCmd) -> Result<u8> {
    let api = super::api(global)?;
    match c {
        AgentsCmd::List => {
            let agents = super::list_of(&api.get("/api/agents").await?);
            if global.json {
                print_json(&Value::Array(agents));
                return Ok(exit::OK);
            }
            let mut t = Table::new(&["ID", "VERSION", "SOURCE", "RUNNING", "DESCRIPTION"]);
            for a in &agents {
                t.row(vec![
                    field(a, "id"),
                    field(a, "version"),
                    field(a, "source"),
                    field(a, "running_runs"),
                    field(a, "description").chars().take(60).collect(),
                ]);
            }
            t.print("no agents: import one with `corral packages import <dir>`");
        }
        AgentsCmd::Show { agent } => {
            let (scope, name) = agent_path(&agent)?;
            let a = api
                .get(&format!(
                    "/api/packages/agents/{}/{}",
                    seg(&scope),
                    seg(&name)
                ))
                .await?;
            if global.json {
                print_json(&a);
                return Ok(exit::OK);
            }
            let s = Stream::Out;
            println!("{}", paint(s, Color::Bold, &field(&a, "id")));
            for (label, key) in [
                ("name", "display_name"),
                ("description", "description"),
                ("version", "version"),
                ("source", "source"),
                ("versions", "version_count"),
                ("running", "running_runs"),
                ("timeout", "effective_timeout_seconds"),
            ] {
                println!("{label:<12} {}", field(&a, key));
            }
            let deps = &a["dependencies"];
            for kind in ["skills", "mcp_servers", "integrations"] {
                let ids: Vec<String> = deps[kind]
                    .as_array()
                    .map(|d| {
                        d.iter()
                            .map(|x| format!("{} {}", field(x, "id"), field(x, "version")))
                            .collect()
                    })
                    .unwrap_or_default();
                if !ids.is_empty() {
                    println!("{:<12} {}", kind.replace('_', " "), ids.join(", "));
                }
            }
            let input = a
                .pointer("/input/schema")
                .or_else(|| a.pointer("/manifest/input/schema"));
            if let Some(schema) = input.filter(|v| !v.is_null()) {
                println!("input schema:\n{}", indent(schema));
            }
            let output = a.pointer("/output/schema").or_else(|| a.get("output"));
            if let Some(schema) =
                output.filter(|v| !v.is_null() && v.as_object().is_none_or(|o| !o.is_empty()))
            {
                println!("output schema:\n{}", indent(schema));
            }
        }
    }
    Ok(exit::OK)
}

fn indent(v: &Value) -> String {
    serde_json::to_string_pretty(v)
        .unwrap_or_default()
        .lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
