//! Everything that crosses the sandbox boundary, shared by the server, the sidecar
//! and the agent: the sidecar's configuration payload ([`config`]), the task the agent
//! sees ([`AgentTask`]), the run events in CloudEvents 1.0 form ([`events`]), the
//! Standard-Webhooks-style signing that authenticates them ([`signing`]), the
//! HTTP contract between the agent and its sidecar ([`sidecar_api`]), and the
//! platform's internal API the sidecar calls for a run ([`platform_api`]).
//!
//! The crate is deliberately I/O-free: it defines shapes and pure functions so that
//! each side of the boundary can be tested against the same definitions.
#![forbid(unsafe_code)]

pub mod config;
pub mod events;
pub mod platform_api;
pub mod secret;
pub mod sidecar_api;
pub mod signing;

pub use config::{
    AgentModel, AgentTask, Delivery, Egress, Integration, Limits, McpServer, McpServerKind,
    ModelApi, ModelConfig, ModelOAuth, PinnedSlot, SidecarConfig, Sink, Skill, Task,
    CREDENTIALS_REFRESH_LEAD_MS,
};
pub use events::{
    codes, CloudEvent, EventPayload, EventType, Heartbeat, RunError, RunResult, RunStatus, Usage,
};
pub use secret::Secret;
pub use signing::{SigningSecret, VerifyError, WebhookHeaders};
