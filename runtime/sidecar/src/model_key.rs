//! The run's model key as the LLM proxy uses it. An API key never changes; an OAuth
//! access token (`ModelConfig::oauth`) does: it is fetched again from the platform
//! (`GET {token_url}`, run token as bearer) before use when it expires within a
//! minute, and after the provider answered 401 the platform is asked to refresh it
//! (`POST {token_url}/refresh`) so the request can be sent once more.
//!
//! One fetch at a time; a caller that waited uses what the other one got.

use std::time::Duration;

use corral_protocol::platform_api::OAuthTokenResponse;
use corral_protocol::{ModelConfig, Secret, CREDENTIALS_REFRESH_LEAD_MS};
use serde_json::Value;

use crate::state::{AppState, Run};

pub struct LiveKey {
    current: parking_lot::Mutex<(Secret, Option<i64>)>,
    fetching: tokio::sync::Mutex<()>,
}

impl LiveKey {
    pub fn new(model: &ModelConfig) -> Self {
        let expires = model.oauth.as_ref().and_then(|o| o.expires_at_ms);
        Self {
            current: parking_lot::Mutex::new((model.api_key.clone(), expires)),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn snapshot(&self) -> (Secret, Option<i64>) {
        self.current.lock().clone()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn expiring(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_some_and(|e| e - now < CREDENTIALS_REFRESH_LEAD_MS)
}

/// Why no usable key could be had; `gone` when the platform says the account must be
/// paired again (the agent is told 401).
#[derive(Debug)]
pub struct KeyError {
    pub gone: bool,
    pub message: String,
}

/// The key to send now.
pub async fn current(state: &AppState, run: &Run) -> Result<Secret, KeyError> {
    let (key, expires_at) = run.model_key.snapshot();
    if run.config.task.model.oauth.is_none() || !expiring(expires_at, now_ms()) {
        return Ok(key);
    }
    match fetch(state, run, false, &key).await {
        Ok(fresh) => Ok(fresh),
        // Still valid for a while: try with it.
        Err(e) if !e.gone && expires_at.is_some_and(|x| x > now_ms()) => {
            tracing::warn!(error = %e.message, "renewing the model token failed; using the current one");
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

/// After the provider refused `used`: a refreshed key, or `None` when there is
/// nothing better to try (an API key, or the refresh gave the same token).
pub async fn after_unauthorized(
    state: &AppState,
    run: &Run,
    used: &Secret,
) -> Result<Option<Secret>, KeyError> {
    if run.config.task.model.oauth.is_none() {
        return Ok(None);
    }
    let fresh = fetch(state, run, true, used).await?;
    Ok((fresh != *used).then_some(fresh))
}

/// Fetches the token from the platform (`force`: asking it to refresh) unless another
/// call replaced `used` meanwhile.
async fn fetch(
    state: &AppState,
    run: &Run,
    force: bool,
    used: &Secret,
) -> Result<Secret, KeyError> {
    let Some(oauth) = &run.config.task.model.oauth else {
        return Ok(used.clone());
    };
    let _one = run.model_key.fetching.lock().await;
    let (current, expires_at) = run.model_key.snapshot();
    if &current != used || (!force && !expiring(expires_at, now_ms())) {
        return Ok(current);
    }
    let url = oauth.token_url.trim_end_matches('/');
    let req = if force {
        state.http.post(format!("{url}/refresh"))
    } else {
        state.http.get(url)
    };
    let failed = |message: String| KeyError {
        gone: false,
        message,
    };
    let resp = req
        .bearer_auth(run.config.run_token.expose())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| {
            failed(format!(
                "the platform could not be reached: {}",
                e.without_url()
            ))
        })?;
    let status = resp.status();
    if !status.is_success() {
        let detail = resp
            .json::<Value>()
            .await
            .ok()
            .and_then(|p| p.get("detail").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        return Err(KeyError {
            gone: status == reqwest::StatusCode::GONE,
            message: format!("the platform answered {status}: {detail}"),
        });
    }
    let body: OAuthTokenResponse = resp
        .json()
        .await
        .map_err(|e| failed(format!("the platform's answer is unreadable: {e}")))?;
    let fresh = Secret::new(body.access_token);
    tracing::info!(forced = force, "model access token renewed");
    *run.model_key.current.lock() = (fresh.clone(), body.expires_at);
    Ok(fresh)
}
