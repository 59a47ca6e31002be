//! The HTTP contract of the sidecar (port 8080, host alias `sidecar` on the run
//! network): what the platform calls once, what the agent calls throughout the run,
//! and what the sidecar calls on the platform. Paths are constants here so that the
//! sidecar's router, the agent's client and the tests cannot drift apart.
//!
//! # Platform → sidecar
//!
//! - **`POST /configure`** — body: [`SidecarConfig`](crate::SidecarConfig) JSON.
//!   Auth: `Authorization: Bearer <configure token>`, a one-time token the platform
//!   passed to the sidecar at start in [`ENV_CONFIGURE_TOKEN`] (the sidecar may sit
//!   in the warm pool before any run exists). `204` configured; `401` wrong token;
//!   `409` already configured (a sidecar is configured at most once); `400` invalid
//!   payload. Configuring releases every waiting `GET /task`.
//! - **`GET /health`** — `200 {"status":"ok","configured":bool}`.
//!
//! # Agent → sidecar
//!
//! No authentication: the run network holds only these two containers, and nothing
//! the agent can reach here reveals a secret.
//!
//! - **`GET /task?wait=<secs>`** — long poll for the task. `200` with
//!   [`AgentTask`](crate::AgentTask) JSON as soon as the sidecar is configured (at
//!   once if it already is); `204` if `wait` (default [`DEFAULT_TASK_WAIT_SECS`],
//!   capped at [`MAX_TASK_WAIT_SECS`]) elapses first, and the agent asks again. The
//!   agent may start before the sidecar is up and retries connection errors.
//! - **`POST /events`** — body: one [`CloudEvent`](crate::CloudEvent), numbered by
//!   the agent (`sequence` from 1, contiguous; `source` = `/afps/runs/{runId}`). The
//!   sidecar rejects a foreign `source` with `400`, signs the body unchanged with the
//!   sink secret (`webhook-id` = the event's `id`) and forwards it to
//!   [`Sink::events_url`](crate::Sink::events_url). `204` once the platform accepted
//!   it; `502` if the platform failed or refused, and the agent retries the same
//!   event (the platform drops duplicates by sequence).
//! - **`POST /events/heartbeat`** — body: [`Heartbeat`](crate::Heartbeat). Forwarded
//!   signed to `{events_url}/heartbeat`. `204` / `502`. The agent sends one when its
//!   task arrives and then every [`HEARTBEAT_INTERVAL_SECS`].
//! - **`POST /events/finalize`** — body: [`RunResult`](crate::RunResult), the last
//!   message of a run (also after SIGTERM, with status `cancelled`). Forwarded signed
//!   to `{events_url}/finalize`. `204` / `502`.
//! - **`POST /llm/…`** — the provider proxy. The sidecar forwards
//!   `/llm/<rest>` to `{model.base_url}/<rest>` (method, query, body and headers,
//!   minus hop-by-hop ones), replacing the placeholder credential with the real key
//!   (`Authorization: Bearer` for OpenAI, `x-api-key` for Anthropic), and streams the
//!   response back unchanged. The agent calls `/llm` + [`ModelApi::request_path`]
//!   (`/llm/chat/completions` or `/llm/v1/messages`) with [`PLACEHOLDER_API_KEY`].
//!   When the run's `max_tokens` is spent the sidecar answers `429` with an
//!   OpenAI-style error body `{"error":{"type":"token_budget_exceeded",…}}`.
//! - **`/mcp`** — an MCP server over Streamable HTTP (JSON-RPC 2.0; `initialize`,
//!   `tools/list`, `tools/call`; responses as JSON or SSE). Tools are named
//!   `{ns}__api_call`, `run_history`, `recall_memory` and those of bundled MCP
//!   servers; the agent offers every listed tool to the model under the same name.
//!
//! # Sidecar → platform
//!
//! `POST {events_url}`, `{events_url}/heartbeat`, `{events_url}/finalize` with the
//! body received from the agent and the headers of
//! [`SigningSecret::sign_headers`](crate::SigningSecret::sign_headers) keyed by the
//! run's sink secret. Calls on the run's behalf (run history, memory) carry
//! `Authorization: Bearer <run token>`.
//!
//! [`ModelApi::request_path`]: crate::ModelApi::request_path

pub const CONFIGURE_PATH: &str = "/configure";
pub const HEALTH_PATH: &str = "/health";
pub const TASK_PATH: &str = "/task";
pub const EVENTS_PATH: &str = "/events";
pub const HEARTBEAT_PATH: &str = "/events/heartbeat";
pub const FINALIZE_PATH: &str = "/events/finalize";
pub const LLM_PREFIX: &str = "/llm";
pub const MCP_PATH: &str = "/mcp";

/// The sidecar's port inside the sandbox.
pub const SIDECAR_PORT: u16 = 8080;
/// The sidecar's HTTP(S) forward proxy for the agent's own outbound traffic
/// (absolute-form HTTP requests and `CONNECT` tunnels), governed by
/// [`Egress`](crate::Egress). A refused destination gets `403`.
pub const PROXY_PORT: u16 = 8081;
/// Where the agent finds the sidecar unless told otherwise.
pub const DEFAULT_SIDECAR_URL: &str = "http://sidecar:8080";

/// Environment variable through which the platform hands the sidecar its one-time
/// configure token.
pub const ENV_CONFIGURE_TOKEN: &str = "CORRAL_CONFIGURE_TOKEN";

pub const DEFAULT_TASK_WAIT_SECS: u64 = 30;
pub const MAX_TASK_WAIT_SECS: u64 = 60;
pub const HEARTBEAT_INTERVAL_SECS: u64 = 15;

/// The credential the agent sends to `/llm/*`; the sidecar replaces it and refuses
/// to forward any other value, so a key never needs to exist inside the agent.
pub const PLACEHOLDER_API_KEY: &str = "corral-placeholder-key";

/// Anthropic API version header value the agent sends.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The `/llm` URL the agent posts a model request to, given the sidecar's base URL.
pub fn llm_url(sidecar_url: &str, api: crate::ModelApi) -> String {
    format!(
        "{}{LLM_PREFIX}{}",
        sidecar_url.trim_end_matches('/'),
        api.request_path()
    )
}

/// The upstream URL the sidecar forwards `/llm/<rest>` to.
pub fn upstream_url(base_url: &str, rest: &str) -> String {
    format!(
        "{}/{}",
        base_url.trim_end_matches('/'),
        rest.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelApi;

    #[test]
    fn llm_urls_compose() {
        assert_eq!(
            llm_url("http://sidecar:8080/", ModelApi::Openai),
            "http://sidecar:8080/llm/chat/completions"
        );
        assert_eq!(
            llm_url(DEFAULT_SIDECAR_URL, ModelApi::Anthropic),
            "http://sidecar:8080/llm/v1/messages"
        );
        assert_eq!(
            upstream_url("https://api.openai.com/v1/", "/chat/completions"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            upstream_url("https://api.anthropic.com", "v1/messages"),
            "https://api.anthropic.com/v1/messages"
        );
    }
}
