//! Corral's domain vocabulary, shared by every other crate: identifiers, roles and
//! permissions, the problem codes the API speaks, and time helpers. No I/O here.

pub mod ids;
pub mod perm;
pub mod problem;
pub mod time;

pub use perm::{Permission, Role};
pub use problem::ErrorCode;
