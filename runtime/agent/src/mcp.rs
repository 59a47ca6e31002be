//! A minimal MCP client over Streamable HTTP (JSON-RPC 2.0): `initialize`,
//! `tools/list`, `tools/call`. Responses may come as plain JSON or as an SSE stream;
//! both are handled. Only what the agent needs from the sidecar's `/mcp` is here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{json, Value};

use crate::llm::SseParser;

const PROTOCOL_VERSION: &str = "2025-06-18";
const SESSION_HEADER: &str = "mcp-session-id";

pub struct McpClient {
    http: reqwest::Client,
    url: String,
    session: Option<String>,
    next_id: AtomicU64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

impl McpClient {
    /// Connects and performs the initialize handshake.
    pub async fn connect(http: reqwest::Client, url: String) -> anyhow::Result<Self> {
        let mut client = Self {
            http,
            url,
            session: None,
            next_id: AtomicU64::new(1),
        };
        let (result, session) = client
            .request_raw(
                "initialize",
                json!({
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "corral-agent", "version": env!("CARGO_PKG_VERSION")},
                }),
            )
            .await?;
        anyhow::ensure!(
            result.get("protocolVersion").is_some(),
            "initialize result has no protocolVersion: {result}"
        );
        client.session = session;
        client.notify("notifications/initialized").await?;
        Ok(client)
    }

    /// Every tool the server lists, following pagination.
    pub async fn list_tools(&self) -> anyhow::Result<Vec<McpTool>> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let result = self.request("tools/list", params).await?;
            for t in result["tools"].as_array().into_iter().flatten() {
                let Some(name) = t["name"].as_str() else {
                    continue;
                };
                tools.push(McpTool {
                    name: name.to_owned(),
                    description: t["description"].as_str().unwrap_or_default().to_owned(),
                    input_schema: t
                        .get("inputSchema")
                        .cloned()
                        .unwrap_or_else(|| json!({"type": "object"})),
                });
            }
            match result["nextCursor"].as_str() {
                Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
                _ => return Ok(tools),
            }
        }
    }

    /// Calls a tool; returns its text content and whether it reported an error.
    pub async fn call_tool(&self, name: &str, arguments: Value) -> anyhow::Result<(String, bool)> {
        let result = self
            .request("tools/call", json!({"name": name, "arguments": arguments}))
            .await?;
        let mut parts = Vec::new();
        for c in result["content"].as_array().into_iter().flatten() {
            match c["type"].as_str() {
                Some("text") => parts.push(c["text"].as_str().unwrap_or_default().to_owned()),
                _ => parts.push(c.to_string()),
            }
        }
        if parts.is_empty() {
            if let Some(s) = result.get("structuredContent") {
                parts.push(s.to_string());
            }
        }
        let is_error = result["isError"].as_bool().unwrap_or(false);
        Ok((parts.join("\n"), is_error))
    }

    async fn request(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        Ok(self.request_raw(method, params).await?.0)
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&self.url)
            .header(
                reqwest::header::ACCEPT,
                "application/json, text/event-stream",
            )
            .header("mcp-protocol-version", PROTOCOL_VERSION)
            .timeout(Duration::from_secs(300))
            .json(body);
        if let Some(s) = &self.session {
            req = req.header(SESSION_HEADER, s);
        }
        req
    }

    async fn notify(&self, method: &str) -> anyhow::Result<()> {
        let resp = self
            .post(&json!({"jsonrpc": "2.0", "method": method}))
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "{method} answered {}",
            resp.status()
        );
        Ok(())
    }

    async fn request_raw(
        &self,
        method: &str,
        params: Value,
    ) -> anyhow::Result<(Value, Option<String>)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .send()
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            anyhow::bail!("MCP {method} answered {status}: {text}");
        }
        let session = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let is_sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        let message = if is_sse {
            // The server may interleave notifications before the response; read until
            // the message with our id arrives.
            let mut parser = SseParser::default();
            let mut stream = resp.bytes_stream();
            let mut found = None;
            'outer: while let Some(chunk) = stream.next().await {
                for event in parser.push(&chunk?) {
                    let Ok(v) = serde_json::from_str::<Value>(&event.data) else {
                        continue;
                    };
                    if v.get("id").and_then(Value::as_u64) == Some(id) {
                        found = Some(v);
                        break 'outer;
                    }
                }
            }
            found.ok_or_else(|| anyhow::anyhow!("MCP {method}: stream ended without a response"))?
        } else {
            resp.json::<Value>().await?
        };
        if let Some(err) = message.get("error") {
            anyhow::bail!("MCP {method} failed: {err}");
        }
        Ok((
            message.get("result").cloned().unwrap_or(Value::Null),
            session,
        ))
    }
}
