//! Models (`/api/models…`, `/api/model-provider-credentials…`,
//! `/api/agents/{scope}/{name}/model`; SPEC §12): an organization's provider keys,
//! its models (one may be the default), the built-in system model from
//! configuration, test calls and model discovery against the provider, and the model
//! an application runs an agent with.
//!
//! Keys are write-only: sealed on arrival, opened only to call the provider, never in
//! a response. OAuth (subscription) providers are connected with the pairing flow
//! (`/api/model-providers-oauth/…`): the connect helper posts the account's tokens
//! with a single-use pairing token.

mod agent_model;
mod credentials;
mod model_tests;
mod oauth_pairing;
mod org_models;
mod registry;
mod seed;

pub use agent_model::*;
pub use credentials::*;
pub use model_tests::*;
pub use oauth_pairing::*;
pub use org_models::*;
pub use registry::*;
pub use seed::*;

use crate::query::Query;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use corral_core::time::now_ms;
use corral_core::{ErrorCode, OrgId};
use corral_store::models as store;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Ctx, Perm};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::json::{check, Json, Validate};
use crate::pagination::Page;
use crate::routes::{rfc3339, ListOf};
use crate::state::AppState;
use corral_connect::models::{self as svc, Probe, Provider};

pub fn org_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_registry))
        .routes(routes!(list_credentials, create_credential))
        .routes(routes!(test_credential_inline))
        .routes(routes!(update_credential, delete_credential))
        .routes(routes!(test_credential))
        .routes(routes!(refresh_credential_models))
        .routes(routes!(list_models, create_model))
        .routes(routes!(seed_models))
        .routes(routes!(search_openrouter))
        .routes(routes!(set_default_model))
        .routes(routes!(test_model_inline))
        .routes(routes!(update_model, delete_model))
        .routes(routes!(test_model))
        .routes(routes!(create_pairing))
        .routes(routes!(get_pairing, cancel_pairing))
}

/// The connect helper's redeem: authenticated by its pairing token, outside the
/// user pipeline.
pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(redeem_pairing))
}

pub fn app_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_agent_model, set_agent_model))
}

const LABEL_MAX: usize = 200;
const KEY_MAX: usize = 8192;
const MODEL_ID_MAX: usize = 256;
const REASONING_LEVELS: &[&str] = &["off", "minimal", "low", "medium", "high", "xhigh", "max"];

fn missing(what: &str, param: &str) -> ApiError {
    let mut e = ApiError::not_found(what);
    e.param = Some(param.to_owned());
    e
}

/// `base` if free, else `base (2)`, `base (3)`, …
fn unique_label(base: &str, taken: &[&str]) -> String {
    if !taken.contains(&base) {
        return base.to_owned();
    }
    (2..)
        .map(|n| format!("{base} ({n})"))
        .find(|l| !taken.contains(&l.as_str()))
        .unwrap_or_else(|| base.to_owned())
}
