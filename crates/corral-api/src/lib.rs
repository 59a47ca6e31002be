//! Corral's HTTP API: the request pipeline of SPEC §3–§4, the handlers, the OpenAPI
//! contract generated from them, and [`serve`], the one start function that the
//! binary and the tests both call.

pub mod auth;
pub mod context;
mod dashboard;
pub mod error;
pub mod idempotency;
pub mod json;
mod openapi;
pub mod pagination;
pub mod pipeline;
pub mod query;
pub mod ratelimit;
mod router;
pub mod routes;
mod server;
mod sse_conn;
pub mod state;
pub mod tier2;

pub use corral_config as config;
pub use openapi::{openapi, UNDOCUMENTED_ROUTES};
pub use router::router;
pub use server::{build_state, redact_url, serve, serve_with_state};
