//! `runs list|show|logs|cancel`.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::{agent_path, seg};
use crate::follow::{catch_up, LogFormat, LogSink};
use crate::output::{
    duration_ms, field, paint, print_json, short_time, status_color, Color, Stream, Table,
};
use crate::{exit, Global};

#[derive(Subcommand, Debug)]
pub enum RunsCmd {
    /// The application's runs, newest first.
    #[command(
        after_help = "Examples:\n  corral runs list\n  corral runs list --status failed --limit 5\n  corral runs list --agent @corral/hello-world --json"
    )]
    List {
        /// pending, running, success, failed, timeout or cancelled.
        #[arg(long)]
        status: Option<String>,
        /// Only the runs of this agent (`@scope/name`).
        #[arg(long)]
        agent: Option<String>,
        /// How many (1–100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One run: status, timing, error, output.
    #[command(
        after_help = "Examples:\n  corral runs show run_0193…\n  corral runs show run_0193… --json | jq .result.output"
    )]
    Show {
        /// Run id.
        id: String,
    },
    /// A run's logs; with -f, follow them live until the run ends.
    #[command(
        after_help = "Examples:\n  corral runs logs run_0193…\n  corral runs logs -f run_0193…          # attach to a running run\n  corral runs logs run_0193… --json     # one JSON object per line\n\nWith -f the exit code is the run's outcome: 0 success, 3 failed, 4 timeout,\n5 cancelled (130 when detached with Ctrl-C)."
    )]
    Logs {
        /// Run id.
        id: String,
        /// Follow live (SSE) until the run ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Cancel a pending or running run.
    #[command(after_help = "Examples:\n  corral runs cancel run_0193…")]
    Cancel {
        /// Run id.
        id: String,
    },
}

pub async fn run(global: &Global, c: RunsCmd) -> Result<u8> {
    let api = super::api(global)?;
    match c {
        RunsCmd::List {
            status,
            agent,
            limit,
        } => {
            if let Some(s) = &status {
                if corral_core::RunStatus::parse(s).is_none() {
                    anyhow::bail!(
                        "--status must be pending, running, success, failed, timeout or cancelled"
                    );
                }
            }
            let limit = limit.clamp(1, 100);
            let mut runs = match &agent {
                Some(a) => {
                    // The agent's list has no status filter: filter here.
                    let (scope, name) = agent_path(a)?;
                    let fetch = if status.is_some() { 100 } else { limit };
                    let all = super::list_of(
                        &api.get(&format!(
                            "/api/agents/{}/{}/runs?limit={fetch}",
                            seg(&scope),
                            seg(&name)
                        ))
                        .await?,
                    );
                    all.into_iter()
                        .filter(|r| status.as_deref().is_none_or(|s| r["status"] == s))
                        .collect()
                }
                None => {
                    let mut path = format!("/api/runs?limit={limit}");
                    if let Some(s) = &status {
                        path.push_str(&format!("&status={s}"));
                    }
                    super::list_of(&api.get(&path).await?)
                }
            };
            runs.truncate(limit as usize);
            if global.json {
                print_json(&Value::Array(runs));
                return Ok(exit::OK);
            }
            let mut t = Table::new(&["ID", "AGENT", "STATUS", "STARTED", "DURATION"]);
            for r in &runs {
                let status = field(r, "status");
                t.row(vec![
                    field(r, "id"),
                    field(r, "packageId"),
                    paint(Stream::Out, status_color(&status), &status),
                    short_time(&field(r, "started_at")),
                    duration_ms(r["duration"].as_i64()),
                ]);
            }
            t.print("no runs");
            Ok(exit::OK)
        }
        RunsCmd::Show { id } => {
            let r = api.get(&format!("/api/runs/{}", seg(&id))).await?;
            if global.json {
                print_json(&r);
                return Ok(exit::OK);
            }
            let status = field(&r, "status");
            println!("{}", paint(Stream::Out, Color::Bold, &field(&r, "id")));
            println!("{:<10} {}", "agent", field(&r, "packageId"));
            println!("{:<10} {}", "version", field(&r, "version_label"));
            println!(
                "{:<10} {}",
                "status",
                paint(Stream::Out, status_color(&status), &status)
            );
            println!("{:<10} {}", "model", field(&r, "model_label"));
            println!("{:<10} {}", "sandbox", field(&r, "runner_kind"));
            println!("{:<10} {}", "started", short_time(&field(&r, "started_at")));
            println!("{:<10} {}", "duration", duration_ms(r["duration"].as_i64()));
            if let Some(code) = r.pointer("/metadata/error_code").and_then(Value::as_str) {
                println!("{:<10} {code}", "error");
            }
            if let Some(e) = r["error"].as_str() {
                println!("{:<10} {}", "", paint(Stream::Out, Color::Red, e));
            }
            if let Some(input) = r.get("input").filter(|v| !v.is_null()) {
                println!("input:\n{}", serde_json::to_string_pretty(input)?);
            }
            if let Some(out) = r.pointer("/result/output").filter(|v| !v.is_null()) {
                println!("output:\n{}", serde_json::to_string_pretty(out)?);
            }
            Ok(exit::OK)
        }
        RunsCmd::Logs { id, follow } => {
            let format = if global.json {
                LogFormat::Json
            } else {
                LogFormat::Human(Stream::Out)
            };
            let sink = LogSink::new(format);
            if follow {
                // Status line on stderr; with --json stdout carries only log lines.
                return super::run::follow_until_end(&api, &id, sink, false, false).await;
            }
            let mut sink = sink;
            catch_up(&api, &id, &mut sink).await?;
            if sink.printed == 0 && !global.json {
                eprintln!("no logs");
            }
            Ok(exit::OK)
        }
        RunsCmd::Cancel { id } => {
            let r = api
                .post(&format!("/api/runs/{}/cancel", seg(&id)), &json!({}))
                .await?;
            if global.json {
                print_json(&r);
            } else {
                eprintln!(
                    "{} {id} {}",
                    paint(Stream::Err, Color::Yellow, "✓"),
                    field(&r, "status")
                );
            }
            Ok(exit::OK)
        }
    }
}
