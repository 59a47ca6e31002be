//! `GET /api/packages/{type}/{scope}/{name}/versions/info`: the latest published
//! version (the `latest` dist-tag) and the draft's version, for each of the four
//! package types.

use super::*;

/// The latest published version and the version the draft's manifest declares.
#[derive(Debug, Serialize, ToSchema)]
pub struct PackageVersionInfo {
    /// The `latest` dist-tag (the highest stable, non-yanked published version).
    pub latest_published_version: Option<String>,
    /// The draft manifest's `version`.
    pub active_version: Option<String>,
}

pub(super) async fn version_info_impl(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
    id: &str,
) -> ApiResult<PackageVersionInfo> {
    let row = load_row(state, ctx, id, Some(ptype)).await?;
    let manifest: Value = serde_json::from_str(&row.draft_manifest).map_err(ApiError::internal)?;
    Ok(PackageVersionInfo {
        latest_published_version: row.latest_version,
        active_version: manifest
            .get("version")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

macro_rules! version_info_route {
    ($fn_name:ident, $plural:literal, $tag:literal, $op:literal) => {
        #[utoipa::path(get, path = concat!("/api/packages/", $plural, "/{scope}/{name}/versions/info"), tag = $tag, operation_id = $op,
            params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name")),
            responses((status = 200, description = "Version info", body = PackageVersionInfo)))]
        pub async fn $fn_name(
            State(state): State<AppState>,
            ctx: Perm<perms::PackagesRead>,
            Path((scope, name)): Path<(String, String)>,
        ) -> ApiResult<Json<PackageVersionInfo>> {
            let id = package_id(&scope, &name)?;
            let ptype = PackageType::from_plural($plural)
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("unknown type {}", $plural)))?;
            Ok(Json(version_info_impl(&state, &ctx, ptype, &id).await?))
        }
    };
}

version_info_route!(
    agent_version_info,
    "agents",
    "Agents",
    "getAgentVersionInfo"
);
version_info_route!(
    skill_version_info,
    "skills",
    "Skills",
    "getSkillVersionInfo"
);
version_info_route!(
    integration_version_info,
    "integrations",
    "Integration Packages",
    "getIntegrationPackageVersionInfo"
);
version_info_route!(
    mcp_server_version_info,
    "mcp-servers",
    "MCP Servers",
    "getMcpServerPackageVersionInfo"
);

pub fn version_info_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(agent_version_info))
        .routes(routes!(skill_version_info))
        .routes(routes!(integration_version_info))
        .routes(routes!(mcp_server_version_info))
}
