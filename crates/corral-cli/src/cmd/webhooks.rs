//! `webhooks list|create|delete|test|deliveries`.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::seg;
use crate::output::{field, paint, print_json, short_time, Color, Stream, Table};
use crate::{exit, Global};

#[derive(Subcommand, Debug)]
pub enum WebhooksCmd {
    /// The application's (and the org's) webhooks.
    #[command(after_help = "Examples:\n  corral webhooks list\n  corral webhooks list --json")]
    List,
    /// Create a webhook; prints its signing secret (shown once).
    #[command(
        after_help = "Examples:\n  corral webhooks create https://example.com/hooks --event run.success --event run.failed\n  corral webhooks create https://example.com/h --event run.failed --level org --summary"
    )]
    Create {
        /// Receiver URL (HTTPS; http only to localhost in development mode).
        url: String,
        /// Event to subscribe to (repeatable): run.started, run.success, run.failed,
        /// run.timeout, run.cancelled, run.connection_missing.
        #[arg(long = "event", short, required = true)]
        events: Vec<String>,
        /// `application` (default) or `org`.
        #[arg(long)]
        level: Option<String>,
        /// Send summaries (no input or result).
        #[arg(long)]
        summary: bool,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a webhook.
    #[command(after_help = "Examples:\n  corral webhooks delete wh_0193…")]
    Delete {
        /// Webhook id.
        id: String,
    },
    /// Send a test event now and show the receiver's answer.
    #[command(after_help = "Examples:\n  corral webhooks test wh_0193…")]
    Test {
        /// Webhook id.
        id: String,
    },
    /// Recent deliveries of a webhook and their attempts.
    #[command(after_help = "Examples:\n  corral webhooks deliveries wh_0193… --limit 5")]
    Deliveries {
        /// Webhook id.
        id: String,
        /// How many (1–100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

pub async fn run(global: &Global, c: WebhooksCmd) -> Result<u8> {
    let api = super::api(global)?;
    match c {
        WebhooksCmd::List => {
            let hooks = super::list_of(&api.get("/api/webhooks").await?);
            if global.json {
                print_json(&Value::Array(hooks));
                return Ok(exit::OK);
            }
            let mut t = Table::new(&["ID", "URL", "EVENTS", "LEVEL", "ENABLED"]);
            for h in &hooks {
                let events: Vec<&str> = h["events"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                t.row(vec![
                    field(h, "id"),
                    field(h, "url"),
                    events.join(","),
                    field(h, "level"),
                    field(h, "enabled"),
                ]);
            }
            t.print("no webhooks");
        }
        WebhooksCmd::Create {
            url,
            events,
            level,
            summary,
            description,
        } => {
            let mut body = json!({ "url": url, "events": events });
            if let Some(l) = level {
                body["level"] = json!(l);
            }
            if summary {
                body["payloadMode"] = json!("summary");
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            let h = api.post("/api/webhooks", &body).await?;
            if global.json {
                print_json(&h);
            } else {
                println!("{}", field(&h, "id"));
                eprintln!(
                    "secret (shown once): {}",
                    paint(Stream::Err, Color::Bold, &field(&h, "secret"))
                );
            }
        }
        WebhooksCmd::Delete { id } => {
            api.delete(&format!("/api/webhooks/{}", seg(&id))).await?;
            if global.json {
                print_json(&json!({ "id": id, "deleted": true }));
            } else {
                eprintln!("deleted {id}");
            }
        }
        WebhooksCmd::Test { id } => {
            let r = api
                .post(&format!("/api/webhooks/{}/test", seg(&id)), &json!({}))
                .await?;
            if global.json {
                print_json(&r);
            } else {
                let ok = r["success"] == true;
                println!(
                    "{} status {} in {}ms{}",
                    paint(
                        Stream::Out,
                        if ok { Color::Green } else { Color::Red },
                        if ok { "✓ delivered" } else { "✗ failed" }
                    ),
                    field(&r, "statusCode"),
                    field(&r, "latencyMs"),
                    r["error"]
                        .as_str()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
            }
        }
        WebhooksCmd::Deliveries { id, limit } => {
            let r = api
                .get(&format!(
                    "/api/webhooks/{}/deliveries?limit={}",
                    seg(&id),
                    limit.clamp(1, 100)
                ))
                .await?;
            let rows = super::list_of(&r);
            if global.json {
                print_json(&Value::Array(rows));
                return Ok(exit::OK);
            }
            let mut t = Table::new(&["ID", "EVENT", "STATUS", "ATTEMPTS", "LAST", "CREATED"]);
            for d in &rows {
                t.row(vec![
                    field(d, "id"),
                    field(d, "eventType"),
                    field(d, "status"),
                    field(d, "attempts"),
                    field(d, "lastStatusCode"),
                    short_time(&field(d, "createdAt")),
                ]);
            }
            t.print("no deliveries");
        }
    }
    Ok(exit::OK)
}
