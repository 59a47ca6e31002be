//! `{ns}__api_call({method, target, headers?, body?})`: an HTTP call to an
//! integration's API with its credential injected per the integration's delivery.
//! The target must match the integration's `authorized_uris`, redirects are not
//! followed, the response handed back is capped, and any credential echoed in it
//! is redacted.

use std::time::Duration;

use corral_protocol::{Delivery, Integration};
use futures::StreamExt as _;
use rmcp::model::{CallToolResult, JsonObject};
use serde_json::{json, Value};

use super::{error_result, redact, text_result};
use crate::state::AppState;

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
/// Headers the agent may not set: framing is the client's business and
/// credentials are the sidecar's.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "proxy-authorization",
];

pub fn description(integ: &Integration) -> String {
    format!(
        "Call the {ns} API over HTTP. The sidecar adds the {ns} credential itself; do not \
         send one. `target` is an absolute URL matching one of: {uris}.",
        ns = integ.namespace,
        uris = integ.authorized_uris.join(", ")
    )
}

pub fn input_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "method": {"type": "string", "enum": METHODS},
            "target": {"type": "string", "description": "Absolute URL of the request."},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "body": {"description": "Request body: a string sent as is, or JSON."}
        },
        "required": ["method", "target"]
    })
}

pub async fn call(state: &AppState, integ: &Integration, args: &JsonObject) -> CallToolResult {
    match call_inner(state, integ, args).await {
        Ok(result) => result,
        Err(message) => error_result(message),
    }
}

async fn call_inner(
    state: &AppState,
    integ: &Integration,
    args: &JsonObject,
) -> Result<CallToolResult, String> {
    let method = args
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
        .filter(|m| METHODS.contains(&m.as_str()))
        .ok_or_else(|| format!("`method` must be one of {}", METHODS.join(", ")))?;
    let target = args
        .get("target")
        .and_then(Value::as_str)
        .ok_or("`target` (an absolute URL) is required")?;
    let mut url = reqwest::Url::parse(target).map_err(|e| format!("bad target URL: {e}"))?;
    // The glob is checked on the text and on the parsed URL, and user info is
    // refused, so `https://api.x.com@evil.io/` cannot pass a `https://api.x.com*`
    // pattern.
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
        || !integ.authorizes(target)
        || !integ.authorizes(url.as_str())
    {
        return Err(format!(
            "target {target} is not authorized for {}; allowed: {}",
            integ.namespace,
            integ.authorized_uris.join(", ")
        ));
    }
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let mut rendered: Vec<String> = Vec::new();
    let render = |t: &str| {
        integ
            .render(t)
            .map_err(|e| format!("integration misconfigured: {e}"))
    };
    let mut basic = None;
    let mut header = None;
    match &integ.delivery {
        Delivery::Header { name, template } => header = Some((name.clone(), render(template)?)),
        Delivery::Query { name, template } => {
            let value = render(template)?;
            url.query_pairs_mut().append_pair(name, &value);
            rendered.push(value);
        }
        Delivery::Basic { username, password } => {
            basic = Some((render(username)?, render(password)?));
        }
    }

    let mut req = state
        .http
        .request(method, url)
        .timeout(Duration::from_secs(60));
    if let Some(headers) = args.get("headers").and_then(Value::as_object) {
        for (name, value) in headers {
            let Some(value) = value.as_str() else {
                return Err(format!("header `{name}` must be a string"));
            };
            if FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(format!("header `{name}` may not be set"));
            }
            req = req.header(name.as_str(), value);
        }
    }
    match args.get("body") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => req = req.body(s.clone()),
        Some(other) => req = req.json(other),
    }
    // Injected last so an agent-supplied header of the same name cannot win.
    if let Some((name, value)) = header {
        req = req.header(name.as_str(), value.as_str());
        rendered.push(value);
    }
    if let Some((user, pass)) = basic {
        req = req.basic_auth(&user, Some(&pass));
        rendered.push(pass);
    }

    let resp = req
        .send()
        .await
        // `without_url`: with query delivery the URL holds the credential.
        .map_err(|e| format!("request failed: {}", e.without_url()))?;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let cap = state.max_response_bytes;
    let mut body = Vec::new();
    let mut truncated = false;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| format!("reading the response failed: {}", e.without_url()))?;
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    let mut text = format!(
        "HTTP {status}\ncontent-type: {content_type}\n\n{}",
        String::from_utf8_lossy(&body)
    );
    if truncated {
        text.push_str(&format!(
            "\n[response truncated: more than {cap} bytes; request a smaller page]"
        ));
    }
    let secrets = integ
        .credentials
        .values()
        .map(|s| s.expose())
        .chain(rendered.iter().map(String::as_str));
    let text = redact(text, secrets);
    Ok(if status.is_success() {
        text_result(text)
    } else {
        error_result(text)
    })
}
