//! The outer request pipeline (SPEC §4 steps 1–3): error mapping, request id, tracing
//! span, client IP, CORS, body limit, security headers, boot gate, shutdown gate.
//! Authentication and everything after it live in [`crate::auth`] and
//! [`crate::context`].

pub mod client_ip;
pub mod gates;
pub mod limits;
pub mod nul;
pub mod package_paths;
pub mod request_id;
pub mod security;
