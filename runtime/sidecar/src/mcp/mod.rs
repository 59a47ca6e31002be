//! The sidecar's MCP server on `/mcp` (Streamable HTTP, served by `rmcp`). Its
//! tools are computed from the configured run: `{ns}__api_call` per integration
//! ([`api_call`]), `run_history` and `recall_memory` when the platform URL is known
//! ([`platform`]), and the tools of the bundled MCP servers ([`bundled`]), listed as
//! `{server}__{tool}`.

pub mod api_call;
pub mod bundled;
pub mod platform;

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    InitializeResult, JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
    Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::state::{AppState, Run};

/// Tool name suffix of an integration's call tool.
pub const API_CALL_SUFFIX: &str = "__api_call";
/// How long `tools/list` waits for bundled servers that are still starting.
const BUNDLED_START_WAIT: Duration = Duration::from_secs(30);

/// The `/mcp` endpoint as a tower service. The agent reaches the sidecar as
/// `sidecar` on the run network, tests and the process sandbox on loopback; other
/// `Host` values are refused (DNS rebinding).
pub fn service(
    state: Arc<AppState>,
    allowed_hosts: Vec<String>,
    shutdown: CancellationToken,
) -> StreamableHttpService<Handler, LocalSessionManager> {
    let mut config = StreamableHttpServerConfig::default().with_allowed_hosts(allowed_hosts);
    config.cancellation_token = shutdown;
    StreamableHttpService::new(
        move || {
            Ok(Handler {
                state: state.clone(),
            })
        },
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

#[derive(Clone)]
pub struct Handler {
    state: Arc<AppState>,
}

pub fn text_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text.into())])
}

pub fn error_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text.into())])
}

/// Replaces every occurrence of a secret in text bound for the agent. Very short
/// values are skipped: they would mangle the text without protecting anything.
pub fn redact<'a>(mut text: String, secrets: impl IntoIterator<Item = &'a str>) -> String {
    for secret in secrets {
        if secret.len() >= 4 && text.contains(secret) {
            text = text.replace(secret, "[REDACTED]");
        }
    }
    text
}

fn tool(name: String, description: String, schema: Value) -> Tool {
    let schema: JsonObject = match schema {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    };
    Tool::new(name, description, Arc::new(schema))
}

impl Handler {
    fn run(&self) -> Result<Arc<Run>, ErrorData> {
        self.state
            .current()
            .ok_or_else(|| ErrorData::internal_error("the sidecar is not configured yet", None))
    }

    async fn tools(&self, run: &Run) -> Vec<Tool> {
        let mut tools = Vec::new();
        for integ in &run.config.integrations {
            tools.push(tool(
                format!("{}{API_CALL_SUFFIX}", integ.namespace),
                api_call::description(integ),
                api_call::input_schema(),
            ));
        }
        if run.config.platform_url.is_some() {
            for (name, description, schema) in platform::tools() {
                tools.push(tool(name.to_owned(), description.to_owned(), schema));
            }
        }
        for server in bundled::wait_ready(run, BUNDLED_START_WAIT).await.iter() {
            for t in server.tools() {
                tools.push(tool(
                    format!("{}__{}", server.name(), t.name),
                    t.description.clone(),
                    t.input_schema.clone(),
                ));
            }
        }
        tools
    }

    async fn call(&self, run: &Run, name: &str, args: JsonObject) -> Option<CallToolResult> {
        if let Some(ns) = name.strip_suffix(API_CALL_SUFFIX) {
            if let Some(integ) = run.config.integrations.iter().find(|i| i.namespace == ns) {
                return Some(api_call::call(&self.state, run, integ, &args).await);
            }
        }
        if let Some(platform_url) = &run.config.platform_url {
            if let Some(result) = platform::call(&self.state, run, platform_url, name, &args).await
            {
                return Some(result);
            }
        }
        let (server, tool) = name.split_once("__")?;
        let servers = bundled::wait_ready(run, BUNDLED_START_WAIT).await;
        let server = servers.iter().find(|s| s.name() == server)?;
        if !server.tools().iter().any(|t| t.name == tool) {
            return None;
        }
        Some(server.call(tool, Value::Object(args)).await)
    }
}

impl ServerHandler for Handler {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let run = self.run()?;
        Ok(ListToolsResult::with_all_items(self.tools(&run).await))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let run = self.run()?;
        let args = request.arguments.unwrap_or_default();
        match self.call(&run, &request.name, args).await {
            Some(result) => Ok(result.into()),
            None => Ok(error_result(format!("unknown tool `{}`", request.name)).into()),
        }
    }
}
