//! Integration tests: the real `corral-sidecar` binary as a process on loopback,
//! with test servers standing in for the model provider (corral-mockllm), the
//! platform's event sink and internal API, and an integration's API.

mod configure;
mod e2e;
mod events;
mod llm;
mod mcp;
mod proxy;
mod upstream;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use axum::http::StatusCode;
use corral_protocol::SigningSecret;
use futures::StreamExt as _;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

pub use corral_testkit::recorder::{Recorder, Seen};

pub const TOKEN: &str = "configure-token-abc123";
pub const RUN_ID: &str = "run_sidecar_1";
pub const RUN_TOKEN: &str = "rt_SECRET_run_token_0042";
pub const REAL_KEY: &str = "sk-REAL-provider-key-9f8e";
pub const SINK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const INTEGRATION_SECRET: &str = "gho_INTEGRATION_SECRET_77aa";

/// A running `corral-sidecar` process.
pub struct Sidecar {
    pub url: String,
    pub proxy: SocketAddr,
    pub http: reqwest::Client,
    _child: Child,
}

impl Sidecar {
    pub async fn start() -> Sidecar {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra_env: &[(&str, &str)]) -> Sidecar {
        let log = if std::env::var_os("CORRAL_SIDECAR_TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_corral-sidecar"))
            .args(["--listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0"])
            .env("CORRAL_CONFIGURE_TOKEN", TOKEN)
            .envs(extra_env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn corral-sidecar");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("sidecar announced its addresses")
            .unwrap()
            .expect("a line on stdout");
        let bound: Value = serde_json::from_str(&line).unwrap();
        Sidecar {
            url: format!("http://{}", bound["api"].as_str().unwrap()),
            proxy: bound["proxy"].as_str().unwrap().parse().unwrap(),
            http: reqwest::Client::new(),
            _child: child,
        }
    }

    pub async fn configure_with(&self, token: &str, config: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/configure", self.url))
            .bearer_auth(token)
            .json(config)
            .send()
            .await
            .unwrap()
    }

    pub async fn configure(&self, config: &Value) {
        let resp = self.configure_with(TOKEN, config).await;
        assert_eq!(
            resp.status(),
            StatusCode::NO_CONTENT,
            "{:?}",
            resp.text().await
        );
    }

    /// Sends SIGTERM and returns the exit code.
    pub async fn terminate(mut self) -> Option<i32> {
        let pid = self._child.id().expect("still running") as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        tokio::time::timeout(Duration::from_secs(15), self._child.wait())
            .await
            .expect("sidecar exits on SIGTERM")
            .unwrap()
            .code()
    }

    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.url)
    }
}

/// A sidecar configuration with one header-delivered integration `demo`.
pub fn config(model_base_url: &str, api: &str, sink_url: &str) -> Value {
    json!({
        "run_id": RUN_ID,
        "run_token": RUN_TOKEN,
        "task": {
            "prompt": "Greet the world and report.",
            "input": {"who": "world"},
            "model": {"api": api, "model": "mock-model-1", "base_url": model_base_url, "api_key": REAL_KEY},
            "limits": {"max_steps": 10, "max_tokens": 1000000, "timeout_secs": 60, "bash_timeout_secs": 20}
        },
        "integrations": [],
        "sink": {"events_url": format!("{sink_url}/api/runs/{RUN_ID}/events"), "secret": SINK_SECRET}
    })
}

pub fn signing() -> SigningSecret {
    SigningSecret::parse(SINK_SECRET).unwrap()
}

/// A small MCP client over Streamable HTTP for the tests, independent of the
/// agent's so the wire format is checked twice.
pub struct Mcp {
    http: reqwest::Client,
    url: String,
    session: Option<String>,
    next_id: u64,
}

impl Mcp {
    pub async fn connect(url: String) -> Mcp {
        let mut mcp = Mcp {
            http: reqwest::Client::new(),
            url,
            session: None,
            next_id: 1,
        };
        let (init, session) = mcp
            .raw(
                "initialize",
                json!({"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "sidecar-tests", "version": "0"}}),
            )
            .await;
        assert!(init["result"]["protocolVersion"].is_string(), "{init}");
        assert!(
            init["result"]["capabilities"]["tools"].is_object(),
            "{init}"
        );
        mcp.session = session;
        let resp = mcp
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        mcp
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(body);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        req
    }

    async fn raw(&mut self, method: &str, params: Value) -> (Value, Option<String>) {
        let id = self.next_id;
        self.next_id += 1;
        let resp = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{method}: {}", resp.status());
        let session = resp
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let sse = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
        if !sse {
            return (resp.json().await.unwrap(), session);
        }
        // Read the stream until our response arrives; it may stay open after it.
        let mut buf = String::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            for line in buf.lines() {
                let Some(data) = line.strip_prefix("data:") else {
                    continue;
                };
                if let Ok(v) = serde_json::from_str::<Value>(data.trim()) {
                    if v["id"] == json!(id) {
                        return (v, session);
                    }
                }
            }
        }
        panic!("{method}: stream ended without a response: {buf}");
    }

    pub async fn list_tools(&mut self) -> Vec<Value> {
        let (v, _) = self.raw("tools/list", json!({})).await;
        v["result"]["tools"].as_array().cloned().unwrap_or_default()
    }

    /// Returns `(text, is_error)`.
    pub async fn call(&mut self, name: &str, arguments: Value) -> (String, bool) {
        let (v, _) = self
            .raw("tools/call", json!({"name": name, "arguments": arguments}))
            .await;
        let result = &v["result"];
        assert!(result.is_object(), "{v}");
        let text = result["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
        (text, result["isError"].as_bool().unwrap_or(false))
    }
}
