//! Runs (`/api/agents/{scope}/{name}/run`, `/api/runs…`): the trigger pipeline of
//! SPEC §7 in order, inline runs, reading (with the `?wait=` long poll), logs, cancel,
//! and an agent's run history.

mod list_json;
mod manage;
pub(crate) mod page_cache;
mod read;
mod remote;
mod start;
mod view;

pub use manage::*;
pub use read::*;
pub use remote::*;
pub use start::*;
pub use view::*;

use list_json::run_list;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::query::Query;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use corral_core::time::{now_ms, to_rfc3339};
use corral_core::{ErrorCode, RunId};
use corral_store::runs as store;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Ctx, Perm};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::json::{Json, Validate};
use crate::pagination::Page;
use crate::state::AppState;
use corral_engine::runs::trigger;

pub fn app_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(run_agent))
        .routes(routes!(run_inline))
        .routes(routes!(validate_inline))
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
        .routes(routes!(get_run_logs))
        .routes(routes!(cancel_run))
        .routes(routes!(extend_run_sink))
        .routes(routes!(list_agent_runs, delete_agent_runs))
}

/// Routes that name their application in the body (`applicationId`), not a header.
pub fn org_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_remote_run))
}

/// `?wait=` ceiling (below common 60 s proxy idle timeouts).
const MAX_WAIT_SECS: u64 = 55;
/// Concurrent long polls per identity; beyond it `wait` is ignored.
const MAX_WAITS_PER_IDENTITY: usize = 10;
