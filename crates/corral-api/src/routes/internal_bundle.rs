//! `GET /internal/mcp-server-bundle/{scope}/{name}`: the archive of an mcp-server
//! package that one of the run's integrations runs (`source: {kind: "local",
//! server: {name, version}}`), for the sandbox, authenticated by the run token.
//! Access is decided from the versions the run froze, never from a draft.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use corral_core::problem::ErrorCode;
use corral_engine::runs::Definition;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BundleQuery {
    /// The exact version to serve (default: the integration's `source.server.version`).
    pub version: Option<String>,
}

/// The mcp-server package an integration of the run runs, as a ZIP archive.
#[utoipa::path(get, path = "/internal/mcp-server-bundle/{scope}/{name}", tag = "Internal",
    operation_id = "getMcpServerBundle",
    params(("scope" = String, Path, description = "Package scope (e.g. @myorg)"), ("name" = String, Path, description = "Package name"), BundleQuery),
    responses((status = 200, description = "AFPS archive bytes (ZIP)", content_type = "application/zip", body = Vec<u8>),
              (status = 409, description = "The run's definition is no longer readable", body = crate::error::ProblemDetail)),
    security(("bearerExecToken" = [])))]
pub async fn get_mcp_server_bundle(
    State(state): State<AppState>,
    Path((scope, name)): Path<(String, String)>,
    Query(q): Query<BundleQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let run = super::internal::run_of(&state, &headers).await?;
    let target = format!("{scope}/{name}");
    let def: Definition = serde_json::from_str(&run.definition).map_err(|_| {
        ApiError::new(
            ErrorCode::RunDefinitionGone,
            "the definition this run executes is no longer readable",
        )
    })?;
    // The integrations the run froze that run this mcp-server, and the range they name.
    let mut spec = None;
    {
        let mut conn = state.db.conn().await?;
        for (id, version) in &def.dependencies {
            let Some(v) = corral_store::packages::version(&mut conn, id, version).await? else {
                continue;
            };
            let manifest: serde_json::Value = serde_json::from_str(&v.manifest).unwrap_or_default();
            let source = &manifest["source"];
            if manifest["type"] == "integration"
                && source["kind"] == "local"
                && source["server"]["name"] == target.as_str()
            {
                spec = Some(
                    source["server"]["version"]
                        .as_str()
                        .unwrap_or("latest")
                        .to_owned(),
                );
                break;
            }
        }
    }
    let Some(spec) = spec else {
        let mut e = ApiError::not_found("mcp-server");
        e.detail = format!("no integration of this run runs {target}");
        return Err(e);
    };
    let wanted = q.version.unwrap_or(spec);
    let version = corral_engine::packages::resolve(&state, &run.org_id, &target, &wanted).await?;
    let bytes = corral_engine::packages::load_verified(&state, &version).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}-{}.afps\"", version.version),
            ),
        ],
        bytes,
    )
        .into_response())
}
