//! `{ns}__api_call({method, target, headers?, body?})`: an HTTP call to an
//! integration's API with its credential injected per the integration's delivery.
//! The target must match the integration's `authorized_uris`, redirects are not
//! followed, the response handed back is capped, and any credential echoed in it
//! is redacted.
//!
//! Credentials that change during a run (OAuth tokens: the config names a
//! `credentials_url`) are kept in [`Live`]: fetched again from the platform before
//! use when they expire within a minute, and after an upstream 401 the platform is
//! asked to refresh and the request is sent once more with the new token.

use std::collections::BTreeMap;
use std::time::Duration;

use corral_protocol::platform_api::IntegrationCredentials;
use corral_protocol::{Delivery, Integration, Secret, CREDENTIALS_REFRESH_LEAD_MS};
use futures::StreamExt as _;
use rmcp::model::{CallToolResult, JsonObject};
use serde_json::{json, Value};

use super::{error_result, redact, text_result};
use crate::state::{AppState, Run};

type Credentials = BTreeMap<String, Secret>;

/// One integration's current credentials.
pub struct Live {
    current: parking_lot::Mutex<(Credentials, Option<i64>)>,
    /// One fetch from the platform at a time; whoever waited uses its result.
    fetching: tokio::sync::Mutex<()>,
}

impl Live {
    pub fn new(integ: &Integration) -> Self {
        Self {
            current: parking_lot::Mutex::new((integ.credentials.clone(), integ.expires_at_ms)),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn snapshot(&self) -> (Credentials, Option<i64>) {
        self.current.lock().clone()
    }
}

/// Whether credentials expiring at `expires_at` should be fetched again at `now`.
pub fn expiring(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_some_and(|e| e - now < CREDENTIALS_REFRESH_LEAD_MS)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Fetches the integration's credentials from the platform (`force`: after a 401,
/// asking it to refresh) unless another call did meanwhile; `used` are the
/// credentials the caller found wanting.
async fn fetch(
    state: &AppState,
    run: &Run,
    integ: &Integration,
    live: &Live,
    force: bool,
    used: &Credentials,
) -> Result<(Credentials, Option<i64>), String> {
    let Some(url) = &integ.credentials_url else {
        return Err("these credentials cannot be renewed during the run".into());
    };
    let _one = live.fetching.lock().await;
    let (current, expires_at) = live.snapshot();
    if &current != used || (!force && !expiring(expires_at, now_ms())) {
        return Ok((current, expires_at));
    }
    let req = if force {
        state.http.post(format!("{url}/refresh"))
    } else {
        state.http.get(url)
    };
    let resp = req
        .bearer_auth(run.config.run_token.expose())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("the platform could not be reached: {}", e.without_url()))?;
    let status = resp.status();
    if !status.is_success() {
        let detail = resp
            .json::<Value>()
            .await
            .ok()
            .and_then(|p| p.get("detail").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        return Err(format!("the platform answered {status}: {detail}"));
    }
    let body: IntegrationCredentials = resp
        .json()
        .await
        .map_err(|e| format!("the platform's answer is unreadable: {e}"))?;
    let auth = body
        .auths
        .first()
        .ok_or("the platform returned no credentials")?;
    let fresh: Credentials = auth
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), Secret::new(v.clone())))
        .collect();
    let expires_at = body
        .expires_at_epoch_ms
        .get(&auth.auth_key)
        .copied()
        .flatten();
    tracing::info!(integration = %integ.namespace, forced = force, "integration credentials renewed");
    *live.current.lock() = (fresh.clone(), expires_at);
    Ok((fresh, expires_at))
}

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

pub async fn call(
    state: &AppState,
    run: &Run,
    integ: &Integration,
    args: &JsonObject,
) -> CallToolResult {
    match call_inner(state, run, integ, args).await {
        Ok(result) => result,
        Err(message) => error_result(message),
    }
}

async fn call_inner(
    state: &AppState,
    run: &Run,
    integ: &Integration,
    args: &JsonObject,
) -> Result<CallToolResult, String> {
    let request = parse(integ, args)?;
    let live = run
        .live
        .get(&integ.namespace)
        .ok_or("integration not configured")?;
    let (mut creds, expires_at) = live.snapshot();
    if integ.credentials_url.is_some() && expiring(expires_at, now_ms()) {
        match fetch(state, run, integ, live, false, &creds).await {
            Ok((fresh, _)) => creds = fresh,
            // Still usable for a while: try with it.
            Err(e) if expires_at.is_some_and(|x| x > now_ms()) => {
                tracing::warn!(integration = %integ.namespace, error = %e, "renewing credentials failed; using the current ones");
            }
            Err(e) => {
                return Err(format!(
                    "the {} credentials expired and could not be renewed: {e}",
                    integ.namespace
                ))
            }
        }
    }
    let mut secrets: Vec<String> = creds.values().map(|s| s.expose().to_owned()).collect();
    let (mut resp, rendered) = send(&run.api_http, integ, &request, &creds).await?;
    secrets.extend(rendered);
    if resp.status() == reqwest::StatusCode::UNAUTHORIZED && integ.credentials_url.is_some() {
        // The token may have been revoked or rotated upstream: ask for a new one and
        // try once more with it.
        match fetch(state, run, integ, live, true, &creds).await {
            Ok((fresh, _)) if fresh != creds => {
                secrets.extend(fresh.values().map(|s| s.expose().to_owned()));
                let (again, rendered) = send(&run.api_http, integ, &request, &fresh).await?;
                secrets.extend(rendered);
                resp = again;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(integration = %integ.namespace, error = %e, "refreshing credentials after a 401 failed");
            }
        }
    }
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
    let text = redact(text, secrets.iter().map(String::as_str));
    Ok(if status.is_success() {
        text_result(text)
    } else {
        error_result(text)
    })
}

/// The agent's request, checked, without any credential.
struct Request {
    method: reqwest::Method,
    url: reqwest::Url,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

fn parse(integ: &Integration, args: &JsonObject) -> Result<Request, String> {
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
    let url = reqwest::Url::parse(target).map_err(|e| format!("bad target URL: {e}"))?;
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
    let mut headers = Vec::new();
    if let Some(given) = args.get("headers").and_then(Value::as_object) {
        for (name, value) in given {
            let Some(value) = value.as_str() else {
                return Err(format!("header `{name}` must be a string"));
            };
            if FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(format!("header `{name}` may not be set"));
            }
            headers.push((name.clone(), value.to_owned()));
        }
    }
    Ok(Request {
        method,
        url,
        headers,
        body: args.get("body").filter(|b| !b.is_null()).cloned(),
    })
}

/// Sends the request with `creds` delivered (through the run's upstream proxy when it
/// has one); returns the response and the rendered credential values (to redact from
/// what the agent sees).
async fn send(
    http: &reqwest::Client,
    integ: &Integration,
    request: &Request,
    creds: &Credentials,
) -> Result<(reqwest::Response, Vec<String>), String> {
    let mut url = request.url.clone();
    let mut rendered: Vec<String> = Vec::new();
    let render = |t: &str| {
        corral_protocol::config::render_template(t, creds)
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
    let mut req = http
        .request(request.method.clone(), url)
        .timeout(Duration::from_secs(60));
    for (name, value) in &request.headers {
        req = req.header(name.as_str(), value.as_str());
    }
    match &request.body {
        None => {}
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
    Ok((resp, rendered))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_renewed_within_the_lead_of_their_expiry() {
        let now = 1_700_000_000_000;
        assert!(!expiring(None, now), "credentials that never expire");
        assert!(!expiring(
            Some(now + CREDENTIALS_REFRESH_LEAD_MS + 1_000),
            now
        ));
        assert!(expiring(
            Some(now + CREDENTIALS_REFRESH_LEAD_MS - 1_000),
            now
        ));
        assert!(expiring(Some(now - 1), now), "already expired");
    }
}
