//! HTTP handlers, one module per domain. Each module exposes its routes grouped by the
//! context they need; [`crate::router`] puts the groups behind their layers.

pub mod admin;
pub mod agents;
pub mod api_keys;
pub mod applications;
pub mod auth;
pub mod bootstrap;
pub mod credential_proxy;
pub mod docs;
pub mod documents;
pub mod end_users;
pub mod health;
pub mod installs;
pub mod integrations;
pub mod internal;
pub mod internal_bundle;
pub mod llm_proxy;
pub mod me;
pub mod me_context;
pub mod models;
pub mod notifications;
pub mod orgs;
pub mod package_archives;
pub mod packages;
pub mod persistence;
pub mod proxies;
pub mod realtime;
pub mod run_documents;
pub mod run_events;
pub mod run_memory;
pub mod runs;
pub mod schedules;
pub mod uploads;
pub mod webhooks;

use serde::Serialize;
use utoipa::ToSchema;

/// The list envelope: `{object: "list", data, total, hasMore}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListOf<T: ToSchema> {
    /// Always `list`.
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<T>,
    /// Number of items matching the query (all pages).
    pub total: i64,
    pub has_more: bool,
}

impl<T: ToSchema> ListOf<T> {
    pub fn all(data: Vec<T>) -> ListOf<T> {
        let total = data.len() as i64;
        ListOf {
            object: "list",
            data,
            total,
            has_more: false,
        }
    }
}

pub(crate) fn rfc3339(ms: i64) -> String {
    corral_core::time::to_rfc3339(ms)
}
