//! Bundled MCP servers: subprocesses speaking MCP over stdio (newline-delimited
//! JSON-RPC), started when the run is configured. The sidecar is their client:
//! it performs the handshake, lists their tools once, and relays `tools/call`.
//! A subprocess gets a clean environment (only `PATH`, `HOME` and its configured
//! variables), so none of the sidecar's secrets leak into it.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corral_protocol::{McpServer, McpServerKind};
use parking_lot::Mutex;
use rmcp::model::CallToolResult;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

use super::error_result;
use crate::state::Run;

const PROTOCOL_VERSION: &str = "2025-06-18";
const START_TIMEOUT: Duration = Duration::from_secs(20);
const CALL_TIMEOUT: Duration = Duration::from_secs(300);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

#[derive(Debug, Clone)]
pub struct BundledTool {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

pub struct BundledServer {
    name: String,
    tools: Vec<BundledTool>,
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Pending,
    next_id: AtomicU64,
    /// Held so the process dies with this value (`kill_on_drop`).
    _child: Child,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for BundledServer {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Starts every configured server in the background; failures are logged and the
/// server's tools are simply absent.
pub fn start_all(run: Arc<Run>) {
    tokio::spawn(async move {
        let mut started = Vec::new();
        for spec in &run.config.mcp_servers {
            match tokio::time::timeout(START_TIMEOUT, BundledServer::start(spec)).await {
                Ok(Ok(server)) => {
                    tracing::info!(server = %spec.name, tools = server.tools.len(), "bundled MCP server started");
                    started.push(Arc::new(server));
                }
                Ok(Err(e)) => {
                    tracing::error!(server = %spec.name, error = %format!("{e:#}"), "bundled MCP server failed to start");
                }
                Err(_) => {
                    tracing::error!(server = %spec.name, "bundled MCP server did not start in time")
                }
            }
        }
        run.bundled.send_replace(Some(Arc::new(started)));
    });
}

/// The started servers, waiting up to `wait` for those still starting.
pub async fn wait_ready(run: &Run, wait: Duration) -> Arc<Vec<Arc<BundledServer>>> {
    if run.config.mcp_servers.is_empty() {
        return Arc::default();
    }
    let mut rx = run.bundled.subscribe();
    let ready = match tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await {
        Ok(Ok(ready)) => ready.clone().unwrap_or_default(),
        _ => Arc::default(),
    };
    ready
}

impl BundledServer {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tools(&self) -> &[BundledTool] {
        &self.tools
    }

    async fn start(spec: &McpServer) -> anyhow::Result<Self> {
        let mut cmd = match &spec.kind {
            McpServerKind::Binary { path } => Command::new(path),
            McpServerKind::Python { script } => {
                let mut c = Command::new("python3");
                c.arg("-u").arg(script);
                c
            }
        };
        cmd.args(&spec.args)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
            )
            .env("HOME", std::env::temp_dir())
            .envs(spec.env.iter().map(|(k, v)| (k, v.expose())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let pending: Pending = Arc::default();
        let reader = tokio::spawn(read_loop(spec.name.clone(), stdout, pending.clone()));
        let mut server = Self {
            name: spec.name.clone(),
            tools: Vec::new(),
            stdin: tokio::sync::Mutex::new(stdin),
            pending,
            next_id: AtomicU64::new(1),
            _child: child,
            reader,
        };
        let init = server
            .request(
                "initialize",
                json!({
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "corral-sidecar", "version": env!("CARGO_PKG_VERSION")},
                }),
            )
            .await?;
        anyhow::ensure!(
            init.get("protocolVersion").is_some(),
            "initialize answered without protocolVersion"
        );
        server
            .write(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        let mut cursor: Option<String> = None;
        loop {
            let params = cursor
                .as_ref()
                .map_or_else(|| json!({}), |c| json!({"cursor": c}));
            let page = server.request("tools/list", params).await?;
            for t in page["tools"].as_array().into_iter().flatten() {
                let Some(name) = t["name"].as_str() else {
                    continue;
                };
                server.tools.push(BundledTool {
                    name: name.to_owned(),
                    description: t["description"].as_str().unwrap_or_default().to_owned(),
                    input_schema: t
                        .get("inputSchema")
                        .cloned()
                        .unwrap_or_else(|| json!({"type": "object"})),
                });
            }
            match page["nextCursor"].as_str() {
                Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
                _ => break,
            }
        }
        Ok(server)
    }

    async fn write(&self, message: &Value) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(message)?;
        line.push(b'\n');
        let mut stdin = self.stdin.lock().await;
        stdin.write_all(&line).await?;
        stdin.flush().await?;
        Ok(())
    }

    async fn request(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id, tx);
        let sent = self
            .write(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        if let Err(e) = sent {
            self.pending.lock().remove(&id);
            return Err(e);
        }
        let message = match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(m)) => m,
            Ok(Err(_)) => anyhow::bail!("the MCP server {} exited", self.name),
            Err(_) => {
                self.pending.lock().remove(&id);
                anyhow::bail!(
                    "the MCP server {} did not answer {method} in time",
                    self.name
                )
            }
        };
        if let Some(err) = message.get("error") {
            anyhow::bail!("{method} failed: {err}");
        }
        Ok(message.get("result").cloned().unwrap_or(Value::Null))
    }

    pub async fn call(&self, tool: &str, arguments: Value) -> CallToolResult {
        match self
            .request("tools/call", json!({"name": tool, "arguments": arguments}))
            .await
        {
            Ok(result) => serde_json::from_value(result).unwrap_or_else(|e| {
                error_result(format!(
                    "the MCP server {} answered malformed: {e}",
                    self.name
                ))
            }),
            Err(e) => error_result(format!("{e:#}")),
        }
    }
}

/// Routes each response line to the request waiting for its id. Dropping the
/// senders when stdout closes fails every waiting request at once.
async fn read_loop(name: String, stdout: tokio::process::ChildStdout, pending: Pending) {
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                let Ok(message) = serde_json::from_str::<Value>(&line) else {
                    tracing::debug!(server = %name, "non-JSON line on stdout");
                    continue;
                };
                let is_response = message.get("result").is_some() || message.get("error").is_some();
                let Some(id) = message.get("id").and_then(Value::as_u64) else {
                    continue;
                };
                if is_response {
                    if let Some(tx) = pending.lock().remove(&id) {
                        let _ = tx.send(message);
                    }
                }
            }
            Ok(None) | Err(_) => {
                tracing::warn!(server = %name, "bundled MCP server closed its stdout");
                pending.lock().clear();
                return;
            }
        }
    }
}
