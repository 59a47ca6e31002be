//! Corral's domain vocabulary, shared by every other crate: identifiers, roles and
//! permissions, the problem codes the API speaks, and time helpers. No I/O here.

pub mod ids;
pub mod perm;
pub mod problem;
pub mod run;
pub mod text;
pub mod time;
pub mod token;

pub use ids::{AppId, OrgId, RunId};
pub use perm::{Permission, Role};
pub use problem::{ErrorCode, FieldError, Problem, ProblemResult};
pub use run::RunStatus;

/// The API versions (`Appstrate-Version`) this server can serve; the first is the
/// current one, which webhook envelopes also carry.
pub const SUPPORTED_API_VERSIONS: &[&str] = &["2026-03-21"];
pub const CURRENT_API_VERSION: &str = SUPPORTED_API_VERSIONS[0];
