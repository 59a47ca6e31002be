//! The sidecar's configuration payload (`POST /configure`, sent once by the platform)
//! and the secret-free [`AgentTask`] derived from it for the agent (`GET /task`).
//!
//! Only the sidecar ever holds a [`SidecarConfig`]: it carries the LLM key, the
//! integration credentials, the run token and the platform's event sink. The agent
//! gets an [`AgentTask`], which by construction has none of those fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::secret::Secret;

/// The full configuration of one run's sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SidecarConfig {
    /// The run this sandbox serves (also the CloudEvents `source` suffix).
    pub run_id: String,
    /// The run token: the sidecar presents it as `Authorization: Bearer …` when it
    /// calls back into the platform on the run's behalf (run history, memory).
    pub run_token: Secret,
    pub task: Task,
    #[serde(default)]
    pub integrations: Vec<Integration>,
    pub sink: Sink,
    /// Base URL of the platform's internal API (e.g. `http://host.docker.internal:3000`),
    /// which the sidecar calls with the run token for `run_history` and
    /// `recall_memory` (see [`crate::platform_api`]). When absent those two MCP tools
    /// are not offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_url: Option<String>,
    /// MCP servers bundled with the agent package, started by the sidecar as
    /// subprocesses speaking MCP over stdio; their tools are listed on `/mcp` as
    /// `{name}__{tool}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_servers: Vec<McpServer>,
    /// Policy of the forward proxy the agent's own outbound traffic goes through.
    #[serde(default)]
    pub egress: Egress,
}

/// A bundled MCP server the sidecar runs as a subprocess (stdio transport).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpServer {
    /// Prefix of its tools on `/mcp` (`{name}__{tool}`); letters, digits, `-`, `_`.
    pub name: String,
    #[serde(flatten)]
    pub kind: McpServerKind,
    #[serde(default)]
    pub args: Vec<String>,
    /// The subprocess's whole environment besides `PATH` and `HOME`: the sidecar's
    /// own environment is never inherited, so only what is listed here reaches it.
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
}

/// How a bundled MCP server is started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum McpServerKind {
    /// An executable, run as `{path} {args…}`.
    Binary { path: String },
    /// A Python script, run as `python3 {script} {args…}`.
    Python { script: String },
}

/// Egress policy of the sidecar's forward proxy (port 8081).
///
/// Destinations are resolved first and every resolved address is checked, so a
/// public name pointing at a private address is refused too. Loopback, private
/// (RFC 1918, CGNAT, ULA), link-local, cloud metadata, unspecified, multicast and
/// broadcast addresses are refused unless listed in `allowed_ranges`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Egress {
    /// Host patterns (`*` wildcard, e.g. `*.github.com`) the agent may reach; empty
    /// means any host that passes the address checks.
    pub allowed_hosts: Vec<String>,
    /// CIDR ranges (e.g. `127.0.0.0/8`) exempt from the address checks, for a local
    /// model server or tests.
    pub allowed_ranges: Vec<String>,
    /// An upstream HTTP proxy (`http://[user:password@]host:port`) the forward proxy
    /// chains every allowed request through (CONNECT tunnels and plain requests), and
    /// that integration API calls go through. The allow-list and the address checks
    /// still apply to each destination first; the upstream proxy itself is the
    /// platform's choice and is not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_proxy: Option<Secret>,
}

impl Egress {
    /// Whether `host` matches the host allow-list (an empty list allows every host).
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.allowed_hosts.is_empty()
            || self
                .allowed_hosts
                .iter()
                .any(|p| glob_match(&p.to_ascii_lowercase(), &host))
    }
}

/// What the agent should do, with the model's real endpoint and key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The agent's prompt (`prompt.md`).
    pub prompt: String,
    /// The validated run input.
    #[serde(default)]
    pub input: Value,
    /// JSON Schema (2020-12) the `output` tool's value must satisfy; `None` means the
    /// agent declares no output block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    #[serde(default)]
    pub skills: Vec<Skill>,
    pub model: ModelConfig,
    #[serde(default)]
    pub limits: Limits,
    /// The agent's pinned memory slots for this actor, from earlier runs (`pin`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned: Vec<PinnedSlot>,
}

/// A named value an earlier run pinned, handed to the next runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinnedSlot {
    pub key: String,
    pub value: Value,
}

/// A skill package made available to the agent (`SKILL.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skill {
    pub name: String,
    pub description: String,
    /// The body of `SKILL.md`.
    pub content: String,
}

/// Which wire format the model's provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelApi {
    /// OpenAI-compatible chat completions (`POST {base}/chat/completions`).
    Openai,
    /// Anthropic Messages (`POST {base}/v1/messages`).
    Anthropic,
}

impl ModelApi {
    /// The request path the agent appends to the sidecar's `/llm` prefix, and the
    /// sidecar appends to [`ModelConfig::base_url`]. It follows each provider SDK's
    /// base-URL convention: OpenAI base URLs include the version (`…/v1`),
    /// Anthropic's do not.
    pub fn request_path(self) -> &'static str {
        match self {
            ModelApi::Openai => "/chat/completions",
            ModelApi::Anthropic => "/v1/messages",
        }
    }
}

/// The model as the sidecar sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub api: ModelApi,
    /// Provider model id, e.g. `gpt-4.1-mini` or `claude-sonnet-4-5`.
    pub model: String,
    /// Provider API root in the SDK convention (see [`ModelApi::request_path`]), e.g.
    /// `https://api.openai.com/v1` or `https://api.anthropic.com`.
    pub base_url: String,
    /// The real provider key; the sidecar substitutes it for the agent's placeholder.
    /// With [`ModelConfig::oauth`], the OAuth access token current at configure time.
    pub api_key: Secret,
    /// Set when the credential is an OAuth account (a subscription provider): the
    /// key is an access token, sent as a bearer, that changes during the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<ModelOAuth>,
}

/// An OAuth-backed model credential, as the sidecar keeps it fresh: `GET
/// {token_url}` (run token as bearer) before using a token that expires within
/// [`CREDENTIALS_REFRESH_LEAD_MS`], `POST {token_url}/refresh` after the provider
/// answered 401 (see [`crate::platform_api::OAUTH_TOKEN_PATH`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelOAuth {
    pub token_url: String,
    /// When [`ModelConfig::api_key`] expires (Unix ms), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// The account the provider routes on, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

/// Budgets of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Maximum number of LLM calls.
    pub max_steps: u32,
    /// Maximum input + output tokens over the whole run.
    pub max_tokens: u64,
    /// Wall clock of the whole run, from the task's arrival.
    pub timeout_secs: u64,
    /// Per-call ceiling of the `bash` tool.
    pub bash_timeout_secs: u64,
    /// How many times the model may retry an `output` call that failed validation.
    pub max_output_retries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_steps: 50,
            max_tokens: 1_000_000,
            timeout_secs: 300,
            bash_timeout_secs: 120,
            max_output_retries: 2,
        }
    }
}

/// One integration the sidecar can call on the agent's behalf through the MCP tool
/// `{namespace}__api_call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Integration {
    /// Tool namespace, e.g. `github`.
    pub namespace: String,
    pub delivery: Delivery,
    /// URL patterns the credential may be sent to; `*` matches any run of characters.
    pub authorized_uris: Vec<String>,
    /// Credential values by name (`access_token`, `api_key`, `username`, …), referenced
    /// from the delivery templates as `{{name}}`.
    pub credentials: BTreeMap<String, Secret>,
    /// When the credentials expire (Unix ms), if they do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// Where the sidecar gets this integration's current credentials during the run
    /// (see [`crate::platform_api::INTEGRATION_CREDENTIALS_PATH`]): `GET` before
    /// using credentials that expire within [`CREDENTIALS_REFRESH_LEAD_MS`], `POST
    /// {url}/refresh` after the upstream answered 401. Absent when they cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_url: Option<String>,
}

/// How long before their expiry the sidecar fetches an integration's credentials
/// again (the platform refreshes OAuth tokens that expire within 5 minutes).
pub const CREDENTIALS_REFRESH_LEAD_MS: i64 = 60_000;

impl Integration {
    /// Whether `target` may receive this integration's credential.
    pub fn authorizes(&self, target: &str) -> bool {
        self.authorized_uris
            .iter()
            .any(|pattern| glob_match(pattern, target))
    }

    /// Renders a delivery template against this integration's credentials.
    pub fn render(&self, template: &str) -> Result<String, TemplateError> {
        render_template(template, &self.credentials)
    }
}

/// How a credential is injected into an outgoing request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Delivery {
    /// `name: <rendered template>`, e.g. `Authorization: Bearer {{access_token}}`.
    Header { name: String, template: String },
    /// `?name=<rendered template>` appended to the target URL.
    Query { name: String, template: String },
    /// HTTP basic auth from two templates.
    Basic { username: String, password: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template references unknown credential `{0}`")]
    UnknownCredential(String),
    #[error("unterminated `{{{{` in template")]
    Unterminated,
}

/// Replaces every `{{name}}` (whitespace inside the braces allowed) with the credential
/// of that name. Unknown names are an error rather than an empty string so a
/// misconfigured integration fails loudly instead of sending a blank credential.
pub fn render_template(
    template: &str,
    credentials: &BTreeMap<String, Secret>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(TemplateError::Unterminated)?;
        let name = after[..end].trim();
        let value = credentials
            .get(name)
            .ok_or_else(|| TemplateError::UnknownCredential(name.to_owned()))?;
        out.push_str(value.expose());
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `*` matches any (possibly empty) run of characters; everything else is literal.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut pos = first.len();
    let end = text.len() - last.len();
    for part in &parts[1..parts.len() - 1] {
        match text[pos..end].find(part) {
            Some(i) => pos += i + part.len(),
            None => return false,
        }
    }
    text[end..] == *last
}

/// Where the sidecar forwards the run's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sink {
    /// `…/api/runs/{runId}/events`; heartbeats go to `{events_url}/heartbeat` and the
    /// result to `{events_url}/finalize`.
    pub events_url: String,
    /// The run's sink secret (`whsec_…`), see [`crate::signing`].
    pub secret: Secret,
}

impl Sink {
    pub fn heartbeat_url(&self) -> String {
        format!("{}/heartbeat", self.events_url.trim_end_matches('/'))
    }

    pub fn finalize_url(&self) -> String {
        format!("{}/finalize", self.events_url.trim_end_matches('/'))
    }
}

/// The task as the agent receives it from `GET /task`: no credential, no provider
/// URL, no platform URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentTask {
    pub run_id: String,
    pub prompt: String,
    #[serde(default)]
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    #[serde(default)]
    pub skills: Vec<Skill>,
    pub model: AgentModel,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned: Vec<PinnedSlot>,
}

/// The model as the agent sees it: which wire format to speak and which id to ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentModel {
    pub api: ModelApi,
    pub model: String,
}

impl From<&SidecarConfig> for AgentTask {
    fn from(config: &SidecarConfig) -> Self {
        let task = &config.task;
        AgentTask {
            run_id: config.run_id.clone(),
            prompt: task.prompt.clone(),
            input: task.input.clone(),
            output_schema: task.output_schema.clone(),
            skills: task.skills.clone(),
            model: AgentModel {
                api: task.model.api,
                model: task.model.model.clone(),
            },
            limits: task.limits,
            pinned: task.pinned.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> SidecarConfig {
        serde_json::from_value(json!({
            "run_id": "run_0192",
            "run_token": "rt_SECRET_TOKEN",
            "task": {
                "prompt": "Summarise the repo",
                "input": {"repo": "corral"},
                "output_schema": {"type": "object", "required": ["summary"]},
                "skills": [{"name": "git", "description": "use git", "content": "# Git"}],
                "model": {
                    "api": "anthropic",
                    "model": "claude-sonnet-4-5",
                    "base_url": "https://api.anthropic.com",
                    "api_key": "sk-ant-SECRET"
                },
                "limits": {"max_steps": 7}
            },
            "integrations": [{
                "namespace": "github",
                "delivery": {"type": "header", "name": "Authorization", "template": "Bearer {{access_token}}"},
                "authorized_uris": ["https://api.github.com/*"],
                "credentials": {"access_token": "gho_SECRET"}
            }],
            "sink": {
                "events_url": "https://platform.internal/api/runs/run_0192/events",
                "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            }
        }))
        .unwrap()
    }

    #[test]
    fn parses_full_config_with_defaults() {
        let c = sample();
        assert_eq!(c.task.model.api, ModelApi::Anthropic);
        assert_eq!(c.task.limits.max_steps, 7);
        // Omitted limits take the defaults rather than zero.
        assert_eq!(c.task.limits.max_tokens, Limits::default().max_tokens);
        assert_eq!(
            c.integrations[0].delivery,
            Delivery::Header {
                name: "Authorization".into(),
                template: "Bearer {{access_token}}".into()
            }
        );
        assert_eq!(
            c.sink.finalize_url(),
            "https://platform.internal/api/runs/run_0192/events/finalize"
        );
    }

    #[test]
    fn agent_task_carries_no_secret_nor_platform_url() {
        let c = sample();
        let task = AgentTask::from(&c);
        let text = serde_json::to_string(&task).unwrap();
        for leaked in [
            "SECRET",
            "whsec_",
            "platform.internal",
            "api.anthropic.com",
            "events",
        ] {
            assert!(!text.contains(leaked), "{leaked} leaked into {text}");
        }
        assert_eq!(task.run_id, "run_0192");
        assert_eq!(task.model.model, "claude-sonnet-4-5");
        assert_eq!(task.limits.max_steps, 7);
        assert_eq!(task.skills[0].name, "git");
    }

    #[test]
    fn debug_of_config_redacts_secrets() {
        let text = format!("{:?}", sample());
        assert!(!text.contains("SECRET"), "{text}");
        assert!(!text.contains("whsec_"), "{text}");
    }

    #[test]
    fn delivery_variants_round_trip() {
        for d in [
            json!({"type": "query", "name": "key", "template": "{{api_key}}"}),
            json!({"type": "basic", "username": "{{user}}", "password": "{{pass}}"}),
        ] {
            let parsed: Delivery = serde_json::from_value(d.clone()).unwrap();
            assert_eq!(serde_json::to_value(&parsed).unwrap(), d);
        }
    }

    #[test]
    fn templates_render_and_reject_unknown_names() {
        let integ = &sample().integrations[0];
        assert_eq!(
            integ.render("Bearer {{ access_token }}").unwrap(),
            "Bearer gho_SECRET"
        );
        assert_eq!(
            integ.render("{{nope}}"),
            Err(TemplateError::UnknownCredential("nope".into()))
        );
        assert_eq!(integ.render("x {{oops"), Err(TemplateError::Unterminated));
    }

    #[test]
    fn authorized_uris_glob() {
        let integ = &sample().integrations[0];
        assert!(integ.authorizes("https://api.github.com/repos/x/y"));
        assert!(!integ.authorizes("https://api.github.com.evil.io/repos"));
        assert!(!integ.authorizes("http://api.github.com/repos"));
        assert!(glob_match(
            "https://*.example.com/v1/*",
            "https://a.example.com/v1/x"
        ));
        assert!(!glob_match(
            "https://*.example.com/v1/*",
            "https://a.example.org/v1/x"
        ));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("a*a", "a"));
    }

    #[test]
    fn new_optional_fields_default_and_parse() {
        let c = sample();
        assert_eq!(c.platform_url, None);
        assert!(c.mcp_servers.is_empty());
        assert_eq!(c.egress, Egress::default());
        assert!(c.egress.allows_host("anything.example"));
        let server: McpServer = serde_json::from_value(json!({
            "name": "notes", "type": "python", "script": "/srv/notes.py",
            "env": {"TOKEN": "s3cret"}
        }))
        .unwrap();
        assert_eq!(
            server.kind,
            McpServerKind::Python {
                script: "/srv/notes.py".into()
            }
        );
        assert!(!format!("{server:?}").contains("s3cret"));
        let egress = Egress {
            allowed_hosts: vec!["*.github.com".into()],
            allowed_ranges: vec![],
            upstream_proxy: None,
        };
        assert!(egress.allows_host("API.github.com"));
        assert!(!egress.allows_host("github.com.evil.io"));
    }

    #[test]
    fn request_paths_follow_sdk_conventions() {
        assert_eq!(ModelApi::Openai.request_path(), "/chat/completions");
        assert_eq!(ModelApi::Anthropic.request_path(), "/v1/messages");
        assert_eq!(
            serde_json::to_value(ModelApi::Openai).unwrap(),
            json!("openai")
        );
    }
}
