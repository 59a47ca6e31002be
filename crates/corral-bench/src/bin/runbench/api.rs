//! The few API calls the benchmark needs: an account with API keys, run triggers
//! and long-polls to a terminal status.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

/// The trigger rate limit is 20/min per API key: stay well under it.
pub const RUNS_PER_KEY: usize = 15;

pub const AGENT_RUN_PATH: &str = "/api/agents/@corral/hello-world/run";

pub fn unix_ms_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// One trigger as the client saw it.
#[derive(Debug, Clone)]
pub struct Triggered {
    pub id: String,
    pub key: String,
    /// Unix ms (sub-ms precision) just before the request was sent.
    pub sent_unix_ms: f64,
    pub sent: Instant,
    /// When the 201 arrived.
    pub accepted: Instant,
}

impl Api {
    pub fn new(base: &str) -> Result<Api> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    async fn post_json(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
        want: u16,
    ) -> Result<(Value, reqwest::header::HeaderMap)> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.with_context(|| format!("POST {path}"))?;
        let status = resp.status().as_u16();
        let hdrs = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        if status != want {
            bail!("POST {path}: {status} (wanted {want}): {text}");
        }
        Ok((serde_json::from_str(&text).unwrap_or(Value::Null), hdrs))
    }

    /// Signs up a fresh user, creates an org, and returns `keys` API keys of its
    /// default application.
    pub async fn setup(&self, keys: usize) -> Result<Vec<String>> {
        let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
        let (_, hdrs) = self
            .post_json(
                "/api/auth/sign-up/email",
                &[],
                json!({"email": email, "password": "correct horse battery staple", "name": "Bench"}),
                200,
            )
            .await?;
        let session = hdrs
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| {
                c.split(';')
                    .next()
                    .and_then(|kv| kv.trim().strip_prefix("corral_session="))
                    .map(str::to_owned)
            })
            .context("no corral_session cookie in the sign-up answer")?;
        let cookie = format!("corral_session={session}");
        let (org, _) = self
            .post_json(
                "/api/orgs",
                &[("cookie", &cookie)],
                json!({"name": "Bench Org"}),
                201,
            )
            .await?;
        let org_id = org["id"].as_str().context("org id")?.to_owned();
        let apps: Value = self
            .http
            .get(format!("{}/api/applications", self.base))
            .header("cookie", &cookie)
            .header("x-org-id", &org_id)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let app_id = apps["data"][0]["id"]
            .as_str()
            .context("no default application")?
            .to_owned();
        let mut out = Vec::with_capacity(keys);
        for i in 0..keys {
            let (key, _) = self
                .post_json(
                    "/api/api-keys",
                    &[
                        ("cookie", &cookie),
                        ("x-org-id", &org_id),
                        ("x-app-id", &app_id),
                    ],
                    json!({"name": format!("bench-{i}")}),
                    201,
                )
                .await?;
            out.push(key["key"].as_str().context("api key")?.to_owned());
        }
        Ok(out)
    }

    pub async fn trigger(&self, key: &str) -> Result<Triggered> {
        let req = self
            .http
            .post(format!("{}{AGENT_RUN_PATH}", self.base))
            .bearer_auth(key)
            .json(&json!({"input": {"name": "Ada"}}))
            .build()?;
        let sent_unix_ms = unix_ms_now();
        let sent = Instant::now();
        let resp = self.http.execute(req).await.context("triggering a run")?;
        let accepted = Instant::now();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if status != 201 {
            bail!("trigger answered {status}: {text}");
        }
        let v: Value = serde_json::from_str(&text)?;
        Ok(Triggered {
            id: v["id"].as_str().context("run id")?.to_owned(),
            key: key.to_owned(),
            sent_unix_ms,
            sent,
            accepted,
        })
    }

    /// Long-polls until the run is terminal; its status and when the client saw it.
    pub async fn wait_terminal(&self, t: &Triggered, limit: Duration) -> Result<(String, Instant)> {
        let deadline = Instant::now() + limit;
        loop {
            let r = self
                .http
                .get(format!("{}/api/runs/{}?wait=30", self.base, t.id))
                .bearer_auth(&t.key)
                .send()
                .await;
            if let Ok(r) = r {
                if r.status().is_success() {
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    let status = v["status"].as_str().unwrap_or("").to_owned();
                    if matches!(
                        status.as_str(),
                        "success" | "failed" | "timeout" | "cancelled"
                    ) {
                        return Ok((status, Instant::now()));
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("run {} not terminal after {limit:?}", t.id);
            }
        }
    }
}
