//! Packages (`/api/packages…`): the typed CRUD of the four AFPS package types (one
//! generic implementation, instantiated per type by `typed_routes!` so each gets the
//! reference's paths and operationIds), versions (publish, list, detail, restore,
//! yank), import of `.afps` archives and `.afps-bundle` bundles, file listing and
//! content, and download with integrity verification.

mod fork;
mod handlers;
mod shapes;
mod support;
mod version_info;

pub use fork::*;
pub use handlers::*;
pub use shapes::*;
pub(crate) use support::detail;
use support::*;
pub use version_info::*;

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use corral_afps::{Package, PackageName, PackageType};
use corral_core::time::now_ms;
use corral_core::ErrorCode;
use corral_store::packages as store;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Ctx, Perm};
use crate::error::{ApiError, ApiResult, FieldError, ProblemDetail};
use crate::json::{Json, Validate};
use crate::routes::rfc3339;
use crate::state::AppState;
use corral_engine::packages::{self as svc, main_file};
