//! Integration tests of the API: a real server on 127.0.0.1:0 per test, real HTTP,
//! SQLite and PostgreSQL.

mod auth_failures;
mod compat_ops;
mod compose;
mod contract;
mod credential_proxy;
mod csrf;
mod documents;
mod governance;
mod hosted_connect;
mod idempotency;
mod integrations;
mod isolation;
mod journey;
mod llm_proxy;
mod mcp_bundle;
mod members;
mod memory;
mod model_oauth;
mod model_oauth_tokens;
mod models;
mod notifications;
mod nul;
mod packages;
mod pipeline;
mod proxies;
mod proxy_runs;
mod proxy_tests;
mod run_compat;

mod rate_limit;
mod realtime;
mod realtime_h2;
mod remote_runs;
mod resources;
mod revoke;
mod run_events;
mod run_list;
mod runs;
mod runs_docker;
mod schedules;
mod storage_deletions;
mod strict;
mod tier2;
mod tier3;
mod webhooks;
