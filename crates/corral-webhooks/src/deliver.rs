//! One delivery attempt (SPEC §11): the shared HTTP client, signing the request with
//! every active secret, and classifying what came back into success, gone, retry or
//! permanent failure. Scheduling and persistence are the caller's.

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use corral_protocol::signing::{SigningSecret, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};

use crate::schedule::parse_retry_after;
use crate::ssrf::{check_url, GuardedResolver, Policy, TargetError};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// How much of a response body is read. Reading (rather than dropping) a modest body
/// lets the connection go back to the pool; a larger one is abandoned.
pub const MAX_RESPONSE_READ: usize = 64 * 1024;

/// How much of the response body is kept for the delivery log.
pub const RESPONSE_EXCERPT_BYTES: usize = 1024;

const USER_AGENT: &str = concat!("Corral-Webhooks/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Success,
    /// 410: the receiver says the endpoint is gone; disable it.
    Gone,
    /// 408, 429, 5xx, network error or timeout: try again on the schedule.
    Retry,
    /// Any other status (other 4xx, 1xx, 3xx: redirects are not followed) or a refused
    /// target: retrying cannot help.
    Permanent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub outcome: Outcome,
    /// The response status, when a response arrived.
    pub status: Option<u16>,
    pub latency: Duration,
    /// Why the attempt failed when no status says it (refusal, network, timeout), or
    /// why the response body could not be read.
    pub error: Option<String>,
    /// The start of the response body, lossily decoded as UTF-8.
    pub response_excerpt: Option<String>,
    pub retry_after: Option<Duration>,
}

impl Attempt {
    fn failed(outcome: Outcome, error: String, latency: Duration) -> Self {
        Self {
            outcome,
            status: None,
            latency,
            error: Some(error),
            response_excerpt: None,
            retry_after: None,
        }
    }
}

/// What a response status means for the delivery.
pub fn classify_status(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Success,
        410 => Outcome::Gone,
        408 | 429 | 500..=599 => Outcome::Retry,
        _ => Outcome::Permanent,
    }
}

/// The `webhook-signature` value: one `v1,` signature per secret, space-separated, so
/// a receiver holding either the old or the new secret during a rotation verifies.
pub fn signature_header(
    secrets: &[SigningSecret],
    event_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|secret| secret.sign(event_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sends webhook requests. Holds one pooled client, so build it once and share it.
#[derive(Debug, Clone)]
pub struct Deliverer {
    client: reqwest::Client,
    policy: Policy,
    timeout: Duration,
}

impl Deliverer {
    /// `timeout` bounds each whole attempt, from connecting to the end of the
    /// response body ([`DEFAULT_TIMEOUT`] in production).
    pub fn new(policy: Policy, timeout: Duration) -> Result<Self, reqwest::Error> {
        Self::build(policy, policy, timeout)
    }

    /// The URL check and the resolver normally share a policy; tests split them to
    /// reach the resolver with a name the URL check would already refuse.
    fn build(
        url_policy: Policy,
        resolver_policy: Policy,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            // A proxy would do the resolving and connecting, out of the guard's reach.
            .no_proxy()
            // A redirect could lead anywhere, including past the URL check.
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver::new(resolver_policy)))
            .timeout(timeout)
            .user_agent(USER_AGENT)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            client,
            policy: url_policy,
            timeout,
        })
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// One attempt to deliver `body`, signed with every secret in `secrets` (the
    /// current one and, during a rotation, the previous one). `event_id` is the
    /// `webhook-id` and must stay the same across retries of one event.
    pub async fn send(
        &self,
        url: &str,
        event_id: &str,
        timestamp: i64,
        body: &[u8],
        secrets: &[SigningSecret],
    ) -> Attempt {
        // IP-literal hosts never reach the resolver, so this is their only check.
        let target = match check_url(url, self.policy) {
            Ok(target) => target,
            Err(e) => return Attempt::failed(Outcome::Permanent, refusal_text(&e), Duration::ZERO),
        };
        if secrets.is_empty() {
            return Attempt::failed(
                Outcome::Permanent,
                "no signing secret is configured for this webhook".to_owned(),
                Duration::ZERO,
            );
        }
        let signature = signature_header(secrets, event_id, timestamp, body);
        let started = Instant::now();
        let sent = self
            .client
            .post(target)
            .header(CONTENT_TYPE, "application/json")
            .header(HEADER_ID, event_id)
            .header(HEADER_TIMESTAMP, timestamp.to_string())
            .header(HEADER_SIGNATURE, signature)
            .body(body.to_vec())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => {
                let (outcome, error) = self.classify_error(&e);
                return Attempt::failed(outcome, error, started.elapsed());
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let mut excerpt = Vec::new();
        let mut read = 0usize;
        let mut error = None;
        while read < MAX_RESPONSE_READ {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    read += chunk.len();
                    let room = RESPONSE_EXCERPT_BYTES.saturating_sub(excerpt.len());
                    excerpt.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) => break,
                // The status already decided the outcome; a body cut short (or too
                // slow, past the timeout) is only worth noting.
                Err(e) => {
                    error = Some(format!(
                        "reading the response body failed: {}",
                        self.classify_error(&e).1
                    ));
                    break;
                }
            }
        }
        Attempt {
            outcome: classify_status(status),
            status: Some(status),
            latency: started.elapsed(),
            error,
            response_excerpt: (!excerpt.is_empty())
                .then(|| String::from_utf8_lossy(&excerpt).into_owned()),
            retry_after,
        }
    }

    fn classify_error(&self, e: &reqwest::Error) -> (Outcome, String) {
        // The resolver's refusal arrives wrapped in reqwest's and hyper's errors;
        // surface it rather than "error sending request".
        let mut source = e.source();
        while let Some(err) = source {
            if let Some(target) = err.downcast_ref::<TargetError>() {
                let outcome = if target.is_refusal() {
                    Outcome::Permanent
                } else {
                    Outcome::Retry
                };
                return (outcome, target.to_string());
            }
            source = err.source();
        }
        if e.is_timeout() {
            return (
                Outcome::Retry,
                format!("timed out after {:?}", self.timeout),
            );
        }
        if e.is_builder() {
            return (Outcome::Permanent, error_chain(e));
        }
        (Outcome::Retry, error_chain(e))
    }
}

fn refusal_text(e: &TargetError) -> String {
    match e {
        TargetError::Forbidden(_) => e.to_string(),
        other => format!("target refused: {other}"),
    }
}

/// The error and its causes, without reqwest's URL-bearing outer message (the caller
/// knows the URL) and without the repetitions hyper's layers add.
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = e.source();
    while let Some(err) = source {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = err.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests;
