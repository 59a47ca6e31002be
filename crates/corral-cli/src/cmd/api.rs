//! `api <METHOD> <path>`: an authenticated request to any path, curl-like.

use anyhow::{Context as _, Result};
use clap::Args;
use reqwest::Method;

use crate::output::{json_text, stdout_tty};
use crate::{exit, Global};

pub const API_HELP: &str = "Examples:\n  corral api GET /api/runs?limit=5\n  corral api POST /api/webhooks -d '{\"url\":\"https://example.com/h\",\"events\":[\"run.success\"]}'\n  corral api POST /api/agents/@corral/hello-world/run -d @body.json -i\n  corral api DELETE /api/webhooks/wh_… -H 'Idempotency-Key: 1'\n\nThe body is printed as the server sent it (JSON pretty-printed on a terminal).\nExits 1 when the status is 400 or more.";

#[derive(Args, Debug)]
pub struct ApiArgs {
    /// GET, POST, PUT, PATCH, DELETE, …
    pub method: String,
    /// Path (and query) on the server, e.g. `/api/runs?limit=5`.
    pub path: String,
    /// Request body: JSON, `@file`, or `@-` for stdin (sent as application/json).
    #[arg(long, short = 'd', value_name = "JSON|@FILE")]
    pub data: Option<String>,
    /// Extra header `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "K:V")]
    pub headers: Vec<String>,
    /// Print the status line and response headers (to stderr) too.
    #[arg(long, short)]
    pub include: bool,
}

pub async fn run(global: &Global, a: ApiArgs) -> Result<u8> {
    let api = super::api(global)?;
    let method = Method::from_bytes(a.method.to_ascii_uppercase().as_bytes())
        .with_context(|| format!("invalid method {:?}", a.method))?;
    let path = if a.path.starts_with('/') {
        a.path.clone()
    } else {
        format!("/{}", a.path)
    };
    let mut rb = api.request(method, &path);
    if let Some(d) = &a.data {
        let body = super::json_arg(d)?;
        rb = rb.json(&body);
    }
    for h in &a.headers {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("header {h:?} is not `Name: value`"))?;
        rb = rb.header(k.trim(), v.trim());
    }
    let resp = rb.send().await.map_err(|e| api.net_error(e))?;
    let status = resp.status();
    if a.include {
        eprintln!("{:?} {}", resp.version(), status);
        for (k, v) in resp.headers() {
            eprintln!("{k}: {}", v.to_str().unwrap_or("<binary>"));
        }
        eprintln!();
    }
    let bytes = resp.bytes().await.map_err(|e| api.net_error(e))?;
    let pretty = stdout_tty() && !global.json;
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) => println!("{}", json_text(&v, pretty)),
        Err(_) if bytes.is_empty() => {}
        Err(_) => {
            use std::io::Write as _;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    if status.as_u16() >= 400 {
        if !a.include {
            eprintln!("HTTP {status}");
        }
        return Ok(exit::ERROR);
    }
    Ok(exit::OK)
}
