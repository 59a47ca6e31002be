//! `/mcp`: `{ns}__api_call` with each credential delivery, authorized_uris and the
//! response cap; `run_history` / `recall_memory` through the platform; the tools
//! of a bundled python MCP server.

use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::{config, Mcp, Recorder, Sidecar, INTEGRATION_SECRET, RUN_TOKEN, TOKEN};

/// An integration API that answers with what it understood, never the credential.
async fn service() -> Recorder {
    Recorder::start(|seen, _| {
        if seen.path == "/big" {
            return "x".repeat(50_000).into_response();
        }
        axum::Json(
            json!({"ok": true, "path": seen.path, "method": seen.method.as_str(),
                          "body": String::from_utf8_lossy(&seen.body)}),
        )
        .into_response()
    })
    .await
}

fn integration(ns: &str, delivery: Value, uri_base: &str) -> Value {
    json!({
        "namespace": ns,
        "delivery": delivery,
        "authorized_uris": [format!("{uri_base}/api/*"), format!("{uri_base}/big")],
        "credentials": {"token": INTEGRATION_SECRET, "user": "bot-user"}
    })
}

#[tokio::test]
async fn api_call_injects_each_delivery_and_enforces_limits() {
    let svc = service().await;
    let sink = Recorder::sink().await;
    let sidecar = Sidecar::start_with(&[("CORRAL_MAX_RESPONSE_BYTES", "1000")]).await;
    let mut cfg = config("http://127.0.0.1:9/v1", "openai", &sink.url);
    cfg["integrations"] = json!([
        integration(
            "hdr",
            json!({"type": "header", "name": "Authorization", "template": "Bearer {{token}}"}),
            &svc.url
        ),
        integration(
            "qry",
            json!({"type": "query", "name": "api_key", "template": "{{token}}"}),
            &svc.url
        ),
        integration(
            "basic",
            json!({"type": "basic", "username": "{{user}}", "password": "{{token}}"}),
            &svc.url
        ),
    ]);
    sidecar.configure(&cfg).await;
    let mut mcp = Mcp::connect(sidecar.mcp_url()).await;
    let names: Vec<String> = mcp
        .list_tools()
        .await
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["hdr__api_call", "qry__api_call", "basic__api_call"]);

    let target = format!("{}/api/repos?x=1", svc.url);
    let (text, is_error) = mcp
        .call(
            "hdr__api_call",
            json!({"method": "POST", "target": target,
              "headers": {"x-trace": "t1"}, "body": {"a": 1}}),
        )
        .await;
    assert!(!is_error, "{text}");
    assert!(text.starts_with("HTTP 200 OK"), "{text}");
    assert!(text.contains(r#""path":"/api/repos""#), "{text}");
    let (text, is_error) = mcp
        .call("qry__api_call", json!({"method": "get", "target": target}))
        .await;
    assert!(!is_error, "{text}");
    let (text, is_error) = mcp
        .call(
            "basic__api_call",
            json!({"method": "GET", "target": target}),
        )
        .await;
    assert!(!is_error, "{text}");

    let seen = svc.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {INTEGRATION_SECRET}").as_str())
    );
    assert_eq!(seen[0].header("x-trace"), Some("t1"));
    assert_eq!(seen[0].body.as_ref(), br#"{"a":1}"#);
    assert_eq!(
        seen[1].query.as_deref(),
        Some(format!("x=1&api_key={INTEGRATION_SECRET}").as_str())
    );
    assert_eq!(seen[1].header("authorization"), None);
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("bot-user:{INTEGRATION_SECRET}"));
    assert_eq!(
        seen[2].header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );

    // Outside authorized_uris: refused without a request.
    for target in [
        format!("{}/other", svc.url),
        "http://127.0.0.2:1/api/x".to_owned(),
        format!("{}@127.0.0.2:1/api/x", svc.url),
    ] {
        let (text, is_error) = mcp
            .call("hdr__api_call", json!({"method": "GET", "target": target}))
            .await;
        assert!(is_error, "{target}: {text}");
        assert!(text.contains("not authorized"), "{text}");
    }
    assert_eq!(svc.seen().len(), 3);

    // The response handed back is capped.
    let (text, _) = mcp
        .call(
            "hdr__api_call",
            json!({"method": "GET", "target": format!("{}/big", svc.url)}),
        )
        .await;
    assert!(text.contains("[response truncated"), "{}", &text[..200]);
    let body = text.split_once("\n\n").unwrap().1;
    let body = body.split_once("\n[response truncated").unwrap().0;
    assert_eq!(body, "x".repeat(1000));

    // An echoed credential is redacted; none of the answers carried it.
    let echo = Recorder::start(|seen, _| {
        seen.header("authorization")
            .unwrap_or_default()
            .to_owned()
            .into_response()
    })
    .await;
    let mut cfg2 = config("http://127.0.0.1:9/v1", "openai", &sink.url);
    cfg2["integrations"] = json!([integration(
        "echo",
        json!({"type": "header", "name": "Authorization", "template": "Bearer {{token}}"}),
        &echo.url
    )]);
    let sidecar2 = Sidecar::start().await;
    sidecar2.configure(&cfg2).await;
    let mut mcp2 = Mcp::connect(sidecar2.mcp_url()).await;
    let (text, _) = mcp2
        .call(
            "echo__api_call",
            json!({"method": "GET", "target": format!("{}/api/me", echo.url)}),
        )
        .await;
    assert!(text.contains("Bearer [REDACTED]"), "{text}");
    assert!(!text.contains(INTEGRATION_SECRET));
    let (text, is_error) = mcp2.call("nope__api_call", json!({})).await;
    assert!(is_error && text.contains("unknown tool"), "{text}");
}

#[tokio::test]
async fn run_history_and_recall_memory_call_the_platform_with_the_run_token() {
    let platform = Recorder::start(|seen, _| {
        if seen.header("authorization") != Some(&format!("Bearer {RUN_TOKEN}")) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        match seen.path.as_str() {
            "/internal/run-history" => axum::Json(json!({"object": "list", "hasMore": false,
                "data": [{"id": "run_prev", "status": "success", "checkpoint": {"n": 41}}]}))
            .into_response(),
            "/internal/memories" => axum::Json(json!({"memories": [{"id": 42,
                "content": "User prefers Python", "createdAt": "2026-04-20T10:00:00Z",
                "actor_type": "user", "actor_id": "usr_abc"}]}))
            .into_response(),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    })
    .await;
    let sink = Recorder::sink().await;
    let sidecar = Sidecar::start().await;
    let mut cfg = config("http://127.0.0.1:9/v1", "openai", &sink.url);
    cfg["platform_url"] = json!(platform.url);
    sidecar.configure(&cfg).await;
    let mut mcp = Mcp::connect(sidecar.mcp_url()).await;
    let names: Vec<Value> = mcp
        .list_tools()
        .await
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, [json!("run_history"), json!("recall_memory")]);

    let (text, is_error) = mcp
        .call(
            "run_history",
            json!({"limit": 3, "fields": "checkpoint,result"}),
        )
        .await;
    assert!(!is_error, "{text}");
    assert!(text.contains("run_prev"), "{text}");
    let (text, is_error) = mcp.call("recall_memory", json!({"q": "python"})).await;
    assert!(!is_error, "{text}");
    assert!(text.contains("User prefers Python"), "{text}");

    let seen = platform.seen();
    assert_eq!(seen[0].path, "/internal/run-history");
    assert_eq!(
        seen[0].query.as_deref(),
        Some("fields=checkpoint%2Cresult&limit=3")
    );
    assert_eq!(seen[1].path, "/internal/memories");
    assert_eq!(seen[1].query.as_deref(), Some("q=python"));
    assert!(!text.contains(RUN_TOKEN));
}

const PY_SERVER: &str = r#"
import json, os, sys
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg:
        continue
    method = msg.get("method")
    if method == "initialize":
        result = {"protocolVersion": msg["params"]["protocolVersion"],
                  "capabilities": {"tools": {}}, "serverInfo": {"name": "py", "version": "1"}}
    elif method == "tools/list":
        result = {"tools": [
            {"name": "add", "description": "Add two integers",
             "inputSchema": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}},
            {"name": "env", "description": "Environment variable names",
             "inputSchema": {"type": "object"}}]}
    elif method == "tools/call":
        args = msg["params"].get("arguments") or {}
        if msg["params"]["name"] == "add":
            text = str(args["a"] + args["b"])
        else:
            text = ",".join(sorted(os.environ)) + " GREETING=" + os.environ.get("GREETING", "")
        result = {"content": [{"type": "text", "text": text}], "isError": False}
    else:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "no"}}) + "\n")
        sys.stdout.flush()
        continue
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n")
    sys.stdout.flush()
"#;

#[tokio::test]
async fn bundled_python_server_tools_are_listed_and_callable() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("server.py");
    std::fs::write(&script, PY_SERVER).unwrap();
    let sink = Recorder::sink().await;
    let sidecar = Sidecar::start().await;
    let mut cfg = config("http://127.0.0.1:9/v1", "openai", &sink.url);
    cfg["mcp_servers"] = json!([
        {"name": "calc", "type": "python", "script": script, "env": {"GREETING": "hi"}},
        {"name": "shell", "type": "binary", "path": "python3", "args": [script]},
        {"name": "broken", "type": "binary", "path": "/nonexistent/mcp-server"}
    ]);
    sidecar.configure(&cfg).await;
    let mut mcp = Mcp::connect(sidecar.mcp_url()).await;
    let tools = mcp.list_tools().await;
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["calc__add", "calc__env", "shell__add", "shell__env"]
    );
    assert_eq!(tools[0]["description"], "Add two integers");
    assert_eq!(tools[0]["inputSchema"]["required"], json!(["a", "b"]));

    let (text, is_error) = mcp.call("calc__add", json!({"a": 2, "b": 40})).await;
    assert_eq!((text.as_str(), is_error), ("42", false));
    let (text, _) = mcp.call("shell__add", json!({"a": 1, "b": 1})).await;
    assert_eq!(text, "2");
    // The subprocess gets only PATH, HOME and its own variables.
    let (text, _) = mcp.call("calc__env", json!({})).await;
    assert!(text.contains("GREETING=hi"), "{text}");
    assert!(
        !text.contains("CORRAL_CONFIGURE_TOKEN") && !text.contains(TOKEN),
        "{text}"
    );
    let (text, is_error) = mcp.call("calc__missing", json!({})).await;
    assert!(is_error, "{text}");
}
