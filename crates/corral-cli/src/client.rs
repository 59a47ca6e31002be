//! The HTTP client: the resolved context (URL, credential, org, app), authenticated
//! requests, and server errors (problem+json) as [`ApiError`].

use std::fmt;
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use crate::config::{normalize_url, ConfigFile, Credential, Profile};
use crate::Global;

/// A server error: the problem+json fields, or the raw body for anything else.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub title: String,
    pub detail: Option<String>,
    pub code: Option<String>,
    pub request_id: Option<String>,
    /// `(field, message)` of validation errors.
    pub errors: Vec<(String, String)>,
    /// The body when it was not problem+json.
    pub body: Option<String>,
}

impl ApiError {
    /// Builds the error from a response's status, headers and body.
    pub fn from_parts(status: StatusCode, request_id: Option<String>, body: &[u8]) -> ApiError {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        match parsed.filter(|v| v.get("title").is_some() || v.get("detail").is_some()) {
            Some(v) => ApiError {
                status: status.as_u16(),
                title: s(&v, "title").unwrap_or_else(|| reason(status)),
                detail: s(&v, "detail"),
                code: s(&v, "code"),
                request_id: s(&v, "requestId")
                    .or_else(|| s(&v, "request_id"))
                    .or_else(|| {
                        s(&v, "instance")
                            .and_then(|i| i.strip_prefix("urn:corral:request:").map(str::to_owned))
                    })
                    .filter(|r| !r.is_empty())
                    .or(request_id),
                errors: v
                    .get("errors")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|e| {
                                (
                                    s(e, "field").unwrap_or_default(),
                                    s(e, "message").unwrap_or_default(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                body: None,
            },
            None => ApiError {
                status: status.as_u16(),
                title: reason(status),
                detail: None,
                code: None,
                request_id,
                errors: Vec::new(),
                body: Some(String::from_utf8_lossy(body).chars().take(2000).collect()),
            },
        }
    }
}

fn reason(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("HTTP error").to_owned()
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.title, self.status)?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        for (field, msg) in &self.errors {
            write!(f, "\n  {field}: {msg}")?;
        }
        if let Some(b) = self.body.as_deref().filter(|b| !b.trim().is_empty()) {
            write!(f, "\n  {}", b.trim())?;
        }
        if let Some(id) = &self.request_id {
            write!(f, "\n  request id: {id}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Who the CLI is and where it talks to, after flags, environment and profile.
#[derive(Debug, Clone)]
pub struct Context {
    pub url: String,
    pub credential: Option<Credential>,
    pub org_id: Option<String>,
    pub app_id: Option<String>,
    /// The profile in use (None when everything came from the environment).
    pub profile: Option<String>,
}

impl Context {
    /// `--profile`/`CORRAL_PROFILE`, else the profile of `CORRAL_URL`, else the current
    /// one; `CORRAL_URL` and `CORRAL_API_KEY` override what the profile holds.
    pub fn resolve(global: &Global, cfg: &ConfigFile) -> Result<Context> {
        Context::resolve_with(
            global,
            cfg,
            env_nonempty("CORRAL_URL"),
            env_nonempty("CORRAL_API_KEY"),
        )
    }

    /// [`Context::resolve`] with the two variables given.
    pub fn resolve_with(
        global: &Global,
        cfg: &ConfigFile,
        env_url: Option<String>,
        env_key: Option<String>,
    ) -> Result<Context> {
        let name = match (&global.profile, &env_url) {
            (Some(p), _) => {
                if !cfg.profiles.contains_key(p) {
                    anyhow::bail!(
                        "no profile named {p:?} (see `corral login --help`; profiles: {})",
                        names(cfg)
                    );
                }
                Some(p.clone())
            }
            (None, Some(u)) => cfg.find_by_url(u).map(|(n, _)| n.clone()),
            (None, None) => cfg.current.clone(),
        };
        let profile: Option<&Profile> = name.as_ref().and_then(|n| cfg.profiles.get(n));
        let url = match (&env_url, profile) {
            (Some(u), Some(p)) => {
                // Never send a profile's credential to another server.
                let u = normalize_url(u).context("CORRAL_URL")?;
                if u != p.url && env_key.is_none() {
                    anyhow::bail!(
                        "CORRAL_URL ({u}) is not the server of profile {:?} ({}): unset one of them",
                        name.as_deref().unwrap_or_default(),
                        p.url
                    );
                }
                u
            }
            (Some(u), None) => normalize_url(u).context("CORRAL_URL")?,
            (None, Some(p)) => p.url.clone(),
            (None, None) => anyhow::bail!(
                "no Corral server configured: run `corral login <url>`, or set CORRAL_URL (and CORRAL_API_KEY)"
            ),
        };
        let credential = match env_key {
            Some(k) => Some(Credential::ApiKey { key: k }),
            None => profile.map(|p| p.credential.clone()),
        };
        // An API key implies its org and app; only sessions send them.
        let (org_id, app_id) = match (&credential, profile) {
            (Some(Credential::Session { .. }), Some(p)) => (p.org_id.clone(), p.app_id.clone()),
            _ => (None, None),
        };
        Ok(Context {
            url,
            credential,
            org_id,
            app_id,
            profile: name,
        })
    }
}

fn names(cfg: &ConfigFile) -> String {
    if cfg.profiles.is_empty() {
        "none".into()
    } else {
        cfg.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

pub fn env_nonempty(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

/// An authenticated client for one server.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub ctx: Context,
}

impl Api {
    pub fn new(ctx: Context) -> Result<Api> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("corral-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Api { http, ctx })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.ctx.url, path)
    }

    /// A request with the credential and the org/app headers.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut rb = self.http.request(method, self.url(path));
        match &self.ctx.credential {
            Some(Credential::ApiKey { key }) => rb = rb.bearer_auth(key),
            Some(Credential::Session { token }) => {
                rb = rb.header(reqwest::header::COOKIE, format!("corral_session={token}"));
            }
            None => {}
        }
        if let Some(o) = &self.ctx.org_id {
            rb = rb.header("x-org-id", o);
        }
        if let Some(a) = &self.ctx.app_id {
            rb = rb.header("x-app-id", a);
        }
        rb
    }

    /// Sends; a status ≥ 400 becomes an [`ApiError`].
    pub async fn send(&self, rb: RequestBuilder) -> Result<Response> {
        let resp = rb.send().await.map_err(|e| self.net_error(e))?;
        if resp.status().as_u16() >= 400 {
            return Err(into_error(resp).await.into());
        }
        Ok(resp)
    }

    pub async fn json(&self, rb: RequestBuilder) -> Result<Value> {
        let resp = self.send(rb).await?;
        let bytes = resp.bytes().await.map_err(|e| self.net_error(e))?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).context("the server's response is not JSON")
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.json(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.json(self.request(Method::POST, path).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.json(self.request(Method::DELETE, path)).await
    }

    pub fn net_error(&self, e: reqwest::Error) -> anyhow::Error {
        anyhow!("cannot reach {}: {}", self.ctx.url, error_chain(&e))
    }
}

/// Reads an error response into an [`ApiError`].
pub async fn into_error(resp: Response) -> ApiError {
    let status = resp.status();
    let rid = resp
        .headers()
        .get("request-id")
        .or_else(|| resp.headers().get("x-request-id"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.bytes().await.unwrap_or_default();
    ApiError::from_parts(status, rid, &body)
}

/// `e` and its sources, `: `-separated (reqwest's top-level message alone is vague).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let m = src.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = src.source();
    }
    s
}

/// Splits `@scope/name` (the `@` optional) into its two URL path segments.
pub fn agent_path(id: &str) -> Result<(String, String)> {
    let id = id.trim();
    let bare = id.strip_prefix('@').unwrap_or(id);
    match bare.split_once('/') {
        Some((s, n))
            if !s.is_empty()
                && !n.is_empty()
                && !n.contains('/')
                && [s, n].iter().all(|p| {
                    p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                }) =>
        {
            Ok((format!("@{s}"), n.to_owned()))
        }
        _ => anyhow::bail!("{id:?} is not a package id: expected @scope/name"),
    }
}

/// Percent-encodes one path segment (`@` stays: it is legal in a segment).
pub fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
        .replace("%40", "@")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ConfigFile {
        let mut cfg = ConfigFile::default();
        for (name, url, cred) in [
            (
                "a:1",
                "http://a:1",
                Credential::Session {
                    token: "tok".into(),
                },
            ),
            (
                "b",
                "https://b",
                Credential::ApiKey {
                    key: "ask_b".into(),
                },
            ),
        ] {
            cfg.profiles.insert(
                name.into(),
                Profile {
                    url: url.into(),
                    credential: cred,
                    email: None,
                    org_id: Some("org_a".into()),
                    app_id: Some("app_a".into()),
                },
            );
        }
        cfg.current = Some("a:1".into());
        cfg
    }

    #[test]
    fn the_context_comes_from_flags_environment_and_profiles() {
        let g = Global::default();
        let named = |p: &str| Global {
            profile: Some(p.into()),
            json: false,
        };
        // The current profile: its session with org and app.
        let c = Context::resolve_with(&g, &cfg(), None, None).unwrap();
        assert_eq!(
            (c.url.as_str(), c.org_id.as_deref()),
            ("http://a:1", Some("org_a"))
        );
        // --profile: an API key sends no org or app.
        let c = Context::resolve_with(&named("b"), &cfg(), None, None).unwrap();
        assert_eq!(
            c.credential,
            Some(Credential::ApiKey {
                key: "ask_b".into()
            })
        );
        assert_eq!((c.org_id, c.app_id), (None, None));
        assert!(Context::resolve_with(&named("zz"), &cfg(), None, None).is_err());
        // CORRAL_URL picks the profile of that URL; another URL gets no credential.
        let c = Context::resolve_with(&g, &cfg(), Some("b".into()), None).unwrap();
        assert_eq!(c.profile.as_deref(), Some("b"));
        let c = Context::resolve_with(&g, &cfg(), Some("http://c:9".into()), None).unwrap();
        assert_eq!((c.credential, c.profile), (None, None));
        // CORRAL_API_KEY overrides the credential (and drops org/app).
        let c = Context::resolve_with(&g, &cfg(), None, Some("ask_env".into())).unwrap();
        assert_eq!(
            c.credential,
            Some(Credential::ApiKey {
                key: "ask_env".into()
            })
        );
        assert_eq!(c.org_id, None);
        // A named profile's credential never goes to another CORRAL_URL.
        let e = Context::resolve_with(&named("a:1"), &cfg(), Some("http://evil:1".into()), None);
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("is not the server of profile"));
        // Nothing configured at all.
        assert!(Context::resolve_with(&g, &ConfigFile::default(), None, None).is_err());
    }

    #[test]
    fn problem_json_is_read() {
        let body = br#"{"type":"x","title":"Not found","status":404,"detail":"run not found","code":"not_found","requestId":"req_1","instance":"urn:corral:request:req_1","errors":[{"field":"input.name","message":"is required"}]}"#;
        let e = ApiError::from_parts(StatusCode::NOT_FOUND, None, body);
        assert_eq!(e.title, "Not found");
        assert_eq!(e.detail.as_deref(), Some("run not found"));
        assert_eq!(e.request_id.as_deref(), Some("req_1"));
        let shown = e.to_string();
        assert!(shown.contains("Not found (404): run not found"), "{shown}");
        assert!(shown.contains("input.name: is required"), "{shown}");
        assert!(shown.contains("request id: req_1"), "{shown}");
        // Not JSON: the reason and the body; the header's request id.
        let e = ApiError::from_parts(StatusCode::BAD_GATEWAY, Some("r2".into()), b"upstream");
        assert_eq!(e.title, "Bad Gateway");
        assert!(e.to_string().contains("upstream"));
        assert!(e.to_string().contains("request id: r2"));
    }

    #[test]
    fn agent_ids_split() {
        assert_eq!(
            agent_path("@corral/hello-world").unwrap(),
            ("@corral".to_owned(), "hello-world".to_owned())
        );
        assert_eq!(
            agent_path("acme/x").unwrap(),
            ("@acme".to_owned(), "x".to_owned())
        );
        assert!(agent_path("@acme").is_err());
        assert!(agent_path("@acme/a/b").is_err());
        assert!(agent_path("@ac me/x").is_err());
    }
}
